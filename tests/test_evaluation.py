"""The metrics on a case small enough to count by hand: exact figures, not ranges."""

import numpy as np
import pytest

from topictone.infer.schema import LabelSchema
from topictone.train.metrics.compute import compute_metrics

SCHEMA = LabelSchema(topics=("a", "b"), tones=("positive", "neutral", "negative"))
TOPIC_TRUE = np.array([[1, 0], [1, 1], [0, 1], [0, 0]])
# Decided at 0.5 (a score equal to the threshold counts): a [1, 0, 0, 1], b [1, 1, 1, 0].
TOPIC_SCORES = np.array([[0.9, 0.6], [0.2, 0.7], [0.1, 0.8], [0.5, 0.1]])
TONE_TRUE = np.array([0, 1, 2, 2])
TONE_PROBS = np.array(  # argmax: [0, 1, 1, 2]
    [[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.1, 0.5, 0.4], [0.1, 0.2, 0.7]]
)


def metrics(thresholds: dict[str, float]) -> dict:
    return compute_metrics(SCHEMA, TOPIC_SCORES, TONE_PROBS, TOPIC_TRUE, TONE_TRUE, thresholds)


def test_topic_and_tone_metrics_of_a_hand_counted_case():
    m = metrics({"a": 0.5, "b": 0.5})
    expected = {
        "n": 4,
        # a: TP 1, FP 1 (row 4, score exactly 0.5), FN 1.
        "topics/a_precision": 0.5,
        "topics/a_recall": 0.5,
        "topics/a_f1": 0.5,
        "topics/a_support": 2,
        # b: TP 2, FP 1, FN 0.
        "topics/b_precision": 2 / 3,
        "topics/b_recall": 1.0,
        "topics/b_f1": 0.8,
        "topics/macro_f1": 0.65,  # (0.5 + 0.8) / 2
        "topics/micro_f1": 2 / 3,  # TP 3, FP 2, FN 1: 6 / (6 + 3)
        "topics/subset_accuracy": 0.25,  # only row 3 has both topics right
        "tone/accuracy": 0.75,
        "tone/positive_f1": 1.0,
        "tone/neutral_f1": 2 / 3,  # TP 1, FP 1
        "tone/negative_f1": 2 / 3,  # TP 1, FN 1
        "tone/macro_f1": 7 / 9,
    }
    assert {k: m[k] for k in expected} == pytest.approx(expected, abs=1e-12)


def test_per_topic_thresholds_decide():
    # b at 0.65 drops row 1's 0.6: b becomes exactly right; a at 0.51 drops row 4's 0.5.
    m = metrics({"a": 0.51, "b": 0.65})
    assert m["topics/b_f1"] == 1.0
    assert m["topics/a_precision"] == 1.0 and m["topics/a_recall"] == 0.5
    assert m["topics/a_f1"] == pytest.approx(2 / 3, abs=1e-12)
    assert m["topics/subset_accuracy"] == 0.75  # row 2 misses a


def test_a_split_scored_once_evaluates_as_the_saved_model_predicts(tfidf_run):
    """The run scores each split once and evaluates from that score tree; the figures must
    be what the saved model gives the same texts, an ensemble with calibrated parts too."""
    from conftest import DEMO

    from topictone import infer
    from topictone.infer.decision import Calibration
    from topictone.infer.predictors.ensemble import EnsemblePredictor
    from topictone.train.data.labelled import read_labelled
    from topictone.train.decisions.scores import score_split
    from topictone.train.metrics.splits import evaluation

    member = infer.load(tfidf_run / "model")
    schema = member.schema
    n, m = len(schema.topics), len(schema.tones)
    member.calibration = Calibration((1.7,) * n, (-0.3,) * n, 0.8, (0.2, -0.1, -0.1)[:m])
    other = infer.load(tfidf_run / "model")
    ensemble = EnsemblePredictor(schema, {"a": member, "b": other}, {"a": 0.7, "b": 0.3})
    ensemble.calibration = Calibration((1.2,) * n, (0.1,) * n, 1.1, (0.0,) * m)
    fields = {"id": "id", "text": "text", "topics": "topics", "tone": "tone"}
    dev = read_labelled(DEMO / "dev.jsonl", {"fields": fields}, schema)
    for predictor in (member, ensemble):
        evaluated = evaluation(predictor, dev, score_split(predictor, dev))
        expected = predictor.predict_scores(dev["text"])
        np.testing.assert_allclose(evaluated.scores[0], expected[0], rtol=0, atol=1e-12)
        np.testing.assert_allclose(evaluated.scores[1], expected[1], rtol=0, atol=1e-12)
        assert evaluated.predictions == predictor.predict(dev["text"])
