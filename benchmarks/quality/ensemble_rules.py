"""Ensemble combination rules on gold dev + dev_articles, decided honestly.

    python -m benchmarks.quality.ensemble_rules [--runs runs/gold-quality]

Loads the trained members (``<runs>/{tfidf,encoder,transformer}/model``, as
``benchmarks.quality.gold_quality`` writes them), scores dev once, then for each subset of
members and each calibration method (``platt``, ``temperature``) cross-fits the whole
decision (member calibrations, the mean's calibration, F1 thresholds) on dev folds and
prints honest topic / tone macro-F1. An exploration: picking the best row would be tuning
on dev.
"""

from __future__ import annotations

import argparse
import sys
from itertools import combinations
from pathlib import Path

from benchmarks.common import (
    ROOT,
    compute_metrics,
    crossfit_ensemble,
    gold_rows,
    require_gold,
    truth,
)

NAMES = ("tfidf", "encoder", "transformer")
METHODS = ("platt", "temperature", "auto")


def load_members(runs: Path) -> dict:
    from topictone import infer

    members = {}
    for name in NAMES:
        folder = runs / name / "model"
        if not (folder / "topictone.json").is_file():
            sys.exit(f"skipped: no {folder}; run python -m benchmarks.quality.gold_quality first")
        options = {"runtime": "torch"} if name == "transformer" else {}
        members[name] = infer.load(folder, **options)
    return members


def subset_rows(subset: tuple[str, ...], members: dict, raw: dict, labels: tuple) -> None:
    """One row per calibration method for the ensemble of ``subset``."""
    from topictone.infer.predictors.ensemble import EnsemblePredictor

    schema = members["tfidf"].schema
    ensemble = EnsemblePredictor(schema, {n: members[n] for n in subset})
    half = dict.fromkeys(schema.topics, 0.5)
    for method in METHODS:  # calibrated by method, thresholds for F1
        decided, scores = crossfit_ensemble(ensemble, {n: raw[n] for n in subset}, labels, method)
        m = compute_metrics(schema, decided, scores[1], *labels, half)
        per = " / ".join(f"{m[f'topics/{t}_f1']:.3f}" for t in schema.topics)
        print(
            f"| {' + '.join(subset)} | {method} | {m['topics/macro_f1']:.3f} | "
            f"{m['tone/macro_f1']:.3f} | {per} |",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "gold-quality")
    args = parser.parse_args()
    require_gold()
    members = load_members(args.runs)
    schema = members["tfidf"].schema
    rows = gold_rows("dev", "dev_articles")
    labels = truth(rows, schema)
    clean = members["tfidf"].preprocess([r["text"] for r in rows])
    raw = {name: member.raw_scores_clean(clean) for name, member in members.items()}
    print("| members | calibration | topics macro-F1 | tone macro-F1 | defence / CT / technology |")
    print("|---|---|---|---|---|")
    for subset in [c for k in (3, 2, 1) for c in combinations(NAMES, k) if "transformer" in c]:
        subset_rows(subset, members, raw, labels)


if __name__ == "__main__":
    main()
