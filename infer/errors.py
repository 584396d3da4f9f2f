"""One error type for everything a user can get wrong, printed as one line."""

from __future__ import annotations

from os import PathLike


class TopictoneError(Exception):
    """A user-facing error: the CLIs print it as one line and exit non-zero."""


class InputError(TopictoneError):
    """Bad input data, located by file, line and field."""

    def __init__(
        self,
        message: str,
        file: str | PathLike[str] | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.reason, self.file, self.line, self.field = message, file, line, field
        where = ":".join(str(p) for p in (file, line) if p is not None)
        # repr: a field name holding a line break or a quote still gives one line.
        what = f"field {field!r}: " if field else ""
        super().__init__(f"{where}: {what}{message}" if where else f"{what}{message}")

    def __reduce__(self) -> tuple:  # whole across processes (engine=ray's workers)
        return type(self), (self.reason, self.file, self.line, self.field)


class TextError(TopictoneError):
    """A bad text passed to the Python API, located by its index in the list."""

    def __init__(self, index: int, message: str) -> None:
        self.index, self.reason = index, message
        super().__init__(f"texts[{index}]: {message}")

    def __reduce__(self) -> tuple:
        return type(self), (self.index, self.reason)
