"""The command lines as a user types them: one line per error, no partial output."""

import csv
import io
import json
from pathlib import Path

import pytest
from conftest import DEMO, FAST_TFIDF, ROOT


def test_batch_cli_jsonl_keeps_every_row_and_field(tfidf_run, tmp_path, cli):
    out = tmp_path / "pred.jsonl"
    result = cli(
        "infer",
        f"model={tfidf_run / 'model'}",
        f"input={DEMO / 'test.jsonl'}",
        f"output={out}",
        "batch_size=7",
    )
    assert result.returncode == 0, result.stderr
    inputs = [json.loads(line) for line in (DEMO / "test.jsonl").open()]
    outputs = [json.loads(line) for line in out.open()]
    assert len(outputs) == len(inputs)
    for source, row in zip(inputs, outputs, strict=True):
        assert {k: row[k] for k in source} == source
        assert set(row["prediction"]) == {"topics", "topic_scores", "tone", "tone_scores"}


def test_batch_cli_csv_in_and_out_with_explanations(tfidf_run, tmp_path, cli):
    src = tmp_path / "in.csv"
    src.write_text(
        'id,body\n1,"Army tests missile"\n2,"स्मार्टफोन लॉन्च, ""AI"" चिप के साथ"\n', encoding="utf-8"
    )
    out = tmp_path / "out.csv"
    result = cli(
        "infer",
        f"model={tfidf_run / 'model'}",
        f"input={src}",
        f"output={out}",
        "text_field=body",
        "explain=true",
        "+thresholds.defence=0.0",
    )
    assert result.returncode == 0, result.stderr
    lines = out.read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("id,body,pred_topics,pred_topic_score.defence")
    assert lines[0].endswith("pred_explanation")
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert len(rows) == 2 and [r["id"] for r in rows] == ["1", "2"]
    # The defence threshold was overridden to 0: every row is decided defence.
    assert all("defence" in r["pred_topics"].split("|") for r in rows)
    assert all("defence:" in r["pred_explanation"] for r in rows)


@pytest.mark.parametrize(
    "name,content,message",
    [
        ("missing.jsonl", None, "missing.jsonl: no such file"),
        ("empty.jsonl", b"", "empty.jsonl: file is empty"),
        ("bad.jsonl", b'{"text": "ok"}\n{"text": "unterminated\n', "bad.jsonl:2: invalid JSON"),
        (
            "notext.jsonl",
            b'{"text": "ok"}\n{"body": "x"}\n',
            "notext.jsonl:2: field 'text': missing",
        ),
        (
            "blank.jsonl",
            b'{"text": "ok"}\n{"text": "   "}\n',
            "blank.jsonl:2: field 'text': empty text",
        ),
        ("number.jsonl", b'{"text": 12}\n', "number.jsonl:1: field 'text': must be a string"),
        ("latin.csv", "text\nok\ncafé\n".encode("latin-1"), "latin.csv:3: not valid UTF-8"),
    ],
)
def test_batch_cli_bad_input(tfidf_run, tmp_path, cli, name, content, message):
    src = tmp_path / name
    if content is not None:
        src.write_bytes(content)
    out = tmp_path / "out.jsonl"
    # Enough good rows before the bad one that a batch was already written.
    result = cli(
        "infer", f"model={tfidf_run / 'model'}", f"input={src}", f"output={out}", "batch_size=1"
    )
    assert result.returncode == 2
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and message in error_lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists() and not list(tmp_path.glob(".out.jsonl*")), "no partial output"


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("does-not-exist", "model folder not found"),
        ("data", "not a topictone model (no topictone.json)"),
    ],
)
def test_batch_cli_bad_model_folder(tmp_path, cli, model, message):
    result = cli(
        "infer",
        f"model={ROOT / model}",
        f"input={DEMO / 'test.jsonl'}",
        f"output={tmp_path / 'o.jsonl'}",
    )
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: ") and "Traceback" not in result.stderr
    assert result.stderr.strip() == f"error: {ROOT / model}: {message}"


def test_train_cli_bad_training_data(tmp_path, cli):
    bad = tmp_path / "train.jsonl"
    bad.write_text('{"text": "a", "topics": ["sport"], "tone": "neutral"}\n')
    result = cli(
        "train",
        f"data.train={bad}",
        "data.dev=null",
        "data.test=null",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert result.returncode == 2
    assert f"error: {bad}:1: field 'topics': unknown topic 'sport'" in result.stderr
    assert "Traceback" not in result.stderr


def test_multirun_sweep_writes_one_folder_per_point_and_a_summary(tmp_path, cli):
    sweep = tmp_path / "sweep"
    result = cli(
        "train",
        "-m",
        "model.topic_C=1,8",
        "model.char_ngram_range=[2,3]",
        "data.test=null",
        "decision.thresholds=f1",
        f"hydra.sweep.dir={sweep}",
    )
    assert result.returncode == 0, result.stderr
    assert (sweep / "0" / "model" / "topictone.json").is_file()
    assert (sweep / "1" / "model" / "topictone.json").is_file()
    summary = json.loads((sweep / "summary.json").read_text())
    assert [row["overrides"][0] for row in summary] == ["model.topic_C=1", "model.topic_C=8"]
    first = json.loads((sweep / "0" / "metrics.json").read_text())
    assert summary[0]["cross-fitted"] == first["dev_crossfit"]["topics/macro_f1"]
    assert summary[0]["topic_f1"]["defence"] == first["dev"]["topics/defence_f1"]
    table = (sweep / "summary.md").read_text()
    assert "| run | overrides | topics macro-F1 | cross-fitted | before fitting |" in table
    assert "| counterterrorism F1 |" in table and len(table.splitlines()) == 6
    assert "Multirun summary" in result.stdout


def test_readme_path_in_a_fresh_interpreter(tfidf_run, tmp_path):
    """One real subprocess per entry point: what a user's shell runs, console output included."""
    from conftest import run_cli

    out = tmp_path / "pred.jsonl"
    result = run_cli(
        "topictone.infer",
        f"model={tfidf_run / 'model'}",
        f"input={DEMO / 'dev.jsonl'}",
        f"output={out}",
    )
    assert result.returncode == 0, result.stderr
    assert "wrote 60 predictions" in result.stderr
    assert sum(1 for _ in out.open()) == 60
    bad = run_cli(
        "topictone.infer", f"model={tmp_path}", f"input={DEMO / 'dev.jsonl'}", f"output={out}.2"
    )
    assert (
        bad.returncode == 2
        and bad.stderr.strip() == f"error: {tmp_path}: not a topictone model (no topictone.json)"
    )


def demo_rows_without(topic: str, tmp_path: Path) -> Path:
    rows = [json.loads(line) for line in (DEMO / "train.jsonl").open(encoding="utf-8")]
    out = tmp_path / "train.jsonl"
    out.write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows if topic not in r["topics"]),
        encoding="utf-8",
    )
    return out


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["data.train={missing_ct}"], "topic 'counterterrorism' has 0 positive"),
        (["data.train={missing_ct}", "checks.min_examples=0"], None),
        (["data.dev=data/demo/train.jsonl"], "240 of the 240 dev texts also occur in train"),
        (["checks.min_examples=1000"], "at least 1000 of each"),
    ],
)
def test_train_refuses_degenerate_setups(tmp_path, cli, overrides, message):
    missing_ct = demo_rows_without("counterterrorism", tmp_path)
    args = [o.format(missing_ct=missing_ct) for o in overrides]
    result = cli("train", *args, "report=false", *FAST_TFIDF, f"hydra.run.dir={tmp_path / 'run'}")
    if message is None:  # the check can be turned off; the run then trains
        assert result.returncode == 0, result.stderr
        return
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "run" / "model").exists()
