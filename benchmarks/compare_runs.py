"""Trained runs side by side on gold dev + dev_articles, each against the first, paired.

    python benchmarks/compare_runs.py RUN [RUN ...]

Each RUN is a run folder of ``python -m train`` on ``data=gold`` (its
``predictions/dev_crossfit.jsonl``: decisions fitted without the text they decide). Prints
one Markdown row per run: honest topic macro-F1 and per topic, tone macro-F1, the
difference from the first run with a paired bootstrap 95% interval (the same texts
resampled for both), and topics / tone per ``unit`` bucket. Two runs 0.01 apart on 710
texts are usually inside each other's own intervals; the paired interval is narrower
because both runs err on many of the same texts.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gold_quality import crossfit_predictions, dev_predictions, one_line_errors
from threshold_rules import paired_interval


def honest(run: Path) -> tuple:
    """(schema, topic truth, tone truth, topic decisions, tone decisions, units)."""
    _, schema, rows, (topic_true, tone_true), _ = dev_predictions(run)
    crossfit = crossfit_predictions(run, schema, rows)
    if crossfit is None:
        sys.exit(f"error: {run}: no predictions/dev_crossfit.jsonl (not a gold run?)")
    topics, probs = crossfit
    units = np.array([str(r.get("unit")) for r in rows])
    return schema, topic_true, tone_true, topics, probs.argmax(axis=1), units


def main() -> None:
    from sklearn.metrics import f1_score

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    args = parser.parse_args()
    for run in args.runs:
        if not (run / "predictions" / "dev.jsonl").is_file():
            sys.exit(f"error: {run}: no predictions/dev.jsonl (not a run folder?)")
    loaded = [honest(run) for run in args.runs]  # each run's predictions read once
    schema, topic_true, tone_true, base_topics, base_tone, units = loaded[0]
    buckets = sorted(set(units))

    def macro(truth, decided) -> float:
        return f1_score(truth, decided, average="macro", zero_division=0)

    print(
        f"| run | topics | {' / '.join(schema.topics)} | tone | topics vs first [95% paired CI] "
        f"| tone vs first [95% paired CI] | {' | '.join(f'{b}: topics / tone' for b in buckets)} |"
    )
    print("|---|---|---|---|---|---|" + "---|" * len(buckets))
    for run, (_, truth, tones, topics, tone, run_units) in zip(args.runs, loaded, strict=True):
        same = (truth, tones, run_units), (topic_true, tone_true, units)
        if not all(np.array_equal(a, b) for a, b in zip(*same, strict=True)):
            sys.exit(f"error: {run}: its dev texts differ from {args.runs[0]}'s")
        per_topic = f1_score(truth, topics, average=None, zero_division=0)
        deltas = []
        for true, base, other in ((truth, base_topics, topics), (tones, base_tone, tone)):
            low, high = paired_interval(true, base, other)
            delta = macro(true, other) - macro(true, base)
            deltas.append(f"{delta:+.3f} [{low:+.3f}, {high:+.3f}]")
        cells = [
            f"{macro(truth[units == b], topics[units == b]):.3f} / "
            f"{macro(tones[units == b], tone[units == b]):.3f}"
            for b in buckets
        ]
        print(
            f"| {run} | {macro(truth, topics):.3f} | {' / '.join(f'{f:.3f}' for f in per_topic)} "
            f"| {macro(tones, tone):.3f} | {' | '.join(deltas)} | {' | '.join(cells)} |"
        )


if __name__ == "__main__":
    one_line_errors(main)
