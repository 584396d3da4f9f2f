"""Score calibration shared by every model kind, saved in the manifest as plain numbers.

Predictors return raw scores (topic probabilities, tone distributions); a ``Calibration``
maps them to calibrated ones the same way for TF-IDF, encoder, transformer and ensemble,
so a new kind needs no decision code of its own. ``topictone.train.decisions.fitting`` fits it from
(scores, truth); the topic thresholds then apply to the calibrated scores.

Topics: Platt scaling on the score's logit, ``sigmoid(a · logit(p) + b)`` per topic
(``a > 0``: the order of scores, hence what a threshold can separate, is kept).
Tone: ``softmax(s · log q + c)`` — a temperature and a bias per tone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from topictone.infer.errors import TopictoneError
from topictone.infer.schema import LabelSchema

EPS = 1e-7  # scores are clipped to [EPS, 1 - EPS] before taking logs
MAX_PARAM = 1e4  # a manifest's numbers are untrusted: huge scales are refused
# Older manifests: calibration that lived inside the weights (TF-IDF) or the members.
INSIDE_WEIGHTS = ("sklearn-sigmoid", "members")


@dataclass(frozen=True)
class Calibration:
    """Per-topic Platt scaling and tone scaling with per-tone bias; identity by default."""

    topic_scale: tuple[float, ...]
    topic_shift: tuple[float, ...]
    tone_scale: float
    tone_shift: tuple[float, ...]

    @classmethod
    def identity(cls, schema: LabelSchema) -> Calibration:
        n, m = len(schema.topics), len(schema.tones)
        return cls((1.0,) * n, (0.0,) * n, 1.0, (0.0,) * m)

    def is_identity(self) -> bool:
        return (
            set(self.topic_scale) <= {1.0}
            and set(self.topic_shift) <= {0.0}
            and self.tone_scale == 1.0
            and set(self.tone_shift) <= {0.0}
        )

    def apply(self, scores: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        topic_scores, tone_probs = scores
        if self.is_identity():
            return topic_scores, tone_probs
        topics = np.asarray(topic_scores, dtype=np.float64)
        if topics.size:
            z = np.asarray(self.topic_scale) * logit(topics) + np.asarray(self.topic_shift)
            topics = 1.0 / (1.0 + np.exp(-z))
        tones = np.asarray(tone_probs, dtype=np.float64)
        if tones.size:
            tones = softmax(self.tone_scale * np.log(np.clip(tones, EPS, 1.0)) + self.tone_shift)
        return topics, tones

    def to_dict(self) -> dict[str, Any] | None:
        if self.is_identity():
            return None
        return {
            "method": "platt",
            "topics": {"scale": list(self.topic_scale), "shift": list(self.topic_shift)},
            "tone": {"scale": self.tone_scale, "shift": list(self.tone_shift)},
        }

    @classmethod
    def from_dict(cls, data: Any, schema: LabelSchema, where: object = "manifest") -> Calibration:
        """Read a manifest's ``calibration``; anything malformed is one line naming it."""
        n, m = len(schema.topics), len(schema.tones)
        if data is None:
            return cls.identity(schema)
        if not isinstance(data, dict):
            raise TopictoneError(f"{where}: calibration must be an object, got {data!r:.80}")
        method = data.get("method")
        if method in INSIDE_WEIGHTS:
            return cls.identity(schema)
        if method == "temperature":  # version 0.1 transformer folders: logits / T
            topic_t = _numbers(where, "topic_temperature", data.get("topic_temperature"), n)
            [tone_t] = _numbers(where, "tone_temperature", [data.get("tone_temperature")], 1)
            if min(*topic_t, tone_t) <= 0:
                raise TopictoneError(f"{where}: calibration temperatures must be positive")
            return cls(tuple(1.0 / t for t in topic_t), (0.0,) * n, 1.0 / tone_t, (0.0,) * m)
        if method != "platt":
            raise TopictoneError(f"{where}: unknown calibration method {method!r:.40}")
        topics, tone = data.get("topics"), data.get("tone")
        if not isinstance(topics, dict) or not isinstance(tone, dict):
            raise TopictoneError(f"{where}: calibration needs 'topics' and 'tone' objects")
        scale = _numbers(where, "topics.scale", topics.get("scale"), n)
        if min(scale, default=1.0) <= 0:
            raise TopictoneError(f"{where}: calibration topics.scale must be positive")
        [tone_scale] = _numbers(where, "tone.scale", [tone.get("scale")], 1)
        if tone_scale <= 0:
            raise TopictoneError(f"{where}: calibration tone.scale must be positive")
        return cls(
            scale,
            _numbers(where, "topics.shift", topics.get("shift"), n),
            tone_scale,
            _numbers(where, "tone.shift", tone.get("shift"), m),
        )


def _numbers(where: object, name: str, values: Any, length: int) -> tuple[float, ...]:
    ok = isinstance(values, Sequence) and not isinstance(values, str) and len(values) == length
    numbers = []
    for value in values if ok else ():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            ok = False
            break
        if not math.isfinite(value) or abs(value) > MAX_PARAM:
            ok = False
            break
        numbers.append(float(value))
    if not ok:
        raise TopictoneError(
            f"{where}: calibration {name} must be {length} finite numbers within "
            f"±{MAX_PARAM:g}, got {values!r:.80}"
        )
    return tuple(numbers)


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), EPS, 1.0 - EPS)
    return np.log(p) - np.log1p(-p)


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)
