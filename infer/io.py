"""Streaming readers and writers for JSONL, CSV and Parquet.

Rows are read one at a time with their line numbers, so a bad row is reported by
file, line and field, and a file of any size never has to fit in memory. Writers
go to a temporary file that replaces the target only when everything succeeded.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from infer.errors import InputError, TopictoneError

FORMATS = {".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}
FORMATS_IN = {**FORMATS, ".parquet": "parquet"}

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
    path: str | os.PathLike[str], fmt: str | None = None
) -> Iterator[tuple[int, Row, int]]:
    """Yield ``(line, row, bytes_read)`` for every record; blank JSONL lines are skipped."""
    file = Path(path)
    kind = detect_format(file, fmt)
    if not file.is_file():
        raise InputError("no such file", file)
    if file.stat().st_size == 0:
        raise InputError("file is empty", file)
    reader = {"jsonl": _read_jsonl, "csv": _read_csv, "parquet": _read_parquet}[kind]
    count = 0
    for item in reader(file):
        count += 1
        yield item
    if count == 0:
        raise InputError("file has no records", file)


def _decoded_lines(file: Path) -> Iterator[tuple[int, str, int]]:
    with file.open("rb") as handle:
        for number, raw in enumerate(handle, 1):
            try:
                yield number, raw.decode("utf-8"), len(raw)
            except UnicodeDecodeError:
                raise InputError("not valid UTF-8 text", file, number) from None


def _read_jsonl(file: Path) -> Iterator[tuple[int, Row, int]]:
    for number, line, size in _decoded_lines(file):
        if number == 1 and line.startswith("\ufeff"):
            line = line[1:]
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise InputError(
                f"invalid JSON ({err.msg}, column {err.colno})", file, number
            ) from None
        if not isinstance(row, dict):
            raise InputError("expected a JSON object", file, number)
        yield number, row, size


def _read_csv(file: Path) -> Iterator[tuple[int, Row, int]]:
    state = {"line": 0, "bytes": 0}

    def lines() -> Iterator[str]:
        for number, line, size in _decoded_lines(file):
            state["line"], state["bytes"] = number, state["bytes"] + size
            yield line[1:] if number == 1 and line.startswith("\ufeff") else line

    reader = csv.reader(lines())
    try:
        header = next(reader)
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
    number = 0
    for batch in parquet.iter_batches(batch_size=4096):
        for row in batch.to_pylist():
            number += 1
            yield number, row, 1


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
    def write(self, rows: list[Row]) -> None: ...


class _JsonlWriter:
    def __init__(self, handle: Any) -> None:
        self.handle = handle

    def write(self, rows: list[Row]) -> None:
        self.handle.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


class _CsvWriter:
    """CSV with the first row's columns; nested values are JSON-encoded."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle
        self.writer: csv.DictWriter | None = None

    def write(self, rows: list[Row]) -> None:
        if not rows:
            return
        if self.writer is None:
            self.writer = csv.DictWriter(self.handle, fieldnames=list(rows[0]))
            self.writer.writeheader()
        try:
            self.writer.writerows(
                {
                    k: json.dumps(v, ensure_ascii=False) if isinstance(v, (list, dict)) else v
                    for k, v in r.items()
                }
                for r in rows
            )
        except ValueError as err:
            raise TopictoneError(f"cannot write CSV: rows have different columns ({err})") from None


@contextlib.contextmanager
def open_writer(path: str | os.PathLike[str], fmt: str | None = None) -> Iterator[RowWriter]:
    """A writer whose file appears only if the block finishes without error."""
    target = Path(path)
    kind = detect_format(target, fmt, FORMATS)
    if target.is_dir():
        raise TopictoneError(f"{target}: output is a folder, not a file")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            yield _JsonlWriter(handle) if kind == "jsonl" else _CsvWriter(handle)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
