"""Streaming readers and writers for JSONL, CSV and Parquet.

Rows are read one at a time with their line numbers, so a bad row is reported by
file, line and field, and a file of any size never has to fit in memory. Writers
go to a temporary file that replaces the target only when everything succeeded.
"""

from __future__ import annotations

import contextlib
import csv
import glob
import json
import math
import os
import re
import shutil
import stat
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import orjson

from infer.errors import InputError, TopictoneError
from infer.paths import follow_umask

FORMATS = {".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}
FORMATS_IN = {**FORMATS, ".parquet": "parquet"}
FORMATS_OUT = FORMATS_IN
STDOUT = "-"
MAX_LINE_BYTES = 16 << 20  # one record; a longer line is refused before it is parsed

Row = dict[str, Any]


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
    """Yield ``(line, row, bytes_read)`` for every record; blank JSONL lines are skipped.

    A JSONL or CSV line over ``max_line_bytes`` is refused before it is parsed, so one
    huge line never has to fit in memory several times over."""
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
        items = _read_jsonl(file, lines) if kind == "jsonl" else _read_csv(file, lines)
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
        raise ValueError(f"duplicate key '{repeated}' (only one value could be kept)")
    return row


# One decoder for every line: json.loads with a hook builds a new decoder per call, which
# was a fifth of the reading time on 100,000 rows.
_DECODER = json.JSONDecoder(object_pairs_hook=_unique_keys)


def _read_jsonl(
    file: Path, lines: Iterator[tuple[int, str, int]]
) -> Iterator[tuple[int, Row, int]]:
    for number, line, size in lines:
        if number == 1 and line.startswith("\ufeff"):
            line = line[1:]
        if not line.strip():
            continue
        try:
            row = _DECODER.decode(line)
        except json.JSONDecodeError as err:
            raise InputError(
                f"invalid JSON ({err.msg}, column {err.colno})", file, number
            ) from None
        except (ValueError, RecursionError) as err:
            raise InputError(
                f"invalid JSON ({str(err) or 'nested too deeply'})", file, number
            ) from None
        if not isinstance(row, dict):
            raise InputError("expected a JSON object", file, number)
        yield number, row, size


def _read_csv(file: Path, lines: Iterator[tuple[int, str, int]]) -> Iterator[tuple[int, Row, int]]:
    state = {"line": 0, "bytes": 0}

    def text() -> Iterator[str]:
        for number, line, size in lines:
            state["line"], state["bytes"] = number, state["bytes"] + size
            yield line[1:] if number == 1 and line.startswith("\ufeff") else line

    csv.field_size_limit(max(csv.field_size_limit(), MAX_LINE_BYTES))
    reader = csv.reader(text(), strict=True)  # a stray quote is an error, not a guess
    try:
        header = next(reader)
        repeated = sorted({name for name in header if header.count(name) > 1})
        if repeated:
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
            yield state["line"], dict(zip(header, record, strict=True)), state["bytes"]
            state["bytes"] = 0
    except csv.Error as err:
        raise InputError(f"malformed CSV ({err})", file, state["line"]) from None


def _read_parquet(file: Path) -> Iterator[tuple[int, Row, int]]:
    import pyarrow.parquet as pq
    from pyarrow import ArrowException

    try:
        parquet = pq.ParquetFile(file)
    except (ArrowException, OSError) as err:
        raise InputError(f"not a readable Parquet file ({err})", file) from None
    names = parquet.schema_arrow.names
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise InputError(f"duplicate column {', '.join(map(repr, repeated))}", file)
    number = 0
    for batch in parquet.iter_batches(batch_size=4096):
        for row in batch.to_pylist():
            number += 1
            yield number, row, 1


def parquet_schema(path: str | os.PathLike[str]) -> Any:
    """The Arrow schema of a Parquet file, so its columns are written back as they were."""
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).schema_arrow


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


class _JsonlWriter:
    def __init__(self, handle: Any) -> None:
        self.handle = handle

    def write(self, rows: list[Row]) -> None:
        self.handle.write("".join(_json_line(r, i) for i, r in enumerate(rows)))


class _CsvWriter:
    """CSV with the first row's columns; nested values are JSON-encoded."""

    def __init__(self, handle: Any, columns: list[str] | None = None) -> None:
        self.handle = handle
        self.writer: csv.DictWriter | None = None
        self.columns: list[str] = []
        if columns:  # continuing a file whose header is written
            self.columns = list(columns)
            self.writer = csv.DictWriter(handle, fieldnames=self.columns)

    def write(self, rows: list[Row]) -> None:
        if not rows:
            return
        if self.writer is None:
            self.columns = list(rows[0])
            self.writer = csv.DictWriter(self.handle, fieldnames=self.columns)
            self.writer.writeheader()
        cells = []
        for index, row in enumerate(rows):
            if list(row) != self.columns:
                raise RowValueError(
                    index, None, "has other columns than the first row (CSV needs one header)"
                )
            cells.append({k: self._cell(v, index, k) for k, v in row.items()})
        self.writer.writerows(cells)

    @staticmethod
    def _cell(value: Any, index: int, field: str) -> Any:
        if isinstance(value, (list, dict)):
            if not _json_ok(value):
                raise RowValueError(index, field, "cannot be written as JSON in a CSV cell")
            return json.dumps(value, ensure_ascii=False)
        return value


def text_writer(handle: Any, kind: str, columns: list[str] | None = None) -> RowWriter:
    """JSONL or CSV rows onto an open text handle (CSV: ``columns`` continue a file whose
    header is already written)."""
    return _JsonlWriter(handle) if kind == "jsonl" else _CsvWriter(handle, columns)


class _ParquetWriter:
    """Parquet row groups; the input's own column types when the input was Parquet.

    The columns are those of the first rows written (every field any of them has: a row
    without one holds null there); a later row with a field outside them is refused
    with its line, never written without it. Batches are converted at once (so a bad
    row is named in its batch) and written ``ROW_GROUP_ROWS`` rows to a row group: with
    one group per batch of 512 the writer's memory grew with the input (BENCHMARKS.md)."""

    ROW_GROUP_ROWS = 4096  # 8 batches of 512 (benchmarks/parquet_row_groups.py)

    def __init__(self, path: str, schema: Any = None) -> None:
        self.path, self.schema, self.writer = path, schema, None
        self.pending: list[Any] = []  # Arrow tables not yet written

    def write(self, rows: list[Row]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not rows:
            return
        if self.writer is None:
            if self.schema is not None:  # the input's fields, then the new ones inferred
                known = set(self.schema.names)
                new = [{k: v for k, v in r.items() if k not in known} for r in rows]
                self.schema = pa.schema([*self.schema, *self._table(pa, new, None).schema])
            else:
                self.schema = self._table(pa, rows, None).schema
            self.writer = pq.ParquetWriter(self.path, self.schema)
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
        self.pending.append(self._table(pa, rows, self.schema))
        if sum(t.num_rows for t in self.pending) >= self.ROW_GROUP_ROWS:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa

        if self.pending:
            table = pa.concat_tables(self.pending)
            self.writer.write_table(table, row_group_size=table.num_rows)
            self.pending = []

    @staticmethod
    def _table(pa: Any, rows: list[Row], schema: Any) -> Any:
        try:
            if schema is None:  # every row's fields, not only the first row's
                names = list(dict.fromkeys(k for row in rows for k in row))
                return pa.Table.from_pydict({n: [row.get(n) for row in rows] for n in names})
            return pa.Table.from_pylist(rows, schema=schema)
        except (pa.ArrowException, TypeError, ValueError, OverflowError) as err:
            for index, row in enumerate(rows):  # find the row to name it
                try:
                    pa.Table.from_pylist([row], schema=schema)
                except (pa.ArrowException, TypeError, ValueError, OverflowError) as one:
                    raise RowValueError(
                        index, None, f"cannot be written as Parquet ({one})"
                    ) from None
            raise RowValueError(0, None, f"cannot be written as Parquet ({err})") from None

    def close(self) -> None:
        if self.writer is not None:
            self._flush()
            self.writer.close()


def check_output(
    output: str | os.PathLike[str], inputs: tuple[str | os.PathLike[str], ...] = ()
) -> None:
    """Refuse an output that would destroy data: an input (also through links or hard
    links), or an existing path that is not a regular file (a link, device or folder)."""
    if str(output) == STDOUT:
        return
    target = Path(output)
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


_PART = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[^.]+\.part$")


def prepare_parent(target: Path) -> None:
    """The output's folder exists, and no earlier crashed run's parts lie beside it."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise TopictoneError(
            f"{target.parent}: cannot create the output folder ({err.strerror})"
        ) from None
    remove_stale_parts(target)


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
    path: str | os.PathLike[str], fmt: str | None = None, schema: Any = None
) -> Iterator[RowWriter]:
    """A writer whose file appears only if the block finishes without error.

    ``-`` streams to standard output (JSONL unless ``fmt`` says CSV). Files are written
    to a temporary ``.part`` beside the target, removed on any error or signal, and
    given the mode the umask allows; ``schema`` keeps Parquet input column types."""
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
    prepare_parent(target)
    try:
        fd, tmp = tempfile.mkstemp(
            prefix=f".{target.name}.{os.getpid()}.", suffix=".part", dir=target.parent
        )
    except OSError as err:
        raise TopictoneError(f"{target.parent}: cannot write here ({err.strerror})") from None
    try:
        if kind == "parquet":
            os.close(fd)
        with file_writer(tmp if kind == "parquet" else fd, kind, schema) as writer:
            yield writer
        follow_umask(Path(tmp))
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def file_writer(
    path: str | os.PathLike[str] | int, kind: str, schema: Any = None
) -> Iterator[RowWriter]:
    """A writer straight into ``path`` (created or truncated; JSONL and CSV also take an
    open descriptor): :func:`open_writer` points it at its temporary file, ``engine=ray``
    at each shard inside its temporary folder."""
    if kind == "parquet":
        writer = _ParquetWriter(str(path), schema)
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
