"""A split evaluated: calibrated scores, metrics and predictions, read from its score tree.

Each split is scored once (:func:`topictone.train.decisions.scores.score_split`); after
the decisions are fitted, everything the run writes about the split — metrics.json,
predictions, the report, the model card, tracking — comes from one :class:`Evaluation`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np

from topictone.infer.predictors.base import Predictor
from topictone.infer.schema import LabelSchema, Prediction
from topictone.train.decisions.fitting import current_scores
from topictone.train.decisions.scores import Scored, score_split
from topictone.train.metrics.compute import split_metrics


@dataclass
class Evaluation:
    """One split scored by a predictor: what metrics, predictions and the report need."""

    dataset: datasets.Dataset
    scores: tuple[np.ndarray, np.ndarray]
    truth: tuple[np.ndarray, np.ndarray]
    metrics: dict[str, Any]
    predictions: list


def evaluation(predictor: Predictor, dataset: datasets.Dataset, scored: Scored) -> Evaluation:
    """``dataset`` under the predictor's current calibrations and thresholds."""
    scores = current_scores(predictor, scored.tree)
    metrics = split_metrics(predictor.schema, scores, scored.truth, predictor.thresholds)
    predictions = predictor.postprocess(scores, predictor.thresholds)
    return Evaluation(dataset, scores, scored.truth, metrics, predictions)


def evaluate_split(predictor: Predictor, dataset: datasets.Dataset) -> Evaluation:
    """Score ``dataset`` and evaluate it (a saved model on some data)."""
    return evaluation(predictor, dataset, score_split(predictor, dataset))


def write_predictions(
    path: Path, dataset: datasets.Dataset, predictions: list, schema: LabelSchema
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    extra = [c for c in dataset.column_names if c not in ("id", "text", "topics", "tone")]
    with path.open("w", encoding="utf-8") as handle:
        for row, prediction in zip(dataset, predictions, strict=True):
            record = {
                "id": row["id"],
                "topics": [t for t, on in zip(schema.topics, row["topics"], strict=True) if on],
                "tone": schema.tones[row["tone"]],
                **{c: row[c] for c in extra},
                "prediction": prediction.to_dict(),
            }
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def crossfit_predictions(
    schema: LabelSchema, crossfit: tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]
) -> list[Prediction]:
    decided, (topic_scores, tone_probs) = crossfit
    return [
        Prediction(
            topics=[t for t, on in zip(schema.topics, row, strict=True) if on],
            topic_scores=dict(zip(schema.topics, scores.tolist(), strict=True)),
            tone=schema.tones[int(np.argmax(tone))],
            tone_scores=dict(zip(schema.tones, tone.tolist(), strict=True)),
        )
        for row, scores, tone in zip(decided, topic_scores, tone_probs, strict=True)
    ]


def never_predicted(predictor: Predictor, evaluations: dict[str, Evaluation]) -> dict:
    """Per split, the topics never decided and the tones never chosen for any text."""
    out = {}
    for name, evaluation in evaluations.items():
        predictions = evaluation.predictions
        labels = [
            t for t in predictor.schema.topics if not any(t in p.topics for p in predictions)
        ] + [t for t in predictor.schema.tones if not any(p.tone == t for p in predictions)]
        if labels and predictions:
            out[name] = labels
    return out
