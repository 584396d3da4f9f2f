"""Bounds on what one text may cost, shared by the API, the batch CLI and the service.

A text longer than ``max_chars`` characters is an error, or with
``on_long_text="truncate"`` is cut to its first ``max_chars`` characters before it is
normalised. Independently, a model never tokenises or vectorises more of a text than it
can read (:meth:`Predictor.reads_chars`), so a huge text costs no more than a long one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

from topictone.infer.errors import TopictoneError

ON_LONG_TEXT = ("error", "truncate")


@dataclass(frozen=True)
class TextLimits:
    max_chars: int = 100_000
    on_long_text: Literal["error", "truncate"] = "error"

    def __post_init__(self) -> None:
        if isinstance(self.max_chars, bool) or not isinstance(self.max_chars, int):
            raise TopictoneError(f"max_chars must be an integer, got {self.max_chars!r}")
        if self.max_chars < 1:
            raise TopictoneError(f"max_chars must be at least 1, got {self.max_chars}")
        if self.on_long_text not in ON_LONG_TEXT:
            raise TopictoneError(
                f"on_long_text must be one of {', '.join(ON_LONG_TEXT)}, got {self.on_long_text!r}"
            )

    @classmethod
    def of(cls, value: TextLimits | Mapping[str, Any] | None) -> TextLimits:
        """Limits from an instance, a config mapping (unknown keys refused) or None."""
        if value is None or isinstance(value, TextLimits):
            return value or cls()
        unknown = set(value) - set(asdict(cls()))
        if unknown:
            raise TopictoneError(
                f"unknown limit(s) {', '.join(sorted(unknown))} (known: max_chars, on_long_text)"
            )
        return cls(**{k: v for k, v in value.items() if v is not None})

    def problem(self, text: str) -> str | None:
        """Why ``text`` is refused under these limits, or None."""
        if len(text) > self.max_chars and self.on_long_text == "error":
            return (
                f"{len(text)} characters, over max_chars={self.max_chars} "
                "(raise it, or set on_long_text=truncate)"
            )
        return None

    def apply(self, text: str) -> str:
        """``text`` as the model may read it (truncated when allowed)."""
        return text[: self.max_chars]
