"""The predictor contract shared by every model kind.

Like a Hugging Face pipeline, ``predict`` is ``preprocess`` → ``_forward`` →
``postprocess``; the label schema, calibration and thresholds travel with the predictor
and its saved folder, so a loaded model decides exactly as it did when it was evaluated.
``_forward`` returns raw scores; the kind-agnostic ``Calibration`` (``topictone.infer.decision``)
and the thresholds turn them into decisions the same way for every kind.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from numbers import Real
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from topictone.infer.artifact import Manifest
from topictone.infer.decision import Calibration, softmax
from topictone.infer.errors import TextError, TopictoneError
from topictone.infer.limits import TextLimits
from topictone.infer.schema import LabelSchema, Prediction
from topictone.infer.text import EMPTY_TEXT, normalize, unicode_problem

Scores = tuple[np.ndarray, np.ndarray]
"""Topic probabilities (n × topics) and tone distributions (n × tones)."""


class Predictor(ABC):
    kind: ClassVar[str]
    requirements: ClassVar[tuple[str, ...]] = ("numpy",)
    limits: TextLimits = TextLimits()  # set per instance by ``infer.load(..., limits=)``

    def __init__(
        self,
        schema: LabelSchema,
        thresholds: Mapping[str, float] | None = None,
        calibration: Calibration | dict[str, Any] | None = None,
    ) -> None:
        self.schema = schema
        self.thresholds = self.resolve_thresholds(thresholds)
        if not isinstance(calibration, Calibration):
            calibration = Calibration.from_dict(calibration, schema)
        self.calibration = calibration

    def resolve_thresholds(self, overrides: Mapping[str, float] | None) -> dict[str, float]:
        """This predictor's thresholds with ``overrides`` on top; unknown topics are an error."""
        base = dict(getattr(self, "thresholds", None) or dict.fromkeys(self.schema.topics, 0.5))
        for topic, value in (overrides or {}).items():
            if topic not in base:
                raise TopictoneError(
                    f"threshold for unknown topic '{topic}' (topics: {', '.join(base)})"
                )
            number = value if isinstance(value, Real) and not isinstance(value, bool) else None
            if number is None or not 0.0 <= float(number) <= 1.0:
                raise TopictoneError(
                    f"threshold for '{topic}' must be a number in [0, 1], got {value!r}"
                )
            base[topic] = float(number)
        return base

    def preprocess(self, texts: Iterable[str]) -> list[str]:
        """Checked, length-bounded, normalised texts; a bad one is a ``TextError``.

        The one rule every path applies (API, batch CLI, service, Ray engine): a text
        must be a string of valid Unicode within the limits that leaves something to
        read once normalised."""
        limits = self.limits
        clean = []
        for index, text in enumerate(texts):
            if not isinstance(text, str):
                raise TextError(index, f"must be a string, got {type(text).__name__}")
            problem = limits.problem(text) or unicode_problem(text)
            if problem:
                raise TextError(index, problem)
            normalised = normalize(limits.apply(text))
            if not normalised:
                raise TextError(index, EMPTY_TEXT)
            clean.append(normalised)
        return clean

    @abstractmethod
    def _forward(self, texts: list[str]) -> Scores:
        """Raw (uncalibrated) scores for already-normalised texts."""

    def parts(self) -> dict[str, Predictor]:
        """Sub-models whose calibrated scores ``combine`` merges (an ensemble's members)."""
        return {}

    def combine(self, part_scores: Mapping[str, Scores]) -> Scores:
        """Raw scores from the parts' calibrated scores (only for kinds with parts)."""
        raise TopictoneError(f"'{self.kind}' models have no parts to combine")

    def postprocess(self, scores: Scores, thresholds: Mapping[str, float]) -> list[Prediction]:
        topic_scores, tone_probs = scores
        topics, tones = self.schema.topics, self.schema.tones
        # Decided in numpy for the whole batch: a score reaching its threshold.
        decided = np.asarray(topic_scores) >= np.array([thresholds[t] for t in topics], float)
        tone = np.asarray(tone_probs).argmax(axis=1).tolist()
        return [
            Prediction(
                topics=list(chosen),
                topic_scores=dict(zip(topics, row_topics, strict=True)),
                tone=tones[row_tone],
                tone_scores=dict(zip(tones, row_probs, strict=True)),
            )
            for chosen, row_topics, row_tone, row_probs in zip(
                topic_sets(topics, decided),
                topic_scores.tolist(),
                tone,
                tone_probs.tolist(),
                strict=True,
            )
        ]

    def predict_scores(self, texts: Iterable[str]) -> Scores:
        """Calibrated scores only, for evaluation and threshold tuning."""
        return self.predict_scores_clean(self.preprocess(_texts(texts)))

    def predict(
        self,
        texts: Iterable[str],
        thresholds: Mapping[str, float] | None = None,
        explain: bool = False,
    ) -> list[Prediction]:
        """Labels for each text, in input order. ``thresholds`` overrides the saved ones.

        ``texts`` may be any iterable (a generator is read once)."""
        texts = _texts(texts)
        decided = self.resolve_thresholds(thresholds) if thresholds else self.thresholds
        clean = self.preprocess(texts)
        predictions = self.postprocess(self.predict_scores_clean(clean), decided)
        if explain:
            predictions = [
                replace(p, explanation=self.explain(text, p))
                for text, p in zip(clean, predictions, strict=True)
            ]
        return predictions

    def predict_scores_clean(self, clean: list[str]) -> Scores:
        """Calibrated scores for normalised texts."""
        return self.calibration.apply(self.raw_scores_clean(clean))

    def raw_scores_clean(self, clean: list[str]) -> Scores:
        """Scores before calibration: what ``topictone.train.decisions.fitting`` fits the
        calibration on."""
        if not clean:
            return np.zeros((0, len(self.schema.topics))), np.zeros((0, len(self.schema.tones)))
        return self._forward(clean)

    def tone_reader(self) -> Predictor:
        """A predictor whose calibrated tone equals this one's on every text, reading no
        more of it: kinds that pool the tone from a text's first window return one that
        reads only that window (a cascade's stage asked for a tone alone)."""
        return self

    def explain(self, text: str, prediction: Prediction, top_k: int = 5) -> dict:
        """For each decided label, the terms that pushed it most (kinds override this)."""
        raise TopictoneError(f"explanations are not available for '{self.kind}' models")

    def settings(self) -> dict[str, Any]:
        """Kind-specific settings saved in the manifest and handed back to ``load``."""
        return {}

    @abstractmethod
    def save_weights(self, folder: Path) -> list[str]:
        """Write the weights into ``folder``; return the file names written."""

    @classmethod
    @abstractmethod
    def load(cls, folder: Path, manifest: Manifest, **options: Any) -> Predictor:
        """Rebuild the predictor from a checked model folder."""


def _texts(texts: Iterable[str]) -> Sequence[str]:
    """The texts as a sequence, read once; one string is refused (it is not a list of
    texts, and iterating it would score each character)."""
    if isinstance(texts, str):
        raise TopictoneError("predict takes a list of texts, not one string")
    return texts if isinstance(texts, Sequence) else list(texts)


def scores_from_logits(topic_logits: np.ndarray, tone_logits: np.ndarray) -> Scores:
    """Sigmoid topic scores and softmax tone distribution (raw: calibration comes after)."""
    topics = 1.0 / (1.0 + np.exp(-topic_logits.astype(np.float64)))
    return topics, softmax(tone_logits.astype(np.float64))


def readable_prefix(tokenizer: Any, tokens: int) -> int:
    """Characters that surely hold a text's first ``tokens`` tokens: a model that reads
    only those cuts the rest before tokenising, so a huge text costs what a long one does.

    No token spans more characters than the vocabulary's longest piece; the factor 2 is
    slack for tokenizer normalisers that drop characters."""
    longest = max((len(piece) for piece in tokenizer.get_vocab()), default=1)
    return 2 * tokens * max(longest, 1)


SIZE_RANGES = {
    "max_length": (1, 8192),
    "stride": (0, 8191),
    "max_windows": (1, 256),
    "batch_size": (1, 4096),
    "threads": (1, 1024),
    "lead_chars": (0, 1 << 20),
}


def checked_sizes(where: object, settings: Mapping[str, Any], names: Sequence[str]) -> dict:
    """The named integer settings of a model folder or a load option, range-checked.

    Both are untrusted: a manifest may claim ``max_windows: 1e9`` and a user may type
    ``options.batch_size=0``; either is one line naming the setting."""
    out = {}
    for name in names:
        value = settings.get(name)
        low, high = SIZE_RANGES[name]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise TopictoneError(
                f"{where}: {name} must be an integer in [{low}, {high}], got {value!r}"
            )
        out[name] = value
    return out


def topic_sets(topics: Sequence[str], decided: np.ndarray) -> list[tuple[str, ...]]:
    """Each row's decided topics, in schema order: by a table of every subset where the
    schema is small (a bit mask a row), else row by row."""
    if len(topics) > 10:
        return [tuple(t for t, on in zip(topics, row, strict=True) if on) for row in decided]
    every = range(1 << len(topics))
    subsets = [tuple(t for i, t in enumerate(topics) if m >> i & 1) for m in every]
    masks = decided @ (1 << np.arange(len(topics), dtype=np.int64))
    return [subsets[m] for m in masks.tolist()]
