"""Does 8-bit pay on this CPU? The transformer on torch float32, OpenVINO float32 and
OpenVINO int8 (weights and activations), side by side on the mixed set.

    python -m topictone.infer.export model=<run>/model             # its fp32 graph
    python -m benchmarks.speed.openvino_int8 --run <run> [--isa native|avx2] [--every 5] \\
        [--calibration 300]

The run is a ``data=gold`` transformer run with an exported fp32 graph (``model.onnx``).
OpenVINO reads that graph as it is (float32), and NNCF's post-training quantisation
(``nncf.quantize``, ``model_type=TRANSFORMER``: 8-bit weights per channel and 8-bit
activations, calibrated on ``--calibration`` training windows of gold train) makes the
int8 one. Each runtime scores every ``--every``-th text of the mixed set (gold dev and
dev_articles, the frontier's set) through the folder's own windowing, pooling and
thresholds: docs/s (the faster of two passes), its ratio to torch, topic and tone
macro-F1 on those texts, and how many (text, topic) decisions and tones differ from torch.

``--isa avx2`` re-runs this script with torch, oneDNN, MKL and numpy held to AVX2 kernels
(``benchmarks.common.AVX2_ONLY``): OpenVINO's matrix multiplications go through its
oneDNN, which then has neither AVX-512 nor VNNI, as on the AVX2 CPUs most users have
(a few of its own element-wise kernels, FakeQuantize, still use AVX-512). ONNX Runtime
has no such switch: its row uses what the CPU offers. Needs ``openvino`` and ``nncf``,
which are not extras of the package: on AVX2 kernels OpenVINO's int8 was slower than its
float32, and its float32 ran at the pace of the ONNX Runtime graph the package has.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import common


class OpenVinoRunner:
    """A compiled OpenVINO model as the transformer predictor's window runner, in float32
    (no bfloat16 or float16 stand-ins), so that int8 is compared with float32."""

    runtime = "openvino"

    def __init__(self, model: Any) -> None:
        import openvino as ov

        config = {"INFERENCE_PRECISION_HINT": "f32"}
        self.compiled = ov.Core().compile_model(model, "CPU", config)

    def __call__(
        self, input_ids: np.ndarray, attention_mask: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        out = self.compiled({"input_ids": input_ids, "attention_mask": attention_mask})
        return out["topic_logits"], out["tone_logits"]


def calibration_batches(predictor: Any, count: int) -> list[dict[str, np.ndarray]]:
    """``count`` single training windows of gold train, as the graph's inputs."""
    from topictone.infer.predictors.windows import pad_windows

    texts = [r["text"] for r in common.gold_rows("train")]
    rng = np.random.default_rng(0)
    picked = [texts[i] for i in rng.choice(len(texts), count, replace=False)]
    windows = [w for doc in predictor.encode(picked) for w in doc][:count]
    batches = []
    for window in windows:
        padded = pad_windows([[window]], predictor.tokenizer.pad_token_id)
        batches.append({k: padded[k] for k in ("input_ids", "attention_mask")})
    return batches


def runners(predictor: Any, graph: Path, calibration: int) -> dict[str, Any]:
    """torch float32 (as loaded), the ONNX Runtime float32 graph (the product's runner),
    and OpenVINO float32 and int8 (NNCF, made here)."""
    import nncf
    import openvino as ov

    from topictone.infer.predictors.onnx_runner import OnnxRunner, check_graph

    check_graph(graph)  # one file, no external data: as the product reads it
    model = ov.Core().read_model(str(graph))
    start = time.perf_counter()
    dataset = nncf.Dataset(calibration_batches(predictor, calibration))
    int8 = nncf.quantize(
        model, dataset, model_type=nncf.ModelType.TRANSFORMER, subset_size=calibration
    )
    print(f"int8 graph: {calibration} calibration windows, {time.perf_counter() - start:.0f} s")
    return {
        "torch float32": predictor.runner,
        "ONNX Runtime float32 (all ISAs)": OnnxRunner(graph, predictor.schema, "fp32"),
        "OpenVINO float32": OpenVinoRunner(model),
        "OpenVINO int8": OpenVinoRunner(int8),
    }


def measure(predictor: Any, runner: Any, texts: list[str]) -> tuple[float, Any]:
    """The faster of two passes' seconds, and the scores."""
    predictor.runner = runner
    predictor.predict(common.WARM_UP)
    best, scores = float("inf"), None
    for _ in range(2):
        predictor._memo = None  # the predictor remembers its last windows' logits
        seconds, scores = common.timed(predictor.predict_scores, texts)
        best = min(best, seconds)
    return best, scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--isa", choices=("native", "avx2"), default="native")
    parser.add_argument("--every", type=int, default=5)
    parser.add_argument("--calibration", type=int, default=300)
    args = parser.parse_args()
    if args.isa == "avx2" and os.environ.get("ONEDNN_MAX_CPU_ISA") != "AVX2":
        argv = [sys.executable, "-m", "benchmarks.speed.openvino_int8", *sys.argv[1:]]
        os.execve(sys.executable, argv, {**os.environ, **common.AVX2_ONLY})
    common.require_gold("dev.jsonl", "dev_articles.jsonl", "train.jsonl")
    import torch

    from topictone.infer import load

    common.print_cpu()
    print(f"isa: {args.isa}; torch kernels: {torch.backends.cpu.get_cpu_capability()}")
    predictor = load(args.run / "model", runtime="torch", dtype="float32")
    rows = common.gold_rows(*common.MIXED)[:: args.every]
    texts = [r["text"] for r in rows]
    topic_true, tone_true = common.truth(rows, predictor.schema)
    found = runners(predictor, args.run / "model" / "model.onnx", args.calibration)
    common.print_header(
        "runtime", "docs/s", "× torch fp32", "topic macro-F1", "tone macro-F1",
        "decisions / tones changed",
    )  # fmt: skip
    reference: Any = None
    base = 0.0
    for name, runner in found.items():
        seconds, (topics, tones) = measure(predictor, runner, texts)
        decided = common.decide(topics, predictor.schema, predictor.thresholds)
        tone = tones.argmax(axis=1)
        if reference is None:
            reference, base = (decided, tone), len(texts) / seconds
        changed = f"{int((decided != reference[0]).sum())} / {int((tone != reference[1]).sum())}"
        rate = len(texts) / seconds
        print(
            common.row(
                name,
                f"{rate:.2f}",
                f"{rate / base:.2f}",
                f"{common.macro_f1(topic_true, decided):.3f}",
                f"{common.tone_macro_f1(tone_true, tone, len(predictor.schema.tones)):.3f}",
                changed,
            ),
            flush=True,
        )
    print(f"{len(texts)} texts (every {args.every}th of the mixed set)")


if __name__ == "__main__":
    common.one_line_errors(main)
