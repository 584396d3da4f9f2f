"""The decision plan: calibrations and thresholds fitted on scores the model did not train on.

Fitted from (raw scores, truth) alone, the same way for every model kind: on dev, on
out-of-fold scores over train (``decision.oof_folds``), or both. :func:`fit_decisions`
installs them on the predictor (they are saved in its folder) and returns the honest
figures: ``dev_crossfit``, each dev text decided by calibrations and thresholds fitted
without it, and ``dev_before_fitting``. Where dev took no part (``decision.use_dev=false``)
its figures under the saved decisions are honest as they stand.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.metrics import f1_score
from sklearn.model_selection import KFold

from topictone.infer.predictors.base import Predictor, Scores
from topictone.train.decisions.calibration import (
    METHODS,
    Calibrations,
    Methods,
    calibrate_tree,
    install_calibrations,
)
from topictone.train.decisions.routing import routing_metrics
from topictone.train.decisions.scores import Scored, ScoreTree
from topictone.train.decisions.thresholds import ThresholdRule, apply_thresholds
from topictone.train.metrics.compute import calibration_errors, compute_metrics, split_metrics
from topictone.train.schema import DecisionConfig


@dataclass
class Fitted:
    """What fitting the decisions did: the facts a report states, the honest figures, and
    dev's cross-fitted decisions and scores (when dev took part)."""

    fitted: bool = False  # anything at all (calibration or tuned thresholds)
    on_dev: bool = False  # dev's texts took part
    oof_texts: int = 0  # out-of-fold train texts that took part
    methods: tuple[str, str] | None = None  # calibration method per head (topics, tone)
    rule: str = "fixed"  # how the thresholds were tuned
    metrics: dict[str, Any] = field(default_factory=dict)  # dev_before_fitting, dev_crossfit
    crossfit: tuple[np.ndarray, Scores] | None = None


def fit_decisions(
    predictor: Predictor, dev: Scored | None, config: DecisionConfig, oof: Scored | None = None
) -> Fitted:
    """Calibrate and tune thresholds as configured, install them on ``predictor``, and
    measure dev honestly (see the module's docstring)."""
    rule = ThresholdRule(str(config.thresholds.value), config.fixed, config.target_precision)
    predictor.thresholds = dict.fromkeys(predictor.schema.topics, float(config.fixed))
    if dev is None or (not config.calibrate and rule.rule == "fixed"):
        return Fitted()
    use_dev = config.use_dev or oof is None  # the config check refuses the latter
    method: Methods | None = str(config.calibration.value) if config.calibrate else None
    before = split_metrics(
        predictor.schema, current_scores(predictor, dev.tree), dev.truth, predictor.thresholds
    )
    every = dev if oof is None else oof.concat(dev)
    dev_rows = np.arange(len(every) - len(dev), len(every))
    fit_rows = np.arange(len(every)) if use_dev else np.arange(dev_rows[0])
    if use_dev:  # before `auto` is resolved below: the honest folds choose it themselves
        decided, scores = crossfit_estimate(
            predictor, every, dev_rows, method, rule, folds=config.crossfit_folds
        )
    if method == "auto":
        method = choose_methods(predictor, every, fit_rows, rule)
        print(
            f"decision.calibration=auto chose {method[0]} for topics, {method[1]} for tone",
            file=sys.stderr,
            flush=True,
        )
    calibrations, thresholds, calibrated = fit_decision(predictor, every, fit_rows, method, rule)
    install_calibrations(predictor, calibrations)
    predictor.thresholds = thresholds
    if not use_dev:  # dev took no part: its figures under the saved decisions are honest
        scores = (calibrated[0][dev_rows], calibrated[1][dev_rows])
        decided = apply_thresholds(scores[0], predictor.schema, thresholds)
    half = dict.fromkeys(predictor.schema.topics, 0.5)  # decided is 0/1 already
    honest = {
        **compute_metrics(predictor.schema, decided, scores[1], *dev.truth, half),
        **calibration_errors(predictor.schema, scores, *dev.truth),
    }
    if oof is not None:
        honest["fitted_with_oof_train_texts"] = len(oof)
    honest["fitted_with_dev"] = bool(use_dev)
    honest.update(routing_metrics(predictor))
    return Fitted(
        fitted=True,
        on_dev=use_dev,
        oof_texts=len(oof) if oof is not None else 0,
        methods=(method, method) if isinstance(method, str) else method,
        rule=rule.rule,
        metrics={"dev_before_fitting": before, "dev_crossfit": honest},
        crossfit=(decided, scores),
    )


def current_scores(predictor: Predictor, tree: ScoreTree) -> Scores:
    """The scores ``predictor`` gives these texts with the calibrations it has now."""
    return calibrate_tree(predictor, tree, np.zeros(0, dtype=int), None, None)[1]


def fit_decision(
    predictor: Predictor,
    scored: Scored,
    rows: np.ndarray,
    method: Methods | None,
    rule: ThresholdRule,
) -> tuple[Calibrations, dict[str, float], Scores]:
    """Calibrations (``method``; None keeps the model's) and thresholds fitted on ``rows``
    of ``scored``, with the calibrated scores of all its texts.

    ``method="auto"`` chooses the method of each head by its macro-F1 cross-fitted over
    ``rows`` (:func:`choose_methods`): nested inside any outer cross-fitting, so the
    honest figure includes the choice."""
    if method == "auto":
        method = choose_methods(predictor, scored, rows, rule)
    calibrations, scores = calibrate_tree(predictor, scored.tree, rows, scored.truth, method)
    thresholds = rule.tune(predictor.schema, scores[0][rows], scored.truth[0][rows])
    return calibrations, thresholds, scores


def crossfit_estimate(
    predictor: Predictor,
    scored: Scored,
    held_out: np.ndarray,
    method: Methods | None,
    rule: ThresholdRule,
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
    others = np.setdiff1d(np.arange(len(scored)), held_out) if always is None else always
    decided = np.zeros((len(held_out), len(schema.topics)), dtype=int)
    topic_scores = np.zeros((len(held_out), len(schema.topics)))
    tone_probs = np.zeros((len(held_out), len(schema.tones)))
    for fit_part, held_part in KFold(folds, shuffle=True, random_state=seed).split(held_out):
        rows = np.concatenate([others, held_out[fit_part]])
        _, thresholds, scores = fit_decision(predictor, scored, rows, method, rule)
        held = held_out[held_part]
        decided[held_part] = apply_thresholds(scores[0][held], schema, thresholds)
        topic_scores[held_part], tone_probs[held_part] = scores[0][held], scores[1][held]
    return decided, (topic_scores, tone_probs)


def choose_methods(
    predictor: Predictor,
    scored: Scored,
    rows: np.ndarray,
    rule: ThresholdRule,
    folds: int = 5,
    seed: int = 1,
) -> tuple[str, str]:
    """Per head, the calibration method whose whole decision (calibrations and
    thresholds), fitted on folds of ``rows`` and applied to the held-out fold, gives the
    best macro-F1 over ``rows``. Ties go to ``temperature``, the one with fewer numbers.

    Which method wins depends on the model: Platt's per-tone bias can fix a skewed tone
    arg-max, while an ensemble's members averaged without shifts can rank topics better."""
    tones = range(len(predictor.schema.tones))
    topic_true, tone_true = scored.truth[0][rows], scored.truth[1][rows]
    best: dict[str, tuple[float, str]] = {}
    for method in reversed(METHODS):  # temperature first: it keeps ties
        topics, (_, tone_probs) = crossfit_estimate(
            predictor, scored, rows, method, rule, folds, seed, always=np.zeros(0, dtype=int)
        )
        found = {
            "topics": f1_score(topic_true, topics, average="macro", zero_division=0.0),
            "tone": f1_score(
                tone_true,
                tone_probs.argmax(axis=1),
                average="macro",
                labels=tones,
                zero_division=0.0,
            ),
        }
        for head, f1 in found.items():
            if head not in best or f1 > best[head][0]:
                best[head] = (f1, method)
    return best["topics"][1], best["tone"][1]
