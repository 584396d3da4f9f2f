"""The transformer path on a tiny random BERT: train → save → infer.load → predict → CLI."""

import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import DEMO, FAST_TFIDF, tiny_transformer_overrides, train_run

torch = pytest.importorskip("torch", reason="the transformer model needs topictone[transformer]")

from topictone import infer  # noqa: E402
from topictone.infer.errors import TopictoneError  # noqa: E402
from topictone.infer.predictors.network import pool  # noqa: E402
from topictone.infer.predictors.windows import encode_windows  # noqa: E402


def demo_texts(split="test"):
    return [json.loads(line)["text"] for line in (DEMO / f"{split}.jsonl").open(encoding="utf-8")]


def test_model_folder_is_self_contained(transformer_run, tiny_backbone, tmp_path):
    model = transformer_run / "model"
    for name in (
        "topictone.json",
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "README.md",
    ):
        assert (model / name).is_file(), name
    manifest = json.loads((model / "topictone.json").read_text())
    assert manifest["kind"] == "transformer"
    assert (
        manifest["settings"]["max_length"] == 32 and manifest["settings"]["topic_pooling"] == "max"
    )
    assert set(manifest["files"]) >= {"model.safetensors", "config.json", "tokenizer.json"}
    # Loads from a copy while the backbone folder it was trained from is gone.
    moved = shutil.copytree(model, tmp_path / "model")
    hidden = tiny_backbone.rename(tiny_backbone.with_name("hidden-backbone"))
    try:
        assert infer.load(moved).predict(["Army tests a missile"])[0].tone
    finally:
        hidden.rename(tiny_backbone)


def test_predictions_match_the_run_and_keep_input_order(transformer_run):
    predictor = infer.load(transformer_run / "model", batch_size=8)
    texts = demo_texts()
    together = predictor.predict_scores(texts)
    one_by_one = [predictor.predict_scores([t]) for t in texts[:12]]
    for i, (topics, tone) in enumerate(one_by_one):
        np.testing.assert_allclose(together[0][i], topics[0], atol=1e-5)
        np.testing.assert_allclose(together[1][i], tone[0], atol=1e-5)
    rows = [json.loads(line) for line in (transformer_run / "predictions/test.jsonl").open()]
    for row, prediction in zip(rows, predictor.predict(texts), strict=True):
        assert row["prediction"]["topics"] == prediction.topics
        assert row["prediction"]["tone_scores"] == pytest.approx(prediction.tone_scores, abs=1e-5)


@pytest.fixture
def keep_torch_threads():
    """`options.threads` sets torch's process-wide thread count: restore it for later tests."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_same_prediction_shape_and_cli_as_tfidf(transformer_run, tmp_path, cli, keep_torch_threads):
    out = tmp_path / "pred.jsonl"
    result = cli(
        "infer",
        f"model={transformer_run / 'model'}",
        f"input={DEMO / 'dev.jsonl'}",
        f"output={out}",
        "options.threads=1",
        "options.batch_size=16",
    )
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in out.open()]
    assert len(rows) == 60
    assert set(rows[0]["prediction"]) == {"topics", "topic_scores", "tone", "tone_scores"}
    assert list(rows[0]["prediction"]["topic_scores"]) == [
        "defence",
        "counterterrorism",
        "technology",
    ]


def test_long_texts_are_split_into_overlapping_windows(transformer_run):
    predictor = infer.load(transformer_run / "model")
    tokenizer = predictor.tokenizer
    article = max(demo_texts("train"), key=len)
    whole = tokenizer(article, add_special_tokens=False)["input_ids"]
    [windows] = encode_windows(tokenizer, [article], max_length=32, stride=8, max_windows=100)
    assert len(windows) > 1 and all(len(w) <= 32 for w in windows)
    inner = [w[1:-1] for w in windows]  # without <s> … </s>
    assert inner[0] == whole[:30]
    assert inner[1][:8] == inner[0][-8:], "consecutive windows overlap by `stride` tokens"
    [capped] = encode_windows(tokenizer, [article], max_length=32, stride=8, max_windows=2)
    assert capped == windows[:2]


def test_window_pooling_rules():
    logits = torch.tensor([[1.0, -2.0], [3.0, 0.0], [5.0, 5.0]])
    doc = torch.tensor([0, 0, 1])
    assert pool(logits, doc, 2, "max").tolist() == [[3.0, 0.0], [5.0, 5.0]]
    assert pool(logits, doc, 2, "mean").tolist() == [[2.0, -1.0], [5.0, 5.0]]
    assert pool(logits, doc, 2, "first").tolist() == [[1.0, -2.0], [5.0, 5.0]]


def test_weights_that_do_not_match_the_manifest(transformer_run, tmp_path):
    model = shutil.copytree(transformer_run / "model", tmp_path / "model")
    manifest = json.loads((model / "topictone.json").read_text())
    manifest["schema"]["topics"] = ["defence", "technology"]
    manifest["thresholds"] = {"defence": 0.5, "technology": 0.5}
    (model / "topictone.json").write_text(json.dumps(manifest))
    with pytest.raises(TopictoneError, match="labels stored with the weights"):
        infer.load(model)


def test_backbone_errors(tiny_backbone, tmp_path):
    overrides = tiny_transformer_overrides(tiny_backbone)
    with pytest.raises(
        TopictoneError, match=r"neither a local folder nor reachable.*hubs may be offline"
    ):
        train_run([*overrides, "model.backbone=no-such-org/no-such-model"], tmp_path / "a")
    with pytest.raises(TopictoneError, match="max_length=512 exceeds the backbone's limit of 128"):
        train_run([*overrides, "model.max_length=512"], tmp_path / "b")


def test_fine_tuning_further_needs_the_same_labels(transformer_run, tiny_backbone, tmp_path):
    overrides = [
        *tiny_transformer_overrides(tiny_backbone),
        f"model.init_from={transformer_run / 'model'}",
    ]
    with pytest.raises(TopictoneError, match=r"label schema .* differs from the configured one"):
        train_run(
            [
                *overrides,
                "labels.topics=[defence,counterterrorism,technology,sport]",
                "checks.min_examples=0",
            ],
            tmp_path / "a",
        )
    with pytest.raises(TopictoneError, match="not a transformer model"):
        tfidf = tmp_path / "tfidf"
        train_run(FAST_TFIDF, tfidf)
        train_run(
            [*tiny_transformer_overrides(tiny_backbone), f"model.init_from={tfidf / 'model'}"],
            tmp_path / "b",
        )


def test_same_seed_same_results(transformer_run, tiny_backbone, tmp_path):
    train_run(tiny_transformer_overrides(tiny_backbone), tmp_path)
    first = json.loads((transformer_run / "metrics.json").read_text())
    again = json.loads((tmp_path / "metrics.json").read_text())
    assert set(again) == set(first)
    for split in first:
        assert again[split] == pytest.approx(first[split])


def test_calibration_and_thresholds_travel_with_the_model(tiny_backbone, tmp_path):
    overrides = tiny_transformer_overrides(tiny_backbone)
    train_run([*overrides, "decision.calibrate=true", "decision.thresholds=f1"], tmp_path)
    manifest = json.loads((tmp_path / "model" / "topictone.json").read_text())
    calibration = manifest["calibration"]
    assert calibration["method"] == "platt"
    assert len(calibration["topics"]["scale"]) == 3
    assert set(json.loads((tmp_path / "metrics.json").read_text())) == {
        "dev_before_fitting",
        "dev_crossfit",
        "dev",
        "test",
    }
    predictor = infer.load(tmp_path / "model")
    rows = [json.loads(line) for line in (tmp_path / "predictions/dev.jsonl").open()]
    again = predictor.predict(demo_texts("dev"))
    assert [r["prediction"]["topics"] for r in rows] == [p.topics for p in again]
    # The loaded model applies the saved calibration: its scores are not the raw ones.
    clean = predictor.preprocess(demo_texts("dev"))
    raw, calibrated = predictor.raw_scores_clean(clean), predictor.predict_scores_clean(clean)
    assert np.abs(raw[0] - calibrated[0]).max() > 1e-3
    assert np.abs(raw[1] - calibrated[1]).max() > 1e-3


def test_occlusion_explanations(transformer_run):
    predictor = infer.load(transformer_run / "model")
    text = "Army test-fires a new missile while hackers attack a telecom network"
    [p] = predictor.predict([text], thresholds={"defence": 0.0}, explain=True)
    assert "defence" in p.explanation and p.tone in p.explanation
    assert all(term in text for term, _ in p.explanation["defence"])
    assert all(drop > 0 for _, drop in p.explanation["defence"])


def test_weighted_loss_ignores_unknown_labels():
    from topictone.infer.predictors.network import TopicToneModel

    class Encoder(torch.nn.Module):
        config = type("Config", (), {"hidden_size": 4})()

        def forward(self, input_ids, attention_mask):
            return type(
                "Out", (), {"last_hidden_state": input_ids.unsqueeze(-1).float().expand(-1, -1, 4)}
            )()

    torch.manual_seed(0)
    model = TopicToneModel(Encoder(), 2, 3, dropout=0.0).eval()
    inputs = {
        "input_ids": torch.tensor([[1, 2], [3, 4]]),
        "attention_mask": torch.ones(2, 2, dtype=torch.long),
        "doc_index": torch.tensor([0, 1]),
        "topic_labels": torch.tensor([[1.0, 0.0], [0.0, 1.0]]),
        "tone_labels": torch.tensor([0, 2]),
    }
    both = model(**inputs)["loss"]
    first_only = model(
        **{k: v[:1] for k, v in inputs.items() if k != "doc_index"}, doc_index=torch.tensor([0])
    )["loss"]
    masked = model(
        **inputs, topic_weight=torch.tensor([1.0, 0.0]), tone_weight=torch.tensor([1.0, 0.0])
    )["loss"]
    assert torch.allclose(masked, first_only) and not torch.allclose(both, first_only)
    unweighted = model(**inputs, topic_weight=torch.ones(2), tone_weight=torch.ones(2))["loss"]
    assert torch.allclose(unweighted, both)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"batch_size": 0}, r"option: batch_size must be an integer in \[1, 4096\], got 0"),
        ({"max_windows": 10**9}, r"max_windows must be an integer in \[1, 256\]"),
        ({"max_windows": "4"}, "max_windows must be an integer"),
        ({"threads": -2}, "threads must be an integer"),
        ({"stride": 32}, "stride 32 must be below max_length"),
        ({"max_length": 100_000}, "max_length must be an integer"),
        ({"device": "quantum"}, "option device:"),
        ({"dtype": "float16"}, r"option dtype must be one of \('float32', 'bfloat16'\)"),
        ({"bogus": 1}, r"unknown option\(s\) bogus"),
    ],
)
def test_load_options_are_checked(transformer_run, options, message):
    with pytest.raises(TopictoneError, match=message):
        infer.load(transformer_run / "model", **options)


def test_a_manifest_claiming_huge_windows_is_refused(transformer_run, tmp_path):
    from test_artifact_safety import edit_manifest

    folder = Path(shutil.copytree(transformer_run / "model", tmp_path / "model"))
    edit_manifest(folder, lambda m: m["settings"].update(max_windows=-1))
    with pytest.raises(TopictoneError, match=r"model: max_windows must be an integer"):
        infer.load(folder)


def test_huge_texts_are_cut_before_tokenising(transformer_run, monkeypatch):
    """The tokenizer never sees more than the predictor can read, and the prediction is
    that of the prefix it reads: the windows kept are the same."""
    import topictone.infer.predictors.transformer as module

    predictor = infer.load(transformer_run / "model", limits={"max_chars": 10**7})
    seen: list[int] = []
    real = module.encode_windows

    def spy(tokenizer, texts, *args, **kwargs):
        seen.extend(len(t) for t in texts)
        return real(tokenizer, texts, *args, **kwargs)

    monkeypatch.setattr(module, "encode_windows", spy)
    text = "Army tests a new missile near the border. " * 200_000  # 8.4 M characters
    huge = predictor.predict([text])[0]
    assert max(seen) <= predictor.reads_chars < len(text) // 10
    assert huge == predictor.predict([text[: predictor.reads_chars]])[0]


def test_remembered_logits_follow_the_settings(transformer_run):
    """The logits memo never serves another pooling rule's or window count's figures."""
    predictor = infer.load(transformer_run / "model")
    text = ["Army tests a new missile. " * 40 + "Hackers attack a bank's servers. " * 40]
    first = predictor.logits_clean(text)
    predictor.topic_pooling = "mean"
    assert not np.allclose(predictor.logits_clean(text)[0], first[0])
    predictor.topic_pooling = "max"
    assert np.allclose(predictor.logits_clean(text)[0], first[0])
    predictor.max_windows = 1
    assert not np.allclose(predictor.logits_clean(text)[0], first[0])


def test_bfloat16_inference_stays_close_to_float32(transformer_run):
    """dtype=bfloat16 (autocast) moves scores little; the option and the saved setting agree."""
    texts = ["Army tests a new missile near the border.", "सेना ने मिसाइल का परीक्षण किया। " * 20]
    full = infer.load(transformer_run / "model", dtype="float32")
    half = infer.load(transformer_run / "model", dtype="bfloat16")
    assert (full.runner.dtype, half.runner.dtype, half.settings()["dtype"]) == (
        "float32",
        "bfloat16",
        "bfloat16",
    )
    for ours, theirs in zip(half.predict_scores(texts), full.predict_scores(texts), strict=True):
        assert 0 < np.abs(ours - theirs).max() < 0.05


def test_gemma_style_layer_stacks_freeze_from_the_bottom():
    """embeddinggemma keeps its layers in ``layers`` (not BERT's ``encoder.layer``)."""
    from tiny_backbone import tiny_gemma

    from topictone.train.fitters.transformer import freeze_bottom_layers

    encoder = tiny_gemma()
    encoder.get_input_embeddings().weight.requires_grad_(False)
    freeze_bottom_layers(encoder, 3, embeddings_frozen=True)
    trainable = {n.split(".")[1] for n, p in encoder.named_parameters() if p.requires_grad}
    assert trainable == {"3", "weight"}  # the top layer and the final norm
    with pytest.raises(TopictoneError, match="freeze_layers=5: the backbone has 4 layers"):
        freeze_bottom_layers(encoder, 5, embeddings_frozen=True)


def test_one_epoch_without_per_epoch_evaluation(tiny_backbone, tmp_path):
    """evaluate_epochs=false: dev is scored once, after training (no eval in the history)."""
    overrides = [*tiny_transformer_overrides(tiny_backbone), "model.evaluate_epochs=false"]
    metrics = train_run([*overrides, "model.epochs=1"], tmp_path)
    history = json.loads((tmp_path / "history.json").read_text())
    assert history and not [row for row in history if "eval_loss" in row]
    assert "dev" in metrics


def test_model_files_follow_the_umask(transformer_run):
    """safetensors writes 0600 files; a model folder is as readable as the umask allows."""
    mask = os.umask(0)
    os.umask(mask)
    modes = {p.name: p.stat().st_mode & 0o777 for p in (transformer_run / "model").iterdir()}
    assert modes["model.safetensors"] == 0o666 & ~mask
    assert set(modes.values()) == {0o666 & ~mask}


def test_the_folder_is_a_hugging_face_model(transformer_run):
    import torch
    from transformers import AutoConfig, AutoModel, pipeline

    from topictone.infer.predictors.hf_auto import (
        TopicTonePreTrainedModel,  # registers the auto classes
    )

    folder = transformer_run / "model"
    config = AutoConfig.from_pretrained(folder, trust_remote_code=False, local_files_only=True)
    assert config.model_type == "topictone"
    assert config.id2label == {0: "defence", 1: "counterterrorism", 2: "technology"}
    assert config.problem_type == "multi_label_classification"
    assert config.tone_id2label == {"0": "positive", "1": "neutral", "2": "negative"}
    assert (config.topic_pooling, config.max_windows) == ("max", 4)
    model = AutoModel.from_pretrained(folder, local_files_only=True).eval()
    assert isinstance(model, TopicTonePreTrainedModel)
    # The Hugging Face model computes exactly what the predictor's runtime does.
    predictor = infer.load(folder, runtime="torch")
    texts = demo_texts("dev")[:6]
    docs = predictor.encode(predictor.preprocess(texts))
    ids, mask = [], []
    for windows in docs:
        window = windows[0]
        ids.append(window + [0] * (32 - len(window)))
        mask.append([1] * len(window) + [0] * (32 - len(window)))
    ids_np, mask_np = np.array(ids), np.array(mask)
    with torch.inference_mode():
        out = model(torch.from_numpy(ids_np), torch.from_numpy(mask_np))
    topic, tone = predictor.runner(ids_np, mask_np)
    np.testing.assert_allclose(out["topic_logits"].numpy(), topic, atol=1e-5)
    np.testing.assert_allclose(out["tone_logits"].numpy(), tone, atol=1e-5)
    with pytest.raises(Exception, match=r"cannot run; load it with infer\.load"):
        pipeline("text-classification", model=str(folder))


@pytest.mark.parametrize(
    "edit",
    [
        {"tone_id2label": {"x": "positive"}},
        {"encoder": {"model_type": "no-such-model"}},
        {"id2label": {"0": "defence"}},
    ],
)
def test_a_crafted_config_json_is_one_line(transformer_run, tmp_path, edit):
    from tests.test_artifact_safety import reseal

    folder = tmp_path / "model"
    shutil.copytree(transformer_run / "model", folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **edit}))
    reseal(folder)  # checksums and sizes pass: the config itself must be refused
    with pytest.raises(TopictoneError, match=r"config\.json: ") as caught:
        infer.load(folder, runtime="torch")
    assert "\n" not in str(caught.value)


def test_bfloat16_only_where_this_machine_has_native_kernels(monkeypatch):
    from topictone.infer.predictors import precision

    monkeypatch.setattr(precision, "native_bfloat16", lambda device=None: False)
    monkeypatch.setattr(precision, "_WARNED", set())
    with pytest.warns(RuntimeWarning, match="model.bf16 asks for bfloat16.*computing in float32"):
        assert precision.effective_dtype("bfloat16", "model.bf16") == "float32"
    with warnings.catch_warnings():  # once per setting: a run loads its encoder per fold
        warnings.simplefilter("error")
        assert precision.effective_dtype("bfloat16", "model.bf16") == "float32"
    assert precision.effective_dtype("float32", "model.bf16") == "float32"
    monkeypatch.setattr(precision, "native_bfloat16", lambda device=None: True)
    assert precision.effective_dtype("bfloat16", "model.bf16") == "bfloat16"


def test_a_saved_bfloat16_model_computes_in_float32_where_bfloat16_is_slow(
    transformer_run, tmp_path, monkeypatch
):
    """The saved dtype is a preference; a dtype passed as an option is honoured."""
    from topictone.infer.predictors import precision

    folder = shutil.copytree(transformer_run / "model", tmp_path / "model")
    manifest = json.loads((folder / "topictone.json").read_text())
    manifest["settings"]["dtype"] = "bfloat16"
    (folder / "topictone.json").write_text(json.dumps(manifest))
    monkeypatch.setattr(precision, "native_bfloat16", lambda device=None: False)
    monkeypatch.setattr(precision, "_WARNED", set())
    with pytest.warns(RuntimeWarning, match="no native kernels"):
        slow_here = infer.load(folder, runtime="torch")
    assert (slow_here.runner.dtype, slow_here.settings()["dtype"]) == ("float32", "bfloat16")
    assert infer.load(folder, runtime="torch", dtype="bfloat16").runner.dtype == "bfloat16"
    monkeypatch.setattr(precision, "native_bfloat16", lambda device=None: True)
    assert infer.load(folder, runtime="torch").runner.dtype == "bfloat16"
