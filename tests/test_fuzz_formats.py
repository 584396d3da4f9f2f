"""Every input format into every output format, fuzzed: heterogeneous rows (nested
objects gaining and losing keys across batches, mixed types, numbers as odd literal text,
escapes and lone surrogates, empty objects and lists, duplicate keys) go through
``predict_file`` with the tiny TF-IDF model. A run either writes every input field back
exactly (checked against the input as an independent reader parses it; JSONL numbers by
their literal text) or stops with one line naming the file and line, leaving nothing.

The default suite runs a few dozen examples; ``-m slow`` runs many more."""

from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from topictone import infer
from topictone.infer.batch.local import predict_file
from topictone.infer.errors import TopictoneError

OUTPUTS = ("jsonl", "csv", "parquet")
QUICK = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
LONG = settings(QUICK, max_examples=3000)


@pytest.fixture(scope="module")
def predictor(tfidf_run):
    return infer.load(tfidf_run / "model")


# --- generated input --------------------------------------------------------------------

WORDS = ["army tests missile", "phone launch", "hello world", "सेना ने मिसाइल", "बाज़ार", "ok"]
texts = st.builds(lambda w, n: f"{w} {n}", st.sampled_from(WORDS), st.integers(0, 99))
names = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=6).filter(
    lambda k: k not in ("text", "prediction") and not k.startswith("pred_")
)
ODD_NUMBERS = [
    "0", "-0", "1E2", "1e-2", "0.1", "1.50", "-0.0", "19.999999999999999999", "1e400",
    "1e-400", "9007199254740993", "18446744073709551616", "-9223372036854775808",
    "NaN", "-Infinity", "2.5e-3",
]  # fmt: skip
# JSONL keys may be anything JSON can escape, lone surrogates included.
json_names = st.text(alphabet=st.characters(blacklist_categories=()), max_size=4).filter(
    lambda k: k not in ("text", "prediction") and not k.startswith("pred_")
)
numbers = (
    st.sampled_from(ODD_NUMBERS)
    | st.integers().map(str)
    | st.floats().map(repr).filter(lambda r: r not in ("nan", "inf", "-inf"))
)


def json_string(text: str, ascii_only: bool) -> str:
    return json.dumps(text, ensure_ascii=ascii_only)


strings = st.builds(json_string, st.text(max_size=8), st.booleans()) | st.sampled_from(
    ['"\\ud800"', '"a\\udfffb"', '"\\ud83d\\ude00"', '"\\u0000"', '"}"', '"\\""']
)
spaces = st.sampled_from(["", " ", "  ", "\t"])


def now_and_then(draw: st.DrawFn, pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The pairs, now and then with one of them repeated (a duplicate key)."""
    if pairs and draw(st.sampled_from(range(40))) == 7:
        return [*pairs, draw(st.sampled_from(pairs))]
    return pairs


@st.composite
def objects(draw: st.DrawFn, children: st.SearchStrategy[str]) -> str:
    """A JSON object's text; keys drawn from a small pool, so rows share and lose keys."""
    keys = draw(st.lists(st.sampled_from(["a", "b", "c", "é", ""]), unique=True, max_size=3))
    pairs = now_and_then(draw, [(json.dumps(k), draw(children)) for k in keys])
    sep, gap = draw(spaces), draw(spaces)
    return "{" + gap + f",{sep}".join(f"{k}:{sep}{v}" for k, v in pairs) + gap + "}"


@st.composite
def arrays(draw: st.DrawFn, children: st.SearchStrategy[str]) -> str:
    sep = draw(spaces)
    return "[" + f",{sep}".join(draw(st.lists(children, max_size=3))) + "]"


values = st.recursive(
    st.sampled_from(["null", "true", "false"]) | numbers | strings,
    lambda children: objects(children) | arrays(children),
    max_leaves=6,
)


@st.composite
def jsonl_lines(draw: st.DrawFn) -> list[str]:
    """Lines of JSON objects, each with a text and some of a few fields: every row the
    same fields (in any order) or each row its own."""
    pool = ["meta", "n", "tags", "x", *draw(st.lists(json_names, unique=True, max_size=2))]
    pool = list(dict.fromkeys(pool))
    same_fields = draw(st.booleans())
    fields_of_all = draw(st.lists(st.sampled_from(pool), unique=True, max_size=4))
    lines = []
    for _ in range(draw(st.integers(1, 7))):
        keys = fields_of_all if same_fields else draw(st.lists(st.sampled_from(pool), unique=True))
        pairs = [(json.dumps(k), draw(values)) for k in keys]
        text = json.dumps(draw(texts), ensure_ascii=draw(st.booleans()))
        pairs = draw(st.permutations(now_and_then(draw, [('"text"', text), *pairs])))
        sep = draw(spaces)
        body = f",{sep}".join(f"{k}:{sep}{v}" for k, v in pairs)
        lines.append(draw(spaces) + "{" + body + "}" + draw(st.sampled_from(["", " ", "\r"])))
        lines += [" "] * draw(st.sampled_from([0, 0, 0, 1]))  # now and then a blank line
    if draw(st.booleans()):
        lines[0] = "\ufeff" + lines[0]  # a byte-order mark
    return lines


# --- an independent reader ----------------------------------------------------------------


@dataclass(frozen=True)
class Num:
    """A JSON number by its literal text."""

    text: str


def literal(text: str) -> Any:
    """JSON with numbers as written and objects as pair lists (order and repeats kept)."""
    return json.loads(
        text, parse_float=Num, parse_int=Num, parse_constant=Num, object_pairs_hook=list
    )


def has_repeats(value: Any) -> bool:
    if isinstance(value, list) and all(isinstance(p, tuple) for p in value) and value:
        keys = [k for k, _ in value]
        return len(set(keys)) < len(keys) or any(has_repeats(v) for _, v in value)
    if isinstance(value, list):
        return any(has_repeats(v) for v in value)
    return False


def has_lone_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def same(wrote: Any, read: Any) -> bool:
    """Parquet's value equals the input's: a field or key the input lacks reads as null,
    an integer may come back as the equal float, NaN equals NaN."""
    if isinstance(wrote, dict):
        return isinstance(read, dict) and all(
            same(wrote.get(k), read.get(k)) for k in {*wrote, *read}
        )
    if isinstance(wrote, list):
        return isinstance(read, list) and len(wrote) == len(read) and all(map(same, wrote, read))
    if isinstance(wrote, float) and math.isnan(wrote):
        return isinstance(read, float) and math.isnan(read)
    if type(wrote) is int:
        return type(read) in (int, float) and wrote == read
    return type(wrote) is type(read) and wrote == read


def csv_text(value: Any) -> str:
    """What a CSV cell holds for a value read from Parquet or CSV."""
    if value is None:
        return ""
    return value if isinstance(value, str) else repr(value)


def jsonl_lines_of(path: Path) -> list[Any]:
    """A JSONL file's records: lines end at \\n only (U+2028 or \\x85 are text)."""
    lines = path.read_text(encoding="utf-8").split("\n")
    assert lines[-1] == ""
    return [json.loads(line) for line in lines[:-1]]


# --- the runs ------------------------------------------------------------------------------


def attempt(predictor, source: Path, kind: str) -> Path | None:
    """Run ``source`` into ``kind``; the output, or None after a checked one-line error."""
    output = source.parent / f"out.{kind}"
    for stale in source.parent.glob("out.*"):
        stale.unlink()
    try:
        predict_file(predictor, source, output, batch_size=2, progress=False)
    except TopictoneError as err:
        message = str(err)
        # A field name is the input's own text: topictone.infer.errors.InputError shows it as is.
        assert "\n" not in message.replace(getattr(err, "field", None) or "", "")
        assert re.match(rf"{re.escape(str(source))}:\d+: ", message), message
        assert [p.name for p in source.parent.iterdir()] == [source.name], "left behind"
        return None
    return output


def check_jsonl_input(predictor, folder: Path, lines: list[str]) -> None:
    source = folder / "in.jsonl"
    source.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    lines = [line.lstrip("\ufeff") for line in lines if line.strip()]
    parsed = [literal(line) for line in lines]
    repeats = any(has_repeats(p) for p in parsed)
    for kind in OUTPUTS:
        output = attempt(predictor, source, kind)
        if kind == "jsonl":
            assert (output is None) == repeats, lines
        if output is None:
            continue
        assert not repeats
        if kind == "jsonl":
            back = output.read_text(encoding="utf-8").split("\n")
            assert back[-1] == "" and len(back) == len(lines) + 1
            for pairs, line in zip(parsed, back, strict=False):
                got = literal(line)
                assert got[:-1] == pairs and got[-1][0] == "prediction"
        elif kind == "csv":
            check_csv_from_jsonl(parsed, output)
        else:
            check_parquet(lines, output)


def check_csv_from_jsonl(parsed: list[list], output: Path) -> None:
    with output.open(encoding="utf-8", newline="") as handle:
        back = list(csv.DictReader(handle))
    assert len(back) == len(parsed)
    for pairs, row in zip(parsed, back, strict=True):
        for key, value in pairs:
            cell = row[key]
            if isinstance(value, str):
                assert cell == value
            elif isinstance(value, Num):
                assert cell == value.text
            elif value is None or isinstance(value, bool):
                assert cell == ("" if value is None else str(value))
            else:
                assert literal(cell) == value


def check_parquet(lines: list[str], output: Path) -> None:
    import pyarrow.parquet as pq

    back = pq.read_table(output).to_pylist()
    rows = [json.loads(line) for line in lines]
    assert len(back) == len(rows)
    for row, read in zip(rows, back, strict=True):
        assert same(row, {k: v for k, v in read.items() if k != "prediction"}), (row, read)


@QUICK
@given(lines=jsonl_lines())
def test_jsonl_into_every_format(predictor, tmp_path_factory, lines):
    check_jsonl_input(predictor, tmp_path_factory.mktemp("fuzz"), lines)


@pytest.mark.slow
@LONG
@given(lines=jsonl_lines())
def test_jsonl_into_every_format_at_length(predictor, tmp_path_factory, lines):
    check_jsonl_input(predictor, tmp_path_factory.mktemp("fuzz"), lines)


cells = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=8)


@st.composite
def csv_tables(draw: st.DrawFn) -> tuple[list[str], list[list[str]]]:
    header = ["text", *draw(st.lists(names, unique=True, max_size=3))]
    rows = [
        [draw(texts), *(draw(cells) for _ in header[1:])] for _ in range(draw(st.integers(1, 6)))
    ]
    return header, rows


def check_csv_input(predictor, folder: Path, header: list[str], rows: list[list[str]]) -> None:
    source = folder / "in.csv"
    with source.open("w", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerows([header, *rows])
    records = [dict(zip(header, row, strict=True)) for row in rows]
    for kind in OUTPUTS:
        output = attempt(predictor, source, kind)
        assert output is not None, (kind, header, rows)  # text only: always written
        if kind == "jsonl":
            back = jsonl_lines_of(output)
        elif kind == "csv":
            with output.open(encoding="utf-8", newline="") as handle:
                back = list(csv.DictReader(handle))
        else:
            import pyarrow.parquet as pq

            back = pq.read_table(output).to_pylist()
        assert [{k: r[k] for k in header} for r in back] == records


@QUICK
@given(table=csv_tables())
def test_csv_into_every_format(predictor, tmp_path_factory, table):
    check_csv_input(predictor, tmp_path_factory.mktemp("fuzz"), *table)


@pytest.mark.slow
@LONG
@given(table=csv_tables())
def test_csv_into_every_format_at_length(predictor, tmp_path_factory, table):
    check_csv_input(predictor, tmp_path_factory.mktemp("fuzz"), *table)


def arrow_columns() -> dict[str, tuple[Any, st.SearchStrategy]]:
    import datetime

    import pyarrow as pa

    plain_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=6)
    return {
        "i": (pa.int64(), st.none() | st.integers(-(2**63), 2**63 - 1)),
        "f": (pa.float64(), st.none() | st.floats()),
        "b": (pa.bool_(), st.none() | st.booleans()),
        "s": (pa.string(), st.none() | plain_text),
        "l": (pa.list_(pa.int64()), st.none() | st.lists(st.integers(-5, 5), max_size=3)),
        "m": (
            pa.struct([("a", pa.int64()), ("b", pa.string())]),
            st.none()
            | st.fixed_dictionaries({"a": st.none() | st.integers(-5, 5), "b": plain_text}),
        ),
        "raw": (pa.binary(), st.none() | st.binary(max_size=4)),
        "day": (pa.date32(), st.none() | st.dates(datetime.date(1970, 1, 1))),
        "mp": (
            pa.map_(pa.string(), pa.int64()),
            st.none() | st.lists(st.tuples(plain_text, st.integers(-5, 5)), max_size=2),
        ),
        "u": (pa.uint64(), st.none() | st.integers(0, 2**64 - 1)),
        "ls": (
            pa.list_(pa.struct([("k", pa.string())])),
            st.none() | st.lists(st.fixed_dictionaries({"k": st.none() | plain_text}), max_size=2),
        ),
        '\ufeff odd, "name"\n': (pa.string(), st.none() | plain_text),
    }


@st.composite
def parquet_tables(draw: st.DrawFn) -> tuple[list[str], list[dict]]:
    columns = arrow_columns()
    chosen = draw(st.lists(st.sampled_from(sorted(columns)), unique=True, max_size=4))
    rows = [
        {"text": draw(texts), **{c: draw(columns[c][1]) for c in chosen}}
        for _ in range(draw(st.integers(1, 6)))
    ]
    return chosen, rows


def check_parquet_input(predictor, folder: Path, chosen: list[str], rows: list[dict]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = arrow_columns()
    schema = pa.schema([("text", pa.string()), *((c, columns[c][0]) for c in chosen)])
    source = folder / "in.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), source)
    no_text_form = any(  # binary and dates; a map with entries (pairs)
        r[c] is not None and (c != "mp" or r[c])
        for r in rows
        for c in chosen
        if c in ("raw", "day", "mp")
    )
    for kind in OUTPUTS:
        output = attempt(predictor, source, kind)
        assert (output is None) == (no_text_form and kind != "parquet"), (kind, rows)
        if output is None:
            continue
        if kind == "parquet":
            back = pq.read_table(output)
            assert back.schema.remove(back.schema.get_field_index("prediction")) == schema
            assert all(map(same, rows, back.drop_columns(["prediction"]).to_pylist()))
        elif kind == "jsonl":
            back = jsonl_lines_of(output)
            assert all(
                same(r, {k: v for k, v in b.items() if k != "prediction"})
                for r, b in zip(rows, back, strict=True)
            )
            assert all(type(b[c]) is type(r[c]) for r, b in zip(rows, back, strict=True) for c in r)
        else:
            with output.open(encoding="utf-8", newline="") as handle:
                back = list(csv.DictReader(handle))
            for row, cells in zip(rows, back, strict=True):
                for key, value in row.items():
                    if isinstance(value, list | dict):  # JSON: compared as values
                        assert same(value, json.loads(cells[key]))
                    else:
                        assert cells[key] == csv_text(value)


@QUICK
@given(table=parquet_tables())
def test_parquet_into_every_format(predictor, tmp_path_factory, table):
    check_parquet_input(predictor, tmp_path_factory.mktemp("fuzz"), *table)


@pytest.mark.slow
@LONG
@given(table=parquet_tables())
def test_parquet_into_every_format_at_length(predictor, tmp_path_factory, table):
    check_parquet_input(predictor, tmp_path_factory.mktemp("fuzz"), *table)


def test_the_fuzzer_meets_what_it_must(predictor, tmp_path):
    """Fixed examples of what the strategies are for, so they never silently stop meeting
    it: a key gained across a batch, odd literals, a repeated key."""
    check_jsonl_input(
        predictor,
        tmp_path,
        [
            '{"text": "ok 1", "meta": {"a": 1}}',
            '{"text": "ok 2", "meta": {}}',
            '{"text": "ok 3", "meta": {"a": 2, "b": "\\ud800"}, "x": 1E2}',
        ],
    )
