"""Streaming readers and writers for JSONL, CSV and Parquet.

Rows are read one at a time with their line numbers, so a bad row is reported by
file, line and field, and a file of any size never has to fit in memory. Writers
go to a temporary file that replaces the target only when everything succeeded.

Every value either comes out as it went in or is refused at its line and field: a
JSONL line keeps its own bytes (the prediction is spliced in, :class:`Spliced`), a JSONL
number goes into a CSV cell as written (:class:`JsonText`), Parquet rows are read back
and compared before they are written, and a value an output format has no exact form
for (bytes into JSON, ``19.999999999999999999`` into a 64-bit float) is an error.
"""

from __future__ import annotations

import contextlib
import csv
import glob
import io
import json
import math
import os
import re
import shutil
import stat
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from json.decoder import scanstring  # type: ignore[attr-defined]  # public at runtime, not in typeshed
from pathlib import Path
from typing import Any, Protocol, cast, final

import orjson

from topictone.infer.errors import InputError, TopictoneError
from topictone.infer.paths import follow_umask

FORMATS = {".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}
FORMATS_IN = {**FORMATS, ".parquet": "parquet"}
FORMATS_OUT = FORMATS_IN
STDOUT = "-"
MAX_LINE_BYTES = 16 << 20  # one record; a longer line is refused before it is parsed
MANIFEST = "topictone.json"  # what marks a model folder (topictone.infer.artifact.MANIFEST)

Row = dict[str, Any]
Record = tuple[int, Row, int, str | None]
"""``(line, row, bytes, text)``: the row's first line, its fields, the input bytes it
took (with any blank lines before it), and for JSONL the line's text (without a BOM)."""


def detect_format(path: Path, fmt: str | None, known: dict[str, str] = FORMATS_IN) -> str:
    if fmt:
        if fmt not in set(known.values()):
            raise TopictoneError(
                f"{path}: unknown format '{fmt}' (use {sorted(set(known.values()))})"
            )
        return fmt
    try:
        return known[path.suffix.lower()]
    except KeyError:
        raise TopictoneError(
            f"{path}: cannot tell the format from the suffix '{path.suffix}' "
            f"(use {', '.join(known)}, or set format=)"
        ) from None


def read_rows(
    path: str | os.PathLike[str], fmt: str | None = None, max_line_bytes: int = MAX_LINE_BYTES
) -> Iterator[tuple[int, Row, int]]:
    """Yield ``(line, row, bytes_read)`` for every record; blank JSONL lines are skipped."""
    for line, row, size, _ in read_records(path, fmt, max_line_bytes):
        yield line, row, size


def read_records(
    path: str | os.PathLike[str],
    fmt: str | None = None,
    max_line_bytes: int = MAX_LINE_BYTES,
    exact_numbers: bool = False,
) -> Iterator[Record]:
    """Yield a :data:`Record` for every record; blank JSONL lines are skipped.

    A JSONL or CSV line over ``max_line_bytes`` is refused before it is parsed, so one
    huge line never has to fit in memory several times over. ``exact_numbers`` refuses a
    JSON number a 64-bit float cannot hold as written (for Parquet output)."""
    file = Path(path)
    kind = detect_format(file, fmt)
    if not file.is_file():
        raise InputError("no such file", file)
    if file.stat().st_size == 0:
        raise InputError("file is empty", file)
    count = 0
    if kind == "parquet":
        items = _read_parquet(file)
    else:
        lines = _decoded_lines(file, max_line_bytes)
        if kind == "jsonl":
            items = _read_jsonl(file, lines, _EXACT if exact_numbers else _DECODER)
        else:
            items = _read_csv(file, lines)
    for item in items:
        count += 1
        yield item
    if count == 0:
        raise InputError("file has no records", file)


def _decoded_lines(file: Path, max_bytes: int) -> Iterator[tuple[int, str, int]]:
    with file.open("rb") as handle:
        number = 0
        while raw := handle.readline(max_bytes + 1):
            number += 1
            if len(raw) > max_bytes:
                raise InputError(
                    f"line is longer than max_line_bytes={max_bytes} bytes", file, number
                )
            try:
                yield number, raw.decode("utf-8"), len(raw)
            except UnicodeDecodeError:
                raise InputError("not valid UTF-8 text", file, number) from None


def _unique_keys(pairs: list[tuple[str, Any]]) -> Row:
    row = dict(pairs)
    if len(row) != len(pairs):
        repeated = next(k for k, n in Counter(k for k, _ in pairs).items() if n > 1)
        raise ValueError(f"duplicate key {repeated!r} (only one value could be kept)")
    return row


class _Inexact(ValueError):
    """A JSON number no 64-bit float holds as written."""


def _exact_float(literal: str) -> float:
    """``float(literal)``, when the float reads back as the same decimal number: ``0.1``
    and ``1E2`` do, ``19.999999999999999999`` (20.0) and ``1e400`` (inf) do not."""
    value = float(literal)
    if repr(value) != literal and Decimal(literal) != Decimal(repr(value)):
        raise _Inexact(literal)
    return value


# One decoder for every line: json.loads with a hook builds a new decoder per call, which
# was a fifth of the reading time on 100,000 rows. The hook of _EXACT runs only on
# numbers with a fraction or exponent, and only when Parquet is written.
_DECODER = json.JSONDecoder(object_pairs_hook=_unique_keys)
_EXACT = json.JSONDecoder(object_pairs_hook=_unique_keys, parse_float=_exact_float)
_SPACE = re.compile(r"[ \t\n\r]*")  # JSON's whitespace, and only that


def _read_jsonl(
    file: Path, lines: Iterator[tuple[int, str, int]], decoder: json.JSONDecoder
) -> Iterator[Record]:
    skipped = 0  # blank lines' bytes, counted with the next row
    for number, line, size in lines:
        if number == 1 and line.startswith("\ufeff"):
            line = line[1:]
        if not line.strip():
            skipped += size
            continue
        row = _decode_line(decoder, line, file, number)
        yield number, row, size + skipped, line
        skipped = 0


def _decode_line(decoder: json.JSONDecoder, line: str, file: Path, number: int) -> Row:
    try:
        row = decoder.decode(line)
    except _Inexact as err:
        try:  # a line with another problem after the number is reported for that first
            _DECODER.decode(line)
        except (ValueError, RecursionError) as other:
            raise _invalid(other, file, number) from None
        raise InputError(
            f"the number {err} has no exact 64-bit float (Parquet would hold "
            f"{float(str(err))!r}); write JSONL or CSV, or quote it",
            file,
            number,
            _inexact_field(line),
        ) from None
    except (ValueError, RecursionError) as err:
        raise _invalid(err, file, number) from None
    if not isinstance(row, dict):
        raise InputError("expected a JSON object", file, number)
    return row


def _invalid(err: ValueError | RecursionError, file: Path, number: int) -> InputError:
    if isinstance(err, json.JSONDecodeError):
        return InputError(f"invalid JSON ({err.msg}, column {err.colno})", file, number)
    return InputError(f"invalid JSON ({str(err) or 'nested too deeply'})", file, number)


def _inexact_field(line: str) -> str | None:
    for key, text in json_texts(line).items():
        try:
            _EXACT.decode(text)
        except _Inexact:
            return key
    return None


def json_texts(line: str) -> dict[str, str]:
    """Each top-level value of a JSON object line as its source text: a number as written
    (``1E2``, ``19.999999999999999999``), a nested value with its own spacing and escapes.
    The line must be one the reader decoded."""
    scan = _DECODER.scan_once  # type: ignore[attr-defined]  # set in __init__, not in typeshed
    # JSON's whitespace pattern matches (perhaps empty) at every position: never None
    space = cast("Callable[[str, int], re.Match[str]]", _SPACE.match)
    texts: dict[str, str] = {}
    at = space(line, space(line, 0).end() + 1).end()  # past the "{"
    while line[at] == '"':
        key, at = scanstring(line, at + 1)
        at = space(line, space(line, at).end() + 1).end()  # past the ":"
        _, end = scan(line, at)
        texts[key] = line[at:end]
        at = space(line, end).end()
        if line[at] == ",":
            at = space(line, at + 1).end()
    return texts


def _repeated(names: Iterable[str]) -> list[str]:
    return sorted(name for name, n in Counter(names).items() if n > 1)


def _read_csv(file: Path, lines: Iterator[tuple[int, str, int]]) -> Iterator[Record]:
    state = {"line": 0, "bytes": 0}

    def text() -> Iterator[str]:
        for number, line, size in lines:
            state["line"], state["bytes"] = number, state["bytes"] + size
            yield line[1:] if number == 1 and line.startswith("\ufeff") else line

    csv.field_size_limit(max(csv.field_size_limit(), MAX_LINE_BYTES))
    reader = csv.reader(text(), strict=True)  # a stray quote is an error, not a guess
    try:
        header = next(reader)
        if repeated := _repeated(header):
            raise InputError(
                f"duplicate column {', '.join(map(repr, repeated))} in the header", file, 1
            )
        for record in reader:
            if not record:
                continue
            if len(record) != len(header):
                raise InputError(
                    f"{len(record)} fields where the header has {len(header)}", file, state["line"]
                )
            yield state["line"], dict(zip(header, record, strict=True)), state["bytes"], None
            state["bytes"] = 0
    except csv.Error as err:
        raise InputError(f"malformed CSV ({err})", file, state["line"]) from None


def open_parquet(file: str | os.PathLike[str]) -> Any:
    """A ``pyarrow.parquet.ParquetFile``, or one line for a file that is not one."""
    import pyarrow.parquet as pq
    from pyarrow import ArrowException

    try:
        return pq.ParquetFile(file)
    except (ArrowException, OSError) as err:
        raise InputError(f"not a readable Parquet file ({err})", file) from None


def _read_parquet(file: Path) -> Iterator[Record]:
    parquet = open_parquet(file)
    if repeated := _repeated(parquet.schema_arrow.names):
        raise InputError(f"duplicate column {', '.join(map(repr, repeated))}", file)
    for field in parquet.schema_arrow:  # a row is a dict: one of two names would be lost
        if inside := _repeated_inside(field.type):
            raise InputError(
                f"duplicate field {inside!r} inside the column", file, None, field.name
            )
    number = 0
    for batch in parquet.iter_batches(batch_size=4096):
        for row in batch.to_pylist():
            number += 1
            yield number, row, 1, None


def _repeated_inside(kind: Any) -> str | None:
    """A field name that a struct somewhere inside an Arrow type has twice."""
    import pyarrow as pa

    if pa.types.is_struct(kind):
        names = [kind.field(i).name for i in range(kind.num_fields)]
        if repeated := _repeated(names):
            return repeated[0]
    children = [kind.field(i).type for i in range(getattr(kind, "num_fields", 0))]
    for child in children:
        if found := _repeated_inside(child):
            return found
    return None


def parquet_schema(path: str | os.PathLike[str]) -> Any:
    """The Arrow schema of a Parquet file, so its columns are written back as they were."""
    return open_parquet(path).schema_arrow


def parquet_rows(path: str | os.PathLike[str]) -> int:
    """The number of rows a Parquet file holds (from its footer)."""
    return open_parquet(path).metadata.num_rows


def require_text(row: Row, field: str, file: Any, line: int) -> str:
    """The row's text, or a located error: missing, not a string, or empty."""
    if field not in row:
        raise InputError("missing", file, line, field)
    text = row[field]
    if not isinstance(text, str):
        raise InputError(f"must be a string, got {type(text).__name__}", file, line, field)
    if not text.strip():
        raise InputError("empty text", file, line, field)
    return text


# What a value read from Parquet may be for JSON or a CSV cell to hold it exactly.
_PLAIN = frozenset({str, int, float, bool, type(None)})
_TYPE_NAMES = {"bytes": "binary", "tuple": "map", "Decimal": "decimal"}


def plain_problem(value: Any) -> str | None:
    """Why ``value`` (read from Parquet) has no exact JSON or CSV form, or None: binary,
    dates and times, decimals, maps (read as pairs) are refused, never written as a repr."""
    kind = type(value)
    if kind in _PLAIN:
        return None
    if kind is list or kind is dict:
        for item in value.values() if kind is dict else value:
            if problem := plain_problem(item):
                return problem
        return None
    name = _TYPE_NAMES.get(kind.__name__, kind.__name__)
    return f"a {name} value has no exact JSON or CSV form; write Parquet"


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
    if kind in _PLAIN or kind is JsonText:
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


class _ParquetWriter:
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


def check_output(
    output: str | os.PathLike[str],
    inputs: Sequence[str | os.PathLike[str]] = (),
    protected: Sequence[str | os.PathLike[str]] = (),
) -> None:
    """Refuse an output that would destroy data: an input (also through links or hard
    links), a path inside a model folder or one of the ``protected`` model folders' files
    under another name, or an existing path that is not a regular file (a link, device
    or folder)."""
    if str(output) == STDOUT:
        return
    target = Path(output)
    check_not_model(target, protected)
    try:
        info = os.lstat(target)
    except FileNotFoundError:
        info = None
    except OSError as err:
        raise TopictoneError(f"{target}: cannot use as output ({err.strerror})") from None
    if info is not None and not stat.S_ISREG(info.st_mode):
        what = (
            "a link"
            if stat.S_ISLNK(info.st_mode)
            else ("a folder" if stat.S_ISDIR(info.st_mode) else "not a regular file")
        )
        raise TopictoneError(f"{target}: output exists and is {what}; refusing to replace it")
    for source in inputs:
        src = Path(source)
        same = target.resolve() == src.resolve() or (
            info is not None and src.exists() and os.path.samefile(src, target)
        )
        if same:
            raise TopictoneError(f"{target}: output is the input file; choose another output")


def check_not_model(target: Path, protected: Iterable[str | os.PathLike[str]] = ()) -> None:
    """Refuse an output in a model folder (any folder above it holding topictone.json),
    or that is a file of a ``protected`` model folder under another name (a hard link):
    writing it would destroy the model."""
    where = target.absolute().parent.resolve() / target.name  # the folders' links followed
    for folder in (where, *where.parents):  # ``where`` itself: a model folder as output
        if os.path.lexists(folder / MANIFEST):
            raise TopictoneError(
                f"{target}: output is inside the model folder {folder}; choose another output"
            )
    try:
        info = os.stat(target)
    except OSError:
        return
    for model in map(Path, protected):
        for root, _, files in os.walk(model, followlinks=False):
            for name in files:
                with contextlib.suppress(OSError):
                    if os.path.samestat(info, os.stat(Path(root) / name)):
                        raise TopictoneError(
                            f"{target}: output is the model file {Path(root) / name}; "
                            "choose another output"
                        )


_PART = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[^.]+\.part$")


@contextlib.contextmanager
def output_folder(target: Path) -> Iterator[None]:
    """The output's folder exists in the block, no earlier crashed run's parts lie beside
    the output, and, if the block fails, the folders it made for the output are gone."""
    made = make_parent(target)
    try:
        yield
    except BaseException:
        remove_folders(made)
        raise


def make_parent(target: Path) -> list[Path]:
    """Create the output's folder; return the folders made, outermost first."""
    missing = [f for f in (target.parent, *target.parent.parents) if not f.exists()][::-1]
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise TopictoneError(
            f"{target.parent}: cannot create the output folder ({err.strerror})"
        ) from None
    remove_stale_parts(target)
    return missing


def remove_folders(made: list[Path]) -> None:
    """Remove folders :func:`make_parent` made, innermost first, while they are empty."""
    for folder in reversed(made):
        try:
            folder.rmdir()
        except OSError:
            return


def remove_stale_parts(target: Path) -> None:
    """Temporary files (or, from ``engine=ray``, folders) a killed run (SIGKILL, power
    loss) left beside ``target``: ``.<name>.<pid>.<x>.part`` whose process is gone."""
    for part in target.parent.glob(f".{glob.escape(target.name)}.*.part"):
        match = _PART.match(part.name)
        if not match or match["name"] != target.name:
            continue
        try:
            os.kill(int(match["pid"]), 0)
        except ProcessLookupError:
            if part.is_dir() and not part.is_symlink():
                shutil.rmtree(part, ignore_errors=True)
            else:
                part.unlink(missing_ok=True)
        except (PermissionError, OverflowError):
            continue


@contextlib.contextmanager
def open_writer(
    path: str | os.PathLike[str],
    fmt: str | None = None,
    schema: Any = None,
    own: Collection[str] = (),
) -> Iterator[RowWriter]:
    """A writer whose file appears only if the block finishes without error.

    ``-`` streams to standard output (JSONL unless ``fmt`` says CSV). Files are written
    to a temporary ``.part`` beside the target, removed on any error or signal (with any
    folder made for it), and given the mode the umask allows; ``schema`` and ``own`` go
    to the Parquet writer (:class:`_ParquetWriter`)."""
    if str(path) == STDOUT:
        kind = fmt or "jsonl"
        if kind not in ("jsonl", "csv"):
            raise TopictoneError(f"output '-' streams JSONL or CSV, not {kind}")
        yield text_writer(sys.stdout, kind)
        sys.stdout.flush()
        return
    target = Path(path)
    kind = detect_format(target, fmt, FORMATS_OUT)
    check_output(target)
    with output_folder(target):
        try:
            fd, tmp = tempfile.mkstemp(
                prefix=f".{target.name}.{os.getpid()}.", suffix=".part", dir=target.parent
            )
        except OSError as err:
            raise TopictoneError(f"{target.parent}: cannot write here ({err.strerror})") from None
        try:
            if kind == "parquet":
                os.close(fd)
            with file_writer(tmp if kind == "parquet" else fd, kind, schema, own) as writer:
                yield writer
            follow_umask(Path(tmp))
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


@contextlib.contextmanager
def file_writer(
    path: str | os.PathLike[str] | int,
    kind: str,
    schema: Any = None,
    own: Collection[str] = (),
) -> Iterator[RowWriter]:
    """A writer straight into ``path`` (created or truncated; JSONL and CSV also take an
    open descriptor): :func:`open_writer` points it at its temporary file, ``engine=ray``
    at each shard inside its temporary folder."""
    if kind == "parquet":
        writer = _ParquetWriter(str(path), schema, own)
        try:
            yield writer
        finally:
            writer.close()
    else:
        with open(path, "w", encoding="utf-8", newline="") as handle:
            yield text_writer(handle, kind)


_GLOB = re.compile(r"[*?[]")


def input_files(spec: str | os.PathLike[str], fmt: str | None = None) -> list[Path]:
    """The files an input names, sorted: a file; a folder's files with a known suffix
    (any suffix when ``fmt`` is given), at any depth, leaving out names starting with
    ``.`` or ``_`` (temporary files, ``_SUCCESS`` markers); or a glob pattern (``**``
    included). An unknown suffix, a missing file or an empty match is one line."""
    path = Path(spec)
    if path.is_dir():
        found = sorted(
            p
            for p in path.rglob("*")
            if p.is_file()
            and not any(part[0] in "._" for part in p.relative_to(path).parts)
            and (fmt or p.suffix.lower() in FORMATS_IN)
        )
        if not found:
            raise InputError(f"no {', '.join(sorted(FORMATS_IN))} files in the folder", path)
    elif not path.exists() and _GLOB.search(str(spec)):
        found = sorted(Path(p) for p in glob.glob(str(spec), recursive=True) if Path(p).is_file())
        if not found:
            raise InputError("no files match the pattern", spec)
    elif path.is_file():
        found = [path]
    else:
        raise InputError("no such file", path)
    for file in found:
        detect_format(file, fmt)
    return found
