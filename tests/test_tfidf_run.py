"""The whole TF-IDF path: compose config → train → run folder → infer.load → predict."""

import json
import shutil
import subprocess
import sys

import pytest
from conftest import DEMO, FAST_TFIDF, compose_train, train_run

from topictone import infer
from topictone.infer.errors import TopictoneError
from topictone.infer.schema import Prediction


def test_run_folder_holds_everything_to_reproduce(tfidf_run):
    for name in (
        "config.yaml",
        "metrics.json",
        "manifest.json",
        "model/topictone.json",
        "model/model.skops",
        "model/README.md",
        "predictions/dev.jsonl",
        "predictions/test.jsonl",
    ):
        assert (tfidf_run / name).is_file(), name
    manifest = json.loads((tfidf_run / "manifest.json").read_text())
    assert manifest["seed"] == 13
    assert set(manifest["data"]) == {
        "data/demo/train.jsonl",
        "data/demo/dev.jsonl",
        "data/demo/test.jsonl",
    }
    assert all(len(h) == 64 for h in manifest["data"].values())
    assert "scikit-learn" in manifest["versions"]
    metrics = json.loads((tfidf_run / "metrics.json").read_text())
    from sklearn.metrics import accuracy_score, f1_score

    topics = ("defence", "counterterrorism", "technology")
    for split in ("dev", "test"):
        # The saved figures are those of the saved predictions, recomputed independently.
        rows = [json.loads(line) for line in (tfidf_run / "predictions" / f"{split}.jsonl").open()]
        truth = [[t in r["topics"] for t in topics] for r in rows]
        decided = [[t in r["prediction"]["topics"] for t in topics] for r in rows]
        tones = [r["tone"] for r in rows], [r["prediction"]["tone"] for r in rows]
        expected = {
            "topics/defence_f1": f1_score([t[0] for t in truth], [d[0] for d in decided]),
            "topics/macro_f1": f1_score(truth, decided, average="macro"),
            "topics/micro_f1": f1_score(truth, decided, average="micro"),
            "topics/subset_accuracy": accuracy_score(truth, decided),
            "tone/accuracy": accuracy_score(*tones),
            "tone/macro_f1": f1_score(*tones, average="macro"),
        }
        for key, value in expected.items():
            assert metrics[split][key] == pytest.approx(value, abs=1e-9), key


def test_model_learns_the_demo_corpus(tfidf_run):
    metrics = json.loads((tfidf_run / "metrics.json").read_text())["test"]
    # Far above chance on held-out demo texts: the plumbing really trains something.
    assert metrics["topics/micro_f1"] > 0.5
    assert metrics["tone/accuracy"] > 0.45


def test_predictions_file_matches_the_loaded_model(tfidf_run):
    predictor = infer.load(tfidf_run / "model")
    rows = [json.loads(line) for line in (tfidf_run / "predictions/test.jsonl").open()]
    texts = {
        json.loads(line)["id"]: json.loads(line)["text"] for line in (DEMO / "test.jsonl").open()
    }
    assert len(rows) == len(texts)
    again = predictor.predict([texts[r["id"]] for r in rows])
    for row, prediction in zip(rows, again, strict=True):
        assert row["prediction"]["topics"] == prediction.topics
        assert row["prediction"]["tone"] == prediction.tone
        assert row["prediction"]["topic_scores"] == pytest.approx(prediction.topic_scores)


def test_python_api(tfidf_run):
    predictor = infer.load(tfidf_run / "model")
    out = predictor.predict(
        ["Army test-fires a new cruise missile", "नया स्मार्टफोन लॉन्च हुआ", "Film wins award"]
    )
    assert len(out) == 3 and all(isinstance(p, Prediction) for p in out)
    for p in out:
        assert set(p.topic_scores) == {"defence", "counterterrorism", "technology"}
        assert set(p.tone_scores) == {"positive", "neutral", "negative"}
        assert sum(p.tone_scores.values()) == pytest.approx(1.0)
        assert p.tone == max(p.tone_scores, key=p.tone_scores.get)
        assert p.topics == [t for t, s in p.topic_scores.items() if s >= 0.5]
    assert predictor.predict([]) == []
    with pytest.raises(TopictoneError):
        predictor.predict("one string")


def test_loading_a_tfidf_model_never_imports_torch(tfidf_run):
    """skops lists scikit-learn's estimators at import and used to import torch on the way
    (3 s of every load where torch is installed); the shim it went through still imports."""
    pytest.importorskip("torch", reason="checks a process where torch is installed")
    code = (
        "import sys, infer\n"
        f"model = infer.load({str(tfidf_run / 'model')!r})\n"
        "assert model.predict(['Army tests a new missile'])[0].tone\n"
        "print('torch' in sys.modules)\n"
        "import sklearn.externals.array_api_compat.torch\n"
        "print('torch' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "True"]


def test_threshold_override_and_explanations(tfidf_run):
    predictor = infer.load(tfidf_run / "model")
    text = ["Army test-fires a new cruise missile"]
    assert predictor.predict(text, thresholds={t: 0.0 for t in predictor.schema.topics})[
        0
    ].topics == list(predictor.schema.topics)
    assert (
        predictor.predict(text, thresholds={t: 1.0 for t in predictor.schema.topics})[0].topics
        == []
    )
    with pytest.raises(TopictoneError, match="unknown topic 'sport'"):
        predictor.predict(text, thresholds={"sport": 0.2})
    explained = predictor.predict(text, thresholds={"defence": 0.0}, explain=True)[0]
    assert set(explained.explanation) >= {"defence", explained.tone}
    assert explained.explanation["defence"], "decided labels get their strongest terms"


def test_same_config_and_seed_give_identical_results(tfidf_run, tmp_path):
    train_run(FAST_TFIDF, tmp_path)
    assert (tmp_path / "metrics.json").read_text() == (tfidf_run / "metrics.json").read_text()
    for split in ("dev", "test"):
        assert (tmp_path / "predictions" / f"{split}.jsonl").read_bytes() == (
            tfidf_run / "predictions" / f"{split}.jsonl"
        ).read_bytes()


def test_model_folder_errors(tfidf_run, tmp_path):
    with pytest.raises(TopictoneError, match="model folder not found"):
        infer.load(tmp_path / "nothing")
    with pytest.raises(TopictoneError, match="not a topictone model"):
        infer.load(tmp_path)
    tampered = shutil.copytree(tfidf_run / "model", tmp_path / "model")
    with (tampered / "model.skops").open("ab") as handle:
        handle.write(b"x")
    with pytest.raises(TopictoneError, match="checksum does not match"):
        infer.load(tampered)


def test_labels_are_configuration(tmp_path):
    cfg = compose_train(["labels.topics=[defence,technology]"])
    assert list(cfg.labels.topics) == ["defence", "technology"]
    # The demo data uses counterterrorism, which this schema lacks: a located error.
    from topictone.infer.errors import InputError

    with pytest.raises(InputError, match="unknown topic 'counterterrorism'"):
        train_run(["labels.topics=[defence,technology]", *FAST_TFIDF], tmp_path)


def test_calibration_and_tuned_thresholds_ship_in_the_model(tfidf_run, tmp_path):
    train_run([*FAST_TFIDF, "decision.calibrate=true", "decision.thresholds=f1"], tmp_path)
    manifest = json.loads((tmp_path / "model" / "topictone.json").read_text())
    assert manifest["calibration"]["method"] == "platt"
    assert manifest["thresholds"] != {t: 0.5 for t in manifest["thresholds"]}
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert set(metrics) == {"dev_before_fitting", "dev_crossfit", "dev", "test"}
    # Tuning on dev can only raise dev F1 per topic, and no honest estimate beats it; the
    # model folder decides the same way.
    for topic in manifest["thresholds"]:
        key = f"topics/{topic}_f1"
        assert metrics["dev"][key] >= metrics["dev_before_fitting"][key]
        assert metrics["dev"][key] >= metrics["dev_crossfit"][key]
    assert metrics["dev_crossfit"]["n"] == metrics["dev"]["n"]
    report = (tmp_path / "report" / "report.md").read_text()
    honest = f"{metrics['dev_crossfit']['topics/macro_f1']:.3f} |"
    assert "| fitted on the other folds (cross-fitted) |" in report and honest in report
    predictor = infer.load(tmp_path / "model")
    assert predictor.thresholds == manifest["thresholds"]
    rows = [json.loads(line) for line in (tmp_path / "predictions/dev.jsonl").open()]
    texts = {
        json.loads(line)["id"]: json.loads(line)["text"] for line in (DEMO / "dev.jsonl").open()
    }
    again = predictor.predict([texts[r["id"]] for r in rows])
    assert [r["prediction"]["topics"] for r in rows] == [p.topics for p in again]
    [explained] = predictor.predict(["Army tests missile"], thresholds=ALL_TOPICS, explain=True)
    assert set(explained.explanation) == {*explained.topics, explained.tone}
    for terms in explained.explanation.values():
        weights = [weight for _, weight in terms]
        assert weights == sorted(weights, reverse=True) and all(w > 0 for w in weights)
        # Inner character n-grams read "…rmy…": every piece comes from the text.
        assert all(
            term.removeprefix("lead:").strip("… ").lower() in "army tests missile"
            for term, _ in terms
        )


ALL_TOPICS = {"defence": 0.0, "counterterrorism": 0.0, "technology": 0.0}


def test_report_renders_with_figures_and_breakdowns(tfidf_run):
    report = (tfidf_run / "report" / "report.md").read_text()
    for split in ("dev", "test"):
        assert f"## {split} (60 texts)" in report
        for figure in ("per-topic", "confusion", "pr", "reliability"):
            png = tfidf_run / "report" / f"{split}-{figure}.png"
            assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            assert f"]({png.name})" in report
    assert "| lang | en | 30 |" in report and "| unit | article |" in report


def test_evaluate_entry_point_on_any_model(tfidf_run, tmp_path, cli):
    out = tmp_path / "eval"
    result = cli(
        "topictone.train.evaluate",
        f"model={tfidf_run / 'model'}",
        "data=demo",
        "split=test",
        f"out={out}",
        f"data.test={DEMO / 'test.jsonl'}",
    )
    assert result.returncode == 0, result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"] == pytest.approx(
        json.loads((tfidf_run / "metrics.json").read_text())["test"]
    )
    assert (out / "report.md").is_file() and "topics macro-F1" in result.stdout
    bad = cli("train.evaluate", "data=demo")
    assert bad.returncode == 2 and bad.stderr.startswith("error: usage:")


def test_weak_sources_are_mapped_deduplicated_and_mixed(tmp_path, capsys):
    import os

    from conftest import ROOT, with_toy_weak_source

    from topictone.train.run import run

    dev_text = json.loads((DEMO / "dev.jsonl").open().readline())["text"]
    source = tmp_path / "weak.csv"
    source.write_text(
        "headline,section\n"
        '"New chip doubles phone battery life",tech\n'
        '"Cup final ends in a draw",sport\n'
        '"Parliament session begins",politics\n'
        f'"{dev_text[:200]}",tech\n',
        encoding="utf-8",
    )
    cfg = with_toy_weak_source(compose_train(FAST_TFIDF), source)
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        run(cfg, tmp_path / "run")
    finally:
        os.chdir(cwd)
    out = capsys.readouterr().out
    assert "weak source toy: 2 rows mixed in, 1 with unmapped categories and 1 repeating" in out
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert str(source) in manifest["data"]
    assert infer.load(tmp_path / "run" / "model").predict(["New chip"])[0].topic_scores


def test_model_card_carries_metadata_data_and_buckets(tfidf_run):
    from huggingface_hub import ModelCard

    card = ModelCard.load(tfidf_run / "model" / "README.md")
    meta = card.data.to_dict()
    assert meta["license"] == "mit" and meta["library_name"] == "topictone"
    assert set(meta["language"]) == {"hi", "en"} and meta["datasets"] == ["demo"]
    metrics = json.loads((tfidf_run / "metrics.json").read_text())
    [index] = meta["model-index"]
    reported = {
        (r["dataset"]["name"], m["name"]): m["value"]
        for r in index["results"]
        for m in r["metrics"]
    }
    assert reported[("test", "topics/macro_f1")] == round(metrics["test"]["topics/macro_f1"], 4)
    manifest = json.loads((tfidf_run / "manifest.json").read_text())
    train_hash = manifest["data"]["data/demo/train.jsonl"]
    for section in ("## Training data", "## Hyper-parameters", "## Intended use", "## Limitations"):
        assert section in card.text, section
    assert f"`{train_hash[:16]}…`" in card.text
    assert '"topic_C": 4.0' in card.text  # the model's hyper-parameters, as trained
    # Per language and length, on test: one row per bucket of the demo corpus.
    rows = [line for line in card.text.splitlines() if line.startswith("| test | ")]
    assert {tuple(r.split(" | ")[1:3]) for r in rows} == {
        ("lang", "en"),
        ("lang", "hi"),
        ("unit", "article"),
        ("unit", "headline"),
    }
