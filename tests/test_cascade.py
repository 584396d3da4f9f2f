"""The cascade kind: a cheap stage for every text, the expensive one inside the bands."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import DEMO, FAST_TFIDF, train_run

from topictone import infer
from topictone.infer.errors import TopictoneError
from topictone.infer.predictors.cascade import (
    Bands,
    CascadePredictor,
    decided_by,
    mixed,
    reads,
    tone_margins,
)
from topictone.infer.schema import LabelSchema
from topictone.train.decisions.routing import _f1s, fit_bands

SCHEMA = LabelSchema(
    ("defence", "counterterrorism", "technology"), ("positive", "neutral", "negative")
)


def demo_texts(split: str) -> list[str]:
    return [json.loads(line)["text"] for line in (DEMO / f"{split}.jsonl").open(encoding="utf-8")]


def test_bands_route_a_text_when_any_head_is_unsure():
    bands = Bands(
        {"defence": (0.3, 0.7), "counterterrorism": (0.4, 0.6), "technology": (0.5, 0.5)}, 0.2
    )
    topics = np.array([[0.9, 0.1, 0.5], [0.5, 0.1, 0.1], [0.9, 0.1, 0.1], [0.1, 0.1, 0.1]])
    tones = np.array([[0.8, 0.1, 0.1], [0.8, 0.1, 0.1], [0.45, 0.4, 0.15], [0.1, 0.2, 0.7]])
    # An empty band (0.5, 0.5) routes nothing, even a score of exactly 0.5.
    assert bands.route(SCHEMA, (topics, tones)).tolist() == [False, True, True, False]
    assert Bands.everything(SCHEMA).route(SCHEMA, (topics, tones)).all()
    # Unfitted bands are saved as null (no Infinity in the manifest) and read back alike.
    assert Bands.from_dict("m", None, SCHEMA) == Bands.everything(SCHEMA)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([1, 2], "cascade bands must be"),
        ({"topics": {"defence": [0, 1]}, "tone_margin": 0.1}, "for the topics"),
        (
            {"topics": {t: [0.6, 0.4] for t in SCHEMA.topics}, "tone_margin": 0.1},
            "'defence' has [0.6, 0.4]",
        ),
        ({"topics": {t: [0, math.nan] for t in SCHEMA.topics}, "tone_margin": 0.1}, "has [0"),
        ({"topics": {t: [0, True] for t in SCHEMA.topics}, "tone_margin": 0.1}, "has [0, True]"),
        ({"topics": {t: [0, 1] for t in SCHEMA.topics}, "tone_margin": "wide"}, "tone_margin is"),
    ],
)
def test_bands_from_a_manifest_are_checked(data, message):
    with pytest.raises(TopictoneError, match=message.replace("[", r"\[")):
        Bands.from_dict("m", data, SCHEMA)


def synthetic(n: int = 600, seed: int = 0):
    """A cheap stage right on confident texts and a coin flip near its cut; an expensive
    stage right everywhere."""
    rng = np.random.default_rng(seed)
    topic_true = rng.integers(0, 2, (n, 3))
    tone_true = rng.integers(0, 3, n)
    sure = rng.random(n) < 0.7
    cheap_topics = np.where(sure[:, None], 0.1 + 0.8 * topic_true, rng.uniform(0.4, 0.6, (n, 3)))
    cheap_tones = np.full((n, 3), 0.1)
    cheap_tones[np.arange(n), np.where(sure, tone_true, rng.integers(0, 3, n))] = 0.8
    cheap_tones[~sure] = [0.36, 0.33, 0.31]
    expensive = (0.05 + 0.9 * topic_true, np.eye(3)[tone_true] * 0.9 + 0.03)
    return (cheap_topics, cheap_tones), expensive, (topic_true, tone_true), sure


def test_fitted_bands_send_on_the_unsure_texts_and_keep_the_expensive_f1():
    cheap, expensive, truth, sure = synthetic()
    bands, share = fit_bands(SCHEMA, cheap, expensive, truth, None, 0.01)
    routed = bands.route(SCHEMA, cheap)
    assert share == routed.mean()
    assert routed[~sure].mean() > 0.9 and routed[sure].mean() < 0.1  # the coin flips go on
    mixed = tuple(np.where(routed[:, None], e, c) for c, e in zip(cheap, expensive, strict=True))
    for kept, best in zip(_f1s(SCHEMA, mixed, truth), _f1s(SCHEMA, expensive, truth), strict=True):
        assert kept >= best - 0.01
    _, capped_share = fit_bands(SCHEMA, cheap, expensive, truth, 0.1, 0.01)
    assert capped_share <= 0.1 < share
    hopeless, _ = fit_bands(SCHEMA, cheap, expensive, truth, None, 0.0)
    assert hopeless.route(SCHEMA, cheap).mean() >= share


@pytest.fixture(scope="module")
def cascade_run(tfidf_run: Path, transformer_run: Path, tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("cascade-run")
    overrides = [
        "model=cascade",
        f"model.members.cheap={tfidf_run / 'model'}",
        f"model.members.expensive={transformer_run / 'model'}",
        "model.max_f1_loss=null",  # the tiny transformer is worse than TF-IDF: route a share
        "model.max_expensive_share=0.4",
        "decision.calibrate=true",
        "decision.thresholds=f1",
    ]
    train_run(overrides, run_dir)
    return run_dir


def test_a_cascade_of_trained_folders_ships_both_stages(cascade_run: Path):
    manifest = json.loads((cascade_run / "model" / "topictone.json").read_text())
    assert manifest["kind"] == "cascade"
    settings = manifest["settings"]
    assert settings["members"] == {"cheap": {"kind": "tfidf"}, "expensive": {"kind": "transformer"}}
    assert set(settings["bands"]["topics"]) == set(SCHEMA.topics)
    assert settings["target"] == {"max_expensive_share": 0.4, "max_f1_loss": None}
    assert 0 < settings["fitted_expensive_share"] <= 0.4
    metrics = json.loads((cascade_run / "metrics.json").read_text())
    assert metrics["dev_crossfit"]["expensive_share"] == settings["fitted_expensive_share"]
    assert "members/expensive/model.safetensors" in manifest["files"]


def test_the_expensive_stage_reads_only_the_routed_texts(cascade_run: Path, monkeypatch):
    cascade = infer.load(cascade_run / "model")
    assert isinstance(cascade, CascadePredictor)
    texts = demo_texts("dev")
    clean = cascade.preprocess(texts)
    routed = cascade.routed(clean)
    assert 0 < routed.sum() < len(texts), "the demo run should route some texts, not all"
    cheap = cascade.cheap.predict_scores_clean(clean)
    expensive = cascade.expensive.predict_scores_clean(clean)
    read: list[str] = []
    original = cascade.expensive.predict_scores_clean

    def recording(chosen: list[str]):
        read.extend(chosen)
        return original(chosen)

    monkeypatch.setattr(cascade.expensive, "predict_scores_clean", recording)
    topics, tones = cascade.predict_scores(texts)
    assert read == [t for t, go in zip(clean, routed, strict=True) if go]
    merged = [np.where(routed[:, None], e, c) for c, e in zip(cheap, expensive, strict=True)]
    expected = cascade.calibration.apply(tuple(merged))
    np.testing.assert_allclose(topics, expected[0], atol=1e-6)
    np.testing.assert_allclose(tones, expected[1], atol=1e-6)


def test_a_cascade_predicts_alike_through_the_api_the_cli_and_its_predictions(
    cascade_run: Path, cli, tmp_path
):
    cascade = infer.load(cascade_run / "model")
    texts = demo_texts("dev")
    predicted = cascade.predict(texts)
    rows = [json.loads(line) for line in (cascade_run / "predictions" / "dev.jsonl").open()]
    assert [r["prediction"]["topics"] for r in rows] == [p.topics for p in predicted]
    out = tmp_path / "dev.predictions.jsonl"
    done = cli(
        "infer", f"model={cascade_run / 'model'}", f"input={DEMO / 'dev.jsonl'}", f"output={out}"
    )
    assert done.returncode == 0, done.stderr
    written = [json.loads(line)["prediction"] for line in out.open()]
    assert [w["topics"] for w in written] == [p.topics for p in predicted]
    assert [w["tone"] for w in written] == [p.tone for p in predicted]
    explained = cascade.predict(texts[:1], explain=True)[0]
    assert set(explained.explanation) <= {*explained.topics, explained.tone}


def test_a_cascade_serves(cascade_run: Path):
    pytest.importorskip("fastapi", reason="the HTTP service needs topictone[serve]")
    from fastapi.testclient import TestClient

    from topictone.infer.service.app import create_app

    cascade = infer.load(cascade_run / "model")
    texts = demo_texts("dev")[:8]
    with TestClient(create_app(cascade, cascade_run / "model")) as client:
        response = client.post("/predict", json={"texts": texts})
    assert response.status_code == 200, response.text
    served = [p["topics"] for p in response.json()["predictions"]]
    assert served == [p.topics for p in cascade.predict(texts)]


def test_both_stages_trained_in_the_run_fit_the_bands_out_of_fold(tmp_path):
    expensive = [o.replace("model.", "model.members.expensive.", 1) for o in FAST_TFIDF]
    overrides = [
        "model=cascade",
        "model@model.members.expensive=tfidf",
        *[o.replace("model.", "model.members.cheap.", 1) for o in FAST_TFIDF],
        *expensive,
        "model.members.cheap.topic_C=0.05",  # a weaker cheap stage
        "model.max_expensive_share=0.5",
        "decision.calibrate=true",
        "decision.thresholds=f1",
        "decision.oof_folds=3",
        "decision.use_dev=false",
    ]
    metrics = train_run(overrides, tmp_path)
    assert metrics["dev_crossfit"]["fitted_with_oof_train_texts"] > 0
    assert 0.0 <= metrics["dev_crossfit"]["expensive_share"] <= 0.5
    cascade = infer.load(tmp_path / "model")
    assert cascade.kind == "cascade" and cascade.fitted_share <= 0.5


def test_a_cascade_needs_its_two_stages_and_a_target(tfidf_run: Path, tmp_path):
    model = str(tfidf_run / "model")
    with pytest.raises(TopictoneError, match="two stages, cheap and expensive"):
        train_run(["model=cascade", f"+model.members.third={model}"], tmp_path / "a")
    with pytest.raises(TopictoneError, match="set one or both"):
        overrides = [f"model.members.{s}={model}" for s in ("cheap", "expensive")]
        train_run(["model=cascade", *overrides, "model.max_f1_loss=null"], tmp_path / "b")
    with pytest.raises(TopictoneError, match="each in \\[0, 1\\]"):
        overrides = [f"model.members.{s}={model}" for s in ("cheap", "expensive")]
        train_run(["model=cascade", *overrides, "model.max_f1_loss=2"], tmp_path / "c")
    with pytest.raises(TopictoneError, match="routes by one of \\('text', 'head'\\)"):
        overrides = [f"model.members.{s}={model}" for s in ("cheap", "expensive")]
        train_run(["model=cascade", *overrides, "model.route_by=word"], tmp_path / "d")


def test_an_exported_cascade_runs_its_transformer_on_onnx_runtime(cascade_run: Path, tmp_path):
    pytest.importorskip("onnxruntime", reason="ONNX Runtime needs topictone[onnx]")
    pytest.importorskip("onnxscript", reason="the export needs topictone[export]")
    import shutil

    from topictone.infer.export import export

    folder = shutil.copytree(cascade_run / "model", tmp_path / "model")
    torch_run = infer.load(folder, runtime="torch")
    result = export(folder)
    assert result["graph"] == "members/expensive/model.onnx"
    on_onnx = infer.load(folder, runtime="onnx")  # the resealed folder verifies
    assert on_onnx.expensive.runner.runtime == "onnx"
    assert on_onnx.cheap.kind == "tfidf"
    texts = demo_texts("dev")
    for mine, theirs in zip(
        on_onnx.predict_scores(texts), torch_run.predict_scores(texts), strict=True
    ):
        np.testing.assert_allclose(mine, theirs, atol=1e-4)


@pytest.mark.slow  # Ray's local cluster starts in about 30 s
def test_a_cascade_runs_on_the_ray_engine_as_in_the_cli(tfidf_run: Path, tmp_path, cli):
    pytest.importorskip("ray.data", reason="engine=ray needs Ray Data: topictone[scale]")
    stages = [f"model.members.{name}={tfidf_run / 'model'}" for name in ("cheap", "expensive")]
    share = ["model.max_f1_loss=null", "model.max_expensive_share=0.5"]
    train_run(["model=cascade", *stages, *share, "decision.thresholds=f1"], tmp_path / "run")
    model, source = tmp_path / "run" / "model", DEMO / "test.jsonl"
    single = tmp_path / "cli.jsonl"
    done = cli("infer", "progress=false", f"model={model}", f"input={source}", f"output={single}")
    assert done.returncode == 0, done.stderr
    ray = ["engine=ray", "engine.actors=2", "engine.format=jsonl", "progress=false"]
    out = tmp_path / "ray"
    done = cli("infer", *ray, f"model={model}", f"input={source}", f"output={out}")
    assert done.returncode == 0, done.stderr
    lines = [line for p in sorted(out.iterdir()) for line in p.read_text().splitlines()]
    assert lines == single.read_text().splitlines()


def test_a_cascade_without_fitted_bands_saves_null_and_sends_every_text_on(tfidf_run, tmp_path):
    stages = [f"model.members.{name}={tfidf_run / 'model'}" for name in ("cheap", "expensive")]
    train_run(
        ["model=cascade", *stages, "decision.calibrate=false", "model.route_by=head"], tmp_path
    )
    raw = (tmp_path / "model" / "topictone.json").read_text()
    assert "Infinity" not in raw and json.loads(raw)["settings"]["bands"] is None
    assert json.loads(raw)["settings"]["route_by"] == "head"
    cascade = infer.load(tmp_path / "model")
    assert cascade.route_by == "head"
    assert cascade.routed(cascade.preprocess(demo_texts("dev"))).all()


def test_route_by_head_takes_only_the_unsure_heads_from_the_expensive_stage():
    bands = Bands(
        {"defence": (0.3, 0.7), "counterterrorism": (0.4, 0.6), "technology": (0.5, 0.5)}, 0.2
    )
    cheap = (
        np.array([[0.5, 0.1, 0.9], [0.9, 0.1, 0.1], [0.9, 0.5, 0.1]]),
        np.array([[0.8, 0.1, 0.1], [0.45, 0.4, 0.15], [0.4, 0.35, 0.25]]),
    )
    expensive = (np.full((3, 3), 0.99), np.tile([0.0, 0.0, 1.0], (3, 1)))
    unsure = bands.unsure(SCHEMA, cheap)
    by_head = decided_by("head", unsure)
    assert by_head[0].tolist() == [[True, False, False], [False] * 3, [False, True, False]]
    assert by_head[1].tolist() == [False, True, True]
    topics, tones = mixed(cheap, expensive, by_head)
    assert topics.tolist() == [[0.99, 0.1, 0.9], [0.9, 0.1, 0.1], [0.9, 0.99, 0.1]]
    assert tones[:, 2].tolist() == [0.1, 1.0, 1.0]
    # Whole: a topic is unsure; for its tone alone: the second text.
    assert [r.tolist() for r in reads(by_head)] == [[True, False, True], [False, True, False]]
    # By text, every score of a routed text is the expensive stage's.
    by_text = mixed(cheap, expensive, decided_by("text", unsure))
    assert (by_text[0] == 0.99).all() and (by_text[1][:, 2] == 1.0).all()
    assert reads(decided_by("text", unsure))[1].sum() == 0


def test_bands_fitted_by_head_send_on_only_the_unsure_tones():
    """Topics the cheap stage gets right everywhere, its tone a coin flip on some texts:
    by head, the bands send on those texts (for their tone) and keep the expensive F1."""
    cheap, expensive, truth, sure = synthetic()
    cheap = (0.1 + 0.8 * truth[0], cheap[1])
    bands, share = fit_bands(SCHEMA, cheap, expensive, truth, None, 0.01, "head")
    topics, tone = decided_by("head", bands.unsure(SCHEMA, cheap))
    assert not topics.any() and share == tone.mean()
    assert tone[~sure].mean() > 0.9 and tone[sure].mean() < 0.1
    kept = _f1s(SCHEMA, mixed(cheap, expensive, (topics, tone)), truth)
    for mine, best in zip(kept, _f1s(SCHEMA, expensive, truth), strict=True):
        assert mine >= best - 0.01


def long_texts() -> list[str]:
    texts = demo_texts("dev")
    return [" ".join(texts[i : i + 4]) for i in range(0, 24, 4)] + texts[:4]


def test_a_transformers_tone_reader_reads_one_window_for_the_same_tone(transformer_run: Path):
    full = infer.load(transformer_run / "model")
    assert full.tone_reader() is full, "a tone averaged over windows needs them all"
    full.tone_pooling = "first"
    reader = full.tone_reader()
    assert reader is not full and reader.max_windows == 1 and full.max_windows == 4
    clean = full.preprocess(long_texts())
    assert max(len(doc) for doc in full.encode(clean)) > 1, "some texts must span windows"
    assert all(len(doc) == 1 for doc in reader.encode(clean))
    np.testing.assert_allclose(
        reader.predict_scores_clean(clean)[1], full.predict_scores_clean(clean)[1], atol=1e-5
    )


def test_a_cascade_by_head_reads_a_tone_alone_from_the_first_window(
    tfidf_run: Path, transformer_run: Path, monkeypatch
):
    cheap, expensive = infer.load(tfidf_run / "model"), infer.load(transformer_run / "model")
    expensive.tone_pooling = "first"
    clean = cheap.preprocess(long_texts())
    scores = cheap.predict_scores_clean(clean)
    # Bands that leave some texts unsure of a topic, some of the tone alone.
    centre = float(np.median(scores[0][:, 0]))
    margin = float(np.median(tone_margins(scores[1])))
    bands = Bands({**{t: (0.0, 0.0) for t in SCHEMA.topics}, "defence": (0.0, centre)}, margin)
    cascade = CascadePredictor(SCHEMA, cheap, expensive, bands, route_by="head")
    every = {"cheap": scores, "expensive": expensive.predict_scores_clean(clean)}
    whole, lead = cascade.reads(clean)
    assert whole.any() and lead.any()
    windows: list[int] = []
    reader = expensive.tone_reader()
    original = reader.encode

    def counting(texts):
        docs = original(texts)
        windows.extend(len(doc) for doc in docs)
        return docs

    monkeypatch.setattr(reader, "encode", counting)
    monkeypatch.setattr(expensive, "tone_reader", lambda: reader)
    topics, tones = cascade.predict_scores_clean(clean)
    assert windows == [1] * int(lead.sum()), "the tone alone reads one window a text"
    expected = cascade.combine(every)  # as fitted: the expensive stage read every window
    np.testing.assert_allclose(topics, expected[0], atol=1e-5)
    np.testing.assert_allclose(tones, expected[1], atol=1e-5)
