"""Trained runs side by side on gold dev + dev_articles, each against the first, paired.

    python -m benchmarks.quality.compare_runs RUN [RUN ...]

Each RUN is a run folder of ``python -m topictone.train`` on ``data=gold`` (its
``predictions/dev_crossfit.jsonl``: decisions fitted without the text they decide; a run
that fitted no decisions has none, and its saved dev decisions are honest already). Prints
one Markdown row per run: honest topic macro-F1 and per topic, tone macro-F1, the
difference from the first run with a paired bootstrap 95% interval (the same texts
resampled for both), and topics / tone per ``unit`` bucket. Two runs 0.01 apart on 710
texts are usually inside each other's own intervals; the paired interval is narrower
because both runs err on many of the same texts.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from benchmarks.common import (
    crossfit_predictions,
    decide,
    dev_predictions,
    macro_f1,
    one_line_errors,
    paired_interval,
)


def honest(run: Path) -> tuple:
    """(schema, topic truth, tone truth, topic decisions, tone decisions, units)."""
    manifest, schema, rows, (topic_true, tone_true), (scores, probs) = dev_predictions(run)
    crossfit = crossfit_predictions(run, schema, rows)
    if crossfit is not None:
        topics, probs = crossfit
    elif "dev_crossfit" in run_metrics(run):
        sys.exit(f"error: {run}: no predictions/dev_crossfit.jsonl, yet its decisions were fitted")
    else:  # with nothing fitted, dev's saved decisions are honest already
        topics = decide(scores, schema, manifest.thresholds)
    units = np.array([str(r.get("unit")) for r in rows])
    return schema, topic_true, tone_true, topics, probs.argmax(axis=1), units


def run_metrics(run: Path) -> dict:
    """The run's ``metrics.json`` (empty where it has none)."""
    path = run / "metrics.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def print_header(schema, buckets: list[str]) -> None:
    print(
        f"| run | topics | {' / '.join(schema.topics)} | tone | topics vs first [95% paired CI] "
        f"| tone vs first [95% paired CI] | {' | '.join(f'{b}: topics / tone' for b in buckets)} |"
    )
    print("|---|---|---|---|---|---|" + "---|" * len(buckets))


def run_row(run: Path, loaded: tuple, first: tuple, buckets: list[str]) -> str:
    """One run's Markdown row, its deltas paired against the ``first`` run's decisions."""
    from sklearn.metrics import f1_score

    _, truth, tones, topics, tone, units = loaded
    _, _, _, base_topics, base_tone, _ = first
    per_topic = f1_score(truth, topics, average=None, zero_division=0)
    deltas = []
    for true, base, other in ((truth, base_topics, topics), (tones, base_tone, tone)):
        low, high = paired_interval(true, base, other)
        delta = macro_f1(true, other) - macro_f1(true, base)
        deltas.append(f"{delta:+.3f} [{low:+.3f}, {high:+.3f}]")
    cells = [
        f"{macro_f1(truth[units == b], topics[units == b]):.3f} / "
        f"{macro_f1(tones[units == b], tone[units == b]):.3f}"
        for b in buckets
    ]
    return (
        f"| {run} | {macro_f1(truth, topics):.3f} | {' / '.join(f'{f:.3f}' for f in per_topic)} "
        f"| {macro_f1(tones, tone):.3f} | {' | '.join(deltas)} | {' | '.join(cells)} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    args = parser.parse_args()
    for run in args.runs:
        if not (run / "predictions" / "dev.jsonl").is_file():
            sys.exit(f"error: {run}: no predictions/dev.jsonl (not a run folder?)")
    loaded = [honest(run) for run in args.runs]  # each run's predictions read once
    first = loaded[0]
    buckets = sorted(set(first[5]))
    print_header(first[0], buckets)
    for run, found in zip(args.runs, loaded, strict=True):
        same = zip(found[1:3] + found[5:], first[1:3] + first[5:], strict=True)
        if not all(np.array_equal(a, b) for a, b in same):
            sys.exit(f"error: {run}: its dev texts differ from {args.runs[0]}'s")
        print(run_row(run, found, first, buckets))


if __name__ == "__main__":
    one_line_errors(main)
