"""Quality against speed: every model on the same mixed set, side by side in one run.

    python -m benchmarks.speed.frontier --model tfidf=runs/gold-tfidf \\
        --model cascade=runs/gold-cascade ... [--isa native|avx2] [--repeats 2] \\
        [--out runs/frontier]

Each ``--model NAME=RUN`` is a training run's folder (its ``model/`` and
``predictions/``) on ``data=gold``, whose dev split is the mixed set: gold dev (450
headlines and title + leads) and dev_articles (260 full articles), Hindi and English.
Each model runs in a fresh process: load, a warm-up on two texts outside the set, then the
fastest of ``--repeats`` passes over all 710 texts, each by a freshly loaded model (the
encoder and the transformer remember recent windows); one pass where a pass takes over a
minute; with ``--every N`` over every N-th text, the mix kept, for the slow models on AVX2.
Printed per model: docs/s, words/s (whitespace words), the peak RSS of that process
(VmHWM after the first load and pass), the share a cascade sent to its expensive stage
(and of it, the share read only for its tone),
and the honest topic and tone macro-F1 with bootstrap 95% intervals: the run's
cross-fitted dev decisions where its decisions were fitted on dev, else its dev
decisions (fitted without dev). The timed process's decisions are checked against the
run's saved ones.

``--isa avx2`` runs the model processes with torch, oneDNN, MKL and numpy held to AVX2
kernels (no AVX-512, no bfloat16, no VNNI in those libraries): a stand-in on an AVX-512
machine for the AVX2 CPUs most users have. ONNX Runtime and scikit-learn's compiled code
have no such switch and still use what the CPU offers. The CPU line printed first gives
the machine and the kernels the model processes reported.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import (
    AVX2_ONLY,
    MIXED,
    WARM_UP,
    bootstrap_interval,
    crossfit_predictions,
    dev_predictions,
    gold_rows,
    macro_f1,
    one_line_errors,
    print_cpu,
    print_header,
    require_gold,
    row,
    timed,
    tone_macro_f1,
)

SLOW_PASS_S = 60.0


def own_peak_mib() -> float:
    """This process's peak RSS in MiB: VmHWM from /proc (Linux), else ``ru_maxrss``."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def child(run: Path, repeats: int, every: int) -> dict[str, Any]:
    """One model's process: load, warm up, time the passes over every ``every``-th text
    of the mixed set; its figures as a dict."""
    import torch

    from topictone.infer import load

    texts = [r["text"] for r in gold_rows(*MIXED)][::every]
    load_s, predictor = timed(load, run / "model")
    best, predictions, peak = float("inf"), None, 0.0
    for repeat in range(repeats):
        if repeat:  # a fresh model: the encoder's and transformer's memos of recent windows
            predictor = load(run / "model")  # would make a second pass over the texts free
        predictor.predict(WARM_UP)
        seconds, predictions = timed(predictor.predict, texts)
        best, peak = min(best, seconds), peak or own_peak_mib()
        if seconds > SLOW_PASS_S:
            break
    assert predictions is not None
    reads = getattr(predictor, "reads", None)
    whole, lead = reads(predictor.preprocess(texts)) if reads else (None, None)
    return {
        "kind": predictor.kind,
        "texts": len(texts),
        "words": sum(len(t.split()) for t in texts),
        "seconds": best,
        "load_s": load_s,
        "peak_rss_mib": peak,
        "expensive_share": None if whole is None else float((whole | lead).mean()),
        "tone_only_share": None if lead is None else float(lead.mean()),
        "topics": [p.topics for p in predictions],
        "tones": [p.tone for p in predictions],
        "torch_capability": torch.backends.cpu.get_cpu_capability(),
    }


def measure(run: Path, isa: str, repeats: int, every: int) -> dict[str, Any]:
    """``child`` in a fresh process (with the ISA's environment)."""
    env = {**os.environ, **(AVX2_ONLY if isa == "avx2" else {})}
    command = [sys.executable, "-m", "benchmarks.speed.frontier", "--child", str(run)]
    command += ["--repeats", str(repeats), "--every", str(every)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        sys.exit(
            f"error: {run}: the timed process failed: {lines[-1] if lines else done.returncode}"
        )
    return json.loads(done.stdout.strip().splitlines()[-1])


def honest(run: Path) -> dict[str, Any]:
    """The run's honest dev figures with intervals, and its saved decisions."""
    _, schema, rows, (topic_true, tone_true), (_, probs) = dev_predictions(run)
    saved = [(r["prediction"]["topics"], r["prediction"]["tone"]) for r in rows]
    crossfit = crossfit_predictions(run, schema, rows)
    if crossfit is None:  # decisions fitted without dev: its figures are honest as saved
        decided = np.array([[t in s[0] for t in schema.topics] for s in saved], dtype=int)
    else:
        decided, probs = crossfit
    tone_pred = probs.argmax(axis=1)
    tone_f1 = tone_macro_f1(tone_true, tone_pred, len(schema.tones))
    return {
        "topic_f1": macro_f1(topic_true, decided),
        "tone_f1": tone_f1,
        "interval": bootstrap_interval(decided, topic_true, tone_pred, tone_true),
        "crossfit": crossfit is not None,
        "saved": saved,
    }


def result(name: str, run: Path, isa: str, repeats: int, every: int) -> dict[str, Any]:
    """One model's speed, memory and honest quality (on every text); where the timed
    decisions differ from the run's saved ones, how many."""
    timed_run, quality = measure(run, isa, repeats, every), honest(run)
    saved = quality.pop("saved")[::every]
    timed_decisions = list(zip(timed_run.pop("topics"), timed_run.pop("tones"), strict=True))
    differ = sum(
        (tuple(mine[0]), mine[1]) != (tuple(theirs[0]), theirs[1])
        for mine, theirs in zip(timed_decisions, saved, strict=True)
    )
    return {"name": name, "run": str(run), "isa": isa, **timed_run, **quality, "differ": differ}


def print_table(results: list[dict[str, Any]]) -> None:
    print_header(
        "model", "kind", "docs/s", "words/s", "topic macro-F1 [95%]", "tone macro-F1 [95%]",
        "peak RSS MiB", "to expensive", "torch kernels",
    )  # fmt: skip
    for r in results:
        low_t, high_t = r["interval"]["topics/macro_f1"]
        low_o, high_o = r["interval"]["tone/macro_f1"]
        share = "-" if r["expensive_share"] is None else f"{r['expensive_share']:.0%}"
        if r.get("tone_only_share"):
            share += f" ({r['tone_only_share']:.0%} for tone alone)"
        print(
            row(
                r["name"],
                r["kind"],
                f"{r['texts'] / r['seconds']:.1f}",
                f"{r['words'] / r['seconds']:.0f}",
                f"{r['topic_f1']:.3f} [{low_t:.3f}, {high_t:.3f}]",
                f"{r['tone_f1']:.3f} [{low_o:.3f}, {high_o:.3f}]",
                f"{r['peak_rss_mib']:.0f}",
                share,
                r["torch_capability"],
            ),
            flush=True,
        )
    for r in results:
        if r["differ"]:
            print(
                f"note: {r['name']}: {r['differ']} timed decisions differ from the run's saved ones"
            )


def plot(results: list[dict[str, Any]], path: Path) -> None:
    """Topic and tone macro-F1 against docs/s (log scale), one point per model and head."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.5))
    for head, marker in (("topic_f1", "o"), ("tone_f1", "s")):
        speeds = [r["texts"] / r["seconds"] for r in results]
        axis.scatter(speeds, [r[head] for r in results], marker=marker, label=head.split("_")[0])
        for speed, r in zip(speeds, results, strict=True):
            axis.annotate(
                r["name"], (speed, r[head]), fontsize=8, xytext=(4, 2), textcoords="offset points"
            )
    axis.set_xscale("log")
    axis.set_xlabel("docs/s (gold dev + dev_articles, 710 texts)")
    axis.set_ylabel("honest macro-F1")
    axis.legend()
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", default=[], help="NAME=RUN folder")
    parser.add_argument("--isa", choices=("native", "avx2"), default="native")
    parser.add_argument("--repeats", type=int, default=2, help="timed passes per model")
    parser.add_argument("--every", type=int, default=1, help="time every N-th text only")
    parser.add_argument("--out", type=Path, default=Path("runs/frontier"))
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    require_gold(*(f"{name}.jsonl" for name in MIXED))
    if args.child:
        print(json.dumps(child(args.child, args.repeats, args.every)))
        return
    if not args.model or any("=" not in m for m in args.model):
        parser.error("give one or more --model NAME=RUN")
    print_cpu()
    if args.isa == "avx2":
        print(
            "model processes held to AVX2 kernels: "
            + " ".join(f"{k}={v!r}" for k, v in AVX2_ONLY.items())
        )
    runs = [(m.split("=", 1)[0], Path(m.split("=", 1)[1])) for m in args.model]
    results = [result(name, run, args.isa, args.repeats, args.every) for name, run in runs]
    print_table(results)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"frontier-{args.isa}.json").write_text(json.dumps(results, indent=1) + "\n")
    plot(results, args.out / f"frontier-{args.isa}.png")
    print(f"wrote {args.out / f'frontier-{args.isa}.json'} and .png")


if __name__ == "__main__":
    one_line_errors(main)
