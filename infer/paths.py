"""Paths: names inside an untrusted model folder, and modes that follow the umask."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from infer.errors import TopictoneError


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
