"""The batch CLI's files and formats: every input value comes out as it went in, or the
run stops at its file, line and field; an output never lands in a model folder; a failed
run leaves nothing; the progress bar counts rows written."""

from __future__ import annotations

import csv
import datetime
import decimal
import io
import json
import os
import re
from pathlib import Path

import pytest

from topictone import infer
from topictone.infer.batch.local import predict_file
from topictone.infer.errors import InputError, TopictoneError


def predict_cli(cli, run, source, out, *args: str):
    """``python -m topictone.infer`` with the run's model, quietly."""
    return cli(
        "infer",
        f"model={run / 'model'}",
        f"input={source}",
        f"output={out}",
        "progress=false",
        *args,
    )


@pytest.fixture(scope="module")
def predictor(tfidf_run):
    return infer.load(tfidf_run / "model")


def run(predictor, source: Path, output: Path, **kwargs) -> int:
    return predict_file(predictor, source, output, progress=False, **kwargs)


def write_jsonl(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def refused(predictor, source: Path, output: Path, **kwargs) -> str:
    """The one-line error of a run that must fail, checked to leave nothing behind."""
    with pytest.raises(TopictoneError) as err:
        run(predictor, source, output, **kwargs)
    message = str(err.value)
    assert "\n" not in message
    assert not output.exists() and not list(output.parent.glob(f".{output.name}*"))
    return message


def test_jsonl_to_parquet_keeps_a_nested_key_that_appears_late(predictor, tmp_path):
    """A nested object gaining a key at row 513, after the first batch was written."""
    import pyarrow.parquet as pq

    rows = [
        {
            "id": i,
            "text": f"army tests missile {i}",
            "meta": {"a": i, **({"b": "x"} if i >= 512 else {})},
        }
        for i in range(600)
    ]
    source = write_jsonl(tmp_path / "in.jsonl", [json.dumps(r) for r in rows])
    assert run(predictor, source, tmp_path / "out.parquet") == 600
    back = pq.read_table(tmp_path / "out.parquet").to_pylist()
    assert [r["meta"] for r in back[510:514]] == [
        {"a": 510, "b": None},
        {"a": 511, "b": None},
        {"a": 512, "b": "x"},
        {"a": 513, "b": "x"},
    ]


@pytest.mark.parametrize(
    ("lines", "where", "message"),
    [
        (['{"text": "a", "n": 1}', '{"text": "b", "n": "one"}'], ":2: field 'n'", "one type"),
        (['{"text": "a", "n": 18446744073709551616}'], ":1: field 'n'", "64-bit integers"),
        (['{"text": "a", "m": null}', '{"text": "b", "m": {}}'], ":2: field 'm'", "empty object"),
        (['{"text": "a", "x": 19.999999999999999999}'], ":1: field 'x'", "no exact 64-bit"),
        (['{"text": "a", "x": [1, 1e400]}'], ":1: field 'x'", "no exact 64-bit"),
        (['{"text": "a", "x": [1, "b"]}'], ":1: field 'x'", "cannot be written as Parquet"),
    ],
)
def test_parquet_output_refuses_what_it_cannot_hold(predictor, tmp_path, lines, where, message):
    source = write_jsonl(tmp_path / "in.jsonl", lines)
    error = refused(predictor, source, tmp_path / "out.parquet")
    assert f"in.jsonl{where}" in error and message in error


def test_parquet_output_keeps_numbers_a_float_holds(predictor, tmp_path):
    import pyarrow.parquet as pq

    source = write_jsonl(
        tmp_path / "in.jsonl",
        ['{"text": "a", "x": 0.1, "y": 1E2, "z": 1}', '{"text": "b", "x": -0.0, "y": 3, "z": 2.5}'],
    )
    run(predictor, source, tmp_path / "out.parquet")
    back = pq.read_table(tmp_path / "out.parquet").to_pylist()
    assert [(r["x"], r["y"], r["z"]) for r in back] == [(0.1, 100.0, 1.0), (-0.0, 3.0, 2.5)]


def test_parquet_output_types_the_prediction_and_its_explanation(predictor, tmp_path):
    """The first batch decides no topic (an empty list), the second one does; with
    explanations, which are a map of label to (term, weight) lists."""
    import pyarrow.parquet as pq

    source = write_jsonl(
        tmp_path / "in.jsonl", ['{"text": "hello world"}', '{"text": "army tests missile"}']
    )
    run(predictor, source, tmp_path / "out.parquet", batch_size=1)
    topics = [
        r["prediction"]["topics"] for r in pq.read_table(tmp_path / "out.parquet").to_pylist()
    ]
    assert topics == [[], ["defence"]]
    run(predictor, source, tmp_path / "explained.parquet", batch_size=1, explain=True)
    back = pq.read_table(tmp_path / "explained.parquet").to_pylist()
    labels = dict(back[1]["prediction"]["explanation"])
    assert set(labels) == {"defence", back[1]["prediction"]["tone"]}
    assert all(set(term) == {"term", "weight"} for term in labels["defence"])


@pytest.mark.parametrize(
    ("column", "kind"),
    [
        ("blob", "binary"),
        ("day", "date"),
        ("price", "decimal"),
        ("pairs", "map"),
    ],
)
@pytest.mark.parametrize("suffix", ["jsonl", "csv"])
def test_parquet_values_without_a_text_form_are_refused(predictor, tmp_path, column, kind, suffix):
    import pyarrow as pa
    import pyarrow.parquet as pq

    values = {
        "blob": pa.array([b"\x00\xff"], pa.binary()),
        "day": pa.array([datetime.date(2026, 1, 2)], pa.date32()),
        "price": pa.array([decimal.Decimal("1.10")], pa.decimal128(5, 2)),
        "pairs": pa.array([[("k", 1)]], pa.map_(pa.string(), pa.int64())),
    }
    pq.write_table(pa.table({"text": ["army"], column: values[column]}), tmp_path / "in.parquet")
    error = refused(predictor, tmp_path / "in.parquet", tmp_path / f"out.{suffix}")
    assert f"in.parquet:1: field '{column}': a {kind} value has no exact" in error


def test_jsonl_to_jsonl_keeps_each_line_as_written(predictor, tmp_path):
    lines = [
        '\ufeff{"text": "army", "x": 19.999999999999999999, "y": 1E2}',
        '  {"text":"caf\\u00e9 \\ud83d\\ude00",  "n" : [1.50, {"q": -0}] }\t\r',
        '{"text": "b", "z": "}"}',
    ]
    source = write_jsonl(tmp_path / "in.jsonl", lines)
    run(predictor, source, tmp_path / "out.jsonl", batch_size=2)
    out = (tmp_path / "out.jsonl").read_text(encoding="utf-8").split("\n")
    assert out[0].startswith('{"text": "army", "x": 19.999999999999999999, "y": 1E2,"prediction":{')
    assert out[1].startswith('{"text":"caf\\u00e9 \\ud83d\\ude00",  "n" : [1.50, {"q": -0}],"pre')
    assert out[2].startswith('{"text": "b", "z": "}","prediction":{')
    assert out[3] == "" and len(out) == 4
    for line in out[:3]:
        assert set(json.loads(line)["prediction"]) == {
            "topics",
            "topic_scores",
            "tone",
            "tone_scores",
        }


def test_jsonl_to_csv_writes_numbers_and_nested_values_as_written(predictor, tmp_path):
    lines = [
        '{"text": "army", "x": 19.999999999999999999, "y": 1E2, "n": [1.50, {"q": -0}], "b": true}',
        '{"y": 7, "text": "b", "b": null, "n": "s", "x": -0}',  # another order: reordered
    ]
    source = write_jsonl(tmp_path / "in.jsonl", lines)
    run(predictor, source, tmp_path / "out.csv", batch_size=1)
    rows = list(csv.DictReader(io.StringIO((tmp_path / "out.csv").read_text(encoding="utf-8"))))
    assert [[r[k] for k in ("text", "x", "y", "n", "b")] for r in rows] == [
        ["army", "19.999999999999999999", "1E2", '[1.50, {"q": -0}]', "True"],
        ["b", "-0", "7", "s", ""],
    ]


@pytest.mark.parametrize(
    ("second", "field", "message"),
    [
        ('{"text": "b"}', "x", "missing"),
        ('{"text": "b", "x": 1, "y": 2}', "y", "not a column of the first row"),
    ],
)
def test_jsonl_to_csv_refuses_other_columns(predictor, tmp_path, second, field, message):
    source = write_jsonl(tmp_path / "in.jsonl", ['{"text": "a", "x": 1}', second])
    error = refused(predictor, source, tmp_path / "out.csv")
    assert f"in.jsonl:2: field '{field}': {message}" in error


def test_a_lone_surrogate_in_a_csv_cell_is_refused(predictor, tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", ['{"text": "a", "note": "x \\udc00"}'])
    error = refused(predictor, source, tmp_path / "out.csv")
    assert "in.jsonl:1: field 'note': cannot be written as utf-8 text" in error


def test_nested_duplicate_keys_are_refused_for_every_output(predictor, tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", ['{"text": "a", "m": {"k": 1, "k": 2}}'])
    for suffix in ("jsonl", "csv", "parquet"):
        error = refused(predictor, source, tmp_path / f"out.{suffix}")
        assert "in.jsonl:1: invalid JSON (duplicate key 'k'" in error


def test_a_lone_surrogate_text_is_one_line_at_its_row(tfidf_run, tmp_path, cli):
    source = write_jsonl(tmp_path / "in.jsonl", ['{"text": "ok"}', '{"text": "abc \\ud800 def"}'])
    out = tmp_path / "out.jsonl"
    result = predict_cli(cli, tfidf_run, source, out)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"error: {source}:2: field 'text': ")
    assert not out.exists()


def model_copy(tfidf_run: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(tfidf_run / "model", tmp_path / "model"))


@pytest.mark.parametrize("name", ["topictone.json", "sub/new.jsonl", "new.jsonl"])
def test_an_output_inside_a_model_folder_is_refused(tfidf_run, tmp_path, cli, name):
    model = model_copy(tfidf_run, tmp_path)
    before = {p.name: p.read_bytes() for p in model.iterdir()}
    source = write_jsonl(tmp_path / "in.jsonl", ['{"text": "army"}'])
    result = cli("infer", f"model={model}", f"input={source}", f"output={model / name}")
    assert result.returncode == 2
    assert result.stderr == (
        f"error: {model / name}: output is inside the model folder {model}; choose another output\n"
    )
    assert {p.name: p.read_bytes() for p in model.iterdir()} == before


def test_an_output_that_is_a_model_file_under_another_name_is_refused(tfidf_run, tmp_path, cli):
    model = model_copy(tfidf_run, tmp_path)
    os.link(model / "topictone.json", tmp_path / "linked.json")
    source = write_jsonl(tmp_path / "in.jsonl", ['{"text": "army"}'])
    result = cli(
        "infer",
        f"model={model}",
        f"input={source}",
        f"output={tmp_path / 'linked.json'}",
        "output_format=jsonl",
    )
    assert result.returncode == 2 and "output is the model file" in result.stderr
    assert json.loads((model / "topictone.json").read_text())["kind"] == "tfidf"


@pytest.mark.parametrize("suffix", ["jsonl", "parquet"])
def test_a_failed_run_leaves_no_folder_it_made(predictor, tmp_path, suffix):
    source = write_jsonl(tmp_path / "in.jsonl", ['{"text": "a"}', '{"body": "b"}'])
    with pytest.raises(InputError, match=r"in\.jsonl:2: field 'text': missing"):
        run(predictor, source, tmp_path / "new" / "deeper" / f"out.{suffix}", batch_size=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]
    with pytest.raises(InputError):
        run(predictor, source, tmp_path / "r" / "out.jsonl", batch_size=5, resume=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]


def test_model_sha256_pins_the_model_folder(tfidf_run, tmp_path, cli):
    from topictone.infer.artifact import sha256

    model = tfidf_run / "model"
    source = write_jsonl(tmp_path / "in.jsonl", ['{"text": "army"}'])
    out = tmp_path / "out.jsonl"
    args = ["infer", f"model={model}", f"input={source}", f"output={out}"]
    result = cli(*args, f"model_sha256={'0' * 64}")
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and not out.exists()
    result = cli(*args, f"model_sha256={sha256(model / 'topictone.json')}")
    assert result.returncode == 0, result.stderr


class Bar:
    """A stand-in for tqdm that records what the run tells it."""

    def __init__(self, **kwargs):
        self.total, self.n, self.steps = kwargs.get("total"), kwargs.get("initial", 0), []
        self.kwargs = kwargs

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, n):
        self.n += n
        self.steps.append((n, self.total))


def test_progress_counts_rows_written_with_an_estimated_total(predictor, tmp_path, monkeypatch):
    bars: list[Bar] = []
    monkeypatch.setattr(
        "topictone.infer.batch.local.tqdm", lambda **kw: bars.append(Bar(**kw)) or bars[-1]
    )
    source = write_jsonl(tmp_path / "in.jsonl", [json.dumps({"text": f"t{i}"}) for i in range(10)])
    predict_file(predictor, source, tmp_path / "out.jsonl", batch_size=4)
    (bar,) = bars
    assert bar.kwargs["unit"] == "row"
    assert [n for n, _ in bar.steps] == [4, 4, 2] and bar.n == 10
    assert bar.steps[-1][1] == 10  # all bytes read: the estimate is the count
    assert 8 <= bar.steps[0][1] <= 12  # rows of about the same size


def test_the_cli_ends_with_counts_and_time(tfidf_run, tmp_path, cli):
    source = write_jsonl(tmp_path / "in.jsonl", ['{"text": "a"}', '{"text": "b"}'])
    out = tmp_path / "out.jsonl"
    result = predict_cli(cli, tfidf_run, source, out)
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(
        rf"wrote 2 predictions to {re.escape(str(out))} in \d+\.\d s \(\d+\.\d rows/s\)\n",
        result.stderr,
    )


class Name(str):
    """A column name that counts how often it is compared for equality."""

    compared = 0

    def __eq__(self, other):
        Name.compared += 1
        return str.__eq__(self, other)

    __hash__ = str.__hash__


def test_repeated_column_names_are_found_in_linear_time(tmp_path):
    """A CSV header of 80,000 columns took minutes: each name was counted in the header."""
    from topictone.infer.io.readers import _repeated, read_rows

    names = [Name(f"c{i}") for i in range(2_000)]
    Name.compared = 0
    assert _repeated([*names, Name("c7")]) == ["c7"]
    assert Name.compared < 100  # one per hash collision, not one per pair
    source = tmp_path / "wide.csv"
    source.write_text(",".join([*(f"c{i}" for i in range(80_000)), "c7"]) + "\n")
    with pytest.raises(InputError, match=r"wide\.csv:1: duplicate column 'c7' in the header"):
        list(read_rows(source))


def test_a_field_name_with_a_line_break_stays_on_one_line(predictor, tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", ['{"text": "a", "x\\ny": 1E400}'])
    assert "\n" not in refused(predictor, source, tmp_path / "out.parquet")
