"""The static-embedding kind (model2vec) on a tiny static model built here, offline."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import DEMO, ROOT, train_run
from test_artifact_safety import edit_manifest, reseal

from topictone import infer
from topictone.infer.errors import TopictoneError

pytest.importorskip("tokenizers", reason="the static model needs topictone[static]")
pytest.importorskip("safetensors", reason="the static model needs topictone[static]")

TEXTS = [
    "Army tests a new missile off the Odisha coast",
    "हैकरों ने बैंक पर साइबर हमला किया, लाखों ग्राहकों का डेटा चोरी",
]


def build_tiny_static(folder: Path, dim: int = 48, vocab_size: int = 1500) -> Path:
    """A model2vec folder: a Unigram tokenizer trained on the demo texts and a random
    table (a random projection of the bag of tokens: enough signal for the heads)."""
    from safetensors.numpy import save_file
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    texts = [json.loads(line)["text"] for line in (DEMO / "train.jsonl").open(encoding="utf-8")]
    tokenizer = Tokenizer(models.Unigram())
    tokenizer.normalizer = normalizers.NFKC()
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(
        vocab_size=vocab_size, special_tokens=["<pad>", "<unk>"], unk_token="<unk>"
    )
    tokenizer.train_from_iterator(texts, trainer)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(folder / "tokenizer.json"))
    rng = np.random.default_rng(0)
    table = rng.standard_normal((tokenizer.get_vocab_size(), dim)).astype(np.float32)
    save_file({"embeddings": table}, folder / "model.safetensors")
    config = {"model_type": "model2vec", "normalize": True, "hidden_dim": dim}
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def static_overrides(backbone: Path) -> list[str]:
    return [
        "experiment=demo_static",
        f"model.backbone={backbone}",
        "model.progress=false",
        "model.topic_C=16",
        "decision.calibrate=true",
        "decision.thresholds=f1",
    ]


@pytest.fixture(scope="module")
def tiny_static(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_static(tmp_path_factory.mktemp("tiny-static") / "m2v")


@pytest.fixture(scope="module")
def static_run(tmp_path_factory: pytest.TempPathFactory, tiny_static: Path) -> Path:
    run_dir = tmp_path_factory.mktemp("static-run")
    train_run(static_overrides(tiny_static), run_dir)
    return run_dir


@pytest.fixture
def model_copy(static_run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(static_run / "model", tmp_path / "model"))


def one_line_error(folder: Path, match: str, **options) -> None:
    with pytest.raises(TopictoneError, match=match) as caught:
        infer.load(folder, **options)
    assert "\n" not in str(caught.value)


def test_static_run_saves_a_folder_that_predicts_the_same(static_run):
    manifest = json.loads((static_run / "model" / "topictone.json").read_text())
    assert manifest["kind"] == "static"
    assert set(manifest["files"]) == {
        "heads.safetensors",
        "static/model.safetensors",
        "static/tokenizer.json",
        "static/config.json",
    }
    assert manifest["settings"] == {"max_tokens": 2048, "batch_size": 1024, "normalize": True}
    saved = [json.loads(line) for line in (static_run / "predictions" / "dev.jsonl").open()]
    texts = [json.loads(line)["text"] for line in (DEMO / "dev.jsonl").open()]
    predictor = infer.load(static_run / "model")
    for row, prediction in zip(saved, predictor.predict(texts), strict=True):
        assert prediction.topics == row["prediction"]["topics"]
        assert prediction.topic_scores == pytest.approx(row["prediction"]["topic_scores"], abs=1e-6)
        assert prediction.tone == row["prediction"]["tone"]
    metrics = json.loads((static_run / "metrics.json").read_text())
    assert metrics["dev"]["n"] == 60


def test_english_and_hindi_texts_are_labelled(static_run):
    predictor = infer.load(static_run / "model")
    english, hindi = predictor.predict(TEXTS, explain=True)
    for prediction in (english, hindi):
        assert set(prediction.topic_scores) == set(predictor.schema.topics)
        assert sum(prediction.tone_scores.values()) == pytest.approx(1.0)
        assert prediction.tone in predictor.schema.tones
        assert set(prediction.explanation) == {*prediction.topics, prediction.tone}
    vectors = predictor.embedder.embed(TEXTS)
    assert np.linalg.norm(vectors, axis=1) == pytest.approx(1.0, abs=1e-5)


def test_a_saved_folder_round_trips(static_run, tmp_path):
    predictor = infer.load(static_run / "model")
    again = infer.load(infer.save_model(predictor, tmp_path / "again"))
    first, second = predictor.predict_scores(TEXTS), again.predict_scores(TEXTS)
    assert np.array_equal(first[0], second[0]) and np.array_equal(first[1], second[1])
    for name in ("static/model.safetensors", "static/tokenizer.json", "heads.safetensors"):
        assert (tmp_path / "again" / name).read_bytes() == (
            static_run / "model" / name
        ).read_bytes()


def test_vectors_are_model2vecs_own(static_run, tiny_static):
    """The mean of the tokens' rows, as model2vec computes it; the saved static/ folder
    is itself a model2vec folder."""
    model2vec = pytest.importorskip("model2vec")
    predictor = infer.load(static_run / "model")
    ours = predictor.embedder.embed(TEXTS)
    for folder in (tiny_static, static_run / "model" / "static"):
        theirs = model2vec.StaticModel.from_pretrained(folder).encode(TEXTS)
        assert ours == pytest.approx(theirs, abs=1e-5)


def test_prediction_imports_no_torch(static_run):
    code = (
        "import sys\n"
        "from topictone import infer\n"
        f"p = infer.load({str(static_run / 'model')!r})\n"
        f"p.predict({TEXTS!r})\n"
        "heavy = sorted(m for m in ('torch', 'transformers') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True)
    assert done.returncode == 0, done.stderr.decode()[-2000:]


def test_long_texts_are_read_up_to_max_tokens(static_run, monkeypatch):
    from topictone.infer.predictors import static

    predictor = infer.load(static_run / "model", max_tokens=40)
    embedder = predictor.embedder
    head = " ".join(["Army tests a new missile"] * 10)
    [ids] = embedder.token_ids([head + " and hackers strike a bank" * 50])
    assert len(ids) == 40
    assert embedder.embed([head])[0] == pytest.approx(
        embedder.embed([head + " cyber attack on a bank" * 50])[0]
    )
    texts = [" ".join(["missile"] * n) + " cyber" * (n % 7) for n in range(1, 60)]
    whole = embedder.embed(texts)
    monkeypatch.setattr(static, "CHUNK_TOKENS", 16)  # gathered in many small chunks
    assert embedder.embed(texts) == pytest.approx(whole, abs=1e-6)
    assert len(infer.load(static_run / "model").embedder.token_ids([head * 30])[0]) > 40


def test_a_missing_backbone_is_one_line(tmp_path, monkeypatch):
    from topictone.train.fitters.static import resolve_static

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(TopictoneError, match=r"model\.backbone=<local folder>") as caught:
        resolve_static("minishlab/potion-multilingual-128M", cache_dir=tmp_path)
    assert "minishlab--potion-multilingual-128M" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_an_encoder_as_backbone_is_one_line(tiny_backbone):
    from topictone.train.fitters.static import StaticFitter

    with pytest.raises(TopictoneError, match=r"model\.distill_from an encoder") as caught:
        StaticFitter(backbone=str(tiny_backbone)).embedder()
    assert "\n" not in str(caught.value)


def test_distilling_a_local_encoder(tiny_backbone, tmp_path, monkeypatch):
    """model.distill_from: the tiny BERT distilled by model2vec, once, into the cache."""
    pytest.importorskip("model2vec.distill", reason="distilling needs torch and skeletoken")
    from topictone.train.fitters.static import StaticFitter

    fitter = StaticFitter(distill_from=str(tiny_backbone), pca_dims=16, cache_dir=str(tmp_path))
    embedder = fitter.embedder()
    assert embedder.dimension == 16 and embedder.normalize
    assert embedder.tokenizer.id_to_token(embedder.unk_id) == "<unk>"  # model2vec's slip fixed
    built = list((tmp_path / "static").iterdir())
    assert len(built) == 1 and (built[0] / "model.safetensors").is_file()

    import model2vec.distill

    monkeypatch.setattr(model2vec.distill, "distill_from_model", None)  # a second call reuses
    again = fitter.embedder()
    assert np.array_equal(again.embed(TEXTS), embedder.embed(TEXTS))


# Hostile folders: each is refused in one line before it is used.


def put_table(folder: Path, tensors: dict) -> None:
    from safetensors.numpy import save_file

    save_file(tensors, folder / "static" / "model.safetensors")
    reseal(folder)


def table(folder: Path) -> np.ndarray:
    from safetensors.numpy import load_file

    return load_file(folder / "static" / "model.safetensors")["embeddings"]


def test_a_missing_table_is_one_line(model_copy):
    (model_copy / "static" / "model.safetensors").unlink()
    one_line_error(model_copy, "is missing")

    def unlist(manifest):
        for key in ("files", "sizes"):
            manifest[key].pop("static/model.safetensors")

    edit_manifest(model_copy, unlist)
    one_line_error(model_copy, "a static model needs its embedding table")


def test_an_oversized_table_is_one_line(model_copy, monkeypatch):
    from topictone.infer.predictors import static

    monkeypatch.setattr(static, "MAX_TABLE_BYTES", 1000)
    one_line_error(model_copy, "over the 1000 a static embedding table may take")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda t: {"embeddings": t[:, 0]}, r"must be rows x dimensions .* got shape \(\d+,\)"),
        (lambda t: {"embeddings": t[None]}, "must be rows x dimensions"),
        (lambda t: {"embeddings": t[:100]}, "the tokenizer can give token id .* has 100 rows"),
        (lambda t: {"embeddings": t[:, :10]}, r"static head 'topic_weight' must have shape"),
        (lambda t: {"embeddings": t.astype(np.float64)}, "tensor 'embeddings' is F64"),
        (lambda t: {"embeddings": t, "code": t[:1]}, "holds embeddings, mapping, weights only"),
        (lambda t: {"embeddings": np.full_like(t, np.nan)}, "values that are not finite"),
        (
            lambda t: {"embeddings": t, "mapping": np.full(len(t), len(t), dtype=np.int64)},
            "'mapping' points past the table",
        ),
        (lambda t: {"embeddings": t, "weights": np.ones(3, np.float32)}, "differ in length"),
    ],
)
def test_a_wrong_table_is_one_line(model_copy, make, message):
    put_table(model_copy, make(table(model_copy)))
    one_line_error(model_copy, message)


def test_a_garbage_table_is_one_line(model_copy):
    (model_copy / "static" / "model.safetensors").write_bytes(b"\x10" + b"\x00" * 63)
    reseal(model_copy)
    one_line_error(model_copy, "unreadable safetensors file")


def edit_tokenizer(folder: Path, edit) -> None:
    path = folder / "static" / "tokenizer.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    reseal(folder)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda t: t.update(
                pre_tokenizer={
                    "type": "Split",
                    "pattern": {"Regex": "(a+)+$"},
                    "behavior": "Isolated",
                }
            ),
            "regular expression '\\(a\\+\\)\\+\\$' is not one topictone's backbones use",
        ),
        (lambda t: t.update(model={"type": "Nothing"}), "not a usable tokenizer"),
        (lambda t: t.pop("model"), "not a tokenizer"),
    ],
)
def test_a_tokenizer_not_allowed_is_one_line(model_copy, edit, message):
    edit_tokenizer(model_copy, edit)
    one_line_error(model_copy, message)


def test_a_tokenizer_config_naming_code_is_one_line(model_copy):
    config = {"tokenizer_class": "Evil", "auto_map": {"AutoTokenizer": "evil.Tokenizer"}}
    (model_copy / "static" / "tokenizer_config.json").write_text(json.dumps(config))
    one_line_error(model_copy, "not covered by the checksums")
    edit_manifest(model_copy, lambda m: m["files"].update({"static/tokenizer_config.json": ""}))
    edit_manifest(model_copy, lambda m: m["sizes"].update({"static/tokenizer_config.json": 0}))
    reseal(model_copy)
    one_line_error(model_copy, "tokenizer_class 'Evil' refused")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m["settings"].update(max_tokens=10**9), r"max_tokens must be an integer in"),
        (lambda m: m["settings"].pop("max_tokens"), r"max_tokens .* got None"),
        (lambda m: m["settings"].update(normalize="yes"), "normalize must be true or false"),
        (lambda m: m["settings"].update(batch_size=0), r"batch_size must be an integer"),
    ],
)
def test_static_settings_are_checked(model_copy, edit, message):
    edit_manifest(model_copy, edit)
    one_line_error(model_copy, message)


def test_a_garbage_heads_file_is_one_line(model_copy):
    (model_copy / "heads.safetensors").write_bytes(b"\xff" * 64)
    reseal(model_copy)
    one_line_error(model_copy, "unreadable safetensors file")


def test_a_link_out_of_the_folder_is_refused(model_copy, tmp_path):
    outside = tmp_path / "elsewhere.json"
    shutil.move(model_copy / "static" / "tokenizer.json", outside)
    (model_copy / "static" / "tokenizer.json").symlink_to(outside)
    one_line_error(model_copy, "is a link")
