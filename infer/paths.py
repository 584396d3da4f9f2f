"""Names inside a model folder: a folder is untrusted data and may only name its own files."""

from __future__ import annotations

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
