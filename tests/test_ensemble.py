"""The ensemble kind: members trained in one run or loaded from their folders, one contract."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import FAST_TFIDF, compose_train, tiny_transformer_overrides, train_run

from topictone import infer
from topictone.infer.errors import TopictoneError
from topictone.infer.predictors.ensemble import EnsemblePredictor
from topictone.infer.schema import LabelSchema


def demo_texts(split: str) -> list[str]:
    path = Path(__file__).resolve().parent.parent / "data" / "demo" / f"{split}.jsonl"
    return [json.loads(line)["text"] for line in path.open(encoding="utf-8")]


def member_overrides(backbone: Path) -> list[str]:
    tfidf = [o.replace("model.", "model.members.tfidf.", 1) for o in FAST_TFIDF]
    transformer = [
        o.replace("model.", "model.members.transformer.", 1)
        for o in tiny_transformer_overrides(backbone)
        if o.startswith("model.")
    ]
    return ["model=ensemble", *tfidf, *transformer]


def test_ensemble_trains_its_members_and_ships_them_in_one_folder(tiny_backbone, tmp_path):
    overrides = [*member_overrides(tiny_backbone), "decision.calibrate=true"]
    metrics = train_run([*overrides, "decision.thresholds=f1"], tmp_path)
    assert {"dev_before_fitting", "dev_crossfit", "dev", "test"} <= set(metrics)
    model = tmp_path / "model"
    manifest = json.loads((model / "topictone.json").read_text())
    assert manifest["kind"] == "ensemble"
    assert manifest["calibration"]["method"] == "platt"  # over the members' mean
    assert manifest["settings"]["members"] == {
        "tfidf": {"kind": "tfidf", "weight": 0.5},
        "transformer": {"kind": "transformer", "weight": 0.5},
    }
    assert "members/transformer/model.safetensors" in manifest["files"]
    # Each member is a complete, calibrated model folder of its own.
    tfidf = infer.load(model / "members" / "tfidf")
    transformer = infer.load(model / "members" / "transformer")
    assert not tfidf.calibration.is_identity()
    assert not transformer.calibration.is_identity()

    ensemble = infer.load(model)
    texts = demo_texts("dev")
    scores = ensemble.predict_scores(texts)
    parts = zip(tfidf.predict_scores(texts), transformer.predict_scores(texts), strict=True)
    mean = tuple((a + b) / 2 for a, b in parts)
    for mine, expected in zip(scores, ensemble.calibration.apply(mean), strict=True):
        np.testing.assert_allclose(mine, expected, atol=1e-6)
    rows = [json.loads(line) for line in (tmp_path / "predictions" / "dev.jsonl").open()]
    assert [r["prediction"]["topics"] for r in rows] == [p.topics for p in ensemble.predict(texts)]


def test_ensemble_of_trained_folders_with_weights(tfidf_run, transformer_run, tmp_path, cli):
    overrides = [
        "model=ensemble",
        f"model.members.tfidf={tfidf_run / 'model'}",
        f"model.members.transformer={transformer_run / 'model'}",
        "model.weights.tfidf=3",
    ]
    train_run(overrides, tmp_path)
    ensemble = infer.load(tmp_path / "model")
    assert ensemble.weights == {"tfidf": 0.75, "transformer": 0.25}
    texts = ["Army tests a new missile", "सेना ने नई मिसाइल का परीक्षण किया"]
    parts = [infer.load(r / "model").predict_scores(texts)[0] for r in (tfidf_run, transformer_run)]
    # The member folders were loaded, not retrained: the same scores, mixed 3:1.
    np.testing.assert_allclose(
        ensemble.predict_scores(texts)[0], 0.75 * parts[0] + 0.25 * parts[1], atol=1e-6
    )
    explained = ensemble.predict(texts[:1], explain=True)[0]
    assert set(explained.explanation) == {*explained.topics, explained.tone}
    # The batch CLI serves it like any model folder.
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    out = tmp_path / "out.jsonl"
    result = cli("infer", f"model={tmp_path / 'model'}", f"input={source}", f"output={out}")
    assert result.returncode == 0, result.stderr
    assert len(out.read_text().splitlines()) == 2
    # So does the evaluation command, with the same figures as the run.
    report = tmp_path / "evaluation"
    result = cli(
        "topictone.train.evaluate", f"model={tmp_path / 'model'}", "data=demo", f"out={report}"
    )
    assert result.returncode == 0, result.stderr
    assert json.loads((report / "metrics.json").read_text())["dev"] == pytest.approx(
        json.loads((tmp_path / "metrics.json").read_text())["dev"]
    )


def test_ensemble_errors(tfidf_run, tmp_path):
    tfidf = infer.load(tfidf_run / "model")
    with pytest.raises(TopictoneError, match="one per member"):
        EnsemblePredictor(tfidf.schema, {"a": tfidf}, {"b": 1.0})
    with pytest.raises(TopictoneError, match="member 'a' has labels"):
        EnsemblePredictor(LabelSchema(("defence",), ("positive", "negative")), {"a": tfidf})
    cfg = compose_train(["model=ensemble", "model.members.tfidf=42"])
    assert cfg.model.members.tfidf == 42
    with pytest.raises(TopictoneError, match=r"model\.members\.tfidf: give a model config"):
        train_run(["model=ensemble", "model.members.tfidf=42"], tmp_path)
    # A member's weights are covered by the ensemble's checksums.
    infer.save_model(EnsemblePredictor(tfidf.schema, {"a": tfidf}), tmp_path / "ens")
    with (tmp_path / "ens" / "members" / "a" / "vocabulary.json").open("a") as handle:
        handle.write(" ")
    with pytest.raises(TopictoneError, match="checksum does not match"):
        infer.load(tmp_path / "ens")
