import numpy as np
import pytest

from infer.errors import TopictoneError
from infer.schema import LabelSchema
from train.decision import (
    _fit_temperature,
    _softmax_nll,
    crossfit_decisions,
    expected_calibration_error,
    tune_thresholds,
)

SCHEMA = LabelSchema(topics=("a", "b"), tones=("x", "y"))


def test_f1_thresholds_separate_what_can_be_separated():
    scores = np.array([[0.9, 0.1], [0.35, 0.2], [0.3, 0.8], [0.1, 0.6]])
    truth = np.array([[1, 0], [1, 0], [0, 1], [0, 1]])
    thresholds = tune_thresholds(SCHEMA, scores, truth, "f1")
    decided = scores >= np.array([thresholds["a"], thresholds["b"]])
    assert (decided == truth.astype(bool)).all()


def test_precision_rule_and_fallbacks():
    scores = np.array([[0.9, 0.5], [0.6, 0.4], [0.5, 0.3], [0.2, 0.2]])
    truth = np.array([[1, 0], [0, 0], [1, 0], [0, 0]])
    thresholds = tune_thresholds(SCHEMA, scores, truth, "precision", target_precision=1.0)
    assert thresholds["a"] == pytest.approx(0.75)  # the lowest cut with precision 1.0 is 0.9,
    # placed halfway down to the next score (0.6): the same decisions, with a margin
    assert thresholds["b"] == 0.5  # no positives: the fixed threshold
    with pytest.raises(TopictoneError, match="must be one of"):
        tune_thresholds(SCHEMA, scores, truth, "magic")


def test_expected_calibration_error():
    assert expected_calibration_error(np.array([0.0, 1.0]), np.array([0, 1])) == 0.0
    assert expected_calibration_error(np.array([0.9, 0.9]), np.array([0, 0])) == pytest.approx(0.9)


def test_temperature_scaling_softens_overconfident_logits():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 3, 2000)
    honest = rng.normal(size=(2000, 3))
    honest[np.arange(2000), truth] += 1.0
    overconfident = honest * 4.0
    temperature = _fit_temperature(lambda t: _softmax_nll(overconfident / t, truth))
    assert 3.0 < temperature < 5.0
    assert _softmax_nll(overconfident / temperature, truth) < _softmax_nll(overconfident, truth)


def test_crossfit_keeps_what_transfers_and_exposes_what_does_not():
    rng = np.random.default_rng(0)
    truth = (rng.random((200, 2)) < 0.3).astype(int)
    # Separable with one cut per topic (not 0.5): every held-out fold is decided right.
    separable = np.where(truth == 1, 0.3 + 0.1 * rng.random((200, 2)), 0.2 * rng.random((200, 2)))
    assert (crossfit_decisions(SCHEMA, separable, truth) == truth).all()
    # Scores unrelated to the labels: tuning in-sample still finds a cut that looks useful;
    # cross-fitted decisions show it does not carry over.
    noise = rng.random((200, 2))
    thresholds = tune_thresholds(SCHEMA, noise, truth, "f1")
    in_sample = (noise >= np.array([thresholds["a"], thresholds["b"]])).astype(int)
    crossfit = crossfit_decisions(SCHEMA, noise, truth)

    def f1(decided: np.ndarray) -> float:
        hits = (decided & truth).sum()
        return 2 * hits / (decided.sum() + truth.sum())

    assert f1(crossfit) < f1(in_sample)


def test_shrink_pulls_thin_evidence_toward_the_fixed_cut():
    scores = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.8], [0.1, 0.6]])
    truth = np.array([[1, 0], [1, 0], [0, 1], [0, 1]])
    tuned = tune_thresholds(SCHEMA, scores, truth, "f1")
    half = tune_thresholds(SCHEMA, scores, truth, "f1", shrink=2.0)  # 2 positives: halfway
    for topic in SCHEMA.topics:
        assert half[topic] == pytest.approx(0.5 + (tuned[topic] - 0.5) / 2)
    assert tune_thresholds(SCHEMA, scores, truth, "f1", shrink=float("inf")) == {"a": 0.5, "b": 0.5}


def test_auto_chooses_a_shrink_per_topic_by_cross_fitted_f1():
    from train.decision import choose_shrink

    rng = np.random.default_rng(0)
    truth = (rng.random((300, 2)) < 0.3).astype(int)
    # Topic a separates at 0.3-0.35 (positives all below 0.5): a tuned cut must win over
    # the fixed one; ties go to the stronger shrink that still separates.
    a = np.where(truth[:, 0] == 1, 0.35 + 0.1 * rng.random(300), 0.3 * rng.random(300))
    scores = np.stack([a, rng.random(300)], axis=1)
    shrinks = choose_shrink(SCHEMA, scores, truth)
    assert shrinks["a"] < float("inf") and shrinks["b"] in (0.0, 10.0, 30.0, 100.0, float("inf"))
    decided = crossfit_decisions(SCHEMA, scores, truth, "auto")  # nested: honest
    assert (decided[:, 0] == truth[:, 0]).mean() > 0.97
