"""A weighted ensemble of saved models: TF-IDF n-gram evidence and transformer context.

The two kinds err differently on gold dev (TF-IDF is the stronger on defence and
counterterrorism, the transformer on technology and tone), so a weighted mean of their
calibrated scores beats either alone (BENCHMARKS.md). The folder holds each member as a
complete model folder under ``members/<name>/``; the ensemble's own thresholds decide.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import replace
from numbers import Real
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from topictone.infer.artifact import Manifest, save_model
from topictone.infer.decision import Calibration
from topictone.infer.errors import TopictoneError
from topictone.infer.paths import inside
from topictone.infer.predictors.base import Predictor, Scores
from topictone.infer.schema import LabelSchema, Prediction

MEMBERS = "members"


class EnsemblePredictor(Predictor):
    """Weighted mean of its members' (calibrated) topic scores and tone distributions."""

    kind: ClassVar[str] = "ensemble"

    def __init__(
        self,
        schema: LabelSchema,
        members: Mapping[str, Predictor],
        weights: Mapping[str, float] | None = None,
        thresholds: Mapping[str, float] | None = None,
        calibration: Calibration | dict[str, Any] | None = None,
    ) -> None:
        super().__init__(schema, thresholds, calibration)
        if not members:
            raise TopictoneError("an ensemble needs at least one member model")
        for name, member in members.items():
            if member.schema != schema:
                raise TopictoneError(
                    f"ensemble member '{name}' has labels {member.schema.to_dict()}, "
                    f"the ensemble {schema.to_dict()}"
                )
        self.members = dict(members)
        self.weights = normalised_weights(weights or dict.fromkeys(members, 1.0), members)

    @property
    def requirements(self) -> tuple[str, ...]:  # type: ignore[override]
        return tuple(dict.fromkeys(r for m in self.members.values() for r in m.requirements))

    def _forward(self, texts: list[str]) -> Scores:
        return self.combine({n: m.predict_scores_clean(texts) for n, m in self.members.items()})

    def parts(self) -> dict[str, Predictor]:
        return dict(self.members)

    def tone_reader(self) -> EnsemblePredictor:
        """The tone is the members' tones combined: a copy of members' tone readers."""
        readers = {name: member.tone_reader() for name, member in self.members.items()}
        if all(readers[name] is member for name, member in self.members.items()):
            return self
        reader = copy.copy(self)
        reader.members = readers
        return reader

    def combine(self, part_scores: Mapping[str, Scores]) -> Scores:
        """The weighted mean of the members' calibrated scores."""
        topic_scores = sum(self.weights[n] * part_scores[n][0] for n in self.members)
        tone_probs = sum(self.weights[n] * part_scores[n][1] for n in self.members)
        return np.asarray(topic_scores, dtype=float), np.asarray(tone_probs, dtype=float)

    def explain(self, text: str, prediction: Prediction, top_k: int = 5) -> dict:
        """Each member's evidence for the ensemble's decided labels, weighted and summed by
        term (TF-IDF: feature contributions; transformer: occlusion drops)."""
        merged: dict[str, dict[str, float]] = {}
        for name, member in self.members.items():
            # The member explains the ensemble's labels against its own scores.
            own = member.postprocess(member.predict_scores_clean([text]), member.thresholds)[0]
            decided = replace(own, topics=prediction.topics, tone=prediction.tone)
            for label, terms in member.explain(text, decided, top_k).items():
                for term, value in terms:
                    bucket = merged.setdefault(label, {})
                    bucket[term] = bucket.get(term, 0.0) + self.weights[name] * value
        out = {}
        for label, terms in merged.items():
            ranked = sorted(terms.items(), key=lambda item: -item[1])[:top_k]
            out[label] = [(term, round(value, 4)) for term, value in ranked]
        return out

    def settings(self) -> dict[str, Any]:
        return {
            "members": {
                name: {"kind": member.kind, "weight": self.weights[name]}
                for name, member in self.members.items()
            }
        }

    def save_weights(self, folder: Path) -> list[str]:
        return save_members(self.members, folder)

    @classmethod
    def load(cls, folder: Path, manifest: Manifest, **options: Any) -> EnsemblePredictor:
        """Members load with the same options (a TF-IDF member ignores a transformer's)."""
        members = manifest.settings.get("members")
        check_member_specs(folder, members, "ensemble")
        assert isinstance(members, dict)
        weights = {name: spec.get("weight") for name, spec in members.items()}
        normalised_weights(weights, members)  # refused before any member loads
        loaded = load_members(folder, members, options)
        return cls(
            manifest.schema,
            loaded,
            weights,
            thresholds=manifest.thresholds,
            calibration=manifest.calibration,
        )


def normalised_weights(weights: Mapping[str, Any], members: Mapping[str, Any]) -> dict[str, float]:
    """Member weights summing to 1: one finite number >= 0 per member, not all 0. The sum
    must stay finite too (two weights of 1e308 overflow it and every score turns NaN)."""
    numbers = {}
    for name, value in weights.items():
        ok = isinstance(value, Real) and not isinstance(value, bool)
        numbers[name] = float(value) if ok else math.nan
    total = sum(numbers.values())  # inf where it overflows: refused below
    scaled = {name: numbers[name] / total for name in numbers} if total > 0 else {}
    if (
        set(weights) != set(members)
        or not all(math.isfinite(v) and v >= 0 for v in numbers.values())
        or not math.isfinite(total)
        or total <= 0
        or not all(math.isfinite(v) for v in scaled.values())
    ):
        raise TopictoneError(
            f"ensemble weights {dict(weights)!r:.200} must be finite numbers >= 0, not all 0, "
            f"one per member ({', '.join(members)})"
        )
    return {name: scaled[name] for name in members}


def save_members(members: Mapping[str, Predictor], folder: Path) -> list[str]:
    """Each member as a complete model folder under ``members/<name>/``; the files written,
    relative to ``folder``."""
    names = []
    for name, member in members.items():
        save_model(member, folder / MEMBERS / name)
        names += [
            p.relative_to(folder).as_posix()
            for p in sorted((folder / MEMBERS / name).rglob("*"))
            if p.is_file()
        ]
    return names


def check_member_specs(
    folder: Path, members: Any, kind: str, holds: str = "a weight and a kind"
) -> None:
    """A manifest's ``members``: plain names of subfolders under ``members/``, each an
    object with a ``kind`` string (checked before any member loads); ``holds`` names what
    the object must hold, for the message."""
    if not isinstance(members, dict) or not members:
        raise TopictoneError(f"{folder}: {kind} manifest lists no members")
    for name, spec in members.items():
        if not isinstance(name, str) or "/" in name:
            raise TopictoneError(f"{folder}: {kind} member {name!r} is not a plain name")
        if not inside(folder, f"{MEMBERS}/{name}", "member").is_dir():
            raise TopictoneError(f"{folder}: {kind} member {name!r} is not a subfolder")
        if not isinstance(spec, dict) or not isinstance(spec.get("kind", ""), str):
            raise TopictoneError(
                f"{folder}: {kind} member {name!r:.60} must be an object with {holds}, "
                f"got {spec!r:.60}"
            )


def load_members(
    folder: Path, members: Mapping[str, dict], options: Mapping[str, Any]
) -> dict[str, Predictor]:
    """The member folders loaded with the same options, each of the kind its spec says."""
    from topictone.infer import (
        load,  # the package's loader: members are model folders themselves
    )

    loaded = {name: load(folder / MEMBERS / name, **options) for name in members}
    for name, member in loaded.items():
        if members[name].get("kind", member.kind) != member.kind:
            raise TopictoneError(
                f"{folder}: member {name!r} is a '{member.kind}' model, the "
                f"manifest says '{members[name]['kind']:.40}'"
            )
    return loaded
