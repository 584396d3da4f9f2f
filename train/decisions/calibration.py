"""Calibration of raw scores, fitted by log-loss, for a model and each of its parts.

``platt``: per topic ``sigmoid(a · logit(p) + b)``, tone ``softmax(s · log q + c)``;
``temperature``: the same without ``b`` and ``c``. The fitted numbers are a
:class:`topictone.infer.decision.Calibration`, saved in the manifest and applied by
``topictone.infer``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.optimize import minimize

from topictone.infer.decision import EPS, Calibration, logit
from topictone.infer.errors import TopictoneError
from topictone.infer.predictors.base import Predictor, Scores
from topictone.infer.schema import LabelSchema
from topictone.train.decisions.routing import fit_routing
from topictone.train.decisions.scores import ScoreTree

METHODS = ("platt", "temperature")  # how a calibration is fitted; "auto" chooses per head
_SCALE_BOUNDS = (1e-3, 1e3)  # a > 0 keeps the order of scores
_SHIFT_BOUNDS = (-20.0, 20.0)
Methods = str | tuple[str, str]  # one method for both heads, or (topics, tone)
Calibrations = dict[tuple[str, ...], Calibration]  # by path: () the model, ("tfidf",) a part


def fit_calibration(
    schema: LabelSchema,
    raw: Scores,
    topic_true: np.ndarray,
    tone_true: np.ndarray,
    method: Methods = "platt",
) -> Calibration:
    """The calibration of raw scores that minimises log-loss on these texts.

    ``platt``: per topic ``sigmoid(a · logit(p) + b)`` with Platt's smoothed targets (so
    separable scores do not send ``a`` to infinity), tone ``softmax(s · log q + c)``.
    ``temperature``: ``b = 0`` and ``c = 0`` (one scale per label; decisions unchanged).
    A pair ``(topics, tone)`` fits each head by its own method."""
    topic_method, tone_method = (method, method) if isinstance(method, str) else method
    for name in (topic_method, tone_method):
        if name not in METHODS:
            raise TopictoneError(
                f"decision.calibration must be one of {(*METHODS, 'auto')}, got '{name}'"
            )
    topic_scores, tone_probs = raw
    shifts = topic_method == "platt"
    scales, offsets = [], []
    for i in range(len(schema.topics)):
        y = topic_true[:, i].astype(float)
        positives, negatives = y.sum(), len(y) - y.sum()
        if not positives or not negatives:
            scales.append(1.0)
            offsets.append(0.0)
            continue
        y = np.where(y > 0, (positives + 1) / (positives + 2), 1 / (negatives + 2))
        x = logit(topic_scores[:, i])
        a, b = _minimise(
            lambda p, x=x, y=y: _binary_nll(p[0] * x + p[1], y),
            [1.0, 0.0],
            [_SCALE_BOUNDS, _SHIFT_BOUNDS if shifts else (0.0, 0.0)],
        )
        scales.append(a)
        offsets.append(b)
    log_q = np.log(np.clip(tone_probs, EPS, 1.0))
    m = len(schema.tones)
    shifts = tone_method == "platt"
    fitted = _minimise(
        lambda p: _softmax_nll(p[0] * log_q + np.asarray(p[1:]), tone_true),
        [1.0] + [0.0] * m,
        [_SCALE_BOUNDS] + [_SHIFT_BOUNDS if shifts else (0.0, 0.0)] * m,
    )
    shift = np.asarray(fitted[1:]) - np.mean(fitted[1:])  # softmax ignores a common shift
    return Calibration(tuple(scales), tuple(offsets), fitted[0], tuple(float(c) for c in shift))


def _minimise(loss: Any, start: list[float], bounds: list[tuple[float, float]]) -> list[float]:
    result = minimize(loss, np.asarray(start), method="L-BFGS-B", bounds=bounds)
    return [float(v) for v in result.x]


def calibrate_tree(
    predictor: Predictor,
    tree: ScoreTree,
    rows: np.ndarray,
    truth: tuple[np.ndarray, np.ndarray] | None,
    method: Methods | None,
    path: tuple[str, ...] = (),
) -> tuple[Calibrations, Scores]:
    """Calibrations for the model and each of its parts, fitted on ``rows`` only, and the
    calibrated scores of every text in ``tree`` (parts first: a part's calibrated scores
    feed ``combine``). ``method=None`` fits nothing and keeps the calibrations in place."""
    found: Calibrations = {}
    raw = tree.raw
    if tree.parts:
        part_scores = {}
        for name, part in predictor.parts().items():
            fitted, part_scores[name] = calibrate_tree(
                part, tree.parts[name], rows, truth, method, (*path, name)
            )
            found.update(fitted)
        if truth is not None and len(rows):  # a cascade's bands, fitted on the same rows
            fit_routing(predictor, part_scores, truth, rows)
        raw = predictor.combine(part_scores)
    assert raw is not None
    calibration = predictor.calibration  # nothing to fit: keep what the model has
    if method is not None:
        assert truth is not None
        calibration = fit_calibration(
            predictor.schema, (raw[0][rows], raw[1][rows]), truth[0][rows], truth[1][rows], method
        )
    found[path] = calibration
    return found, calibration.apply(raw)


def install_calibrations(predictor: Predictor, calibrations: Calibrations) -> None:
    """Install fitted calibrations on the model and its parts."""
    for path, calibration in calibrations.items():
        target = predictor
        for name in path:
            target = target.parts()[name]
        target.calibration = calibration


def _binary_nll(logits: np.ndarray, truth: np.ndarray) -> float:
    # −[y log σ(z) + (1 − y) log σ(−z)], computed stably; y may be a smoothed target.
    return float(
        np.mean(truth * np.logaddexp(0.0, -logits) + (1 - truth) * np.logaddexp(0.0, logits))
    )


def _softmax_nll(logits: np.ndarray, truth: np.ndarray) -> float:
    log_norm = np.logaddexp.reduce(logits, axis=1)
    return float(np.mean(log_norm - logits[np.arange(len(truth)), truth]))
