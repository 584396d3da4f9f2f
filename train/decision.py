"""Decisions users can trust: calibrated scores and per-topic thresholds.

Fitted from (raw scores, truth) alone, the same way for every model kind: on dev, and
optionally on out-of-fold scores over train too (``decision.oof_folds``). Both are stored
in the model folder (``calibration`` and ``thresholds`` in the manifest) and applied by
``infer``. Dev metrics after fitting on dev are optimistic; the run reports them beside
cross-fitted (honest) figures and the test split (see ``train.run``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import minimize
from sklearn.metrics import precision_recall_curve
from sklearn.model_selection import KFold

from infer.decision import EPS, Calibration, logit
from infer.errors import TopictoneError
from infer.predictors.base import Predictor, Scores
from infer.schema import LabelSchema
from train.evaluation import decisions

RULES = ("fixed", "f1", "precision", "auto")
SHRINKS = (0.0, 10.0, 30.0, 100.0, float("inf"))  # "auto" candidates; inf: the fixed cut
METHODS = ("platt", "temperature")  # how a calibration is fitted; "auto" chooses per head
SCALE_BOUNDS = (1e-3, 1e3)  # a > 0 keeps the order of scores
SHIFT_BOUNDS = (-20.0, 20.0)


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


Methods = str | tuple[str, str]  # one method for both heads, or (topics, tone)


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
            [SCALE_BOUNDS, SHIFT_BOUNDS if shifts else (0.0, 0.0)],
        )
        scales.append(a)
        offsets.append(b)
    log_q = np.log(np.clip(tone_probs, EPS, 1.0))
    m = len(schema.tones)
    shifts = tone_method == "platt"
    fitted = _minimise(
        lambda p: _softmax_nll(p[0] * log_q + np.asarray(p[1:]), tone_true),
        [1.0] + [0.0] * m,
        [SCALE_BOUNDS] + [SHIFT_BOUNDS if shifts else (0.0, 0.0)] * m,
    )
    shift = np.asarray(fitted[1:]) - np.mean(fitted[1:])  # softmax ignores a common shift
    return Calibration(tuple(scales), tuple(offsets), fitted[0], tuple(float(c) for c in shift))


def _minimise(loss: Any, start: list[float], bounds: list[tuple[float, float]]) -> list[float]:
    result = minimize(loss, np.asarray(start), method="L-BFGS-B", bounds=bounds)
    return [float(v) for v in result.x]


@dataclass
class ScoreTree:
    """A predictor's raw scores on some texts, and its parts' (an ensemble's members)."""

    raw: Scores | None
    parts: dict[str, ScoreTree] = field(default_factory=dict)

    @classmethod
    def of(cls, predictor: Predictor, clean: list[str]) -> ScoreTree:
        parts = predictor.parts()
        if parts:
            return cls(None, {name: cls.of(part, clean) for name, part in parts.items()})
        return cls(predictor.raw_scores_clean(clean))

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], prefix: str = "") -> ScoreTree:
        """The tree that :meth:`arrays` flattened (other keys, such as ``id``, are ignored)."""
        if f"{prefix}topic" in arrays:
            return cls((arrays[f"{prefix}topic"], arrays[f"{prefix}tone"]))
        names = sorted(
            {
                k[len(prefix) :].split("/")[0]
                for k in arrays
                if k.startswith(prefix) and "/" in k[len(prefix) :]
            }
        )
        return cls(None, {n: cls.from_arrays(arrays, f"{prefix}{n}/") for n in names})

    def arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
        """The raw scores as flat arrays named by part: ``topic`` and ``tone`` for a
        model, ``<member>/topic``... for an ensemble's members."""
        out = {}
        if self.raw is not None:
            out[f"{prefix}topic"], out[f"{prefix}tone"] = self.raw
        for name, part in self.parts.items():
            out.update(part.arrays(f"{prefix}{name}/"))
        return out

    def concat(self, other: ScoreTree) -> ScoreTree:
        raw = None
        if self.raw is not None and other.raw is not None:
            raw = tuple(np.concatenate([a, b]) for a, b in zip(self.raw, other.raw, strict=True))
        return ScoreTree(raw, {n: p.concat(other.parts[n]) for n, p in self.parts.items()})


Calibrations = dict[tuple[str, ...], Calibration]  # by path: () the model, ("tfidf",) a part


def fit_calibrations(
    predictor: Predictor,
    tree: ScoreTree,
    rows: np.ndarray,
    truth: tuple[np.ndarray, np.ndarray],
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
            fitted, part_scores[name] = fit_calibrations(
                part, tree.parts[name], rows, truth, method, (*path, name)
            )
            found.update(fitted)
        raw = predictor.combine(part_scores)
    assert raw is not None
    calibration = predictor.calibration  # nothing to fit: keep what the model has
    if method is not None:
        calibration = fit_calibration(
            predictor.schema, (raw[0][rows], raw[1][rows]), truth[0][rows], truth[1][rows], method
        )
    found[path] = calibration
    return found, calibration.apply(raw)


def set_calibrations(predictor: Predictor, calibrations: Calibrations) -> None:
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


def fit_decision(
    predictor: Predictor,
    tree: ScoreTree,
    truth: tuple[np.ndarray, np.ndarray],
    rows: np.ndarray,
    decision: Mapping[str, Any],
) -> tuple[Calibrations, dict[str, float], Scores]:
    """Calibrations (``decision.calibrate``) and thresholds (``decision.thresholds``)
    fitted on ``rows`` of ``tree``; with the calibrated scores of all its texts.

    ``decision.calibration=auto`` chooses the method of each head (topics, tone) by its
    macro-F1 cross-fitted over ``rows`` (:func:`choose_methods`): nested inside any outer
    cross-fitting, so the honest figure includes the choice."""
    method: Methods | None = None
    if decision["calibrate"]:
        method = decision.get("calibration", "platt")
        if not isinstance(method, str):  # a (topics, tone) pair already chosen
            method = (str(method[0]), str(method[1]))
        elif method == "auto":
            method = choose_methods(predictor, tree, truth, rows, decision)
    calibrations, scores = fit_calibrations(predictor, tree, rows, truth, method)
    thresholds = tune_thresholds(
        predictor.schema,
        scores[0][rows],
        truth[0][rows],
        decision["thresholds"],
        decision["fixed"],
        decision["target_precision"],
        float(decision.get("shrink", 0.0)),
    )
    return calibrations, thresholds, scores


def crossfit_decision(
    predictor: Predictor,
    tree: ScoreTree,
    truth: tuple[np.ndarray, np.ndarray],
    held_out: np.ndarray,
    decision: Mapping[str, Any],
    folds: int = 5,
    seed: int = 0,
    always: np.ndarray | None = None,
) -> tuple[np.ndarray, Scores]:
    """An honest estimate for the ``held_out`` rows (dev): each fold of them decided by
    calibrations and thresholds fitted on the other rows only (the other folds, and the
    rows ``always`` fitted on: by default every row not held out, such as out-of-fold
    scores over train). Returns the topic decisions and the calibrated scores of
    ``held_out``, in its order."""
    schema = predictor.schema
    others = np.setdiff1d(np.arange(len(truth[1])), held_out) if always is None else always
    decided = np.zeros((len(held_out), len(schema.topics)), dtype=int)
    topic_scores = np.zeros((len(held_out), len(schema.topics)))
    tone_probs = np.zeros((len(held_out), len(schema.tones)))
    for fit_part, held_part in KFold(folds, shuffle=True, random_state=seed).split(held_out):
        rows = np.concatenate([others, held_out[fit_part]])
        _, thresholds, scores = fit_decision(predictor, tree, truth, rows, decision)
        held = held_out[held_part]
        decided[held_part] = decisions(scores[0][held], schema, thresholds)
        topic_scores[held_part], tone_probs[held_part] = scores[0][held], scores[1][held]
    return decided, (topic_scores, tone_probs)


def choose_methods(
    predictor: Predictor,
    tree: ScoreTree,
    truth: tuple[np.ndarray, np.ndarray],
    rows: np.ndarray,
    decision: Mapping[str, Any],
    folds: int = 5,
    seed: int = 1,
) -> tuple[str, str]:
    """Per head, the calibration method whose whole decision (calibrations and
    thresholds), fitted on folds of ``rows`` and applied to the held-out fold, gives the
    best macro-F1 over ``rows``. Ties go to ``temperature``, the one with fewer numbers.

    Which method wins depends on the model: Platt's per-tone bias can fix a skewed tone
    arg-max, while an ensemble's members averaged without shifts can rank topics better."""
    from sklearn.metrics import f1_score

    schema = predictor.schema
    best: dict[str, tuple[float, str]] = {}
    for method in reversed(METHODS):  # temperature first: it keeps ties
        topics, (_, tone_probs) = crossfit_decision(
            predictor,
            tree,
            truth,
            rows,
            {**decision, "calibration": method},
            folds,
            seed,
            always=np.zeros(0, dtype=int),  # nothing outside rows: it may be held out above
        )
        tones = tone_probs.argmax(axis=1)
        found = {
            "topics": f1_score(truth[0][rows], topics, average="macro", zero_division=0.0),
            "tone": f1_score(
                truth[1][rows],
                tones,
                average="macro",
                labels=range(len(schema.tones)),
                zero_division=0.0,
            ),
        }
        for head, f1 in found.items():
            if head not in best or f1 > best[head][0]:
                best[head] = (f1, method)
    return best["topics"][1], best["tone"][1]
