"""Decisions users can trust: calibrated scores and per-topic thresholds, fitted on dev.

Both are stored in the model folder (``calibration`` and ``thresholds`` in the manifest)
and used by ``infer``. Dev metrics after fitting on dev are optimistic; the run reports
them beside the untouched figures and the test split (see ``train.run``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar
from sklearn.calibration import CalibratedClassifierCV
from sklearn.frozen import FrozenEstimator
from sklearn.metrics import precision_recall_curve
from sklearn.model_selection import KFold

from infer.errors import TopictoneError
from infer.predictors.base import Predictor
from infer.schema import LabelSchema
from train.evaluation import decisions

RULES = ("fixed", "f1", "precision", "auto")
SHRINKS = (0.0, 10.0, 30.0, 100.0, float("inf"))  # "auto" candidates; inf: the fixed cut


def tune_thresholds(
    schema: LabelSchema,
    topic_scores: np.ndarray,
    topic_true: np.ndarray,
    rule: str = "f1",
    fixed: float = 0.5,
    target_precision: float = 0.8,
    shrink: float = 0.0,
) -> dict[str, float]:
    """Per-topic thresholds: ``f1`` maximises each topic's F1; ``precision`` takes the
    lowest threshold whose precision reaches the target (else the max-F1 one).

    ``shrink`` pulls a tuned cut toward ``fixed`` where evidence is thin: the cut moves
    by the share ``positives / (positives + shrink)`` of the way from ``fixed``. ``auto``
    picks, per topic, the shrink among ``SHRINKS`` whose F1 cross-fitted on these texts
    is best (ties: the stronger shrink), so the rule is chosen by an honest estimate."""
    if rule not in RULES:
        raise TopictoneError(f"decision.thresholds must be one of {RULES}, got '{rule}'")
    if rule == "auto":
        shrinks = choose_shrink(schema, topic_scores, topic_true, fixed)
        return {
            topic: tune_thresholds(
                schema, topic_scores, topic_true, "f1", fixed, target_precision, shrinks[topic]
            )[topic]
            for topic in schema.topics
        }
    thresholds = {}
    for i, topic in enumerate(schema.topics):
        positives = int(topic_true[:, i].sum())
        if rule == "fixed" or positives == 0 or shrink == float("inf"):
            thresholds[topic] = float(fixed)
            continue
        precision, recall, cuts = precision_recall_curve(topic_true[:, i], topic_scores[:, i])
        precision, recall = precision[:-1], recall[:-1]
        f1 = 2 * precision * recall / np.clip(precision + recall, 1e-12, None)
        best = int(np.argmax(f1))
        if rule == "precision":
            reached = np.flatnonzero(precision >= target_precision)
            best = int(reached[0]) if len(reached) else best
        # Halfway down to the next lower score: the same decisions on these texts, and a
        # margin for unseen positives that score just under the lowest one seen.
        cut = float(cuts[best] + cuts[best - 1]) / 2 if best else float(cuts[0])
        weight = positives / (positives + shrink)
        thresholds[topic] = float(fixed + (cut - fixed) * weight)
    return thresholds


def choose_shrink(
    schema: LabelSchema,
    topic_scores: np.ndarray,
    topic_true: np.ndarray,
    fixed: float = 0.5,
    folds: int = 5,
    seed: int = 1,
) -> dict[str, float]:
    """Per topic, the shrink whose thresholds, tuned on folds and applied to the held-out
    fold, give the best F1 over these texts."""
    from sklearn.metrics import f1_score

    best: dict[str, tuple[float, float]] = {}
    for shrink in SHRINKS:
        decided = crossfit_decisions(
            schema, topic_scores, topic_true, "f1", fixed, folds=folds, seed=seed, shrink=shrink
        )
        for i, topic in enumerate(schema.topics):
            f1 = f1_score(topic_true[:, i], decided[:, i], zero_division=0.0)
            if topic not in best or f1 >= best[topic][0]:
                best[topic] = (f1, shrink)
    return {topic: shrink for topic, (_, shrink) in best.items()}


def crossfit_decisions(
    schema: LabelSchema,
    topic_scores: np.ndarray,
    topic_true: np.ndarray,
    rule: str = "f1",
    fixed: float = 0.5,
    target_precision: float = 0.8,
    folds: int = 5,
    seed: int = 0,
    shrink: float = 0.0,
) -> np.ndarray:
    """Topic decisions for each dev text from thresholds tuned on the other folds only.

    Thresholds tuned and scored on the same texts overstate what unseen texts get;
    cross-fitting gives an honest estimate from the same dev set (with ``auto`` the rule
    is chosen inside each fold's training part: nested, so the choice is honest too).
    Calibration is monotone per topic, so it cannot move these decisions.
    """
    decided = np.zeros_like(topic_true, dtype=int)
    for fit_rows, held_rows in KFold(folds, shuffle=True, random_state=seed).split(topic_scores):
        thresholds = tune_thresholds(
            schema,
            topic_scores[fit_rows],
            topic_true[fit_rows],
            rule,
            fixed,
            target_precision,
            shrink,
        )
        decided[held_rows] = decisions(topic_scores[held_rows], schema, thresholds)
    return decided


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


def _fit_temperature(nll: Any) -> float:
    """The temperature minimising a negative log-likelihood, searched on log scale."""
    result = minimize_scalar(lambda log_t: nll(np.exp(log_t)), bounds=(-3.0, 3.0), method="bounded")
    return float(np.exp(result.x))


def calibrate(
    predictor: Predictor, texts: list[str], topic_true: np.ndarray, tone_true: np.ndarray
) -> None:
    """Fit the predictor's score calibration on labelled texts, in place."""
    clean = predictor.preprocess(texts)
    if hasattr(predictor, "logits_clean"):  # logit models: temperature scaling
        topic_logits, tone_logits = predictor.logits_clean(clean)
        predictor.calibration = {
            "method": "temperature",
            "topic_temperature": [
                _fit_temperature(
                    lambda t, i=i: _binary_nll(topic_logits[:, i] / t, topic_true[:, i])
                )
                for i in range(topic_true.shape[1])
            ],
            "tone_temperature": _fit_temperature(
                lambda t: _softmax_nll(tone_logits / t, tone_true)
            ),
        }
    elif predictor.kind == "tfidf":
        features = predictor.vectorizer.transform(clean)
        ovr = predictor.topic_model
        ovr.estimators_ = [
            CalibratedClassifierCV(FrozenEstimator(est), method="sigmoid").fit(
                features, topic_true[:, i]
            )
            for i, est in enumerate(ovr.estimators_)
        ]
        predictor.tone_model = CalibratedClassifierCV(
            FrozenEstimator(predictor.tone_model), method="sigmoid"
        ).fit(features, tone_true)
        predictor.calibration = {"method": "sklearn-sigmoid"}
    elif predictor.kind == "ensemble":
        for member in predictor.members.values():
            calibrate(member, texts, topic_true, tone_true)
        predictor.calibration = {"method": "members"}
    else:
        raise TopictoneError(f"no calibration for '{predictor.kind}' models")


def _binary_nll(logits: np.ndarray, truth: np.ndarray) -> float:
    # log(1 + e^-z) for positives, log(1 + e^z) for negatives, computed stably.
    signed = np.where(truth > 0, logits, -logits)
    return float(np.mean(np.logaddexp(0.0, -signed)))


def _softmax_nll(logits: np.ndarray, truth: np.ndarray) -> float:
    log_norm = np.logaddexp.reduce(logits, axis=1)
    return float(np.mean(log_norm - logits[np.arange(len(truth)), truth]))
