"""The label schema and the Prediction every predictor returns.

Both are plain data: the schema is configuration (``conf/labels``) saved inside each
model folder, and a Prediction is what every output format exposes unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from topictone.infer.errors import TopictoneError


@dataclass(frozen=True)
class LabelSchema:
    """Topic names (multi-label, a text may have none) and tone classes (exactly one)."""

    topics: tuple[str, ...]
    tones: tuple[str, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "topics", tuple(self.topics))
        object.__setattr__(self, "tones", tuple(self.tones))
        for kind, names in (("topics", self.topics), ("tones", self.tones)):
            if len(set(names)) != len(names) or not all(isinstance(n, str) and n for n in names):
                raise TopictoneError(f"label schema: {kind} must be distinct non-empty names")
        if not self.topics or len(self.tones) < 2:
            raise TopictoneError("label schema: needs at least one topic and two tones")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LabelSchema:
        return cls(topics=tuple(data["topics"]), tones=tuple(data["tones"]))

    def to_dict(self) -> dict[str, list[str]]:
        return {"topics": list(self.topics), "tones": list(self.tones)}


@dataclass(frozen=True)
class Prediction:
    """Labels for one text: each topic's score and decision, and the tone with its distribution."""

    topics: list[str]
    topic_scores: dict[str, float]
    tone: str
    tone_scores: dict[str, float]
    explanation: dict[str, list[tuple[str, float]]] | None = field(default=None)

    def to_dict(self) -> dict[str, Any]:
        """Fresh containers, built directly: ``dataclasses.asdict`` deep-copies every float
        and took about a sixth of the batch CLI's time (benchmarks/speed/tfidf_batch_cli.py)."""
        data: dict[str, Any] = {
            "topics": list(self.topics),
            "topic_scores": dict(self.topic_scores),
            "tone": self.tone,
            "tone_scores": dict(self.tone_scores),
        }
        if self.explanation is not None:
            data["explanation"] = {
                label: [tuple(term) for term in terms] for label, terms in self.explanation.items()
            }
        return data

    def to_flat(self, prefix: str = "pred_") -> dict[str, Any]:
        """One scalar per column, for CSV: topics joined by '|', one score column per label."""
        row: dict[str, Any] = {f"{prefix}topics": "|".join(self.topics)}
        row.update({f"{prefix}topic_score.{k}": round(v, 6) for k, v in self.topic_scores.items()})
        row[f"{prefix}tone"] = self.tone
        row.update({f"{prefix}tone_score.{k}": round(v, 6) for k, v in self.tone_scores.items()})
        if self.explanation is not None:
            row[f"{prefix}explanation"] = "; ".join(
                f"{label}: " + ", ".join(term for term, _ in terms)
                for label, terms in self.explanation.items()
            )
        return row
