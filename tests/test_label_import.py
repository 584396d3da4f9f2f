"""`python -m topictone.train.label import`: a Label Studio export back into training rows."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from conftest import DEMO

from topictone.infer.schema import LabelSchema
from topictone.train.data.labelled import read_labelled

SCHEMA = LabelSchema(
    ("defence", "counterterrorism", "technology"), ("positive", "neutral", "negative")
)
DATA_CFG = {"fields": {"id": "id", "text": "text", "topics": "topics", "tone": "tone"}, "keep": []}


def choices(control: str, values: list[str]) -> dict:
    return {
        "from_name": control,
        "to_name": "text",
        "type": "choices",
        "value": {"choices": values},
    }


def annotation(ident: int, topics: list[str], tone: str | None, cancelled: bool = False) -> dict:
    result = [choices("topics", topics)] if topics else []
    if tone is not None:
        result.append(choices("tone", [tone]))
    return {"id": ident, "result": result, "was_cancelled": cancelled, "completed_by": 1}


def export_task(ident: int, text: str, *annotations: dict, row_id: str | None = None) -> dict:
    data = {"text": text, "topictone_id": row_id or f"pool.jsonl:{ident}", "lang": "en"}
    return {"id": ident, "data": data, "annotations": list(annotations), "predictions": []}


def good_export() -> list[dict]:
    """Three labelled tasks: one plain, one annotated twice alike, one with a skip too."""
    return [
        export_task(1, "Army tests a new missile", annotation(11, ["defence"], "neutral")),
        export_task(
            2,
            "Startup builds an AI chip for Hindi speech",
            annotation(21, ["technology"], "positive"),
            annotation(22, ["technology"], "positive"),
        ),
        export_task(
            3,
            "Monsoon arrives in Kerala",
            annotation(31, [], "neutral", cancelled=True),
            annotation(32, [], "neutral"),
        ),
    ]


def write_json(path: Path, value: object) -> Path:
    path.write_text(json.dumps(value, ensure_ascii=False), "utf-8")
    return path


def test_import_writes_rows_that_training_reads(tmp_path, cli):
    export = write_json(tmp_path / "export.json", good_export())
    out = tmp_path / "new" / "labelled.jsonl"
    result = cli("train.label", "import", f"input={export}", f"output={out}")
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in out.read_text("utf-8").splitlines()]
    assert rows == [
        {"id": "pool.jsonl:1", "text": "Army tests a new missile", "topics": ["defence"],
         "tone": "neutral", "lang": "en"},
        {"id": "pool.jsonl:2", "text": "Startup builds an AI chip for Hindi speech",
         "topics": ["technology"], "tone": "positive", "lang": "en"},
        {"id": "pool.jsonl:3", "text": "Monsoon arrives in Kerala", "topics": [],
         "tone": "neutral", "lang": "en"},
    ]  # fmt: skip
    dataset = read_labelled(out, DATA_CFG, SCHEMA)
    assert dataset["topics"][0] == [1.0, 0.0, 0.0] and dataset["tone"] == [1, 0, 1]


def test_select_then_import_round_trip(tfidf_run, tmp_path, cli):
    """select → labels in Label Studio (here: the predictions accepted, one corrected)
    → export → import → the file trains."""
    pool = tmp_path / "pool.jsonl"
    texts = ["Army inducts attack helicopters", "Police bust a terror module in Delhi",
             "New smartphone chip unveiled", "Rain lashes Mumbai"]  # fmt: skip
    pool.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), "utf-8")
    tasks_file = tmp_path / "tasks.json"
    args = [f"model={tfidf_run / 'model'}", f"pool={pool}", "n=4", f"output={tasks_file}"]
    assert cli("train.label", "select", *args).returncode == 0
    export = []
    for number, task in enumerate(json.loads(tasks_file.read_text("utf-8")), start=1):
        result = copy.deepcopy(task["predictions"][0]["result"])
        export.append(
            {**task, "id": number, "annotations": [{"id": number * 10, "result": result}]}
        )
    export[0]["annotations"][0]["result"] = [choices("tone", ["negative"])]  # a correction
    out = tmp_path / "labelled.jsonl"
    exported = write_json(tmp_path / "e.json", export)
    done = cli("train.label", "import", f"input={exported}", f"output={out}")
    assert done.returncode == 0, done.stderr
    dataset = read_labelled(out, DATA_CFG, SCHEMA)
    assert sorted(dataset["text"]) == sorted(texts)
    assert set(dataset["id"]) == {f"{pool}:{line}" for line in range(1, 5)}
    assert dataset["tone"][0] == 2 and dataset["topics"][0] == [0.0, 0.0, 0.0]


DEMO_TEXT = json.loads((DEMO / "dev.jsonl").read_text("utf-8").splitlines()[0])["text"]
ERRORS = [
    (lambda e: e[0]["annotations"][0]["result"].__setitem__(0, choices("topics", ["sports"])),
     "task 1 (pool.jsonl:1): annotation 11: unknown topic 'sports'"),
    (lambda e: e[0]["annotations"][0]["result"].__setitem__(1, choices("tone", ["angry"])),
     "task 1 (pool.jsonl:1): annotation 11: unknown tone 'angry'"),
    (lambda e: e[0]["annotations"][0]["result"].pop(),
     "task 1 (pool.jsonl:1): annotation 11: no tone"),
    (lambda e: e[0]["annotations"][0]["result"].append(choices("tone", ["positive"])),
     "task 1 (pool.jsonl:1): annotation 11: tone is answered twice"),
    (lambda e: e[0]["annotations"][0]["result"].append(choices("topic", ["defence"])),
     "task 1 (pool.jsonl:1): annotation 11: unknown control 'topic'"),
    (lambda e: e[1]["annotations"][1]["result"].__setitem__(0, choices("topics", ["defence"])),
     "task 2 (pool.jsonl:2): annotations 21 and 22 disagree (topics [technology], tone "
     "positive vs topics [defence], tone positive)"),
    (lambda e: e[2]["annotations"].pop(),
     "task 3 (pool.jsonl:3): no annotation (label it, or set skip_unlabelled=true)"),
    (lambda e: e[2]["data"].__setitem__("text", "  " + DEMO_TEXT.lower()),
     "task 3 (pool.jsonl:3): its text is labelled already (data/demo/dev.jsonl:1)"),
    (lambda e: e[2]["data"].__setitem__("text", "ARMY TESTS A NEW MISSILE"),
     "task 3 (pool.jsonl:3): its text repeats task 1 (pool.jsonl:1)"),
    (lambda e: e[2]["data"].__setitem__("topictone_id", "pool.jsonl:1"),
     "task 3 (pool.jsonl:1): id 'pool.jsonl:1' is taken already"),
    (lambda e: e[0]["annotations"][0]["result"][0].__setitem__("value", ["defence"]),
     "task 1 (pool.jsonl:1): annotation 11: topics: not a choices result"),
    (lambda e: e[1]["data"].pop("text"), "task 2 (pool.jsonl:2): data.text is missing"),
    (lambda e: e.__setitem__(1, "nonsense"), "task #2: not a Label Studio task"),
]  # fmt: skip


@pytest.mark.parametrize("spoil,message", ERRORS)
def test_each_bad_task_is_one_line_naming_it(tmp_path, cli, spoil, message):
    export = good_export()
    spoil(export)
    path = write_json(tmp_path / "export.json", export)
    out = tmp_path / "labelled.jsonl"
    result = cli("train.label", "import", f"input={path}", f"output={out}")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}: {message}"), result.stderr
    assert not out.exists()


def test_unlabelled_and_cancelled_tasks_may_be_skipped(tmp_path, cli):
    export = good_export()
    export[0]["annotations"] = [annotation(11, ["defence"], "neutral", cancelled=True)]
    export[2]["annotations"] = []
    path = write_json(tmp_path / "export.json", export)
    out = tmp_path / "labelled.jsonl"
    result = cli(
        "topictone.train.label", "import", f"input={path}", f"output={out}", "skip_unlabelled=true"
    )
    assert result.returncode == 0, result.stderr
    assert "1 rows" in result.stderr and "2 unlabelled tasks skipped" in result.stderr
    assert [json.loads(x)["id"] for x in out.read_text("utf-8").splitlines()] == ["pool.jsonl:2"]


def test_append_checks_the_file_first_and_never_overwrites(tmp_path, cli):
    out = tmp_path / "labelled.jsonl"
    before = (
        '{"id": "old-1", "text": "Old row about a tank", "topics": ["defence"], "tone": "neutral"}'
    )
    out.write_text(before, "utf-8")  # no final newline: the new rows still start a line
    path = write_json(tmp_path / "export.json", good_export())
    refused = cli("train.label", "import", f"input={path}", f"output={out}")
    assert refused.returncode == 2 and "exists; set append=true" in refused.stderr
    result = cli("train.label", "import", f"input={path}", f"output={out}", "append=true")
    assert result.returncode == 0, result.stderr
    dataset = read_labelled(out, DATA_CFG, SCHEMA)
    assert dataset["id"] == ["old-1", "pool.jsonl:1", "pool.jsonl:2", "pool.jsonl:3"]
    again = cli("train.label", "import", f"input={path}", f"output={out}", "append=true")
    assert again.returncode == 2
    assert "task 1 (pool.jsonl:1): its text is labelled already" in again.stderr
    assert f"({out}:2)" in again.stderr


def test_append_to_a_bad_file_is_refused_at_its_line(tmp_path, cli):
    out = tmp_path / "labelled.jsonl"
    bad = '{"id": "x", "text": "Row", "topics": ["sports"], "tone": "neutral"}\n'
    out.write_text(bad, "utf-8")
    path = write_json(tmp_path / "export.json", good_export())
    result = cli("train.label", "import", f"input={path}", f"output={out}", "append=true")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"error: {out}:1: field 'topics': unknown topic 'sports' "
        "(schema: defence, counterterrorism, technology)"
    )
    assert out.read_text("utf-8") == bad


@pytest.mark.parametrize(
    "content,output,message",
    [
        ('{"data": {}}', "o.jsonl", "not a Label Studio JSON export (expected a list of tasks)"),
        ("[{", "o.jsonl", "not valid JSON"),
        ("[]", "o.jsonl", "no annotated task to import"),
        ("[]", "o.csv", "training rows are written as JSONL"),
    ],
)
def test_bad_exports_and_outputs(tmp_path, cli, content, output, message):
    path = tmp_path / "export.json"
    path.write_text(content, "utf-8")
    result = cli("train.label", "import", f"input={path}", f"output={tmp_path / output}")
    assert result.returncode == 2 and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / output).exists()


def test_an_export_too_large_or_too_deep_is_one_line(tmp_path, monkeypatch):
    from topictone.infer.errors import InputError
    from topictone.train.label import ingest

    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    with pytest.raises(InputError, match="nested too deeply"):
        ingest.read_export(str(deep))
    monkeypatch.setattr(ingest, "MAX_EXPORT_BYTES", 10)
    big = tmp_path / "big.json"
    big.write_text("[" + "{}, " * 10 + "{}]", encoding="utf-8")
    with pytest.raises(InputError, match="larger than 10 bytes"):
        ingest.read_export(str(big))
