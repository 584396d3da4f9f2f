"""int8 quantisation methods for the transformer's ONNX graph, side by side on gold dev.

    python -m topictone.infer.export model=<dir>            # the fp32 graph this starts from
    python -m benchmarks.speed.int8_methods --model <dir> [--limit N]

Quantises the folder's fp32 graph (``model.onnx``) in a temporary folder by each method of
``topictone.infer.export.quantize_int8`` — ``dynamic`` (per-channel weights, one activation
scale a batch) and ``blockwise`` (8-bit weight blocks of 32 or 128, activations per block
of each token) — and runs the folder's predictor on each graph over gold dev (headlines,
title + lead) and dev_articles: docs/s; topic / tone macro-F1 at the folder's thresholds
and the change against the fp32 graph; how many (text, topic) decisions and tones changed;
the largest topic-probability change; and topic macro-F1 with thresholds cross-fitted on
each graph's own scores (5 folds, as ``dev_crossfit``), with its change. The folder's
thresholds were tuned on these very texts, so some sit just beside a cut by construction
and a tiny score change flips them: the cross-fitted figure is what a user's unseen texts
get. Target (issue 10): F1 within 0.01 of torch, whose decisions the fp32 graph
reproduces exactly.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.metrics import f1_score

from benchmarks.common import (
    crossfit_f1,
    decide,
    gold_rows,
    print_cpu,
    require_gold,
    timed,
    truth,
)

METHODS = {  # name: (int8_method, block_size)
    "dynamic": ("dynamic", 0),
    "blockwise-32": ("blockwise", 32),
    "blockwise-128": ("blockwise", 128),
}


@dataclass
class Scored:
    """One graph on one text set."""

    speed: float
    topics: float
    tone: float
    scores: np.ndarray
    decided: np.ndarray
    probs: np.ndarray
    honest: float


def score(predictor, rows: list[dict]) -> Scored:
    schema = predictor.schema
    seconds, (scores, probs) = timed(predictor.predict_scores, [r["text"] for r in rows])
    topic_true, tone_true = truth(rows, schema)
    decided = decide(scores, schema, predictor.thresholds)
    topics = f1_score(topic_true, decided, average="macro", zero_division=0.0)
    tone = f1_score(tone_true, probs.argmax(1), average="macro")
    crossfit = crossfit_f1(schema, scores, topic_true)
    honest = f1_score(topic_true, crossfit, average="macro", zero_division=0.0)
    return Scored(len(rows) / seconds, topics, tone, scores, decided, probs, honest)


def show(label: str, found: dict[str, Scored], reference: dict[str, Scored], size: int) -> None:
    for name, s in found.items():
        ref = reference[name]
        flips = int((s.decided != ref.decided).sum())
        tones = int((s.probs.argmax(1) != ref.probs.argmax(1)).sum())
        print(
            f"| {label} | {name} | {len(s.scores)} | {s.speed:.1f} | {s.topics:.3f} | "
            f"{s.tone:.3f} | {s.topics - ref.topics:+.3f} | {s.tone - ref.tone:+.3f} | "
            f"{flips} / {tones} | {np.abs(s.scores - ref.scores).max():.3f} | {s.honest:.3f} | "
            f"{s.honest - ref.honest:+.3f} | {size / 2**20:.0f} |",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="a folder with model.onnx")
    parser.add_argument("--limit", type=int, help="at most this many texts of each file")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    args = parser.parse_args()
    require_gold("dev.jsonl", "dev_articles.jsonl")
    fp32 = args.model / "model.onnx"
    if not fp32.is_file():
        sys.exit(f"skipped: no {fp32}; run python -m topictone.infer.export first")
    from topictone import infer
    from topictone.infer.export import quantize_int8
    from topictone.infer.predictors.onnx_runner import OnnxRunner

    sets = {name: gold_rows(name, limit=args.limit) for name in ("dev", "dev_articles")}
    predictor = infer.load(args.model, runtime="onnx", graph="fp32")
    print_cpu()
    print(
        "| graph | texts | n | docs/s | topics macro-F1 | tone macro-F1 | topics vs fp32 "
        "| tone vs fp32 | decisions changed (topic / tone) | largest topic-probability "
        "change | topics, cross-fitted thresholds | vs fp32 | MiB |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    reference = {name: score(predictor, rows) for name, rows in sets.items()}
    show("fp32", reference, reference, fp32.stat().st_size)
    with tempfile.TemporaryDirectory(prefix="int8-methods-") as tmp:
        for label in args.methods:
            method, block = METHODS[label]
            graph = Path(tmp) / f"{label}.onnx"
            quantize_int8(fp32, graph, method, block or 32)
            predictor.runner = OnnxRunner(graph, predictor.schema, "int8")
            found = {name: score(predictor, rows) for name, rows in sets.items()}
            show(label, found, reference, graph.stat().st_size)
            graph.unlink()


if __name__ == "__main__":
    main()
