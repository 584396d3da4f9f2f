"""The frozen-encoder kind on a tiny random BERT (plain and in sentence-transformers layout)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import DEMO, train_run

from topictone import infer
from topictone.infer.errors import TopictoneError


def encoder_overrides(backbone: Path, cache: Path) -> list[str]:
    return [
        "model=encoder",
        f"model.backbone={backbone}",
        f"model.cache_dir={cache}",
        "model.dtype=float32",
        "model.max_length=32",
        "model.stride=8",
        "model.max_windows=3",
        "model.progress=false",
        "decision.calibrate=true",
        "decision.thresholds=f1",
    ]


@pytest.fixture(scope="module")
def encoder_run(tmp_path_factory: pytest.TempPathFactory, tiny_backbone: Path) -> Path:
    run_dir = tmp_path_factory.mktemp("encoder-run")
    train_run(encoder_overrides(tiny_backbone, run_dir / "cache"), run_dir)
    return run_dir


def sentence_transformers_folder(backbone: Path, folder: Path) -> Path:
    """The tiny BERT laid out as sentence-transformers saves a model: Pooling, Dense, Normalize."""
    import torch
    from safetensors.torch import save_file

    shutil.copytree(backbone, folder)
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {
            "idx": 1,
            "name": "1",
            "path": "1_Pooling",
            "type": "sentence_transformers.models.Pooling",
        },
        {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"},
        {
            "idx": 3,
            "name": "3",
            "path": "3_Normalize",
            "type": "sentence_transformers.models.Normalize",
        },
    ]
    (folder / "modules.json").write_text(json.dumps(modules))
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(
        json.dumps({"word_embedding_dimension": 32, "pooling_mode_mean_tokens": True})
    )
    (folder / "2_Dense").mkdir()
    (folder / "2_Dense" / "config.json").write_text(
        json.dumps(
            {
                "in_features": 32,
                "out_features": 8,
                "bias": True,
                "activation_function": "torch.nn.modules.activation.Tanh",
            }
        )
    )
    torch.manual_seed(0)
    save_file(
        {"linear.weight": torch.randn(8, 32), "linear.bias": torch.randn(8)},
        folder / "2_Dense" / "model.safetensors",
    )
    (folder / "config_sentence_transformers.json").write_text(
        json.dumps({"prompts": {"Classification": "task: classification | query: "}})
    )
    return folder


def test_encoder_run_saves_a_folder_that_predicts_the_same(encoder_run):
    manifest = json.loads((encoder_run / "model" / "topictone.json").read_text())
    assert manifest["kind"] == "encoder"
    assert manifest["calibration"]["method"] == "platt"
    assert {"heads.safetensors", "encoder/model.safetensors"} <= set(manifest["files"])
    saved = [json.loads(line) for line in (encoder_run / "predictions" / "dev.jsonl").open()]
    texts = [json.loads(line)["text"] for line in Path("data/demo/dev.jsonl").open()]
    predictor = infer.load(encoder_run / "model")
    for row, prediction in zip(saved, predictor.predict(texts), strict=True):
        assert prediction.topics == row["prediction"]["topics"]
        assert prediction.topic_scores == pytest.approx(row["prediction"]["topic_scores"], abs=1e-5)
        assert prediction.tone == row["prediction"]["tone"]


def test_embeddings_are_cached_by_text(tiny_backbone, tmp_path):
    from topictone.train.fitters.encoder import EncoderFitter

    fitter = EncoderFitter(
        backbone=str(tiny_backbone),
        cache_dir=str(tmp_path),
        dtype="float32",
        max_length=32,
        stride=8,
        progress=False,
    )
    encoder = fitter.encoder()
    first = encoder.embed(["Army tests a new missile", "सेना ने मिसाइल का परीक्षण किया"])
    calls = []
    encoder._encode = lambda pieces: calls.append(pieces)  # any new embedding would land here
    again = fitter.encoder()
    again._encode = encoder._encode
    assert np.array_equal(again.embed(["सेना ने मिसाइल का परीक्षण किया"]), first[1:])
    assert calls == []
    assert list((tmp_path / "embeddings").glob("*.sqlite"))


def test_long_texts_become_prompted_windows(tiny_backbone):
    from topictone.infer.predictors.encoder import load_encoder

    encoder = load_encoder(tiny_backbone, max_length=16, stride=4, max_windows=3, prompt="q: ")
    long_text = " ".join(["missile"] * 10 + ["cyber"] * 10 + ["terror"] * 30)
    [pieces] = encoder.windows([long_text])
    assert len(pieces) == 3 and all(p.startswith("q: ") for p in pieces)
    assert pieces[0] != pieces[1] and "cyber" in pieces[2]
    assert not any("terror" in p for p in pieces)  # only the first windows: bounded cost
    [short] = encoder.windows(["Army tests a missile"])
    assert short == ["q: Army tests a missile"]
    window_ids = encoder.tokenizer(pieces, truncation=False)["input_ids"]
    assert max(len(ids) for ids in window_ids) <= 16


def test_sentence_transformers_layout_is_read_as_data(tiny_backbone, tmp_path):
    from topictone.infer.predictors.encoder import load_encoder

    folder = sentence_transformers_folder(tiny_backbone, tmp_path / "st")
    encoder = load_encoder(folder, prompt_name="Classification", max_length=32, stride=8)
    vectors = encoder.embed(["Army tests a new missile", "Hackers hit a bank"])
    assert vectors.shape == (2, 8)
    assert np.linalg.norm(vectors, axis=1) == pytest.approx(1.0, abs=1e-5)
    assert encoder.prompt == "task: classification | query: "
    modules = json.loads((folder / "modules.json").read_text())
    modules[1]["type"] = "os.system"
    (folder / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(TopictoneError, match=r"unsupported module type 'os\.system'"):
        load_encoder(folder)
    modules[1] = {**modules[2], "path": "../../etc"}
    (folder / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(TopictoneError, match="leaves the model folder"):
        load_encoder(folder)


def test_encoder_trains_on_a_sentence_transformers_folder(tiny_backbone, tmp_path):
    folder = sentence_transformers_folder(tiny_backbone, tmp_path / "st")
    metrics = train_run(
        [*encoder_overrides(folder, tmp_path / "cache"), "report=false"], tmp_path / "run"
    )
    assert metrics["dev"]["n"] == 60
    assert infer.load(tmp_path / "run" / "model").encoder.normalize


def test_a_missing_encoder_is_one_line(tmp_path):
    from topictone.train.fitters.encoder import resolve_encoder

    with pytest.raises(TopictoneError, match="fetch_embeddinggemma"):
        resolve_encoder("google/embeddinggemma-300m", cache_dir=tmp_path)


def test_labels_never_predicted_are_named(tfidf_run):
    from types import SimpleNamespace

    from topictone.infer.schema import Prediction
    from topictone.train.metrics.splits import never_predicted

    predictor = infer.load(tfidf_run / "model")

    def p(topics, tone):
        return Prediction(topics, {}, tone, {})

    evaluation = SimpleNamespace(predictions=[p(["defence"], "negative"), p([], "neutral")])
    assert never_predicted(predictor, {"dev": evaluation}) == {
        "dev": ["counterterrorism", "technology", "positive"]
    }
    full = SimpleNamespace(
        predictions=[
            p(["defence", "counterterrorism", "technology"], t) for t in predictor.schema.tones
        ]
    )
    assert never_predicted(predictor, {"dev": full}) == {}


def test_an_encoder_joins_an_ensemble(encoder_run, tfidf_run, tmp_path):
    from topictone.infer.artifact import save_model
    from topictone.infer.predictors.ensemble import EnsemblePredictor

    members = {
        "tfidf": infer.load(tfidf_run / "model"),
        "encoder": infer.load(encoder_run / "model"),
    }
    folder = save_model(EnsemblePredictor(members["tfidf"].schema, members), tmp_path / "ensemble")
    texts = ["Army tests a new missile", "हैकरों ने बैंक पर साइबर हमला किया"]
    expected = (
        members["tfidf"].predict_scores(texts)[0] + members["encoder"].predict_scores(texts)[0]
    ) / 2
    assert infer.load(folder).predict_scores(texts)[0] == pytest.approx(expected, abs=1e-6)


def test_an_ensemble_of_trained_folders_embeds_each_text_once(
    encoder_run, tfidf_run, tmp_path, monkeypatch
):
    """A loaded encoder member gets the embedding cache: a second run embeds nothing."""
    from topictone.infer.predictors.encoder import SentenceEncoder

    monkeypatch.setenv("TOPICTONE_CACHE", str(tmp_path / "cache"))
    overrides = [
        "model=ensemble_encoder",
        f"model.members.tfidf={tfidf_run / 'model'}",
        f"model.members.encoder={encoder_run / 'model'}",
        "report=false",
    ]
    train_run(overrides, tmp_path / "first")
    assert list((tmp_path / "cache" / "embeddings").glob("*.sqlite"))

    def no_network(self, pieces, progress=False):
        raise AssertionError(f"embedded {len(pieces)} windows again")

    monkeypatch.setattr(SentenceEncoder, "_embed_pieces", no_network)
    train_run(overrides, tmp_path / "again")
    first, again = (
        json.loads((tmp_path / r / "metrics.json").read_text()) for r in ("first", "again")
    )
    assert again == first


def test_window_pooling_rules(encoder_run):

    predictor = infer.load(encoder_run / "model", max_windows=3)
    texts = [" ".join(["missile"] * 20 + ["cyber"] * 40), "Army tests a missile"]
    vectors, owner = predictor.encoder.embed_windows(texts)
    assert owner.tolist().count(0) == 3 and owner.tolist().count(1) == 1
    window_topic, window_tone = predictor.head_logits(vectors)
    predictor.topic_pooling, predictor.tone_pooling = "max", "first"
    topic, tone = predictor.logits_clean(texts)
    assert topic[0] == pytest.approx(window_topic[:3].max(axis=0))
    assert tone[0] == pytest.approx(window_tone[0])
    assert topic[1] == pytest.approx(window_topic[3]) and tone[1] == pytest.approx(window_tone[3])
    predictor.topic_pooling = predictor.tone_pooling = "mean"
    mean_topic, _ = predictor.logits_clean(texts)
    expected, _ = predictor.head_logits(predictor.encoder.embed(texts))
    assert mean_topic == pytest.approx(expected)


@pytest.mark.parametrize(
    "layout", [{"dense": [{"bias": False, "activation": "os.system"}]}, {"prompt": "q: "}]
)
def test_a_malformed_encoder_layout_is_one_line(encoder_run, tmp_path, layout):
    from test_artifact_safety import reseal

    folder = Path(shutil.copytree(encoder_run / "model", tmp_path / "model"))
    path = folder / "encoder" / "topictone_encoder.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **layout}))
    if "prompt" in layout:
        path.write_text(json.dumps({"prompt": "q: "}))
    reseal(folder)
    with pytest.raises(TopictoneError, match=r"topictone_encoder\.json"):
        infer.load(folder)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m["settings"].pop("max_length"), r"max_length must be an integer .* got None"),
        (lambda m: m["settings"].update(batch_size="many"), "batch_size must be an integer"),
        (lambda m: m["settings"].update(max_windows=10**9), r"max_windows .* \[1, 256\]"),
    ],
)
def test_encoder_settings_are_checked(encoder_run, tmp_path, edit, message):
    from test_artifact_safety import edit_manifest

    folder = Path(shutil.copytree(encoder_run / "model", tmp_path / "model"))
    edit_manifest(folder, edit)
    with pytest.raises(TopictoneError, match=message):
        infer.load(folder)


def test_a_garbage_heads_file_is_one_line(encoder_run, tmp_path):
    from test_artifact_safety import reseal

    folder = Path(shutil.copytree(encoder_run / "model", tmp_path / "model"))
    (folder / "heads.safetensors").write_bytes(b"\xff" * 64)
    reseal(folder)
    with pytest.raises(TopictoneError, match="unreadable safetensors file"):
        infer.load(folder)


def test_the_encoders_tone_reader_embeds_one_window_for_the_same_tone(encoder_run: Path):
    full = infer.load(encoder_run / "model")
    assert full.tone_reader() is full, "a tone from averaged windows needs them all"
    full.tone_pooling = "first"
    reader = full.tone_reader()
    assert reader.encoder.max_windows == 1 and full.encoder.max_windows == 3
    demo = [json.loads(line)["text"] for line in open(DEMO / "dev.jsonl", encoding="utf-8")]
    clean = full.preprocess([" ".join(demo[i : i + 4]) for i in range(0, 20, 4)])
    assert max(len(pieces) for pieces in full.encoder.windows(clean)) > 1
    assert all(len(pieces) == 1 for pieces in reader.encoder.windows(clean))
    np.testing.assert_allclose(
        reader.predict_scores_clean(clean)[1], full.predict_scores_clean(clean)[1], atol=1e-6
    )
