"""Batch runs that survive being killed: ``python -m topictone.infer ... resume=true``.

A resumable run writes to ``.<output>.resume.part`` beside the output and, after each
batch, atomically replaces ``.<output>.resume.json``: the rows and bytes written so far,
the input bytes they were read from with those bytes' SHA-256, the input's size and
modification time, a fingerprint of the model and settings. Killed at any moment —
SIGKILL included — it leaves both; the same command again checks that the input still
starts with the bytes already read (an in-place edit that keeps the size and the
modification time is caught too), cuts the part back to the last recorded batch, skips
that many input rows and goes on, so no row is lost or written twice and the finished
file is byte-identical to an uninterrupted run. On success the part replaces the output
and the record goes. JSONL and CSV output only: a Parquet file cannot be appended to
after its writer died (it has no footer). A Parquet input is hashed whole.
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

from topictone.infer.errors import TopictoneError
from topictone.infer.io.outputs import check_output, make_parent, remove_folders
from topictone.infer.io.writers import RowWriter, text_writer
from topictone.infer.paths import follow_umask

VERSION = 2  # 2: the input bytes read and their SHA-256


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
    """Rows and bytes written by the batches completed so far, and the input bytes they
    were read from."""

    rows: int = 0
    bytes: int = 0
    columns: list[str] | None = None  # CSV: the header already written
    input_bytes: int = 0


class InputDigest:
    """SHA-256 of the input's first bytes, extended as the run reads on."""

    CHUNK = 1 << 20

    def __init__(self, path: Path) -> None:
        self.path, self.hash, self.size = path, hashlib.sha256(), 0

    def upto(self, size: int) -> str:
        """The digest of the input's first ``size`` bytes (fewer if it is shorter now)."""
        if size > self.size:
            with self.path.open("rb") as handle:
                handle.seek(self.size)
                left = size - self.size
                while left > 0 and (chunk := handle.read(min(left, self.CHUNK))):
                    self.hash.update(chunk)
                    left -= len(chunk)
            self.size = size
        return self.hash.hexdigest()


class ResumableWriter:
    """Appends batches to the part file; :meth:`commit` records the progress."""

    def __init__(
        self, handle: Any, inner: RowWriter, record: Path, state: dict, digest: InputDigest
    ) -> None:
        self.handle, self.inner, self.record, self.state = handle, inner, record, state
        self.digest, self.unrecorded = digest, 0

    def write(self, rows: list[Any]) -> None:
        self.inner.write(rows)
        self.handle.flush()  # in the OS's hands: a killed process loses nothing written
        self.unrecorded += len(rows)

    def commit(self, input_bytes: int) -> None:
        """Record the rows written so far, read from the input's first ``input_bytes``."""
        self.state["rows"] += self.unrecorded
        self.unrecorded = 0
        self.state["bytes"] = os.fstat(self.handle.fileno()).st_size
        self.state["columns"] = getattr(self.inner, "columns", None)
        self.state["input_bytes"] = input_bytes
        self.state["input_sha256"] = self.digest.upto(input_bytes)
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


def _load(record: Path) -> tuple[dict[str, Any], Progress]:
    """The progress record, checked: a crafted or damaged one is one line."""
    try:
        saved = json.loads(record.read_text(encoding="utf-8"))
        progress = Progress(
            int(saved["rows"]),
            int(saved["bytes"]),
            saved.get("columns"),
            int(saved.get("input_bytes", 0)),
        )
        columns = progress.columns
        if (
            min(progress.rows, progress.bytes, progress.input_bytes) < 0
            or not (columns is None or all(isinstance(c, str) for c in columns))
            or not isinstance(saved.get("input_sha256", ""), str)
        ):
            raise ValueError
    except (ValueError, KeyError, TypeError, AttributeError):
        raise TopictoneError(f"{record}: unreadable progress record; delete it") from None
    return saved, progress


def _continue(
    target: Path, source: Path, expected: Mapping[str, Any], digest: InputDigest
) -> Progress:
    """The progress of the run recorded beside ``target``, if it is this run's."""
    part, record = resume_files(target)
    saved, progress = _load(record)
    changed = [DIFFERENCES[k] for k, v in expected.items() if saved.get(k) != v]
    if changed:
        raise TopictoneError(
            f"{target}: the interrupted run recorded in {record.name} had another "
            f"{' and '.join(changed)}; rerun it exactly, or delete {record.name} and "
            f"{part.name} to start over"
        )
    if progress.rows and digest.upto(progress.input_bytes) != saved.get("input_sha256"):
        raise TopictoneError(
            f"{source}: its first {progress.input_bytes} bytes are not those the interrupted "
            f"run read (the input was edited); delete {record.name} and {part.name} beside "
            "the output to start over"
        )
    if part.stat().st_size < progress.bytes:
        raise TopictoneError(f"{part}: shorter than its progress record; delete both")
    return progress


@contextlib.contextmanager
def open_resumable(
    target: Path, kind: str, source: Path, settings: Mapping[str, Any]
) -> Iterator[tuple[ResumableWriter, Progress, Any]]:
    """A writer that continues the recorded run into ``target``, or starts one; the
    progress says how many input rows to skip, and the third item records a batch."""
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
    digest = InputDigest(source)
    made: list[Path] = []
    if record.is_file() and part.is_file():
        progress = _continue(target, source, expected, digest)
    else:
        progress = Progress()
        made = make_parent(target)
        record.unlink(missing_ok=True)  # a record without its part continues nothing
        part.write_bytes(b"")
    state = {**expected, "rows": progress.rows, "bytes": progress.bytes}
    try:
        with part.open("r+b") as raw:
            raw.truncate(progress.bytes)  # a batch written but not recorded is written again
            raw.seek(progress.bytes)
            with io.TextIOWrapper(raw, encoding="utf-8", newline="") as handle:
                inner = text_writer(handle, kind, progress.columns if progress.rows else None)
                writer = ResumableWriter(handle, inner, record, state, digest)
                yield writer, progress, writer.commit
    except BaseException:
        if not record.exists():  # nothing recorded to continue: leave nothing behind
            part.unlink(missing_ok=True)
            remove_folders(made)
        raise
    follow_umask(part)
    os.replace(part, target)
    record.unlink(missing_ok=True)
