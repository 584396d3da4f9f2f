"""Paths: names and plain files inside an untrusted model folder, and modes that follow
the umask."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from topictone.infer.errors import TopictoneError


def inside(folder: Path, name: object, what: str = "path") -> Path:
    """``folder / name`` when ``name`` is a plain relative name that stays in the folder.

    Refused: non-strings, empty names, absolute paths, ``..`` or ``.`` parts, backslashes,
    and links that resolve outside the folder. The error names the offending value.
    """
    if not isinstance(name, str) or not name or "\\" in name or "\x00" in name:
        raise TopictoneError(f"{folder}: {what} {name!r} is not a plain relative file name")
    parts = PurePosixPath(name).parts
    if PurePosixPath(name).is_absolute() or any(p in ("..", ".") for p in parts):
        raise TopictoneError(f"{folder}: {what} {name!r} leaves the model folder")
    path = folder.joinpath(*parts)
    root = folder.resolve()
    resolved = path.resolve()
    if resolved != root and root not in resolved.parents:
        raise TopictoneError(f"{folder}: {what} {name!r} is a link leaving the model folder")
    return path


def umask() -> int:
    """The process umask, read without changing it where the system allows."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore (not thread-safe; rare)
    os.umask(mask)
    return mask


def follow_umask(path: Path, folder: bool = False) -> None:
    """Give a file made by ``tempfile`` (0600 / 0700) the mode a plain create would have."""
    os.chmod(path, (0o777 if folder else 0o666) & ~umask())


# Opened without following a link and without blocking: a FIFO swapped in after the
# lstat check opens at once (and is refused by fstat) instead of waiting for a writer.
OPEN_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_NONBLOCK", 0)
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_BINARY", 0)
)


def check_plain(path: Path, status: os.stat_result) -> None:
    """Refuse anything but a regular file with a single name.

    A FIFO or a device never ends (a reader hangs on it), a socket or a link is no file
    of the folder, and a hard link shares its bytes with a name that may lie outside the
    folder, where anyone who can write there changes the model after it was checked."""
    mode = status.st_mode
    if stat.S_ISLNK(mode):
        raise TopictoneError(f"{path}: is a link; a model folder holds plain files only")
    if not stat.S_ISREG(mode):
        raise TopictoneError(f"{path}: is not a regular file; a model folder holds plain files")
    if status.st_nlink > 1:
        raise TopictoneError(
            f"{path}: has {status.st_nlink} hard links; a model folder holds plain files "
            "(copy the folder rather than linking it)"
        )


@contextmanager
def open_plain(
    path: Path, limit: int, expected: os.stat_result | None = None
) -> Iterator[BinaryIO]:
    """``path`` opened for reading, once it is known to be a plain file of at most
    ``limit`` bytes (and, given ``expected``, the very file an earlier lstat saw).

    Checked twice: by lstat before opening, and by fstat on the open descriptor, so a
    file swapped in between the two is refused rather than read."""
    try:
        before = os.lstat(path)
        check_plain(path, before)
        descriptor = os.open(path, OPEN_FLAGS)
    except FileNotFoundError:
        raise
    except OSError as err:
        raise TopictoneError(f"{path}: cannot be opened ({err.strerror})") from None
    with os.fdopen(descriptor, "rb") as handle:
        status = os.fstat(descriptor)
        check_plain(path, status)
        for seen in (before, expected):
            if seen is not None and (seen.st_dev, seen.st_ino, seen.st_size) != (
                status.st_dev,
                status.st_ino,
                status.st_size,
            ):
                raise TopictoneError(f"{path}: changed while it was being read")
        if status.st_size > limit:
            raise TopictoneError(f"{path}: larger than {limit} bytes")
        yield handle


def read_plain(path: Path, limit: int) -> bytes:
    """The bytes of a plain file of at most ``limit`` bytes (see :func:`open_plain`)."""
    with open_plain(path, limit) as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:  # grew after the check
        raise TopictoneError(f"{path}: larger than {limit} bytes")
    return data
