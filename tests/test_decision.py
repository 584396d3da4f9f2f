import numpy as np
import pytest

from topictone.infer.decision import Calibration, softmax
from topictone.infer.errors import TopictoneError
from topictone.infer.schema import LabelSchema
from topictone.train.decisions.calibration import _softmax_nll, fit_calibration
from topictone.train.decisions.fitting import choose_methods, crossfit_estimate, fit_decision
from topictone.train.decisions.scores import Scored, ScoreTree
from topictone.train.decisions.thresholds import ThresholdRule
from topictone.train.metrics.compute import expected_calibration_error

SCHEMA = LabelSchema(topics=("a", "b"), tones=("x", "y"))


def test_f1_thresholds_separate_what_can_be_separated():
    scores = np.array([[0.9, 0.1], [0.35, 0.2], [0.3, 0.8], [0.1, 0.6]])
    truth = np.array([[1, 0], [1, 0], [0, 1], [0, 1]])
    thresholds = ThresholdRule("f1").tune(SCHEMA, scores, truth)
    decided = scores >= np.array([thresholds["a"], thresholds["b"]])
    assert (decided == truth.astype(bool)).all()


def test_precision_rule_and_fallbacks():
    scores = np.array([[0.9, 0.5], [0.6, 0.4], [0.5, 0.3], [0.2, 0.2]])
    truth = np.array([[1, 0], [0, 0], [1, 0], [0, 0]])
    thresholds = ThresholdRule("precision", target_precision=1.0).tune(SCHEMA, scores, truth)
    assert thresholds["a"] == pytest.approx(0.75)  # the lowest cut with precision 1.0 is 0.9,
    # placed halfway down to the next score (0.6): the same decisions, with a margin
    assert thresholds["b"] == 0.5  # no positives: the fixed threshold
    with pytest.raises(TopictoneError, match="must be one of"):
        ThresholdRule("magic")
    with pytest.raises(TopictoneError, match="must be one of"):
        ThresholdRule("auto")  # no rule that measured no gain


def test_expected_calibration_error():
    assert expected_calibration_error(np.array([0.0, 1.0]), np.array([0, 1])) == 0.0
    assert expected_calibration_error(np.array([0.9, 0.9]), np.array([0, 0])) == pytest.approx(0.9)


def overconfident_scores(n: int = 4000, seed: int = 0):
    """Topic and tone scores from known logits, sharpened 4x and (topics) shifted by 1."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 2)) * 2
    topic_true = (rng.random((n, 2)) < 1 / (1 + np.exp(-z))).astype(int)
    tone_true = rng.integers(0, 2, n)
    honest = rng.normal(size=(n, 2))
    honest[np.arange(n), tone_true] += 1.0
    topics = 1 / (1 + np.exp(-(4 * z + 1)))
    return (topics, softmax(4 * honest)), topic_true, tone_true


@pytest.mark.parametrize("method", ["platt", "temperature"])
def test_calibration_recovers_the_distortion_and_keeps_the_order(method):
    raw, topic_true, tone_true = overconfident_scores()
    calibration = fit_calibration(SCHEMA, raw, topic_true, tone_true, method)
    assert calibration.tone_scale == pytest.approx(0.25, abs=0.05)
    if method == "platt":  # a·logit + b undoes 4z + 1: a = 1/4, b = -1/4
        assert calibration.topic_scale == pytest.approx((0.25, 0.25), abs=0.03)
        assert calibration.topic_shift == pytest.approx((-0.25, -0.25), abs=0.1)
    else:
        assert calibration.topic_shift == (0.0, 0.0) and calibration.tone_shift == (0.0, 0.0)
    topics, tones = calibration.apply(raw)
    order = np.argsort(raw[0][:, 0], kind="stable")
    assert (np.diff(topics[order, 0]) >= 0).all()  # the order of scores is kept
    before = _softmax_nll(np.log(raw[1]), tone_true)
    assert _softmax_nll(np.log(tones), tone_true) < before
    assert expected_calibration_error(topics, topic_true) < 0.5 * expected_calibration_error(
        raw[0], topic_true
    )


def test_calibration_round_trips_and_reads_older_manifests():
    raw, topic_true, tone_true = overconfident_scores()
    calibration = fit_calibration(SCHEMA, raw, topic_true, tone_true)
    again = Calibration.from_dict(calibration.to_dict(), SCHEMA)
    for got, want in zip(again.apply(raw), calibration.apply(raw), strict=True):
        np.testing.assert_allclose(got, want)
    assert Calibration.identity(SCHEMA).to_dict() is None
    # A 0.1 transformer folder: logits / T, the same scores as before.
    old = {"method": "temperature", "topic_temperature": [2.0, 4.0], "tone_temperature": 2.0}
    logits, tone_logits = np.random.default_rng(1).normal(size=(2, 50, 2)) * 3
    raw = (1 / (1 + np.exp(-logits)), softmax(tone_logits))
    topics, tones = Calibration.from_dict(old, SCHEMA).apply(raw)
    np.testing.assert_allclose(topics, 1 / (1 + np.exp(-logits / [2.0, 4.0])), rtol=1e-6)
    np.testing.assert_allclose(tones, softmax(tone_logits / 2.0), rtol=1e-6)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("platt", "must be an object"),
        ({"method": "pickle"}, "unknown calibration method"),
        ({"method": "platt", "topics": {}, "tone": {}}, "topics.scale must be 2 finite"),
        (
            {
                "method": "platt",
                "topics": {"scale": [1.0, -1.0], "shift": [0, 0]},
                "tone": {"scale": 1.0, "shift": [0, 0]},
            },
            "topics.scale must be positive",
        ),
        (
            {
                "method": "platt",
                "topics": {"scale": [1.0, 1.0], "shift": [0, float("nan")]},
                "tone": {"scale": 1.0, "shift": [0, 0]},
            },
            "topics.shift must be 2 finite",
        ),
        ({"method": "temperature", "topic_temperature": [1, 0], "tone_temperature": 1}, "positive"),
    ],
)
def test_a_malformed_calibration_is_one_line(data, message):
    with pytest.raises(TopictoneError, match=message):
        Calibration.from_dict(data, SCHEMA, "model/topictone.json")


def crossfit_topics(topic_scores: np.ndarray, topic_true: np.ndarray) -> np.ndarray:
    """Topic decisions cross-fitted with F1 thresholds and no calibration."""
    n = len(topic_true)
    tones = np.tile([0.5, 0.5], (n, 1))
    scored = Scored(ScoreTree((topic_scores, tones)), (topic_true, np.zeros(n, dtype=int)))
    decided, _ = crossfit_estimate(
        ScoresOnly(), scored, np.arange(n), None, ThresholdRule("f1"), always=np.zeros(0, int)
    )
    return decided


def test_crossfit_keeps_what_transfers_and_exposes_what_does_not():
    rng = np.random.default_rng(0)
    truth = (rng.random((200, 2)) < 0.3).astype(int)
    # Separable with one cut per topic (not 0.5): every held-out fold is decided right.
    separable = np.where(truth == 1, 0.3 + 0.1 * rng.random((200, 2)), 0.2 * rng.random((200, 2)))
    assert (crossfit_topics(separable, truth) == truth).all()
    # Scores unrelated to the labels: tuning in-sample still finds a cut that looks useful;
    # cross-fitted decisions show it does not carry over.
    noise = rng.random((200, 2))
    thresholds = ThresholdRule("f1").tune(SCHEMA, noise, truth)
    in_sample = (noise >= np.array([thresholds["a"], thresholds["b"]])).astype(int)
    crossfit = crossfit_topics(noise, truth)

    def f1(decided: np.ndarray) -> float:
        hits = (decided & truth).sum()
        return 2 * hits / (decided.sum() + truth.sum())

    assert f1(crossfit) < f1(in_sample)


def test_out_of_fold_train_scores_join_the_fit_and_the_honest_estimate(tmp_path):
    import json

    from conftest import DEMO, FAST_TFIDF, train_run

    fit = ["decision.calibrate=true", "decision.thresholds=f1"]
    metrics = train_run([*FAST_TFIDF, *fit, "decision.oof_folds=3"], tmp_path / "oof")
    honest = metrics["dev_crossfit"]
    assert honest["fitted_with_oof_train_texts"] == 240  # every demo train text, once
    assert honest["n"] == 60 and honest["fitted_with_dev"] is True
    rows = [json.loads(x) for x in (tmp_path / "oof/predictions/dev_crossfit.jsonl").open()]
    assert len(rows) == 60
    # The honest figure is the macro-F1 of the cross-fitted decisions written beside it.
    from sklearn.metrics import f1_score

    topics = ["defence", "counterterrorism", "technology"]
    gold = {r["id"]: r["topics"] for r in map(json.loads, (DEMO / "dev.jsonl").open())}
    true = [[t in gold[r["id"]] for t in topics] for r in rows]
    decided = [[t in r["prediction"]["topics"] for t in topics] for r in rows]
    recomputed = f1_score(true, decided, average="macro", zero_division=0)
    assert honest["topics/macro_f1"] == pytest.approx(recomputed)
    # Fitted on 300 texts rather than 60, the thresholds differ from the dev-only ones.
    dev_only = train_run([*FAST_TFIDF, *fit], tmp_path / "dev")
    assert "fitted_with_oof_train_texts" not in dev_only["dev_crossfit"]
    saved = [
        json.loads((tmp_path / run / "model/topictone.json").read_text())["thresholds"]
        for run in ("oof", "dev")
    ]
    assert saved[0] != saved[1]
    # The out-of-fold scores stay in the run folder: every train text once, by id.
    with np.load(tmp_path / "oof/oof/scores.npz") as scores:
        assert sorted(scores.files) == ["id", "tone", "tone_true", "topic", "topic_true"]
        ids = [json.loads(line)["id"] for line in (DEMO / "train.jsonl").open()]
        assert sorted(scores["id"]) == sorted(ids) and len(set(scores["id"])) == 240
        assert scores["topic"].shape == (240, 3) and scores["tone"].shape == (240, 3)
        truth = {r["id"]: r["topics"] for r in map(json.loads, (DEMO / "train.jsonl").open())}
        first = truth[str(scores["id"][0])]
        topics = ("defence", "counterterrorism", "technology")
        assert [t for t, on in zip(topics, scores["topic_true"][0], strict=True) if on] == first


def test_score_trees_flatten_by_part():
    tree = ScoreTree(
        None,
        {
            "a": ScoreTree((np.zeros((2, 2)), np.ones((2, 2)))),
            "b": ScoreTree(None, {"c": ScoreTree((np.ones((2, 2)), np.zeros((2, 2))))}),
        },
    )
    arrays = tree.arrays()
    assert sorted(arrays) == ["a/tone", "a/topic", "b/c/tone", "b/c/topic"]
    assert arrays["b/c/topic"].sum() == 4 and arrays["a/tone"].sum() == 4
    again = ScoreTree.from_arrays({**arrays, "id": np.arange(2), "topic_true": np.ones(2)})
    assert again.arrays().keys() == arrays.keys()
    assert all((again.arrays()[k] == v).all() for k, v in arrays.items())


def test_decisions_fitted_on_out_of_fold_train_alone_leave_dev_to_measure(tmp_path):
    import json

    from conftest import FAST_TFIDF, train_run

    fit = ["decision.calibrate=true", "decision.thresholds=f1", "decision.oof_folds=3"]
    metrics = train_run([*FAST_TFIDF, *fit, "decision.use_dev=false"], tmp_path / "oof")
    honest, dev = metrics["dev_crossfit"], metrics["dev"]
    assert honest["fitted_with_oof_train_texts"] == 240 and honest["fitted_with_dev"] is False
    # Dev took no part in the decisions: the saved model's dev figures are the honest ones.
    for key in ("topics/macro_f1", "tone/macro_f1", "topics_ece", "tone_ece"):
        assert honest[key] == pytest.approx(dev[key]), key
    crossfit, saved = (
        [json.loads(x)["prediction"] for x in (tmp_path / f"oof/predictions/{n}.jsonl").open()]
        for n in ("dev_crossfit", "dev")
    )
    assert [(p["topics"], p["tone"]) for p in crossfit] == [(p["topics"], p["tone"]) for p in saved]


def test_decisions_without_dev_need_out_of_fold_scores(tmp_path):
    from conftest import FAST_TFIDF, train_run

    with pytest.raises(TopictoneError, match=r"set decision\.oof_folds too"):
        train_run([*FAST_TFIDF, "decision.use_dev=false"], tmp_path)


def test_out_of_fold_needs_models_it_can_train_again(tmp_path):
    from conftest import FAST_TFIDF, train_run

    with pytest.raises(TopictoneError, match="out-of-fold scores are for gold train only"):
        train_run([*FAST_TFIDF, "weak=public", "decision.oof_folds=3"], tmp_path)


def test_decisions_on_unseen_train_texts_need_every_member_trained_here(tfidf_run, tmp_path):
    from conftest import train_run

    loaded = ["model=ensemble", f"model.members.tfidf={tfidf_run / 'model'}"]
    with pytest.raises(TopictoneError, match="a member loaded from a folder"):
        train_run([*loaded, "decision.oof_folds=3"], tmp_path)  # refused before any training


class ScoresOnly:
    """The part of a predictor the decision fitting uses: a schema, no parts."""

    schema = SCHEMA

    def __init__(self) -> None:
        self.calibration = Calibration.identity(SCHEMA)

    def parts(self) -> dict:
        return {}


def test_auto_calibration_chooses_each_head_by_cross_fitted_f1():
    rng = np.random.default_rng(0)
    n = 600
    (topics, _), topic_true, tone_true = overconfident_scores(n)
    # Tone leans to "y" by a fixed bias: only a per-tone shift (Platt) fixes the arg-max.
    evidence = rng.normal(size=(n, 2))
    evidence[np.arange(n), tone_true] += 1.5
    evidence[:, 1] += 2.0
    raw = (topics, softmax(evidence))
    scored, rows, rule = (
        Scored(ScoreTree(raw), (topic_true, tone_true)),
        np.arange(n),
        ThresholdRule(),
    )
    # Topic decisions are the same under both (monotone per topic, F1 thresholds): the
    # tie goes to temperature; tone needs the bias.
    assert choose_methods(ScoresOnly(), scored, rows, rule) == ("temperature", "platt")
    calibrations, _, scores = fit_decision(ScoresOnly(), scored, rows, "auto", rule)
    assert calibrations[()].topic_shift == (0.0, 0.0) and calibrations[()].tone_shift != (0, 0)
    assert (scores[1].argmax(axis=1) == tone_true).mean() > (
        raw[1].argmax(axis=1) == tone_true
    ).mean()
    decided, _ = crossfit_estimate(ScoresOnly(), scored, rows, "auto", rule)  # nested
    assert decided.shape == topic_true.shape


def test_auto_calibration_in_a_run(tmp_path, capfd):
    from conftest import FAST_TFIDF, train_run

    fit = ["decision.calibrate=true", "decision.thresholds=f1", "decision.calibration=auto"]
    metrics = train_run([*FAST_TFIDF, *fit], tmp_path)
    assert "decision.calibration=auto chose" in capfd.readouterr().err
    assert metrics["dev_crossfit"]["n"] == 60
