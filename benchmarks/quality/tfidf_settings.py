"""TF-IDF settings compared honestly: 5-fold cross-validation over gold train, and gold dev.

    python -m benchmarks.quality.tfidf_settings [--settings NAME ...] [--folds 5]
        [--search search.json]

Each setting is a set of ``model.*`` values for the TF-IDF fitter
(``topictone.train.fitters.tfidf.TfidfFitter``). For each one the table gives topic
macro-F1 with per-topic thresholds cross-fitted (each text decided by thresholds tuned on
other texts) and tone macro-F1, on (a) out-of-fold scores over the 4,290 train texts — 6×
the dev texts, so the choice can rest on it — and (b) dev + dev_articles (710 texts) for
a model fitted on all of train, with bootstrap 95% intervals. Differences inside the
intervals decide nothing.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from benchmarks.common import (
    bootstrap_interval,
    configured_splits,
    crossfit_f1,
    joined,
    require_gold,
    targets,
    tfidf_fitter,
)

PLAIN = {"topic_C": 8.0, "tone_C": 1.0}  # gold_tfidf before naive Bayes and the lead
PRESET = {**PLAIN, "naive_bayes": True, "lead_chars": 500}  # conf/experiment/gold_tfidf.yaml
SETTINGS: dict[str, dict] = {
    "preset": PRESET,
    "plain": PLAIN,
    "naive_bayes": {**PLAIN, "naive_bayes": True},
    "nb_alpha_0.25": {**PLAIN, "naive_bayes": True, "nb_alpha": 0.25},
    "nb_alpha_4": {**PLAIN, "naive_bayes": True, "nb_alpha": 4.0},
    "nb_lead_150": {**PRESET, "lead_chars": 150},
    "nb_lead_300": {**PRESET, "lead_chars": 300},
    "nb_lead_1000": {**PRESET, "lead_chars": 1000},
    "char_1-4": {**PRESET, "char_ngram_range": [1, 4]},
    "char_3-6": {**PRESET, "char_ngram_range": [3, 6]},
    "char_2-6": {**PRESET, "char_ngram_range": [2, 6]},
    "char_plain_2-5": {**PRESET, "char_analyzer": "char"},
    "word_1-1": {**PRESET, "word_ngram_range": [1, 1]},
    "word_1-3": {**PRESET, "word_ngram_range": [1, 3]},
    "min_df_2": {**PRESET, "min_df": 2},
    "max_df_0.5": {**PRESET, "max_df": 0.5},
    "topic_C_16": {**PRESET, "topic_C": 16.0},
    "topic_C_32": {**PRESET, "topic_C": 32.0},
    "tone_C_2": {**PRESET, "tone_C": 2.0},
    "tone_C_4": {**PRESET, "tone_C": 4.0},
    "no_class_weight": {**PRESET, "class_weight": None},
}


UNITS = ("headline", "title+lead", "article")  # gold train's "unit" field: 3,120 / 730 / 440


def honest(schema, scores: np.ndarray, probs: np.ndarray, dataset) -> tuple:
    """Topic macro-F1 (thresholds cross-fitted), tone macro-F1, and their decisions."""
    from sklearn.metrics import f1_score

    topic_true, tone_true = targets(dataset)
    decided = crossfit_f1(schema, scores, topic_true)
    topics = f1_score(topic_true, decided, average="macro", zero_division=0.0)
    per_topic = f1_score(topic_true, decided, average=None, zero_division=0.0)
    tone = f1_score(tone_true, probs.argmax(1), average="macro")
    return topics, tone, per_topic, decided


def out_of_fold(params: dict, schema, train, folds: int) -> tuple[np.ndarray, np.ndarray]:
    """Calibrated scores of every train text by a model fitted on the other folds."""
    from sklearn.model_selection import KFold

    oof_scores = np.zeros((len(train), len(schema.topics)))
    oof_probs = np.zeros((len(train), len(schema.tones)))
    for fit_rows, held_rows in KFold(folds, shuffle=True, random_state=0).split(oof_scores):
        predictor = tfidf_fitter(**params).fit(train.select(fit_rows), schema).predictor_
        oof_scores[held_rows], oof_probs[held_rows] = predictor.predict_scores(
            train.select(held_rows)["text"]
        )
    return oof_scores, oof_probs


def by_unit(train, decided: np.ndarray, probs: np.ndarray) -> list[tuple[float, float]]:
    """(topics macro-F1, tone macro-F1) of the out-of-fold decisions per unit."""
    from sklearn.metrics import f1_score

    units = np.asarray(train["unit"])
    topic_true, tone_true = targets(train)
    return [
        (
            f1_score(
                topic_true[units == u], decided[units == u], average="macro", zero_division=0.0
            ),
            f1_score(tone_true[units == u], probs[units == u].argmax(1), average="macro"),
        )
        for u in UNITS
    ]


def run(name: str, params: dict, schema, splits: dict, folds: int) -> str:
    """One setting's row: train cross-validation, then a model of all train on dev."""
    start = time.perf_counter()
    train, dev = splits["train"], splits["dev"]
    oof_scores, oof_probs = out_of_fold(params, schema, train, folds)
    cv_topics, cv_tone, cv_per, cv_decided = honest(schema, oof_scores, oof_probs, train)
    units = by_unit(train, cv_decided, oof_probs)
    predictor = tfidf_fitter(**params).fit(train, schema).predictor_
    scores, probs = predictor.predict_scores(dev["text"])
    dev_topics, dev_tone, _, decided = honest(schema, scores, probs, dev)
    topic_true, tone_true = targets(dev)
    interval = bootstrap_interval(decided, topic_true, probs.argmax(1), tone_true)
    low, high = interval["topics/macro_f1"]
    unit_topics, unit_tone = joined([t for t, _ in units]), joined([t for _, t in units])
    return (
        f"| {name} | {cv_topics:.3f} | {joined(cv_per)} | {unit_topics} | {cv_tone:.3f} "
        f"| {unit_tone} | {dev_topics:.3f} [{low:.3f}, {high:.3f}] | {dev_tone:.3f} "
        f"| {time.perf_counter() - start:.0f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument(
        "--search",
        type=Path,
        help="an Optuna search's search.json (hparams_search=tfidf_optuna): its best settings "
        "are checked by train cross-validation as setting 'search-best'",
    )
    args = parser.parse_args()
    if args.search:
        best = json.loads(args.search.read_text())["best_params"]
        SETTINGS["search-best"] = {k.removeprefix("model."): v for k, v in best.items()}
        args.settings = [s for s in args.settings if s != "search-best"] + ["search-best"]
    require_gold("train.jsonl")
    _, schema, splits = configured_splits(["data=gold"])
    print(
        f"| setting | train {args.folds}-fold topics macro-F1 (honest) | per topic "
        f"({', '.join(schema.topics)}) | train CV topics by unit ({' / '.join(UNITS)}) | "
        f"train CV tone macro-F1 | train CV tone by unit | dev topics (honest) [95% CI] "
        "| dev tone | seconds |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name in args.settings:
        print(run(name, SETTINGS[name], schema, splits, args.folds), flush=True)


if __name__ == "__main__":
    main()
