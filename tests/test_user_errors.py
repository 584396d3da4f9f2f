"""Every user mistake is one line and a non-zero exit (or one TopictoneError), and nothing
is written: bad inputs enumerated across the batch CLI, the Python API and training.
(The HTTP service's 4xx cases live in test_serve.py.)"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import DEMO, FAST_TFIDF

from topictone import infer
from topictone.infer.errors import TextError, TopictoneError

GOOD = '{"id": 1, "text": "Army tests a new missile"}\n'


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if not p.is_dir()) if folder.exists() else []


def assert_one_line(result, message: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert message in lines[0], lines[0]


def parquet_with_dates(path: Path) -> None:
    import datetime

    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"text": ["Army drill"], "day": [datetime.date(2026, 1, 2)]}), path)


# (name, files to create in in/, extra CLI arguments, message). {in} and {out} are folders.
CLI_CASES = [
    ("no output", {"a.jsonl": GOOD}, ["input={in}/a.jsonl"], "output"),
    ("no input", {}, ["output={out}/o.jsonl"], "input"),
    ("missing file", {}, ["input={in}/nope.jsonl", "output={out}/o.jsonl"], "no such file"),
    (
        "empty file",
        {"a.jsonl": ""},
        ["input={in}/a.jsonl", "output={out}/o.jsonl"],
        "file is empty",
    ),
    (
        "bad json",
        {"a.jsonl": GOOD + '{"text": \n'},
        ["input={in}/a.jsonl", "output={out}/o.jsonl"],
        "a.jsonl:2: invalid JSON",
    ),
    (
        "json list",
        {"a.jsonl": '["x"]\n'},
        ["input={in}/a.jsonl", "output={out}/o.jsonl"],
        "a.jsonl:1: expected a JSON object",
    ),
    (
        "duplicate key",
        {"a.jsonl": GOOD + '{"text": "a", "text": "b"}\n'},
        ["input={in}/a.jsonl", "output={out}/o.jsonl"],
        "a.jsonl:2: invalid JSON (duplicate key 'text'",
    ),
    (
        "no text field",
        {"a.jsonl": '{"body": "x"}\n'},
        ["input={in}/a.jsonl", "output={out}/o.jsonl"],
        "a.jsonl:1: field 'text': missing",
    ),
    (
        "text not a string",
        {"a.jsonl": '{"text": ["x"]}\n'},
        ["input={in}/a.jsonl", "output={out}/o.jsonl"],
        "field 'text': must be a string, got list",
    ),
    (
        "null text",
        {"a.jsonl": '{"text": null}\n'},
        ["input={in}/a.jsonl", "output={out}/o.jsonl"],
        "field 'text': must be a string, got NoneType",
    ),
    (
        "empty text",
        {"a.jsonl": '{"text": " \\t "}\n'},
        ["input={in}/a.jsonl", "output={out}/o.jsonl"],
        "field 'text': empty text",
    ),
    (
        "latin-1",
        {"a.jsonl": '{"text": "café"}\n'.encode("latin-1")},
        ["input={in}/a.jsonl", "output={out}/o.jsonl"],
        "a.jsonl:1: not valid UTF-8",
    ),
    (
        "csv short row",
        {"a.csv": "id,text\n1\n"},
        ["input={in}/a.csv", "output={out}/o.csv"],
        "a.csv:2: 1 fields where the header has 2",
    ),
    (
        "csv duplicate column",
        {"a.csv": "text,text\na,b\n"},
        ["input={in}/a.csv", "output={out}/o.csv"],
        "a.csv:1: duplicate column 'text'",
    ),
    (
        "csv open quote",
        {"a.csv": 'text\n"abc\n'},
        ["input={in}/a.csv", "output={out}/o.csv"],
        "a.csv:2: malformed CSV (unexpected end of data)",
    ),
    (
        "csv stray quote",
        {"a.csv": 'text\n"ab"c\n'},
        ["input={in}/a.csv", "output={out}/o.csv"],
        "a.csv:2: malformed CSV",
    ),
    (
        "not parquet",
        {"a.parquet": "nope"},
        ["input={in}/a.parquet", "output={out}/o.jsonl"],
        "not a readable Parquet file",
    ),
    (
        "parquet date to json",
        {"a.parquet": parquet_with_dates},
        ["input={in}/a.parquet", "output={out}/o.jsonl"],
        "a.parquet:1: field 'day': a date value has no exact JSON or CSV form",
    ),
    (
        "unknown input suffix",
        {"a.txt": "x"},
        ["input={in}/a.txt", "output={out}/o.jsonl"],
        "cannot tell the format",
    ),
    (
        "unknown output suffix",
        {"a.jsonl": GOOD},
        ["input={in}/a.jsonl", "output={out}/o.xml"],
        "cannot tell the format",
    ),
    (
        "unknown format",
        {"a.jsonl": GOOD},
        ["input={in}/a.jsonl", "output={out}/o.jsonl", "output_format=xml"],
        "unknown format 'xml'",
    ),
    (
        "output is input",
        {"a.jsonl": GOOD},
        ["input={in}/a.jsonl", "output={in}/a.jsonl"],
        "output is the input file",
    ),
    (
        "output is input via ..",
        {"a.jsonl": GOOD},
        ["input={in}/a.jsonl", "output={in}/../in/a.jsonl"],
        "output is the input file",
    ),
    (
        "output is a link",
        {"a.jsonl": GOOD, "link.jsonl": "->a.jsonl"},
        ["input={in}/a.jsonl", "output={in}/link.jsonl"],
        "output exists and is a link",
    ),
    (
        "output is a folder",
        {"a.jsonl": GOOD, "sub.jsonl/x.jsonl": GOOD},
        ["input={in}/a.jsonl", "output={in}/sub.jsonl"],
        "output exists and is a folder",
    ),
    (
        "output is a device",
        {"a.jsonl": GOOD},
        ["input={in}/a.jsonl", "output=/dev/null", "output_format=jsonl"],
        "output exists and is not a regular file",
    ),
    (
        "output folder is a file",
        {"a.jsonl": GOOD, "f": "x"},
        ["input={in}/a.jsonl", "output={in}/f/o.jsonl"],
        "o.jsonl: cannot use as output (Not a directory)",
    ),
    (
        "non-numeric threshold",
        {"a.jsonl": GOOD},
        ["input={in}/a.jsonl", "output={out}/o.jsonl", "+thresholds.defence=high"],
        "threshold for 'defence' must be a number in [0, 1], got 'high'",
    ),
    (
        "threshold out of range",
        {"a.jsonl": GOOD},
        ["input={in}/a.jsonl", "output={out}/o.jsonl", "+thresholds.defence=1.5"],
        "got 1.5",
    ),
    (
        "threshold unknown topic",
        {"a.jsonl": GOOD},
        ["input={in}/a.jsonl", "output={out}/o.jsonl", "+thresholds.sport=0.5"],
        "threshold for unknown topic 'sport'",
    ),
    (
        "text over max_chars",
        {"a.jsonl": GOOD + json.dumps({"text": "x" * 50}) + "\n"},
        ["input={in}/a.jsonl", "output={out}/o.jsonl", "limits.max_chars=40"],
        "a.jsonl:2: field 'text': 50 characters, over max_chars=40",
    ),
    (
        "line over max_line_bytes",
        {"a.jsonl": GOOD + json.dumps({"text": "y" * 300}) + "\n"},
        ["input={in}/a.jsonl", "output={out}/o.jsonl", "max_line_bytes=200"],
        "a.jsonl:2: line is longer than max_line_bytes=200",
    ),
    (
        "bad on_long_text",
        {"a.jsonl": GOOD},
        ["input={in}/a.jsonl", "output={out}/o.jsonl", "limits.on_long_text=drop"],
        "on_long_text must be one of error, truncate",
    ),
    (
        "zero max_chars",
        {"a.jsonl": GOOD},
        ["input={in}/a.jsonl", "output={out}/o.jsonl", "limits.max_chars=0"],
        "max_chars must be",
    ),
    (
        "prediction field clash",
        {"a.jsonl": GOOD + '{"text": "b", "prediction": 1}\n'},
        ["input={in}/a.jsonl", "output={out}/o.jsonl"],
        "a.jsonl:2: field 'prediction': the input already has a field named like the predictions",
    ),
    (
        "csv prefix clash",
        {"a.csv": "text,pred_tone\nArmy,x\n"},
        ["input={in}/a.csv", "output={out}/o.csv"],
        "set prediction_prefix (now 'pred_')",
    ),
    (
        "csv columns differ",
        {"a.jsonl": GOOD + '{"text": "b"}\n'},
        ["input={in}/a.jsonl", "output={out}/o.csv", "batch_size=1"],
        "a.jsonl:2: field 'id': missing; every CSV row needs the first row's columns",
    ),
    (
        "zero batch size",
        {"a.jsonl": GOOD},
        ["input={in}/a.jsonl", "output={out}/o.jsonl", "batch_size=0"],
        "batch_size must be a positive integer",
    ),
    (
        "unknown key",
        {"a.jsonl": GOOD},
        ["input={in}/a.jsonl", "output={out}/o.jsonl", "bogus=1"],
        "Could not override 'bogus'",
    ),
    (
        "bad override syntax",
        {"a.jsonl": GOOD},
        ["input={in}/a.jsonl", "output={out}/o.jsonl", "batch_size=[1"],
        "no viable alternative at input",
    ),
    (
        "unknown option",
        {"a.jsonl": GOOD},
        ["input={in}/a.jsonl", "output={out}/o.jsonl", "options.bogus=1"],
        "Could not override 'options.bogus'",
    ),
    (
        "stdout as parquet",
        {"a.jsonl": GOOD},
        ["input={in}/a.jsonl", "output=-", "output_format=parquet"],
        "output '-' streams JSONL or CSV",
    ),
]


@pytest.mark.parametrize(
    ("name", "files", "args", "message"), CLI_CASES, ids=[c[0] for c in CLI_CASES]
)
def test_batch_cli_user_errors(tfidf_run, tmp_path, cli, name, files, args, message):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    for file, content in files.items():
        path = src / file
        path.parent.mkdir(parents=True, exist_ok=True)
        if callable(content):
            content(path)
        elif isinstance(content, str) and content.startswith("->"):
            path.symlink_to(src / content[2:])
        else:
            path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    before = {p: p.read_bytes() for p in files_under(src) if not p.is_symlink()}
    argv = [a.format(**{"in": src, "out": out}) for a in args]
    result = cli("infer", f"model={tfidf_run / 'model'}", "progress=false", *argv)
    assert_one_line(result, message)
    assert result.stdout == ""
    assert files_under(out) == [], "nothing written"
    assert {p: p.read_bytes() for p in files_under(src) if not p.is_symlink()} == before
    assert not list(tmp_path.rglob("*.part"))


@pytest.fixture(scope="module")
def predictor(tfidf_run):
    return infer.load(tfidf_run / "model")


API_CASES = [
    (
        "none text",
        lambda p: p.predict([None]),
        TextError,
        "texts[0]: must be a string, got NoneType",
    ),
    ("int text", lambda p: p.predict(["ok", 3]), TextError, "texts[1]: must be a string, got int"),
    ("bytes text", lambda p: p.predict([b"x"]), TextError, "texts[0]: must be a string, got bytes"),
    ("one string", lambda p: p.predict("Army"), TopictoneError, "a list of texts, not one string"),
    (
        "string threshold",
        lambda p: p.predict(["a"], thresholds={"defence": "high"}),
        TopictoneError,
        "must be a number in [0, 1], got 'high'",
    ),
    (
        "bool threshold",
        lambda p: p.predict(["a"], thresholds={"defence": True}),
        TopictoneError,
        "got True",
    ),
    (
        "nan threshold",
        lambda p: p.predict(["a"], thresholds={"defence": float("nan")}),
        TopictoneError,
        "got nan",
    ),
    (
        "unknown topic",
        lambda p: p.predict(["a"], thresholds={"sport": 0.1}),
        TopictoneError,
        "unknown topic 'sport'",
    ),
    ("scores of None", lambda p: p.predict_scores(["a", None]), TextError, "texts[1]"),
]


@pytest.mark.parametrize(
    ("name", "call", "kind", "message"), API_CASES, ids=[c[0] for c in API_CASES]
)
def test_api_user_errors(predictor, name, call, kind, message):
    with pytest.raises(kind) as err:
        call(predictor)
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        ({"max_chars": -1}, "max_chars must be at least 1"),
        ({"max_chars": "many"}, "max_chars must be an integer"),
        ({"on_long_text": "skip"}, "on_long_text must be one of"),
        ({"max_char": 10}, "unknown limit(s) max_char"),
    ],
)
def test_api_bad_limits(tfidf_run, limits, message):
    with pytest.raises(TopictoneError, match=message.replace("(", r"\(").replace(")", r"\)")):
        infer.load(tfidf_run / "model", limits=limits)


def test_api_long_texts_error_or_truncate(tfidf_run):
    strict = infer.load(tfidf_run / "model", limits={"max_chars": 30})
    with pytest.raises(TextError) as err:
        strict.predict(["short", "Army " * 10])
    assert err.value.index == 1 and "50 characters, over max_chars=30" in str(err.value)
    cut = infer.load(tfidf_run / "model", limits={"max_chars": 30, "on_long_text": "truncate"})
    long_text = "Army tests missile. " + "cricket " * 1000
    assert cut.predict([long_text]) == cut.predict([long_text[:30]])


def test_api_missing_model_folder(tmp_path):
    with pytest.raises(TopictoneError, match=r"model folder not found|not a topictone model"):
        infer.load(tmp_path / "nope")


def one_tone_train(tmp_path: Path) -> Path:
    rows = [json.loads(line) for line in (DEMO / "train.jsonl").open(encoding="utf-8")]
    out = tmp_path / "train.jsonl"
    out.write_text(
        "".join(json.dumps({**r, "tone": "neutral"}, ensure_ascii=False) + "\n" for r in rows),
        encoding="utf-8",
    )
    return out


TRAIN_CASES = [
    ("missing train file", ["data.train={tmp}/nope.jsonl"], "no such file"),
    ("one-class tone", ["data.train={one_tone}"], "tone 'positive' has 0"),
    ("unknown label", ["data.train={bad_label}"], "unknown tone 'happy'"),
    ("unknown model", ["model=bogus"], "Could not find 'model/bogus'"),
    ("unknown model key", ["model.bogus=1"], "Could not override 'model.bogus'"),
    ("non-numeric C", ["model.topic_C=abc"], "'abc' of type 'str' could not be converted to Float"),
]


@pytest.mark.parametrize(("name", "args", "message"), TRAIN_CASES, ids=[c[0] for c in TRAIN_CASES])
def test_train_user_errors(tmp_path, cli, name, args, message):
    bad_label = tmp_path / "bad.jsonl"
    bad_label.write_text('{"text": "a", "topics": [], "tone": "happy"}\n', encoding="utf-8")
    values = {"tmp": tmp_path, "one_tone": one_tone_train(tmp_path), "bad_label": bad_label}
    argv = [a.format(**values) for a in args]
    run = tmp_path / "run"
    result = cli("train", *argv, "report=false", *FAST_TFIDF, f"hydra.run.dir={run}")
    assert_one_line(result, message)
    assert not (run / "model").exists()


def test_there_are_at_least_forty_bad_inputs():
    assert len(CLI_CASES) + len(API_CASES) + 4 + 1 + len(TRAIN_CASES) >= 40


def test_sigterm_removes_the_temporary_file(tfidf_run, tmp_path):
    """A real run, terminated mid-file: no output, no .part; a stale .part is cleaned up."""
    import signal
    import subprocess
    import sys
    import time

    from conftest import ROOT

    src = tmp_path / "big.jsonl"
    with src.open("w", encoding="utf-8") as handle:
        for i in range(200_000):
            handle.write(json.dumps({"id": i, "text": f"Army tests missile number {i}"}) + "\n")
    out = tmp_path / "out" / "pred.jsonl"
    out.parent.mkdir()
    stale = out.parent / ".pred.jsonl.999999999.abc123.part"  # a pid no process has
    stale.write_text("left by a killed run")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "topictone.infer",
            f"model={tfidf_run / 'model'}",
            f"input={src}",
            f"output={out}",
            "progress=false",
            "batch_size=256",
        ],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    while time.time() < deadline and not [
        p for p in out.parent.glob(".pred.jsonl.*.part") if p != stale
    ]:
        time.sleep(0.05)
    assert not stale.exists(), "the stale temporary file of a dead run is removed"
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err
    assert files_under(out.parent) == []


def test_outputs_follow_the_umask(tfidf_run, tmp_path, cli):
    src = tmp_path / "a.jsonl"
    src.write_text(GOOD)
    old = os.umask(0o027)
    try:
        result = cli(
            "infer",
            f"model={tfidf_run / 'model'}",
            f"input={src}",
            f"output={tmp_path / 'o.jsonl'}",
            "progress=false",
        )
    finally:
        os.umask(old)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "o.jsonl").stat().st_mode & 0o777 == 0o640
    assert (tfidf_run / "model").stat().st_mode & 0o777 in (0o755, 0o750)


def test_output_dash_streams_to_stdout(tfidf_run, tmp_path, cli):
    src = tmp_path / "a.jsonl"
    src.write_text(GOOD * 3)
    result = cli(
        "infer", f"model={tfidf_run / 'model'}", f"input={src}", "output=-", "progress=false"
    )
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(rows) == 3 and all(r["id"] == 1 and "prediction" in r for r in rows)


def test_another_prediction_field_resolves_a_clash(tfidf_run, tmp_path, cli):
    src = tmp_path / "a.jsonl"
    src.write_text('{"text": "Army drill", "prediction": "old"}\n')
    out = tmp_path / "o.jsonl"
    result = cli(
        "infer",
        f"model={tfidf_run / 'model'}",
        f"input={src}",
        f"output={out}",
        "prediction_field=topictone",
        "progress=false",
    )
    assert result.returncode == 0, result.stderr
    row = json.loads(out.read_text())
    assert row["prediction"] == "old" and "tone" in row["topictone"]


def nested_manifest(folder: Path) -> None:
    (folder / "topictone.json").write_text("[" * 100_000 + "]" * 100_000)


def hard_linked(folder: Path) -> None:
    os.link(folder / "vocabulary.json", folder.parent / "elsewhere.json")


def kind_list(folder: Path) -> None:
    path = folder / "topictone.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "kind": ["tfidf"]}))


# (name, how the copied model folder is broken, message): a bad folder is one line.
MODEL_CASES = [
    ("nested manifest", nested_manifest, "unreadable manifest (nested too deeply)"),
    ("hard link", hard_linked, "has 2 hard links"),
    ("kind a list", kind_list, "field 'kind' must be a string, got a list"),
]


@pytest.mark.parametrize(
    ("name", "breaks", "message"), MODEL_CASES, ids=[c[0] for c in MODEL_CASES]
)
def test_batch_cli_bad_model_folders(tfidf_run, tmp_path, cli, name, breaks, message):
    import shutil

    model = Path(shutil.copytree(tfidf_run / "model", tmp_path / "model"))
    breaks(model)
    src = tmp_path / "in.jsonl"
    src.write_text('{"text": "Army tests a new missile"}\n', encoding="utf-8")
    result = cli("infer", f"model={model}", f"input={src}", f"output={tmp_path / 'out.jsonl'}")
    assert_one_line(result, message)
