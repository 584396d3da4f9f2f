"""Readers and writers: streaming, located errors, atomic output."""

import datetime
import decimal
import json
from pathlib import Path

import numpy as np
import pytest

from topictone.infer.errors import InputError, TopictoneError
from topictone.infer.io.outputs import open_writer
from topictone.infer.io.readers import input_files, read_rows, require_text
from topictone.infer.io.writers import RowValueError, _json_line


def write(path: Path, content: bytes | str) -> Path:
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


def test_jsonl_rows_keep_line_numbers_and_skip_blank_lines(tmp_path):
    f = write(tmp_path / "a.jsonl", '{"text": "a"}\n\n{"text": "b"}\n')
    assert [(line, row) for line, row, _ in read_rows(f)] == [
        (1, {"text": "a"}),
        (3, {"text": "b"}),
    ]


def test_csv_multiline_field_reports_line_of_record(tmp_path):
    f = write(tmp_path / "a.csv", 'id,text\n1,"two\nlines"\n2,ok\n')
    rows = [(line, row) for line, row, _ in read_rows(f)]
    assert rows == [(3, {"id": "1", "text": "two\nlines"}), (4, {"id": "2", "text": "ok"})]


def test_parquet_rows(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"text": ["a", "b"], "id": [1, 2]}), tmp_path / "a.parquet")
    assert [row["text"] for _, row, _ in read_rows(tmp_path / "a.parquet")] == ["a", "b"]


@pytest.mark.parametrize(
    "name,content,message",
    [
        ("empty.jsonl", b"", "empty.jsonl: file is empty"),
        ("blank.jsonl", b"\n\n", "blank.jsonl: file has no records"),
        ("bad.jsonl", b'{"text": "a"}\n{"text": \n', "bad.jsonl:2: invalid JSON"),
        ("list.jsonl", b'["a"]\n', "list.jsonl:1: expected a JSON object"),
        (
            "latin1.jsonl",
            '{"text": "ok"}\n{"text": "café"}\n'.encode("latin-1"),
            "latin1.jsonl:2: not valid UTF-8",
        ),
        ("short.csv", b"id,text\n1\n", "short.csv:2: 1 fields where the header has 2"),
        ("bad.parquet", b"not parquet", "bad.parquet: not a readable Parquet file"),
    ],
)
def test_bad_files_are_located(tmp_path, name, content, message):
    f = write(tmp_path / name, content)
    with pytest.raises(InputError) as err:
        list(read_rows(f))
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_file_and_unknown_suffix(tmp_path):
    with pytest.raises(InputError, match=r"nope\.jsonl: no such file"):
        list(read_rows(tmp_path / "nope.jsonl"))
    with pytest.raises(TopictoneError, match="cannot tell the format"):
        list(read_rows(write(tmp_path / "a.txt", "x")))


@pytest.mark.parametrize(
    "row,message",
    [
        ({}, "field 'text': missing"),
        ({"text": 3}, "must be a string, got int"),
        ({"text": "  "}, "field 'text': empty text"),
        ({"text": None}, "got NoneType"),
    ],
)
def test_require_text(row, message):
    with pytest.raises(InputError, match=message) as err:
        require_text(row, "text", "f.jsonl", 7)
    assert str(err.value).startswith("f.jsonl:7: ")


def test_writer_is_atomic(tmp_path):
    target = tmp_path / "out.jsonl"
    with pytest.raises(RuntimeError), open_writer(target) as writer:
        writer.write([{"a": 1}])
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with open_writer(target) as writer:
        writer.write([{"a": 1}])
    assert target.read_text() == '{"a":1}\n'


@pytest.mark.parametrize(
    ("row", "by_orjson"),
    [
        ({"id": 1, "t": 'रक्षा \u2028 "q" \\ \x01\x7f', "f": [0.1, 1e-05, 1e16, -0.0]}, True),
        ({"n": None, "b": [True, False], "nested": {"k": {"nullable": "null"}}}, True),
        ({"big": 2**70, "small": -(2**63)}, False),  # orjson refuses over 64 bits
        ({"lone": "\ud800x"}, False),  # a lone surrogate: kept as its \\u escape
        ({"nan": float("nan"), "inf": [float("-inf")], "none": None}, False),  # orjson: null
        ({"sub": np.float64(0.5)}, False),  # a float subclass (numpy)
    ],
)
def test_jsonl_lines_hold_what_the_standard_library_writes(row, by_orjson):
    """orjson writes the lines; wherever it would write another value (NaN as null, a
    numpy scalar, a lone surrogate, a huge integer), the standard library writes it."""
    line = _json_line(row, 0)
    assert line.endswith("\n") and "\n" not in line[:-1]
    expected = json.dumps(row, ensure_ascii="lone" in row, separators=(",", ":"))
    if by_orjson:  # the same values; floats may be spelt otherwise (1e-5 for 1e-05)
        assert json.loads(line) == json.loads(expected) == row
    else:
        assert line[:-1] == expected


def test_jsonl_writer_refuses_values_json_cannot_hold():
    with pytest.raises(RowValueError, match="cannot be written as JSON") as err:
        _json_line({"ok": 1, "day": datetime.date(2026, 12, 3)}, 4)
    assert (err.value.index, err.value.field) == (4, "day")


def test_csv_writer_encodes_nested_values(tmp_path):
    with open_writer(tmp_path / "o.csv") as writer:
        writer.write([{"id": 1, "topics": ["defence"]}])
    assert (tmp_path / "o.csv").read_text().splitlines() == ["id,topics", '1,"[""defence""]"']


def test_parquet_writer_keeps_every_field_or_refuses_the_row(tmp_path):
    import pyarrow.parquet as pq

    with open_writer(tmp_path / "o.parquet") as writer:  # a field the first row lacks is kept
        writer.write([{"a": 1}, {"a": 2, "b": "x"}])
    assert pq.read_table(tmp_path / "o.parquet").to_pylist() == [
        {"a": 1, "b": None},
        {"a": 2, "b": "x"},
    ]
    # After the columns are fixed, a new field is an error naming it, never dropped.
    with pytest.raises(RowValueError, match="no column in the Parquet output") as err:
        with open_writer(tmp_path / "p.parquet") as writer:
            writer.write([{"a": 1}])
            writer.write([{"a": 2}, {"a": 3, "b": "x"}])
    assert (err.value.index, err.value.field) == (1, "b")
    assert not (tmp_path / "p.parquet").exists()


def test_parquet_writer_gathers_batches_into_large_row_groups(tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    from topictone.infer.io.writers import ParquetWriter

    monkeypatch.setattr(ParquetWriter, "ROW_GROUP_ROWS", 1000)
    rows = [{"id": i, "score": i / 7} for i in range(2500)]
    with open_writer(tmp_path / "o.parquet") as writer:
        for start in range(0, len(rows), 512):
            writer.write(rows[start : start + 512])
    parquet = pq.ParquetFile(tmp_path / "o.parquet")
    groups = [parquet.metadata.row_group(i).num_rows for i in range(parquet.num_row_groups)]
    assert groups == [1024, 1024, 452]  # two batches a group, the rest on close
    assert parquet.read().to_pylist() == rows


def test_input_files_of_a_folder_a_glob_or_a_file(tmp_path):
    folder = tmp_path / "in"
    for name in ("b.jsonl", "sub/a.csv", "sub/c.parquet", ".hidden.jsonl", "_tmp/d.jsonl", "n.txt"):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        write(folder / name, "x")
    shards = [folder / "b.jsonl", folder / "sub/a.csv", folder / "sub/c.parquet"]
    assert input_files(folder) == shards  # any depth; hidden, _-prefixed and .txt left out
    assert input_files(f"{folder}/**/*.csv") == [folder / "sub/a.csv"]
    assert input_files(folder / "b.jsonl") == [folder / "b.jsonl"]
    (tmp_path / "empty").mkdir()
    for spec, message in [
        (folder / "missing.jsonl", f"{folder / 'missing.jsonl'}: no such file"),
        (f"{folder}/*.tsv", f"{folder}/*.tsv: no files match the pattern"),
        (f"{folder}/*.txt", "cannot tell the format from the suffix '.txt'"),
        (tmp_path / "empty", "no .csv, .json, .jsonl, .ndjson, .parquet files in the folder"),
    ]:
        with pytest.raises(TopictoneError) as err:
            input_files(spec)
        assert message in str(err.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{}", '{"p":1}\n'),
        ("  { \t}\r\n", '{"p":1}\n'),
        ('{"a": {}}', '{"a": {},"p":1}\n'),
        ('{"a": "{"}\n', '{"a": "{","p":1}\n'),
        ('{"a":1E2 , "b": [ ] }  \n', '{"a":1E2 , "b": [ ],"p":1}\n'),
    ],
)
def test_a_spliced_line_keeps_the_input_text(text, expected):
    from topictone.infer.io.writers import Spliced, _spliced_line

    assert _spliced_line(Spliced(text, "p", 1), 0) == expected
    assert json.loads(expected)["p"] == 1


def test_json_texts_are_the_values_as_written():
    from topictone.infer.io.readers import json_texts

    line = ' { "a" : 1E2,"b":[1.50, {"c": -0}] , "\\u00e9": "x", "d": null }\n'
    assert json.loads(line) and json_texts(line) == {
        "a": "1E2",
        "b": '[1.50, {"c": -0}]',
        "é": '"x"',
        "d": "null",
    }


def test_record_sizes_add_up_to_the_bytes_read(tmp_path):
    """Blank lines count with the row after them, so a row's end is an offset in the file."""
    from topictone.infer.io.readers import read_records

    content = '\ufeff\n{"a": 1}\n\n  \n{"a": 2}\r\n{"a": 3}'
    f = write(tmp_path / "a.jsonl", content)
    sizes = [size for _, _, size, _ in read_records(f)]
    assert sum(sizes) == f.stat().st_size and len(sizes) == 3
    assert [text for _, _, _, text in read_records(f)][1] == '{"a": 2}\r\n'


def test_csv_writer_reorders_keys_and_refuses_other_columns(tmp_path):
    with open_writer(tmp_path / "o.csv") as writer:
        writer.write([{"a": 1, "b": "x"}, {"b": "y", "a": 2}])
    assert (tmp_path / "o.csv").read_text().splitlines() == ["a,b", "1,x", "2,y"]
    for row, field in (({"a": 3}, "b"), ({"a": 3, "b": 4, "c": 5}, "c")):
        with pytest.raises(RowValueError) as err, open_writer(tmp_path / "p.csv") as writer:
            writer.write([{"a": 1, "b": 2}, row])
        assert (err.value.index, err.value.field) == (1, field)
    with pytest.raises(RowValueError, match="cannot start with U\\+FEFF"):
        with open_writer(tmp_path / "q.csv") as writer:
            writer.write([{"\ufeffa": 1}])
    assert not (tmp_path / "p.csv").exists() and not (tmp_path / "q.csv").exists()


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        (b"\x00\xff", "binary"),
        (datetime.date(2026, 1, 2), "date"),
        ([("k", 1)], "map"),
        ({"n": [decimal.Decimal("1.1")]}, "decimal"),
        (np.float64(0.5), "float64"),
    ],
)
def test_csv_cells_are_refused_without_an_exact_text(tmp_path, value, kind):
    with pytest.raises(RowValueError, match=f"a {kind} value has no exact") as err:
        with open_writer(tmp_path / "o.csv") as writer:
            writer.write([{"ok": 1, "v": value}])
    assert (err.value.index, err.value.field) == (0, "v")


def test_parquet_writer_reads_each_value_back(tmp_path):
    """A key the given type lacks would be dropped by Arrow: the row is refused instead."""
    import pyarrow as pa

    known = pa.schema([("m", pa.struct([("a", pa.int64())]))])
    with pytest.raises(RowValueError, match="would read back from Parquet as") as err:
        with open_writer(tmp_path / "o.parquet", schema=known) as writer:
            writer.write([{"m": {"a": 1}}, {"m": {"a": 2, "b": 3}}])
    assert (err.value.index, err.value.field) == (1, "m")
    assert not (tmp_path / "o.parquet").exists()


def test_parquet_schema_names_the_row_that_fits_no_type():
    from topictone.infer.io.writers import ParquetSchema

    schema = ParquetSchema()
    for key, row in enumerate([{"a": 1, "m": {"x": 1}}, {"a": 2.5, "m": {"y": "s"}}, {"a": None}]):
        schema.add(key, row)
    result = schema.result()
    assert str(result.field("a").type) == "double"
    assert str(result.field("m").type) == "struct<x: int64, y: string>"
    schema.add(9, {"a": "text"})
    with pytest.raises(
        RowValueError, match="holds string where an earlier row holds double"
    ) as err:
        schema.result()
    assert (err.value.index, err.value.field) == (9, "a")


def test_parquet_struct_with_a_repeated_field_name_is_refused(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    kind = pa.struct([("a", pa.int64()), ("a", pa.int64())])
    table = pa.table({"text": ["x"], "m": pa.array([(1, 2)], kind)})
    pq.write_table(table, tmp_path / "d.parquet")
    with pytest.raises(InputError, match=r"d\.parquet: field 'm': duplicate field 'a' inside"):
        list(read_rows(tmp_path / "d.parquet"))
