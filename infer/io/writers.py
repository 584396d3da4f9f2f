"""Row writers for JSONL, CSV and Parquet: every value comes out as it went in, or is
refused at its row and field.

A JSONL line keeps its own bytes (the prediction is spliced in, :class:`Spliced`), a JSONL
number goes into a CSV cell as written (:class:`JsonText`), Parquet rows are read back and
compared before they are written, and a value an output format has no exact form for
(bytes into JSON, ``19.999999999999999999`` into a 64-bit float) is an error.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, final

import orjson

from topictone.infer.errors import TopictoneError
from topictone.infer.io.readers import PLAIN_TYPES, Row, plain_problem


class RowWriter(Protocol):
    def write(self, rows: list[Row]) -> None:
        """Write rows; a value the format cannot hold raises :class:`RowValueError`."""


class RowValueError(TopictoneError):
    """A row the output format cannot hold faithfully: ``index`` in the batch, ``field``."""

    def __init__(self, index: int, field: str | None, message: str) -> None:
        self.index, self.field, self.reason = index, field, message
        super().__init__(message)

    def __reduce__(self) -> tuple:
        return type(self), (self.index, self.field, self.reason)


@final  # no subclasses: writers tell it from a row by ``type(r) is Spliced``
@dataclass(frozen=True, slots=True)
class Spliced:
    """A JSONL input line with one field added: the line's own text is kept, so every
    input field (numbers as written, escapes, spacing) comes out byte for byte."""

    text: str  # the input line, as read (without a BOM)
    field: str
    value: Any


class JsonText(str):
    """A JSON value's source text (from a JSONL line), written into a CSV cell as is: a
    number as written (``1E2`` stays ``1E2``), a nested value with its literals."""


# orjson writes what the standard library would, compactly and about ten times faster;
# anything it would write differently goes the standard library's way: values it would
# convert (dates, subclasses: passed through to ``_refuse``), what it refuses (integers
# over 64 bits, lone surrogates, keys that are not strings) and NaN or infinity, which it
# writes as null (found by a walk only where a line holds null).
_ORJSON_OPTIONS = (
    orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_SUBCLASS
)
_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def _refuse(value: Any) -> Any:
    raise TypeError(type(value).__name__)


def _json_line(row: Row, index: int) -> str:
    try:
        line = orjson.dumps(row, default=_refuse, option=_ORJSON_OPTIONS)
        if b"null" not in line or _finite(row):
            return line.decode("utf-8") + "\n"
    except orjson.JSONEncodeError:
        pass
    try:
        text = _JSON.encode(row)
    except (TypeError, ValueError) as err:
        field = next((k for k, v in row.items() if not _json_ok(v)), None)
        raise RowValueError(index, field, f"cannot be written as JSON ({err})") from None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate, as JSON allows: kept as its \u escape
        text = json.dumps(row, separators=(",", ":"))
    return text + "\n"


def _spliced_line(item: Spliced, index: int) -> str:
    """The input line with ``"field":value`` before its closing brace."""
    body = item.text.strip(" \t\r\n")[:-1].rstrip(" \t\r\n")  # without the "}"
    added = _json_line({item.field: item.value}, index)[1:-2]  # without "{", "}\n"
    return f"{body}{'' if body.endswith('{') else ','}{added}}}\n"


def _finite(value: Any) -> bool:
    """No NaN or infinity anywhere in ``value`` (which orjson would write as null)."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, list | tuple):
        return all(_finite(v) for v in value)
    return True


def _json_ok(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def _write_text(handle: Any, text: str, rows: Sequence[Any]) -> None:
    """One batch's text in one write: an unencodable character (a lone surrogate in a CSV
    cell, any non-ASCII character on an ASCII terminal) is named by row and field, and
    nothing of the batch is written."""
    try:
        handle.write(text)
    except UnicodeEncodeError as err:
        encoding = getattr(handle, "encoding", None) or "utf-8"
        for index, row in enumerate(rows):
            for field, value in _texts_of(row):
                try:
                    value.encode(encoding)
                except UnicodeEncodeError:
                    raise RowValueError(
                        index, field, f"cannot be written as {encoding} text ({err.reason})"
                    ) from None
        raise RowValueError(
            0, None, f"cannot be written as {encoding} text ({err.reason})"
        ) from None


def _texts_of(row: Any) -> Iterator[tuple[str | None, str]]:
    """Every string in an output row with the field that holds it (keys included)."""
    if isinstance(row, Spliced):
        yield None, row.text
        yield row.field, row.field
        yield row.field, json.dumps(row.value, ensure_ascii=False)
        return
    for field, value in row.items():
        yield field, field
        if isinstance(value, str):
            yield field, value
        elif isinstance(value, list | dict):
            yield field, json.dumps(value, ensure_ascii=False, default=repr)


class _JsonlWriter:
    def __init__(self, handle: Any) -> None:
        self.handle = handle

    def write(self, rows: Sequence[Row | Spliced]) -> None:
        text = "".join(
            _spliced_line(r, i) if type(r) is Spliced else _json_line(r, i)
            for i, r in enumerate(rows)
        )
        _write_text(self.handle, text, rows)


class _CsvWriter:
    """CSV with the first row's columns (a later row may list them in another order, not
    others); nested values are JSON-encoded, :class:`JsonText` is written as is."""

    def __init__(self, handle: Any, columns: list[str] | None = None) -> None:
        self.handle = handle
        self.columns: list[str] | None = list(columns) if columns else None
        self.header = bool(columns)  # continuing a file whose header is written

    def write(self, rows: list[Row]) -> None:
        if not rows:
            return
        columns = self.columns = self.columns or self._header(rows[0])
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        if not self.header:
            writer.writerow(columns)
        for index, row in enumerate(rows):
            if list(row) != columns:
                row = self._reordered(row, index)
            writer.writerow([_cell(row[c], index, c) for c in columns])
        _write_text(self.handle, buffer.getvalue(), rows)  # row 0 names any header problem
        self.header = True

    @staticmethod
    def _header(row: Row) -> list[str]:
        columns = list(row)
        if columns and columns[0].startswith("\ufeff"):  # a reader would take it for a BOM
            raise RowValueError(
                0, columns[0], "a CSV header cannot start with U+FEFF (a byte-order mark)"
            )
        return columns

    def _reordered(self, row: Row, index: int) -> Row:
        assert self.columns is not None
        if row.keys() != set(self.columns):
            missing = next((c for c in self.columns if c not in row), None)
            extra = next((k for k in row if k not in self.columns), None)
            raise RowValueError(
                index,
                missing or extra,
                (
                    "missing; every CSV row needs the first row's columns"
                    if missing
                    else "not a column of the first row (CSV needs one header); write JSONL"
                ),
            )
        return row


def _cell(value: Any, index: int, field: str) -> Any:
    """A CSV cell: text as is, numbers and booleans as Python writes them, None empty,
    lists and objects as JSON; a value with no exact text form is refused."""
    kind = type(value)
    if kind in PLAIN_TYPES or kind is JsonText:
        return value
    if kind is list or kind is dict:
        if problem := plain_problem(value):
            raise RowValueError(index, field, problem)
        return json.dumps(value, ensure_ascii=False)
    raise RowValueError(index, field, plain_problem(value) or "has no exact CSV form")


def text_writer(handle: Any, kind: str, columns: list[str] | None = None) -> RowWriter:
    """JSONL or CSV rows onto an open text handle (CSV: ``columns`` continue a file whose
    header is already written)."""
    return _JsonlWriter(handle) if kind == "jsonl" else _CsvWriter(handle, columns)


def _arrow_errors() -> tuple[type[BaseException], ...]:
    """What converting Python values to Arrow raises for a value it cannot hold."""
    import pyarrow as pa

    return (pa.ArrowException, TypeError, ValueError, OverflowError, RecursionError)


def _arrow_reason(err: BaseException) -> str:
    if isinstance(err, OverflowError):
        return "a number outside the 64-bit integers Parquet holds; write JSONL or CSV"
    if isinstance(err, UnicodeError):
        return "a lone surrogate, which Parquet's UTF-8 text cannot hold; write JSONL"
    first = (str(err).strip().splitlines() or [type(err).__name__])[0]
    return f"cannot be written as Parquet ({first})"


def _empty_structs(kind: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Where an Arrow type has a struct without fields (``{}``), which Parquet refuses."""
    import pyarrow as pa

    if pa.types.is_struct(kind) and kind.num_fields == 0:
        yield path
    for i in range(kind.num_fields):
        child = kind.field(i)
        yield from _empty_structs(child.type, (*path, child.name))


class ParquetSchema:
    """The Parquet schema that holds every row added: every field any row has, each
    typed by Arrow's inference promoted across all rows (a field with integers and one
    float holds floats; an object that gains a key in any row has that key, null in the
    rows without it). A value that fits no common type is a :class:`RowValueError` at
    the key its row was added with, naming the field."""

    CHUNK = 4096  # rows inferred together: one Arrow conversion per field per chunk

    def __init__(self) -> None:
        import pyarrow as pa

        self.schema = pa.schema([])
        self.chunk: list[tuple[int, Row]] = []
        self.empty: dict[tuple[str, tuple[str, ...]], int] = {}  # first key with a {} there

    def add(self, key: int, row: Row) -> None:
        self.chunk.append((key, row))
        if len(self.chunk) >= self.CHUNK:
            self._fold()

    def result(self) -> Any:
        """The schema; an object that is empty (``{}``) in every row is refused."""
        self._fold()
        for field in self.schema:
            for path in _empty_structs(field.type):
                raise RowValueError(
                    self.empty.get((field.name, path), 0),
                    field.name,
                    "an empty object {} with no key in any row; Parquet cannot store it "
                    "(write JSONL, or give it a key)",
                )
        return self.schema

    def _fold(self) -> None:
        import pyarrow as pa

        if not self.chunk:
            return
        rows = [row for _, row in self.chunk]
        try:
            names = dict.fromkeys(k for row in rows for k in row)
            types = [pa.field(n, pa.array([row.get(n) for row in rows]).type) for n in names]
            self.schema = _unify(self.schema, pa.schema(types))
        except _arrow_errors():
            self.schema = self._row_by_row()
        else:
            for field in types:
                self._note_empty(field)
        self.chunk = []

    def _row_by_row(self) -> Any:
        """The chunk added one value at a time, to name the first that fits no type."""
        import pyarrow as pa

        schema = self.schema
        for key, row in self.chunk:
            for name, value in row.items():
                try:
                    field = pa.field(name, pa.array([value]).type)
                except _arrow_errors() as err:
                    raise RowValueError(key, name, _arrow_reason(err)) from None
                try:
                    schema = _unify(schema, pa.schema([field]))
                except _arrow_errors():
                    raise RowValueError(
                        key,
                        name,
                        f"holds {field.type} where an earlier row holds "
                        f"{schema.field(name).type}; a Parquet column has one type (write "
                        "JSONL, or give the field one type)",
                    ) from None
                self._note_empty(field, key)
        return schema

    def _note_empty(self, field: Any, key: int | None = None) -> None:
        """Remember the first row holding each empty object, to name it if it stays empty."""
        import pyarrow as pa

        for path in _empty_structs(field.type):
            if (field.name, path) in self.empty:
                continue
            first = key
            if first is None:  # a whole chunk: find the row
                first = next(
                    (
                        k
                        for k, row in self.chunk
                        if path in set(_empty_structs(pa.array([row.get(field.name)]).type))
                    ),
                    self.chunk[0][0],
                )
            self.empty[(field.name, path)] = first


def _unify(schema: Any, other: Any) -> Any:
    import pyarrow as pa

    return pa.unify_schemas([schema, other], promote_options="permissive")


def _same(wrote: Any, read: Any) -> bool:
    """Whether Parquet gave back the value written: equal and of the same kind (NaN is
    itself; an integer in a float column counts when equal; a key an object lacks reads
    back as null, as a field a row lacks does)."""
    kind = type(wrote)
    if kind is dict:
        return (
            type(read) is dict
            and all(_same(v, read.get(k)) for k, v in wrote.items())
            and all(read[k] is None for k in read.keys() - wrote.keys())
        )
    if kind is list or kind is tuple:
        return type(read) is kind and len(read) == len(wrote) and all(map(_same, wrote, read))
    if kind is float:
        return type(read) is float and (wrote == read or (wrote != wrote and read != read))
    if kind is int:
        return (type(read) is int or type(read) is float) and wrote == read
    return type(read) is kind and wrote == read


def _shown(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class ParquetWriter:
    """Parquet row groups, each value read back and compared before it is written.

    ``schema`` gives the types of the fields it names (the output's whole schema, or the
    input's and the prediction's); any other field takes the type inferred from every row
    of the first write (:class:`ParquetSchema`), and a field outside them in a later
    write is refused with its line, never written without it. ``own`` are columns the
    caller built with their given types (the predictions), placed last and not read
    back. Batches are converted at once (so a bad row is named in its batch) and written
    ``ROW_GROUP_ROWS`` rows to a row group: with one group per batch of 512 the writer's
    memory grew with the input (BENCHMARKS.md)."""

    ROW_GROUP_ROWS = 4096  # 8 batches of 512 (benchmarks/memory/parquet_row_groups.py)

    def __init__(self, path: str, schema: Any = None, own: Collection[str] = ()) -> None:
        self.path, self.known, self.own = path, schema, frozenset(own)
        self.schema: Any = None
        self.writer: Any = None
        self.pending: list[Any] = []  # Arrow tables not yet written

    def write(self, rows: list[Row]) -> None:
        if not rows:
            return
        if self.writer is None:
            self._open(rows)
        columns = set(self.schema.names)
        for index, row in enumerate(rows):
            extra = next((k for k in row if k not in columns), None)
            if extra is not None:
                raise RowValueError(
                    index,
                    extra,
                    "has no column in the Parquet output (its columns come from the first "
                    "rows written); write JSONL, or give the first rows this field",
                )
        table = _table(rows, self.schema)
        self._verify(table, rows)
        self.pending.append(table)
        if sum(t.num_rows for t in self.pending) >= self.ROW_GROUP_ROWS:
            self._flush()

    def _open(self, rows: list[Row]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        known = self.known if self.known is not None else pa.schema([])
        names = set(known.names)
        inferred = ParquetSchema()
        for index, row in enumerate(rows):
            inferred.add(index, {k: v for k, v in row.items() if k not in names})
        own = [f for f in known if f.name in self.own]
        schema = pa.schema(
            [*(f for f in known if f.name not in self.own), *inferred.result(), *own]
        )
        try:
            self.writer = pq.ParquetWriter(self.path, schema)
        except _arrow_errors() as err:
            raise RowValueError(0, None, _arrow_reason(err)) from None
        self.schema = schema

    def _verify(self, table: Any, rows: list[Row]) -> None:
        names = [n for n in self.schema.names if n not in self.own]
        back = table.select(names).to_pylist()
        for index, (row, read) in enumerate(zip(rows, back, strict=True)):
            for name in names:
                if not _same(row.get(name), read[name]):
                    raise RowValueError(
                        index,
                        name,
                        f"would read back from Parquet as {_shown(read[name])}, not as "
                        "written; write JSONL",
                    )

    def _flush(self) -> None:
        import pyarrow as pa

        if self.pending:
            table = pa.concat_tables(self.pending)
            self.writer.write_table(table, row_group_size=table.num_rows)
            self.pending = []

    def close(self) -> None:
        if self.writer is not None:
            self._flush()
            self.writer.close()


def _table(rows: list[Row], schema: Any) -> Any:
    """The rows as an Arrow table of ``schema``; a value that does not fit is named."""
    import pyarrow as pa

    try:
        return pa.Table.from_pylist(rows, schema=schema)
    except _arrow_errors() as err:
        for index, row in enumerate(rows):
            for field in schema:
                if field.name in row:
                    try:
                        pa.array([row[field.name]], type=field.type)
                    except _arrow_errors() as one:
                        raise RowValueError(index, field.name, _arrow_reason(one)) from None
        raise RowValueError(0, None, _arrow_reason(err)) from None
