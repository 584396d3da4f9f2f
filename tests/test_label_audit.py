"""`python -m topictone.train.label audit`: planted label errors come out on top."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from topictone.infer.errors import TopictoneError
from topictone.infer.schema import LabelSchema
from topictone.train.label.audit import audit_fitters
from topictone.train.label.auditor import LabelAuditor, stack_tone, stack_topics
from topictone.train.label.ingest import DATA_CFG

pytest.importorskip("cleanlab", reason="the audit needs topictone[label] (cleanlab)")

SCHEMA = LabelSchema(
    ("defence", "counterterrorism", "technology"), ("positive", "neutral", "negative")
)
TOPIC_WORDS = {
    "defence": ["army", "navy", "tank", "missile", "regiment", "frigate", "artillery"],
    "counterterrorism": ["militant", "terror", "jihadist", "extremist", "insurgent", "bomber"],
    "technology": ["smartphone", "software", "chip", "startup", "robot", "satellite"],
}
FILLER = ["city", "market", "weather", "festival", "school", "river", "cricket", "film"]
TONE_WORDS = {
    "positive": ["celebrates", "success", "wins", "praised", "boost"],
    "neutral": ["reports", "announces", "schedules", "lists", "notes"],
    "negative": ["disaster", "fails", "crisis", "killed", "collapse"],
}


def synthetic_rows(n: int, seed: int) -> list[dict]:
    """Texts whose words give their labels away: a model learns them from a few dozen."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        topics = [t for t in SCHEMA.topics if rng.random() < 0.3]
        tone = SCHEMA.tones[i % 3]
        words = [str(rng.choice(TOPIC_WORDS[t])) for t in topics for _ in range(2)]
        words += [str(w) for w in rng.choice(FILLER, 3)]
        words += [str(w) for w in rng.choice(TONE_WORDS[tone], 2, replace=False)]
        rng.shuffle(words)
        rows.append(
            {"id": f"r{i}", "text": " ".join(words) + f" {i}", "topics": topics, "tone": tone}
        )
    return rows


def plant_flips(rows: list[dict], count: int, seed: int) -> list[int]:
    """Flip one topic or change the tone of ``count`` rows; return their indices."""
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(len(rows), count, replace=False).tolist())
    for k, i in enumerate(chosen):
        row = rows[i]
        if k % 2:
            topic = SCHEMA.topics[k % 3]
            row["topics"] = sorted(set(row["topics"]) ^ {topic}, key=SCHEMA.topics.index)
        else:
            row["tone"] = SCHEMA.tones[(SCHEMA.tones.index(row["tone"]) + 1) % 3]
    return chosen


def write_rows(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), "utf-8")
    return path


@pytest.fixture(scope="module")
def noisy(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[int]]:
    rows = synthetic_rows(150, seed=0)
    flipped = plant_flips(rows, 8, seed=1)
    return write_rows(tmp_path_factory.mktemp("audit") / "train.jsonl", rows), flipped


def test_auditor_ranks_planted_flips_first(noisy):
    from topictone.train.data.labelled import read_labelled

    path, flipped = noisy
    dataset = read_labelled(path, DATA_CFG, SCHEMA)
    auditor = LabelAuditor(folds=3, seed=0).fit(dataset, SCHEMA)
    top = auditor.top(len(flipped)).tolist()
    assert len(set(top) & set(flipped)) >= 6, (top, flipped)
    assert auditor.topic_probs_.shape == (150, 3) and auditor.tone_probs_.shape == (150, 3)
    assert sorted(auditor.ranking_.tolist()) == list(range(150))
    assert len(auditor.top(0.1)) == 15 and len(auditor.top(1.0)) == 150
    flagged = auditor.top(None)
    assert set(flagged.tolist()) == set(
        np.flatnonzero(auditor.topic_issue_ | auditor.tone_issue_).tolist()
    )


def test_audit_command_writes_review_tasks_and_report(noisy, tmp_path, cli):
    path, flipped = noisy
    out = tmp_path / "review.json"
    result = cli(
        "topictone.train.label", "audit", f"data={path}", f"output={out}", "top=8", "folds=3"
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    with (tmp_path / "review.report.csv").open(encoding="utf-8") as handle:
        report = list(csv.DictReader(handle))
    assert [int(r["rank"]) for r in report] == list(range(1, 9))
    assert len({int(r["line"]) - 1 for r in report} & set(flipped)) >= 6
    assert [float(r["quality"]) for r in report] == sorted(float(r["quality"]) for r in report)
    tasks = json.loads(out.read_text("utf-8"))
    assert [t["data"]["topictone_id"] for t in tasks] == [r["id"] for r in report]
    for task, row in zip(tasks, report, strict=True):
        given, guess = task["predictions"]
        assert given["model_version"] == "given-labels"
        assert guess["model_version"] == "audit-tfidf-oof3-seed0"
        tone = [r["value"]["choices"] for r in given["result"] if r["from_name"] == "tone"]
        assert tone == [[row["given_tone"]]]
        assert task["data"]["source"] == f"{path}:{row['line']}"


def test_audit_reports_jsonl_and_refuses_a_bad_top(noisy, tmp_path, cli):
    path, _ = noisy
    out, report = tmp_path / "review.json", tmp_path / "ranked.jsonl"
    args = [f"data={path}", f"output={out}", f"report={report}", "folds=3"]
    bad = cli("train.label", "audit", *args, "top=2.5")
    assert bad.returncode == 2
    assert bad.stderr.strip() == "error: top=2.5: a share is at most 1 (a count is an integer)"
    assert not out.exists() and not report.exists()
    for option, shown in (("folds=1", "1"), ("folds=abc", "'abc'"), ("seed=1.5", "1.5")):
        bad = cli("train.label", "audit", *args, option)
        name, low = option.split("=")[0], 2 if option.startswith("folds") else 0
        expected = f"error: {name} must be an integer of at least {low}, got {shown}"
        assert (bad.returncode, bad.stderr.strip()) == (2, expected)
    assert not out.exists() and not report.exists()
    result = cli("train.label", "audit", *args, "top=0.04")
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in report.read_text("utf-8").splitlines()]
    assert len(rows) == 6 and set(rows[0]) >= {"line", "id", "given_topics", "predicted_tone"}


def test_audit_settings_come_from_the_run(tfidf_run, tmp_path):
    for folder in (tfidf_run, tfidf_run / "model"):
        [fitter], schema, origin = audit_fitters(str(folder))
        assert fitter.kind == "tfidf" and "config.yaml" in origin
        assert fitter.char_ngram_range == [2, 4] and fitter.min_df == 2
        assert schema == SCHEMA
    [fitter], schema, _ = audit_fitters(None, tfidf={"naive_bayes": True})
    assert schema is None and fitter.naive_bayes and fitter.min_df == 1
    with pytest.raises(Exception, match="neither a run folder nor a model folder"):
        audit_fitters(str(tmp_path))


def test_a_run_of_another_kind_is_refitted_beside_tfidf(tiny_backbone, tmp_path, noisy, cli):
    from conftest import train_run
    from test_encoder import encoder_overrides

    run = tmp_path / "run"
    train_run([*encoder_overrides(tiny_backbone, tmp_path / "cache"), "data=demo"], run)
    fitters, _, origin = audit_fitters(str(run / "model"))
    assert [f.kind for f in fitters] == ["tfidf", "encoder"] and "encoder model" in origin
    assert [f.kind for f in audit_fitters(str(run), own_kind=False)[0]] == ["tfidf"]
    path, flipped = noisy
    out = tmp_path / "review.json"
    args = [f"model={run}", f"data={path}", f"output={out}", "top=8", "folds=3"]
    result = cli("train.label", "audit", *args)
    assert result.returncode == 0, result.stderr
    assert "folds, TF-IDF and the encoder model of" in result.stderr
    tasks = json.loads(out.read_text("utf-8"))
    assert tasks[0]["predictions"][1]["model_version"] == "audit-tfidf+encoder-oof3-seed0"
    with (tmp_path / "review.report.csv").open(encoding="utf-8") as handle:
        lines = {int(r["line"]) - 1 for r in csv.DictReader(handle)}
    assert len(lines & set(flipped)) >= 6  # stacking leans on TF-IDF over a random encoder


@pytest.mark.parametrize(
    "edit",
    [
        {"_target_": "os.system"},
        {"_target_": None},
        {"members": {"a": {"_target_": "builtins.exec", "source": "1"}}},
        {"members": [{"_target_": "subprocess.call"}]},
        {"_target_": ...},  # no _target_ at all
    ],
)
def test_a_run_config_builds_only_topictone_fitters(tmp_path, edit, cli):
    """A run folder is a user's file: a `_target_` outside the fitters is one line, never
    imported or called."""
    model = {"_target_": "topictone.train.fitters.encoder.EncoderFitter", **edit}
    if model["_target_"] is ...:
        del model["_target_"]
    config = {"labels": {"topics": list(SCHEMA.topics), "tones": list(SCHEMA.tones)}}
    (tmp_path / "config.yaml").write_text(json.dumps({**config, "model": model}), "utf-8")
    with pytest.raises(TopictoneError, match=r"config.yaml: field 'model.*\._target_'"):
        audit_fitters(str(tmp_path))


def test_a_run_with_loaded_members_is_not_refitted_out_of_fold(tfidf_run, tmp_path):
    """Members loaded from trained folders have seen every row: refused, as training's
    decision.oof_folds refuses them; own_kind=false audits with TF-IDF alone."""
    model = {
        "_target_": "topictone.train.fitters.ensemble.EnsembleFitter",
        "_recursive_": False,
        "members": {"tfidf": str(tfidf_run / "model")},
    }
    config = {"labels": {"topics": list(SCHEMA.topics), "tones": list(SCHEMA.tones)}}
    (tmp_path / "config.yaml").write_text(json.dumps({**config, "model": model}), "utf-8")
    with pytest.raises(TopictoneError, match="loads trained members, which have seen every row"):
        audit_fitters(str(tmp_path))
    [fitter], _, _ = audit_fitters(str(tmp_path), own_kind=False)
    assert fitter.kind == "tfidf"


def test_stacking_leans_on_the_model_that_fits_the_labels():
    """Stacked probabilities follow the informative model, not the noise beside it."""
    rng = np.random.default_rng(0)
    tone = rng.integers(0, 3, 600)
    good = np.full((600, 3), 0.1)
    good[np.arange(600), tone] = 0.8
    noise = rng.dirichlet(np.ones(3), 600)
    stacked = stack_tone([noise, good], tone)
    assert stacked.shape == (600, 3) and np.allclose(stacked.sum(axis=1), 1.0)
    assert (stacked.argmax(axis=1) == tone).mean() == 1.0
    topics = (rng.random((600, 2)) < 0.3).astype(int)
    sharp = np.where(topics == 1, 0.9, 0.1)
    probs = stack_topics([rng.random((600, 2)), sharp], topics)
    assert ((probs >= 0.5) == topics).all()


def test_audit_refuses_too_few_examples(tmp_path, cli):
    rows = synthetic_rows(30, seed=2)
    for row in rows:
        row["topics"] = [t for t in row["topics"] if t != "technology"]
    rows[0]["topics"] = ["technology"]
    path = write_rows(tmp_path / "train.jsonl", rows)
    result = cli("train.label", "audit", f"data={path}", f"output={tmp_path / 'r.json'}")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "error: topic 'technology' has 1 positive rows of 30; folds=5 needs at least 5 "
        "positives and negatives"
    )


def test_measurement_plants_one_change_per_chosen_row(noisy):
    from topictone.train.data.labelled import read_labelled, targets
    from topictone.train.label.measure_audit import found, plant_errors

    dataset = read_labelled(noisy[0], DATA_CFG, SCHEMA)
    planted = plant_errors(dataset, 0.1, seed=4, n_tones=3)
    assert len(planted.rows) == 15 and set(planted.kinds) == {"topic", "tone"}
    (topics, tones), (new_topics, new_tones) = targets(dataset), targets(planted.dataset)
    changed = (topics != new_topics).sum(axis=1) + (tones != new_tones)
    assert sorted(np.flatnonzero(changed).tolist()) == sorted(planted.rows.tolist())
    assert set(changed[planted.rows].tolist()) == {1}
    topic_rows = planted.rows[planted.kinds == "topic"]
    assert (topics[topic_rows] != new_topics[topic_rows]).any(axis=1).all()
    assert found(np.array([1, 2, 3, 4]), np.array([2, 4, 9])) == (2, 0.5, 2 / 3)


def test_a_reviewed_audit_corrects_a_copy_of_the_file(noisy, tmp_path, cli):
    """audit → the reviewer accepts each out-of-fold guess → import corrects=: the planted
    changes the audit found are undone, every row it did not flag is kept byte for byte."""
    path, flipped = noisy
    review = tmp_path / "review.json"
    args = [f"data={path}", f"output={review}", "top=8", "folds=3"]
    assert cli("topictone.train.label", "audit", *args).returncode == 0
    tasks = json.loads(review.read_text("utf-8"))
    for number, task in enumerate(tasks, 1):  # as Label Studio exports an accepted guess
        guess = task["predictions"][1]["result"]
        task.update(id=number, annotations=[{"id": number, "result": guess}])
    export = tmp_path / "export.json"
    export.write_text(json.dumps(tasks), "utf-8")
    out = tmp_path / "train.corrected.jsonl"
    args = [f"input={export}", f"corrects={path}", f"output={out}"]
    result = cli("topictone.train.label", "import", *args)
    assert result.returncode == 0, result.stderr
    before, after = path.read_text("utf-8").splitlines(), out.read_text("utf-8").splitlines()
    original = [json.dumps(r) for r in synthetic_rows(150, seed=0)]
    reviewed = {int(t["data"]["source"].rsplit(":", 1)[1]) - 1 for t in tasks}
    assert all(before[i] == after[i] for i in range(150) if i not in reviewed)
    restored = [
        i for i in flipped if i in reviewed and json.loads(after[i]) == json.loads(original[i])
    ]
    assert len(restored) >= 5, (restored, flipped, sorted(reviewed))
