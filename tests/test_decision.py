import numpy as np
import pytest

from infer.decision import Calibration, softmax
from infer.errors import TopictoneError
from infer.schema import LabelSchema
from train.decision import (
    ScoreTree,
    _softmax_nll,
    crossfit_decisions,
    expected_calibration_error,
    fit_calibration,
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


def test_out_of_fold_train_scores_join_the_fit_and_the_honest_estimate(tmp_path):
    import json

    from tests.conftest import DEMO, FAST_TFIDF, train_run

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

    from tests.conftest import FAST_TFIDF, train_run

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
    from tests.conftest import FAST_TFIDF, train_run

    with pytest.raises(TopictoneError, match=r"set decision\.oof_folds too"):
        train_run([*FAST_TFIDF, "decision.use_dev=false"], tmp_path)


def test_out_of_fold_needs_models_it_can_train_again(tmp_path):
    from tests.conftest import FAST_TFIDF, train_run

    with pytest.raises(TopictoneError, match="out-of-fold scores are for gold train only"):
        train_run([*FAST_TFIDF, "weak=public", "decision.oof_folds=3"], tmp_path)


def test_a_held_out_slice_of_train_joins_the_fit_without_training_again(tmp_path):
    import json
    from collections import Counter

    from tests.conftest import DEMO, FAST_TFIDF, train_run

    fit = ["decision.calibrate=true", "decision.thresholds=f1", "decision.holdout=0.25"]
    metrics = train_run([*FAST_TFIDF, *fit], tmp_path / "held")
    honest = metrics["dev_crossfit"]
    assert honest["fitted_with_holdout_train_texts"] == 60 and honest["fitted_with_dev"] is True
    rows = {r["id"]: r for r in map(json.loads, (DEMO / "train.jsonl").open())}
    with np.load(tmp_path / "held/holdout/scores.npz") as scores:
        held = [str(i) for i in scores["id"]]
        assert scores["topic"].shape == (60, 3) and len(set(held)) == 60 and set(held) <= set(rows)
    # The model trained on the other 180: its card counts them, and every unit is held out
    # in proportion.
    card = (tmp_path / "held/model/README.md").read_text(encoding="utf-8").splitlines()
    tones = [
        int(line.split("|")[2])
        for line in card
        if line.split("|")[1:2] in ([" positive "], [" neutral "], [" negative "])
    ]
    assert sum(tones) == 180, tones
    units = Counter(r["unit"] for r in rows.values())
    held_units = Counter(rows[i]["unit"] for i in held)
    assert all(abs(held_units[u] - n / 4) <= 1 for u, n in units.items()), (held_units, units)
    # Fitted on the held-out texts alone, the decisions leave dev to measure them.
    alone = train_run([*FAST_TFIDF, *fit, "decision.use_dev=false"], tmp_path / "alone")
    assert alone["dev_crossfit"]["fitted_with_dev"] is False
    assert alone["dev_crossfit"]["topics/macro_f1"] == pytest.approx(
        alone["dev"]["topics/macro_f1"]
    )


def test_held_out_texts_never_come_back_through_a_weak_source(tmp_path, capsys):
    import csv
    import json

    from tests.conftest import DEMO, FAST_TFIDF, compose_train, run_config, with_toy_weak_source

    # A weak source repeating every gold train text, held out or not, and one new text.
    texts = [json.loads(line)["text"] for line in (DEMO / "train.jsonl").open()]
    source = tmp_path / "weak.csv"
    with source.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["headline", "section"])
        writer.writerows([[t, "tech"] for t in [*texts, "New chip doubles phone battery life"]])
    overrides = [*FAST_TFIDF, "decision.calibrate=true", "decision.holdout=0.25"]
    cfg = with_toy_weak_source(compose_train(overrides), source)
    metrics = run_config(cfg, tmp_path / "run")
    assert "weak source toy: 1 rows mixed in, 0 with unmapped categories and 240 repeating" in (
        capsys.readouterr().out
    )
    assert metrics["dev_crossfit"]["fitted_with_holdout_train_texts"] == 60


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["decision.holdout=1.5"], "decision.holdout must lie between 0 and 1"),
        (["decision.holdout=0.2", "decision.oof_folds=3"], "set one of them to 0"),
    ],
)
def test_holdout_settings_that_cannot_work(overrides, message, tmp_path):
    from tests.conftest import FAST_TFIDF, train_run

    with pytest.raises(TopictoneError, match=message):
        train_run([*FAST_TFIDF, *overrides], tmp_path)


def test_decisions_on_unseen_train_texts_need_every_member_trained_here(tfidf_run, tmp_path):
    from tests.conftest import train_run

    loaded = ["model=ensemble", f"model.members.tfidf={tfidf_run / 'model'}"]
    for extra in ("decision.holdout=0.2", "decision.oof_folds=3"):
        with pytest.raises(TopictoneError, match="a member loaded from a folder"):
            train_run([*loaded, extra], tmp_path)  # refused before any member trains


class ScoresOnly:
    """The part of a predictor the decision fitting uses: a schema, no parts."""

    schema = SCHEMA

    def __init__(self) -> None:
        self.calibration = Calibration.identity(SCHEMA)

    def parts(self) -> dict:
        return {}


def test_auto_calibration_chooses_each_head_by_cross_fitted_f1():
    from train.decision import ScoreTree, choose_methods, crossfit_decision, fit_decision

    rng = np.random.default_rng(0)
    n = 600
    (topics, _), topic_true, tone_true = overconfident_scores(n)
    # Tone leans to "y" by a fixed bias: only a per-tone shift (Platt) fixes the arg-max.
    evidence = rng.normal(size=(n, 2))
    evidence[np.arange(n), tone_true] += 1.5
    evidence[:, 1] += 2.0
    raw = (topics, softmax(evidence))
    tree, truth, rows = ScoreTree(raw), (topic_true, tone_true), np.arange(n)
    decision = {"calibrate": True, "calibration": "auto", "thresholds": "f1", "fixed": 0.5}
    decision["target_precision"] = 0.8
    # Topic decisions are the same under both (monotone per topic, F1 thresholds): the
    # tie goes to temperature; tone needs the bias.
    assert choose_methods(ScoresOnly(), tree, truth, rows, decision) == ("temperature", "platt")
    calibrations, _, scores = fit_decision(ScoresOnly(), tree, truth, rows, decision)
    assert calibrations[()].topic_shift == (0.0, 0.0) and calibrations[()].tone_shift != (0, 0)
    assert (scores[1].argmax(axis=1) == tone_true).mean() > (
        raw[1].argmax(axis=1) == tone_true
    ).mean()
    decided, _ = crossfit_decision(ScoresOnly(), tree, truth, rows, decision)  # nested
    assert decided.shape == topic_true.shape


def test_auto_calibration_in_a_run(tmp_path, capfd):
    from tests.conftest import FAST_TFIDF, train_run

    fit = ["decision.calibrate=true", "decision.thresholds=f1", "decision.calibration=auto"]
    metrics = train_run([*FAST_TFIDF, *fit], tmp_path)
    assert "decision.calibration=auto chose" in capfd.readouterr().err
    assert metrics["dev_crossfit"]["n"] == 60


@pytest.mark.parametrize("seed", range(5))
def test_the_held_out_slice_holds_a_rare_topic_in_proportion(seed):
    import datasets

    from train.run import split_holdout

    # 200 headlines and 50 articles; the rare topic in 10 of each, half of them negative.
    n = 250
    rare = {*range(0, 10), *range(200, 210)}
    train = datasets.Dataset.from_dict(
        {
            "text": [f"text {i}" for i in range(n)],
            "unit": ["headline"] * 200 + ["article"] * 50,
            "topics": [[int(i in rare), int(i % 3 == 0), 0] for i in range(n)],
            "tone": [i % 2 if i in rare else i % 3 for i in range(n)],
        }
    )
    kept, held = split_holdout(train, 0.2, seed)
    assert len(held) == 50 and len(kept) == 200
    assert not set(kept["text"]) & set(held["text"])
    positives = [row[0] for row in held["topics"]]
    assert sum(positives) == 4, positives  # a fifth of the 20, never left to chance
    assert abs(held["unit"].count("article") - 10) <= 1  # strata are rounded one by one
