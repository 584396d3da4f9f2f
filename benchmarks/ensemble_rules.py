"""Ensemble combination rules on gold dev + dev_articles, decided honestly.

    python benchmarks/ensemble_rules.py [--runs runs/gold-quality]

Loads the trained members (``<runs>/{tfidf,encoder,transformer}/model``, as
``benchmarks/gold_quality.py`` writes them), scores dev once, then for each subset of
members and each calibration method (``platt``, ``temperature``) cross-fits the whole
decision (member calibrations, the mean's calibration, F1 thresholds) on dev folds and
prints honest topic / tone macro-F1. An exploration: picking the best row would be tuning
on dev.
"""

from __future__ import annotations

import argparse
import json
import sys
from itertools import combinations
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
GOLD = ROOT.parent / "shared" / "data" / "gold"
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "gold-quality")
    args = parser.parse_args()
    if not (GOLD / "dev.jsonl").is_file():
        sys.exit(f"skipped: {GOLD} not found (../shared beside the repository root)")
    import infer
    from infer.predictors.ensemble import EnsemblePredictor
    from train.decision import ScoreTree, crossfit_decision
    from train.evaluation import compute_metrics

    names = ("tfidf", "encoder", "transformer")
    members = {}
    for name in names:
        folder = args.runs / name / "model"
        if not (folder / "topictone.json").is_file():
            sys.exit(f"skipped: no {folder}; run benchmarks/gold_quality.py first")
        members[name] = infer.load(
            folder, **({"runtime": "torch"} if name == "transformer" else {})
        )
    schema = members["tfidf"].schema
    rows = [
        json.loads(line)
        for file in ("dev.jsonl", "dev_articles.jsonl")
        for line in (GOLD / file).open(encoding="utf-8")
    ]
    truth = (
        np.array([[t in r["topics"] for t in schema.topics] for r in rows], dtype=int),
        np.array([schema.tones.index(r["tone"]) for r in rows]),
    )
    clean = members["tfidf"].preprocess([r["text"] for r in rows])
    raw = {name: member.raw_scores_clean(clean) for name, member in members.items()}
    half = dict.fromkeys(schema.topics, 0.5)
    print("| members | calibration | topics macro-F1 | tone macro-F1 | defence / CT / technology |")
    print("|---|---|---|---|---|")
    subsets = [c for k in (3, 2, 1) for c in combinations(names, k) if "transformer" in c]
    for subset in subsets:
        ensemble = EnsemblePredictor(schema, {n: members[n] for n in subset})
        tree = ScoreTree(None, {n: ScoreTree(raw[n]) for n in subset})
        for method in ("platt", "temperature", "auto"):
            decision = {
                "calibrate": True,
                "calibration": method,
                "thresholds": "f1",
                "fixed": 0.5,
                "target_precision": 0.8,
            }
            decided, scores = crossfit_decision(
                ensemble, tree, truth, np.arange(len(rows)), decision
            )
            m = compute_metrics(schema, decided, scores[1], *truth, half)
            per = " / ".join(f"{m[f'topics/{t}_f1']:.3f}" for t in schema.topics)
            print(
                f"| {' + '.join(subset)} | {method} | {m['topics/macro_f1']:.3f} | "
                f"{m['tone/macro_f1']:.3f} | {per} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
