"""int8 quantisation methods for the transformer's ONNX graph, side by side on gold dev.

    python -m infer.export model=<dir>            # the fp32 graph this starts from
    python benchmarks/int8_methods.py --model <dir> [--limit N]

Quantises the folder's fp32 graph (``model.onnx``) in a temporary folder by each method of
``infer.export.quantize_int8`` — ``dynamic`` (per-channel weights, one activation scale a
batch) and ``blockwise`` (8-bit weight blocks of 32 or 128, activations per block of each
token) — and runs the folder's predictor on each graph over gold dev (headlines, title +
lead) and dev_articles: docs/s; topic / tone macro-F1 at the folder's thresholds and the
change against the fp32 graph; how many (text, topic) decisions and tones changed; the
largest topic-probability change; and topic macro-F1 with thresholds cross-fitted on
each graph's own scores (5 folds, as ``dev_crossfit``), with its change. The folder's
thresholds were tuned on these very texts, so some sit just beside a cut by construction
and a tiny score change flips them: the cross-fitted figure is what a user's unseen texts
get. Target (issue 10): F1 within 0.01 of torch, whose decisions the fp32 graph
reproduces exactly.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import f1_score

ROOT = Path(__file__).resolve().parent.parent
GOLD = ROOT.parent / "shared" / "data" / "gold"
sys.path.insert(0, str(ROOT))

METHODS = {  # name: (int8_method, block_size)
    "dynamic": ("dynamic", 0),
    "blockwise-32": ("blockwise", 32),
    "blockwise-128": ("blockwise", 128),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="a folder with model.onnx")
    parser.add_argument("--limit", type=int, help="at most this many texts of each file")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    args = parser.parse_args()
    if not (GOLD / "dev.jsonl").is_file():
        sys.exit(f"skipped: {GOLD} not found (../shared beside the repository root)")
    if not (args.model / "model.onnx").is_file():
        sys.exit(f"skipped: no {args.model / 'model.onnx'}; run python -m infer.export first")
    import infer
    from infer.export import quantize_int8
    from infer.predictors.onnx_runner import OnnxRunner
    from train.decision import crossfit_decisions
    from train.evaluation import decisions

    sets = {}
    for name in ("dev", "dev_articles"):
        rows = [json.loads(line) for line in (GOLD / f"{name}.jsonl").open(encoding="utf-8")]
        sets[name] = rows[: args.limit] if args.limit else rows
    predictor = infer.load(args.model, runtime="onnx", graph="fp32")
    schema = predictor.schema

    def run() -> dict[str, tuple[float, float, float, np.ndarray]]:
        out = {}
        for name, rows in sets.items():
            start = time.perf_counter()
            scores, probs = predictor.predict_scores([r["text"] for r in rows])
            seconds = time.perf_counter() - start
            truth = np.array([[t in r["topics"] for t in schema.topics] for r in rows])
            decided = decisions(scores, schema, predictor.thresholds)
            topics = f1_score(truth, decided, average="macro", zero_division=0.0)
            tone = f1_score(
                [schema.tones.index(r["tone"]) for r in rows], probs.argmax(1), average="macro"
            )
            honest = f1_score(
                truth,
                crossfit_decisions(schema, scores, truth.astype(int)),
                average="macro",
                zero_division=0.0,
            )
            out[name] = (len(rows) / seconds, topics, tone, scores, decided, probs, honest)
        return out

    print(
        "| graph | texts | n | docs/s | topics macro-F1 | tone macro-F1 | topics vs fp32 "
        "| tone vs fp32 | decisions changed (topic / tone) | largest topic-probability "
        "change | topics, cross-fitted thresholds | vs fp32 | MiB |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")

    def show(label: str, found: dict, reference: dict, size: int) -> None:
        for name, (speed, topics, tone, scores, decided, probs, honest) in found.items():
            ref = reference[name]
            flips = int((decided != ref[4]).sum())
            tones = int((probs.argmax(1) != ref[5].argmax(1)).sum())
            print(
                f"| {label} | {name} | {len(sets[name])} | {speed:.1f} | {topics:.3f} | "
                f"{tone:.3f} | {topics - ref[1]:+.3f} | {tone - ref[2]:+.3f} | "
                f"{flips} / {tones} | {np.abs(scores - ref[3]).max():.3f} | {honest:.3f} | "
                f"{honest - ref[6]:+.3f} | {size / 2**20:.0f} |",
                flush=True,
            )

    reference = run()
    show("fp32", reference, reference, (args.model / "model.onnx").stat().st_size)
    with tempfile.TemporaryDirectory(prefix="int8-methods-") as tmp:
        for label in args.methods:
            method, block = METHODS[label]
            graph = Path(tmp) / f"{label}.onnx"
            quantize_int8(args.model / "model.onnx", graph, method, block or 32)
            predictor.runner = OnnxRunner(graph, schema, "int8")
            show(label, run(), reference, graph.stat().st_size)
            graph.unlink()


if __name__ == "__main__":
    main()
