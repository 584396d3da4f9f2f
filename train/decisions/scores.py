"""A predictor's raw scores on some texts, kept per part (an ensemble's members).

Every split is scored once into a :class:`ScoreTree`; calibration is fitted on the tree
and every figure, prediction and report of the run is read from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import datasets
import numpy as np

from topictone.infer.predictors.base import Predictor, Scores
from topictone.train.data.labelled import targets

_Truth = tuple[np.ndarray, np.ndarray]  # multi-hot topics, tone indices


@dataclass
class ScoreTree:
    """A predictor's raw scores on some texts, and its parts' (an ensemble's members)."""

    raw: Scores | None
    parts: dict[str, ScoreTree] = field(default_factory=dict)

    @classmethod
    def of(cls, predictor: Predictor, clean: list[str]) -> ScoreTree:
        parts = predictor.parts()
        if parts:
            return cls(None, {name: cls.of(part, clean) for name, part in parts.items()})
        return cls(predictor.raw_scores_clean(clean))

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], prefix: str = "") -> ScoreTree:
        """The tree that :meth:`arrays` flattened (other keys, such as ``id``, are ignored)."""
        if f"{prefix}topic" in arrays:
            return cls((arrays[f"{prefix}topic"], arrays[f"{prefix}tone"]))
        names = sorted(
            {
                k[len(prefix) :].split("/")[0]
                for k in arrays
                if k.startswith(prefix) and "/" in k[len(prefix) :]
            }
        )
        return cls(None, {n: cls.from_arrays(arrays, f"{prefix}{n}/") for n in names})

    def arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
        """The raw scores as flat arrays named by part: ``topic`` and ``tone`` for a
        model, ``<member>/topic``... for an ensemble's members."""
        out = {}
        if self.raw is not None:
            out[f"{prefix}topic"], out[f"{prefix}tone"] = self.raw
        for name, part in self.parts.items():
            out.update(part.arrays(f"{prefix}{name}/"))
        return out

    def concat(self, other: ScoreTree) -> ScoreTree:
        raw = None
        if self.raw is not None and other.raw is not None:
            raw = tuple(np.concatenate([a, b]) for a, b in zip(self.raw, other.raw, strict=True))
        return ScoreTree(raw, {n: p.concat(other.parts[n]) for n, p in self.parts.items()})


@dataclass
class Scored:
    """Raw scores of some texts (a :class:`ScoreTree`) and their truth (topics, tone)."""

    tree: ScoreTree
    truth: _Truth

    def __len__(self) -> int:
        return len(self.truth[1])

    def concat(self, other: Scored) -> Scored:
        truth = (
            np.concatenate([self.truth[0], other.truth[0]]),
            np.concatenate([self.truth[1], other.truth[1]]),
        )
        return Scored(self.tree.concat(other.tree), truth)


def score_split(predictor: Any, dataset: datasets.Dataset) -> Scored:
    """One split scored once: its raw score tree and its truth."""
    tree = ScoreTree.of(predictor, predictor.preprocess(dataset["text"]))
    return Scored(tree, targets(dataset))
