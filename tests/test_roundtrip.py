"""Every value the batch reader accepts comes back in the output exactly as it was read:
hypothesis writes odd rows (odd Unicode, lone surrogates in JSON, NaN, big integers,
nested values, CSV quotes and line breaks, Parquet's own types), the real CLI path
predicts, and the output's input fields must equal the input's."""

from __future__ import annotations

import csv
import datetime
import decimal
import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from topictone import infer
from topictone.infer.batch.local import predict_file
from topictone.infer.text import text_problem

SETTINGS = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

# Texts a model can read (Predictor.preprocess refuses the others, every path alike).
texts = st.text(min_size=1, max_size=40).filter(lambda t: text_problem(t) is None)
keys = st.text(max_size=8).filter(lambda k: k not in ("text", "prediction"))
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20),  # lone surrogates included: JSON escapes them
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)


@pytest.fixture(scope="module")
def predictor(tfidf_run):
    return infer.load(tfidf_run / "model")


def run(predictor, source: Path, output: Path) -> None:
    predict_file(predictor, source, output, batch_size=3, progress=False)


@SETTINGS
@given(
    rows=st.lists(
        st.tuples(texts, st.dictionaries(keys, json_values, max_size=4)), min_size=1, max_size=6
    )
)
def test_jsonl_round_trip(predictor, rows):
    records = [{"text": text, **extra} for text, extra in rows]
    with tempfile.TemporaryDirectory() as tmp:
        source, output = Path(tmp) / "in.jsonl", Path(tmp) / "out.jsonl"
        # ensure_ascii: the only way a file can carry a lone surrogate
        source.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
        run(predictor, source, output)
        lines = output.read_text(encoding="utf-8").split("\n")[:-1]  # JSONL: \n only
        back = [json.loads(line) for line in lines]
    assert len(back) == len(records)
    for record, row in zip(records, back, strict=True):
        assert set(row) == {*record, "prediction"}
        # Compared as JSON text: NaN equals itself there, and 1 stays distinct from 1.0.
        assert json.dumps({k: row[k] for k in record}) == json.dumps(record)


cells = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)), max_size=20
)  # UTF-8 files cannot hold lone surrogates
headers = st.lists(
    cells.filter(lambda h: h != "text" and not h.startswith(("pred_", "\ufeff"))),
    unique=True,
    max_size=3,
)


@SETTINGS
@given(header=headers, data=st.data())
def test_csv_round_trip(predictor, header, data):
    columns = ["text", *header]
    n = data.draw(st.integers(min_value=1, max_value=5))
    rows = [
        [data.draw(texts.filter(lambda t: "\ufeff" not in t[:1]))]
        + [data.draw(cells) for _ in header]
        for _ in range(n)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        source, output = Path(tmp) / "in.csv", Path(tmp) / "out.csv"
        with source.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(columns)
            writer.writerows(rows)
        run(predictor, source, output)
        with output.open(encoding="utf-8", newline="") as handle:
            back = list(csv.reader(handle))
    assert back[0][: len(columns)] == columns
    assert [r[: len(columns)] for r in back[1:]] == rows


@SETTINGS
@given(
    rows=st.lists(
        st.fixed_dictionaries(
            {
                "text": cells.filter(lambda t: text_problem(t) is None),
                "n": st.none() | st.integers(min_value=-(2**63), max_value=2**63 - 1),
                "u": st.integers(min_value=0, max_value=2**64 - 1),
                "x": st.floats(allow_nan=True),
                "flag": st.none() | st.booleans(),
                "tags": st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",)))),
                "when": st.datetimes(
                    min_value=datetime.datetime(1900, 1, 1), timezones=st.just(datetime.UTC)
                ),
                "day": st.dates(),
                "blob": st.binary(max_size=10),
                "price": st.decimals(min_value=-(10**6), max_value=10**6, places=2),
                "pair": st.fixed_dictionaries({"a": st.integers(-5, 5), "b": st.text(max_size=3)}),
            }
        ),
        min_size=1,
        max_size=5,
    )
)
def test_parquet_round_trip(predictor, rows):
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema(
        [
            ("text", pa.string()),
            ("n", pa.int64()),
            ("u", pa.uint64()),
            ("x", pa.float64()),
            ("flag", pa.bool_()),
            ("tags", pa.list_(pa.string())),
            ("when", pa.timestamp("us", tz="UTC")),
            ("day", pa.date32()),
            ("blob", pa.binary()),
            ("price", pa.decimal128(12, 2)),
            ("pair", pa.struct([("a", pa.int8()), ("b", pa.string())])),
        ]
    )
    rows = [
        {**r, "price": decimal.Decimal(r["price"]).quantize(decimal.Decimal("0.01"))} for r in rows
    ]
    table = pa.Table.from_pylist(rows, schema=schema)
    with tempfile.TemporaryDirectory() as tmp:
        source, output = Path(tmp) / "in.parquet", Path(tmp) / "out.parquet"
        pq.write_table(table, source)
        run(predictor, source, output)
        back = pq.read_table(output)
    assert back.schema.names == [*schema.names, "prediction"]
    assert back.select(schema.names).schema == schema
    for name in schema.names:  # compared by repr: NaN equals itself there
        assert repr(back.column(name).to_pylist()) == repr(table.column(name).to_pylist())
