"""Scores → metrics through the repo's own `evaluate` modules, and the printed table."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import evaluate
import numpy as np

from topictone.infer.schema import LabelSchema
from topictone.train.decisions.thresholds import apply_thresholds

_METRICS_DIR = Path(__file__).parent  # one folder per evaluate module


@cache
def _metric(name: str) -> evaluate.EvaluationModule:
    return evaluate.load(str(_METRICS_DIR / name))


def compute_metrics(
    schema: LabelSchema,
    topic_scores: np.ndarray,
    tone_probs: np.ndarray,
    topic_true: np.ndarray,
    tone_true: np.ndarray,
    thresholds: dict[str, float],
) -> dict[str, Any]:
    """Topic metrics (prefixed ``topics/``) and tone metrics (``tone/``) in one flat dict."""
    topics = _metric("multilabel_f1").compute(
        predictions=apply_thresholds(topic_scores, schema, thresholds).tolist(),
        references=topic_true.tolist(),
        labels=list(schema.topics),
    )
    tone = _metric("tone_f1").compute(
        predictions=tone_probs.argmax(axis=1).tolist(),
        references=tone_true.tolist(),
        labels=list(schema.tones),
    )
    return {
        "n": len(tone_true),
        **{f"topics/{k}": v for k, v in topics.items()},
        **{f"tone/{k}": v for k, v in tone.items()},
    }


def split_metrics(
    schema: LabelSchema,
    scores: tuple[np.ndarray, np.ndarray],
    truth: tuple[np.ndarray, np.ndarray],
    thresholds: dict[str, float],
) -> dict[str, Any]:
    """Every figure of one split: :func:`compute_metrics` and the calibration errors."""
    return {
        **compute_metrics(schema, *scores, *truth, thresholds),
        **calibration_errors(schema, scores, *truth),
    }


def expected_calibration_error(probs: np.ndarray, truth: np.ndarray, bins: int = 10) -> float:
    """ECE over all (text, label) probabilities: |accuracy − confidence| weighted by bin size.

    For topics pass the sigmoid scores and multi-hot truth; for tone the probability and
    correctness of the predicted class.
    """
    probs, truth = np.ravel(probs), np.ravel(truth).astype(float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(probs, edges[1:-1]), 0, bins - 1)
    error = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            error += mask.mean() * abs(truth[mask].mean() - probs[mask].mean())
    return float(error)


def calibration_errors(
    schema: LabelSchema,
    scores: tuple[np.ndarray, np.ndarray],
    topic_true: np.ndarray,
    tone_true: np.ndarray,
) -> dict[str, float]:
    topic_scores, tone_probs = scores
    predicted = tone_probs.argmax(axis=1)
    return {
        "topics_ece": expected_calibration_error(topic_scores, topic_true),
        "tone_ece": expected_calibration_error(tone_probs.max(axis=1), predicted == tone_true),
    }


_BUCKET_FIELDS = ("lang", "unit")  # kept data fields that metrics are broken down by


def bucket_metrics(
    dataset: Any,
    schema: LabelSchema,
    scores: tuple[np.ndarray, np.ndarray],
    truth: tuple[np.ndarray, np.ndarray],
    thresholds: dict[str, float],
) -> list[dict[str, Any]]:
    """Metrics per value of each bucket field the dataset has (language, text length)."""
    out = []
    for field in _BUCKET_FIELDS:
        if field not in dataset.column_names:
            continue
        values = np.array([str(v) for v in dataset[field]])
        for bucket in sorted(set(values)):
            mask = values == bucket
            m = compute_metrics(
                schema, scores[0][mask], scores[1][mask], truth[0][mask], truth[1][mask], thresholds
            )
            out.append({"field": field, "bucket": bucket, **m})
    return out


def format_table(metrics: dict[str, dict[str, Any]], schema: LabelSchema) -> str:
    """A plain-text table: one column per split, per-topic P/R/F1 and the summaries."""
    splits = list(metrics)
    rows: list[tuple[str, str]] = [
        (f"topic {t} {m}", f"topics/{t}_{m}")
        for t in schema.topics
        for m in ("precision", "recall", "f1")
    ]
    rows += [
        ("topics micro-F1", "topics/micro_f1"),
        ("topics macro-F1", "topics/macro_f1"),
        ("topics subset accuracy", "topics/subset_accuracy"),
        ("tone accuracy", "tone/accuracy"),
        ("tone macro-F1", "tone/macro_f1"),
        ("topics ECE", "topics_ece"),
        ("tone ECE", "tone_ece"),
    ]
    width = max(len(label) for label, _ in rows)
    cols = {s: max(8, len(s)) for s in splits}
    lines = [f"{'':{width}}  " + "  ".join(f"{s:>{cols[s]}}" for s in splits)]
    lines.append(f"{'n':{width}}  " + "  ".join(f"{metrics[s]['n']:>{cols[s]}}" for s in splits))
    for label, key in rows:
        values = "  ".join(f"{metrics[s][key]:>{cols[s]}.4f}" for s in splits)
        lines.append(f"{label:{width}}  {values}")
    return "\n".join(lines)


def bootstrap_interval(
    topic_decided: np.ndarray,
    topic_true: np.ndarray,
    tone_pred: np.ndarray,
    tone_true: np.ndarray,
    rounds: int = 1000,
    seed: int = 0,
) -> dict[str, tuple[float, float]]:
    """95% percentile intervals of topic and tone macro-F1 over texts resampled with
    replacement: how far the figure could move on another sample of the same kind."""
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(seed)
    n = len(tone_true)
    topics, tone = [], []
    for _ in range(rounds):
        rows = rng.integers(0, n, n)
        topics.append(
            f1_score(topic_true[rows], topic_decided[rows], average="macro", zero_division=0)
        )
        tone.append(f1_score(tone_true[rows], tone_pred[rows], average="macro", zero_division=0))

    def interval(values: list[float]) -> tuple[float, float]:
        low, high = np.percentile(values, [2.5, 97.5])
        return float(low), float(high)

    return {"topics/macro_f1": interval(topics), "tone/macro_f1": interval(tone)}
