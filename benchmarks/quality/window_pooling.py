"""Window pooling rules of a trained transformer, compared at inference on gold dev.

    python -m benchmarks.quality.window_pooling [--run runs/gold-quality/transformer]

Loads the run's model, and for each (topic pooling, tone pooling) rule scores the dev
texts again (dev.jsonl + dev_articles.jsonl, matched to the run's saved predictions by
id), with thresholds cross-fitted on dev folds as in ``benchmarks.quality.gold_quality``;
prints topic and tone macro-F1 with bootstrap 95% intervals overall, on articles, and
on Hindi and English articles. The training of ``experiment=gold_transformer`` reads one
window per text, so for that preset pooling acts only here, at inference.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from benchmarks.common import (
    ROOT,
    bootstrap_interval,
    compute_metrics,
    crossfit_f1,
    dev_predictions,
    gold_rows,
    one_line_errors,
    require_gold,
)

RULES = [("max", "mean"), ("max", "first"), ("mean", "first"), ("max", "max")]


def buckets_of(rows: list[dict]) -> dict[str, np.ndarray]:
    unit = np.array([r.get("unit") for r in rows])
    lang = np.array([r.get("lang") for r in rows])
    return {
        "all": np.ones(len(rows), dtype=bool),
        "articles": unit == "article",
        "Hindi articles": (unit == "article") & (lang == "hi"),
        "English articles": (unit == "article") & (lang == "en"),
    }


def rule_rows(rule: tuple[str, str], schema, labels: tuple, scores, buckets: dict) -> None:
    """One row per bucket for the scores of one pooling rule."""
    topic_true, tone_true = labels
    topic_scores, probs = scores
    half = dict.fromkeys(schema.topics, 0.5)
    decided = crossfit_f1(schema, topic_scores, topic_true)
    for name, mask in buckets.items():
        truth = (topic_true[mask], tone_true[mask])
        m = compute_metrics(schema, decided[mask], probs[mask], *truth, half)
        ci = bootstrap_interval(decided[mask], truth[0], probs[mask].argmax(1), truth[1])
        topics, tone = ci["topics/macro_f1"], ci["tone/macro_f1"]
        print(
            f"| {rule[0]} / {rule[1]} | {name} | {int(mask.sum())} "
            f"| {m['topics/macro_f1']:.3f} [{topics[0]:.3f}, {topics[1]:.3f}] "
            f"| {m['tone/macro_f1']:.3f} [{tone[0]:.3f}, {tone[1]:.3f}] |",
            flush=True,
        )


def main() -> None:
    from topictone import infer

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=ROOT / "runs/gold-quality/transformer")
    args = parser.parse_args()
    _, schema, rows, labels, _ = dev_predictions(args.run)
    require_gold("dev.jsonl", "dev_articles.jsonl")
    texts = {r["id"]: r["text"] for r in gold_rows("dev", "dev_articles")}
    dev = [texts[r["id"]] for r in rows]
    buckets = buckets_of(rows)
    predictor = infer.load(args.run / "model")
    print(
        "| topic / tone pooling | bucket | n | topics macro-F1 [95% CI] | tone macro-F1 [95% CI] |"
    )
    print("|---|---|---|---|---|")
    for topic_rule, tone_rule in RULES:
        predictor.topic_pooling, predictor.tone_pooling = topic_rule, tone_rule
        scores = predictor.predict_scores(dev)
        rule_rows((topic_rule, tone_rule), schema, labels, scores, buckets)


if __name__ == "__main__":
    one_line_errors(main)
