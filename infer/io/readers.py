"""Streaming readers for JSONL, CSV and Parquet, and the input files a spec names.

Rows are read one at a time with their line numbers, so a bad row is reported by
file, line and field, and a file of any size never has to fit in memory. A JSONL
line keeps its own text (:func:`json_texts`), so every value can go out as it came in.
"""

from __future__ import annotations

import csv
import glob
import json
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from decimal import Decimal
from json.decoder import scanstring  # type: ignore[attr-defined]  # public at runtime, not in typeshed
from pathlib import Path
from typing import Any, cast

from topictone.infer.errors import InputError, TopictoneError

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
PLAIN_TYPES = frozenset({str, int, float, bool, type(None)})
_TYPE_NAMES = {"bytes": "binary", "tuple": "map", "Decimal": "decimal"}


def plain_problem(value: Any) -> str | None:
    """Why ``value`` (read from Parquet) has no exact JSON or CSV form, or None: binary,
    dates and times, decimals, maps (read as pairs) are refused, never written as a repr."""
    kind = type(value)
    if kind in PLAIN_TYPES:
        return None
    if kind is list or kind is dict:
        for item in value.values() if kind is dict else value:
            if problem := plain_problem(item):
                return problem
        return None
    name = _TYPE_NAMES.get(kind.__name__, kind.__name__)
    return f"a {name} value has no exact JSON or CSV form; write Parquet"


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
