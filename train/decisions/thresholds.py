"""Per-topic thresholds: a rule tuned on (scores, truth), and applying thresholds.

``fixed`` keeps one cut for every topic; ``f1`` takes each topic's cut with the best F1 on
the texts given; ``precision`` the lowest cut whose precision reaches a target (else the
max-F1 one). The thresholds are saved in the model folder and applied by ``topictone.infer``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import precision_recall_curve

from topictone.infer.errors import TopictoneError
from topictone.infer.schema import LabelSchema

RULES = ("fixed", "f1", "precision")


def apply_thresholds(
    topic_scores: np.ndarray, schema: LabelSchema, thresholds: dict[str, float]
) -> np.ndarray:
    """0/1 topic decisions: a score at or above its topic's threshold."""
    cut = np.array([thresholds[t] for t in schema.topics])
    return (topic_scores >= cut).astype(int)


@dataclass(frozen=True)
class ThresholdRule:
    """How thresholds are tuned (``decision.thresholds``, ``fixed``, ``target_precision``)."""

    rule: str = "f1"
    fixed: float = 0.5
    target_precision: float = 0.8

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise TopictoneError(f"decision.thresholds must be one of {RULES}, got '{self.rule}'")

    def tune(
        self, schema: LabelSchema, topic_scores: np.ndarray, topic_true: np.ndarray
    ) -> dict[str, float]:
        """One threshold per topic from these texts (``fixed`` where a topic has none)."""
        return {
            topic: self._cut(topic_scores[:, i], topic_true[:, i])
            for i, topic in enumerate(schema.topics)
        }

    def _cut(self, scores: np.ndarray, truth: np.ndarray) -> float:
        if self.rule == "fixed" or not truth.any():
            return float(self.fixed)
        precision, recall, cuts = precision_recall_curve(truth, scores)
        precision, recall = precision[:-1], recall[:-1]
        f1 = 2 * precision * recall / np.clip(precision + recall, 1e-12, None)
        best = int(np.argmax(f1))
        if self.rule == "precision":
            reached = np.flatnonzero(precision >= self.target_precision)
            best = int(reached[0]) if len(reached) else best
        # Halfway down to the next lower score: the same decisions on these texts, and a
        # margin for unseen positives that score just under the lowest one seen.
        return float(cuts[best] + cuts[best - 1]) / 2 if best else float(cuts[0])
