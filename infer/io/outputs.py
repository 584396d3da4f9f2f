"""Where output goes: checks before any work (not an input, not inside a model folder),
and writers on a temporary file that replaces the target only when everything succeeded.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
import stat
import sys
import tempfile
from collections.abc import Collection, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from topictone.infer.errors import TopictoneError
from topictone.infer.io.readers import FORMATS_OUT, MANIFEST, STDOUT, detect_format
from topictone.infer.io.writers import ParquetWriter, RowWriter, text_writer
from topictone.infer.paths import follow_umask


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
    to the Parquet writer (:class:`ParquetWriter`)."""
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
        writer = ParquetWriter(str(path), schema, own)
        try:
            yield writer
        finally:
            writer.close()
    else:
        with open(path, "w", encoding="utf-8", newline="") as handle:
            yield text_writer(handle, kind)
