"""Window pooling rules of a trained transformer, compared at inference on gold dev.

    python benchmarks/window_pooling.py [--run runs/gold-quality/transformer]

Loads the run's model, and for each (topic pooling, tone pooling) rule scores the dev
texts again (dev.jsonl + dev_articles.jsonl, matched to the run's saved predictions by
id), with thresholds cross-fitted on dev folds as in ``benchmarks/gold_quality.py``;
prints topic and tone macro-F1 with bootstrap 95% intervals overall, on articles, and
on Hindi and English articles. The training of ``experiment=gold_transformer`` reads one
window per text, so for that preset pooling acts only here, at inference.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gold_quality import ROOT, SHARED, dev_predictions, one_line_errors

RULES = [("max", "mean"), ("max", "first"), ("mean", "first"), ("max", "max")]


def main() -> None:
    import infer
    from train.decision import crossfit_decisions
    from train.evaluation import bootstrap_interval, compute_metrics

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=ROOT / "runs/gold-quality/transformer")
    args = parser.parse_args()
    _, schema, rows, (topic_true, tone_true), _ = dev_predictions(args.run)
    texts = {}
    for name in ("dev.jsonl", "dev_articles.jsonl"):
        with (SHARED / "data" / "gold" / name).open(encoding="utf-8") as handle:
            texts.update((r["id"], r["text"]) for r in map(json.loads, handle))
    dev = [texts[r["id"]] for r in rows]
    unit = np.array([r.get("unit") for r in rows])
    lang = np.array([r.get("lang") for r in rows])
    buckets = {
        "all": np.ones(len(rows), dtype=bool),
        "articles": unit == "article",
        "Hindi articles": (unit == "article") & (lang == "hi"),
        "English articles": (unit == "article") & (lang == "en"),
    }
    predictor = infer.load(args.run / "model")
    half = dict.fromkeys(schema.topics, 0.5)
    print(
        "| topic / tone pooling | bucket | n | topics macro-F1 [95% CI] | tone macro-F1 [95% CI] |"
    )
    print("|---|---|---|---|---|")
    for topic_rule, tone_rule in RULES:
        predictor.topic_pooling, predictor.tone_pooling = topic_rule, tone_rule
        scores, probs = predictor.predict_scores(dev)
        decided = crossfit_decisions(schema, scores, topic_true, "f1", 0.5)
        for name, mask in buckets.items():
            truth = (topic_true[mask], tone_true[mask])
            m = compute_metrics(schema, decided[mask], probs[mask], *truth, half)
            ci = bootstrap_interval(decided[mask], truth[0], probs[mask].argmax(1), truth[1])
            topics, tone = ci["topics/macro_f1"], ci["tone/macro_f1"]
            print(
                f"| {topic_rule} / {tone_rule} | {name} | {int(mask.sum())} "
                f"| {m['topics/macro_f1']:.3f} [{topics[0]:.3f}, {topics[1]:.3f}] "
                f"| {m['tone/macro_f1']:.3f} [{tone[0]:.3f}, {tone[1]:.3f}] |",
                flush=True,
            )


if __name__ == "__main__":
    one_line_errors(main)
