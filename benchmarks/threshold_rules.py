"""Threshold rules compared on the saved dev predictions of finished runs.

    python benchmarks/threshold_rules.py [--runs runs/gold-quality] [--models tfidf encoder]

For each run (``<runs>/<model>``, e.g. from ``benchmarks/gold_quality.py``), every rule
of ``train.decision`` is cross-fitted on the run's calibrated dev scores (each text
decided by thresholds tuned on the other folds; ``auto`` chooses its per-topic shrink
inside each fold, so it is nested and honest too). Printed: topic macro-F1 and per-topic
F1 per rule, and the paired bootstrap 95% interval of each rule's difference to ``f1``
(the same resampled texts for both): a difference whose interval holds 0 is noise.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gold_quality import ROOT, dev_predictions, one_line_errors

RULES = [
    ("fixed 0.5", "fixed", 0.0),
    ("f1", "f1", 0.0),
    ("f1, shrink 10", "f1", 10.0),
    ("f1, shrink 30", "f1", 30.0),
    ("f1, shrink 100", "f1", 100.0),
    ("auto (nested)", "auto", 0.0),
]


def paired_interval(truth, base, other, rounds: int = 1000, seed: int = 0) -> tuple[float, float]:
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(rounds):
        rows = rng.integers(0, len(truth), len(truth))
        diffs.append(
            f1_score(truth[rows], other[rows], average="macro", zero_division=0)
            - f1_score(truth[rows], base[rows], average="macro", zero_division=0)
        )
    low, high = np.percentile(diffs, [2.5, 97.5])
    return float(low), float(high)


def main() -> None:
    from sklearn.metrics import f1_score

    from train.decision import crossfit_decisions

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "gold-quality")
    parser.add_argument("--models", nargs="+", default=["tfidf", "encoder", "ensemble"])
    args = parser.parse_args()
    print(
        "| model | rule | topics macro-F1 (cross-fitted) | defence / CT / technology "
        "| Δ vs f1 [95% paired CI] |"
    )
    print("|---|---|---|---|---|")
    for model in args.models:
        run = args.runs / model
        if not (run / "predictions" / "dev.jsonl").is_file():
            print(f"skipped {model}: no dev predictions in {run}", file=sys.stderr)
            continue
        _, schema, _, (truth, _), (scores, _) = dev_predictions(run)
        decided = {
            name: crossfit_decisions(schema, scores, truth, rule, 0.5, shrink=shrink)
            for name, rule, shrink in RULES
        }
        for name, _, _ in RULES:
            d = decided[name]
            macro = f1_score(truth, d, average="macro", zero_division=0)
            per = " / ".join(
                f"{f1_score(truth[:, i], d[:, i], zero_division=0):.3f}"
                for i in range(len(schema.topics))
            )
            delta = macro - f1_score(truth, decided["f1"], average="macro", zero_division=0)
            low, high = paired_interval(truth, decided["f1"], d)
            cell = "" if name == "f1" else f"{delta:+.3f} [{low:+.3f}, {high:+.3f}]"
            print(f"| {model} | {name} | {macro:.3f} | {per} | {cell} |")


if __name__ == "__main__":
    one_line_errors(main)
