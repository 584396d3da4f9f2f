"""Batch runs that survive being killed: ``python -m infer ... resume=true``.

A resumable run writes to ``.<output>.resume.part`` beside the output and, after each
batch, atomically replaces ``.<output>.resume.json`` (the rows and bytes written so far,
the input's size and modification time, a fingerprint of the model and settings). Killed
at any moment — SIGKILL included — it leaves both; the same command again cuts the part back to
the last recorded batch, skips that many input rows and goes on, so no row is lost or
written twice and the finished file is byte-identical to an uninterrupted run. On
success the part replaces the output and the record goes. JSONL and CSV only: a Parquet
file cannot be appended to after its writer died (it has no footer).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infer.errors import TopictoneError
from infer.io import RowWriter, check_output, text_writer
from infer.paths import follow_umask

VERSION = 1


def resume_files(target: Path) -> tuple[Path, Path]:
    """The part file and the progress record of a resumable run into ``target``."""
    return (
        target.parent / f".{target.name}.resume.part",
        target.parent / f".{target.name}.resume.json",
    )


def fingerprint(settings: Mapping[str, Any]) -> str:
    """What must not change between a run and its continuation (model, settings)."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class Progress:
    """Rows and bytes written by the batches completed so far."""

    rows: int = 0
    bytes: int = 0
    columns: list[str] | None = None  # CSV: the header already written


class ResumableWriter:
    """Appends batches to the part file and records progress after each one."""

    def __init__(self, handle: Any, inner: RowWriter, record: Path, state: dict) -> None:
        self.handle, self.inner, self.record, self.state = handle, inner, record, state

    def write(self, rows: list[dict[str, Any]]) -> None:
        self.inner.write(rows)
        self.handle.flush()  # in the OS's hands: a killed process loses nothing written
        self.state["rows"] += len(rows)
        self.state["bytes"] = os.fstat(self.handle.fileno()).st_size
        self.state["columns"] = getattr(self.inner, "columns", None)
        tmp = self.record.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.state), encoding="utf-8")
        os.replace(tmp, self.record)


# What a continuation must share with the run it continues, and how a difference is named.
DIFFERENCES = {
    "version": "progress record version",
    "input_size": "input size",
    "input_mtime_ns": "input modification time",
    "settings": "model or settings",
}


def _input_identity(source: Path) -> dict[str, Any]:
    """The input as it was (its path may differ: another working folder, a moved tree)."""
    info = source.stat()
    return {"input_size": info.st_size, "input_mtime_ns": info.st_mtime_ns}


@contextlib.contextmanager
def open_resumable(
    target: Path, kind: str, source: Path, settings: Mapping[str, Any]
) -> Iterator[tuple[ResumableWriter, Progress]]:
    """A writer that continues the recorded run into ``target``, or starts one; the
    progress says how many input rows to skip."""
    if kind not in ("jsonl", "csv"):
        raise TopictoneError(
            f"{target}: resume=true writes JSONL or CSV (a Parquet file cannot be appended "
            "to after a crash); write JSONL and convert, or run without resume"
        )
    check_output(target)
    part, record = resume_files(target)
    for path in (part, record):  # a planted link would be written through, or moved in
        check_output(path)
    expected = {"version": VERSION, **_input_identity(source), "settings": fingerprint(settings)}
    progress = Progress()
    if record.is_file() and part.is_file():
        try:
            saved = json.loads(record.read_text(encoding="utf-8"))
            progress = Progress(int(saved["rows"]), int(saved["bytes"]), saved.get("columns"))
            columns = progress.columns
            if min(progress.rows, progress.bytes) < 0 or not (
                columns is None or all(isinstance(c, str) for c in columns)
            ):
                raise ValueError
        except (ValueError, KeyError, TypeError, AttributeError):
            raise TopictoneError(f"{record}: unreadable progress record; delete it") from None
        changed = [DIFFERENCES[k] for k, v in expected.items() if saved.get(k) != v]
        if changed:
            raise TopictoneError(
                f"{target}: the interrupted run recorded in {record.name} had another "
                f"{' and '.join(changed)}; rerun it exactly, or delete {record.name} and "
                f"{part.name} to start over"
            )
        if part.stat().st_size < progress.bytes:
            raise TopictoneError(f"{part}: shorter than its progress record; delete both")
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        part.write_bytes(b"")
    state = {**expected, "rows": progress.rows, "bytes": progress.bytes}
    with part.open("r+b") as raw:
        raw.truncate(progress.bytes)  # a batch written but not recorded is written again
        raw.seek(progress.bytes)
        with io.TextIOWrapper(raw, encoding="utf-8", newline="") as handle:
            inner = text_writer(handle, kind, progress.columns if progress.rows else None)
            yield ResumableWriter(handle, inner, record, state), progress
    follow_umask(part)
    os.replace(part, target)
    record.unlink(missing_ok=True)
