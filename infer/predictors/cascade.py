"""A cascade: a cheap model decides every text; the texts it is unsure of go to an
expensive one, whose decision then stands.

Most texts are clear to TF-IDF; the slow models earn their cost on the rest. A head is
unsure of a text when the cheap model's calibrated score of a topic falls inside that
topic's band (around the cheap model's threshold), or the tone margin (top tone
probability minus the second) is below ``tone_margin``. ``route_by`` says what the
expensive stage then decides:

- ``text``: every score of a text any head is unsure of;
- ``head``: only the unsure heads' scores. A text unsure of its tone alone is read only as
  far as the expensive stage's tone reads (its first window, where the tone is pooled
  from it: :meth:`Predictor.tone_reader`); the rest of an article's windows are read only
  while a topic is still unsure.

The bands are fitted with the decisions (``topictone.train.decisions.routing``), on scores
the model did not train on, for a target share of expensive texts or a largest F1 loss.
Both stages are complete model folders under ``members/cheap`` and ``members/expensive``;
the cascade's own calibration and thresholds decide on the merged scores.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from numbers import Real
from pathlib import Path
from typing import Any, ClassVar, TypeGuard

import numpy as np

from topictone.infer.artifact import Manifest
from topictone.infer.decision import Calibration
from topictone.infer.errors import TopictoneError
from topictone.infer.predictors.base import Predictor, Scores
from topictone.infer.predictors.ensemble import check_member_specs, load_members, save_members
from topictone.infer.schema import LabelSchema, Prediction

STAGES = ("cheap", "expensive")
ROUTES = ("text", "head")  # what the expensive stage decides: see the module docstring


@dataclass(frozen=True)
class Bands:
    """Where the cheap model is unsure: per topic an open interval of its calibrated score,
    and the tone margin below which its tone is. ``Bands.everything`` sends every text on."""

    topics: dict[str, tuple[float, float]]
    tone_margin: float

    @classmethod
    def everything(cls, schema: LabelSchema) -> Bands:
        return cls(dict.fromkeys(schema.topics, (-math.inf, math.inf)), math.inf)

    def unsure(self, schema: LabelSchema, scores: Scores) -> tuple[np.ndarray, np.ndarray]:
        """Per text and topic, whether the score is inside the topic's band; per text,
        whether the tone margin is below the band's."""
        topic_scores, tone_probs = scores
        low = np.array([self.topics[t][0] for t in schema.topics])
        high = np.array([self.topics[t][1] for t in schema.topics])
        inside = (topic_scores > low) & (topic_scores < high)
        return inside, tone_margins(tone_probs) < self.tone_margin

    def route(self, schema: LabelSchema, scores: Scores) -> np.ndarray:
        """A boolean per text: whether any head is unsure of it."""
        topics, tone = self.unsure(schema, scores)
        return topics.any(axis=1) | tone

    def to_dict(self) -> dict[str, Any]:
        return {
            "topics": {t: list(b) for t, b in self.topics.items()},
            "tone_margin": self.tone_margin,
        }

    @classmethod
    def from_dict(cls, where: object, data: Any, schema: LabelSchema) -> Bands:
        """Bands from a manifest (untrusted): every topic an interval of two numbers in
        order, and a tone margin; ``null`` is "send every text on"."""
        if data is None:
            return cls.everything(schema)
        problem = (
            f"{where}: cascade bands must be "
            "{'topics': {topic: [low, high]}, 'tone_margin': number}"
        )
        if not isinstance(data, dict) or not isinstance(data.get("topics"), dict):
            raise TopictoneError(f"{problem}, got {data!r:.80}")
        if set(data["topics"]) != set(schema.topics):
            raise TopictoneError(f"{problem} for the topics {', '.join(schema.topics)}")
        topics = {}
        for topic, band in data["topics"].items():
            ok = isinstance(band, list) and len(band) == 2 and all(_number(v) for v in band)
            if not ok or band[0] > band[1]:
                raise TopictoneError(f"{problem}; '{topic}' has {band!r:.80}")
            topics[topic] = (float(band[0]), float(band[1]))
        margin = data.get("tone_margin")
        if not _number(margin):
            raise TopictoneError(f"{problem}; tone_margin is {margin!r:.40}")
        return cls(topics, float(margin))


def tone_margins(tone_probs: np.ndarray) -> np.ndarray:
    """Per text, its top tone probability less the second."""
    top_two = np.sort(tone_probs, axis=1)[:, -2:]
    return top_two[:, 1] - top_two[:, 0]


def decided_by(rule: str, unsure: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Which topic scores (texts × topics) and tones (per text) the expensive stage
    decides, from the heads' unsureness (:meth:`Bands.unsure`), under a ``route_by`` rule."""
    topics, tone = unsure
    if rule == "head":
        return topics, tone
    routed = topics.any(axis=1) | tone
    return np.repeat(routed[:, None], topics.shape[1], axis=1), routed


def mixed(cheap: Scores, expensive: Scores, decided: tuple[np.ndarray, np.ndarray]) -> Scores:
    """The cheap scores with the entries the expensive stage decides (:func:`decided_by`)
    taken from ``expensive`` (rows of every text; rows it did not read are never taken)."""
    topics, tone = decided
    return (
        np.where(topics, expensive[0], cheap[0]).astype(float),
        np.where(tone[:, None], expensive[1], cheap[1]).astype(float),
    )


def check_route(rule: object, where: object = "model.route_by") -> str:
    if rule not in ROUTES:
        raise TopictoneError(f"{where}: a cascade routes by one of {ROUTES}, got {rule!r:.40}")
    return str(rule)


def _number(value: Any) -> TypeGuard[float]:
    """A real number that is not NaN (infinities mean "no limit")."""
    return isinstance(value, Real) and not isinstance(value, bool) and not math.isnan(value)


class CascadePredictor(Predictor):
    """The cheap stage's calibrated scores, replaced by the expensive stage's for the
    texts inside the bands (the expensive model reads only those)."""

    kind: ClassVar[str] = "cascade"

    def __init__(
        self,
        schema: LabelSchema,
        cheap: Predictor,
        expensive: Predictor,
        bands: Bands | None = None,
        target: Mapping[str, float | None] | None = None,
        thresholds: Mapping[str, float] | None = None,
        calibration: Calibration | dict[str, Any] | None = None,
        route_by: str = "text",
    ) -> None:
        super().__init__(schema, thresholds, calibration)
        self.route_by = check_route(route_by)
        for name, stage in (("cheap", cheap), ("expensive", expensive)):
            if stage.schema != schema:
                raise TopictoneError(
                    f"cascade stage '{name}' has labels {stage.schema.to_dict()}, "
                    f"the cascade {schema.to_dict()}"
                )
        self.cheap, self.expensive = cheap, expensive
        self._tone_reader: Predictor | None = None
        self.bands = bands or Bands.everything(schema)
        # What the bands are fitted for (max_expensive_share, max_f1_loss), and the share
        # of texts they sent on where they were fitted.
        self.target = dict(target or {"max_expensive_share": None, "max_f1_loss": 0.01})
        self.fitted_share: float | None = None

    @property
    def requirements(self) -> tuple[str, ...]:  # type: ignore[override]
        return tuple(dict.fromkeys((*self.cheap.requirements, *self.expensive.requirements)))

    def parts(self) -> dict[str, Predictor]:
        return {"cheap": self.cheap, "expensive": self.expensive}

    def combine(self, part_scores: Mapping[str, Scores]) -> Scores:
        """Both stages' calibrated scores of every text merged by the bands (how the
        decisions are fitted: the expensive stage has scored every text there)."""
        cheap, expensive = part_scores["cheap"], part_scores["expensive"]
        return mixed(cheap, expensive, self.decided(cheap))

    def decided(self, cheap: Scores) -> tuple[np.ndarray, np.ndarray]:
        """The entries the expensive stage decides, given the cheap stage's scores."""
        return decided_by(self.route_by, self.bands.unsure(self.schema, cheap))

    def _forward(self, texts: list[str]) -> Scores:
        cheap = self.cheap.predict_scores_clean(texts)
        decided = self.decided(cheap)
        whole, lead = reads(decided)
        expensive = tuple(np.array(part, dtype=float) for part in cheap)
        if whole.any():
            read = self.expensive.predict_scores_clean(_chosen(texts, whole))
            expensive[0][whole], expensive[1][whole] = read
        if lead.any():
            if self._tone_reader is None:  # built once: a copy, and a scan of the vocabulary
                self._tone_reader = self.expensive.tone_reader()
            read_tone = self._tone_reader.predict_scores_clean(_chosen(texts, lead))[1]
            expensive[1][lead] = read_tone
        return mixed(cheap, (expensive[0], expensive[1]), decided)

    def reads(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """For normalised texts, which the expensive stage reads whole, and which only as
        far as its tone reads."""
        return reads(self.decided(self.cheap.predict_scores_clean(texts)))

    def routed(self, texts: list[str]) -> np.ndarray:
        """For normalised texts, whether the expensive stage reads any of each."""
        whole, lead = self.reads(texts)
        return whole | lead

    def explain(self, text: str, prediction: Prediction, top_k: int = 5) -> dict:
        """The evidence of the stage that decided the text, for the cascade's labels."""
        stage = self.expensive if self.routed([text])[0] else self.cheap
        own = stage.postprocess(stage.predict_scores_clean([text]), stage.thresholds)[0]
        return stage.explain(
            text, replace(own, topics=prediction.topics, tone=prediction.tone), top_k
        )

    def settings(self) -> dict[str, Any]:
        return {
            "members": {name: {"kind": stage.kind} for name, stage in self.parts().items()},
            # null, not JSON's non-standard Infinity, for "every text goes on"
            "bands": None if self.bands == Bands.everything(self.schema) else self.bands.to_dict(),
            "target": self.target,
            "route_by": self.route_by,
            "fitted_expensive_share": self.fitted_share,
        }

    def save_weights(self, folder: Path) -> list[str]:
        return save_members(self.parts(), folder)

    @classmethod
    def load(cls, folder: Path, manifest: Manifest, **options: Any) -> CascadePredictor:
        """Both stages load with the same options (a TF-IDF stage ignores a transformer's)."""
        members = manifest.settings.get("members")
        check_member_specs(folder, members, "cascade", holds="a kind")
        assert isinstance(members, dict)
        if set(members) != set(STAGES):
            raise TopictoneError(f"{folder}: a cascade's members are {', '.join(STAGES)}")
        bands = Bands.from_dict(folder, manifest.settings.get("bands"), manifest.schema)
        target = manifest.settings.get("target")
        if target is not None and not (
            isinstance(target, dict) and all(v is None or _number(v) for v in target.values())
        ):
            raise TopictoneError(f"{folder}: cascade target must map names to numbers")
        loaded = load_members(folder, members, options)
        predictor = cls(
            manifest.schema,
            loaded["cheap"],
            loaded["expensive"],
            bands,
            target,
            thresholds=manifest.thresholds,
            calibration=manifest.calibration,
            route_by=check_route(manifest.settings.get("route_by", "text"), folder),
        )
        share = manifest.settings.get("fitted_expensive_share")
        predictor.fitted_share = float(share) if _number(share) else None
        return predictor


def reads(decided: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Texts the expensive stage reads whole (a topic of theirs it decides), and texts it
    reads only for their tone."""
    whole: np.ndarray = np.any(decided[0], axis=1)
    return whole, decided[1] & ~whole


def _chosen(texts: list[str], rows: np.ndarray) -> list[str]:
    return [text for text, go in zip(texts, rows.tolist(), strict=True) if go]
