"""The fitter contract every model kind follows: scikit-learn's estimator contract.

``__init__`` stores its parameters and nothing else, so ``get_params`` and
``sklearn.base.clone`` work (out-of-fold scoring fits a clone per fold); ``fit`` trains on
a ``datasets.Dataset`` and returns the fitter, with the fitted predictor in ``predictor_``.
``kind`` names the model kind, the same string as the predictor's that loads its folder;
``topictone.infer.kinds`` reads it from this folder's source to build the training registry.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from sklearn.base import BaseEstimator

from topictone.infer.errors import TopictoneError

if TYPE_CHECKING:
    import datasets

    from topictone.infer.predictors.base import Predictor
    from topictone.infer.schema import LabelSchema


class Fitter(BaseEstimator):
    kind: ClassVar[str]
    predictor_: Predictor

    def fit(
        self,
        train: datasets.Dataset,
        schema: LabelSchema,
        dev: datasets.Dataset | None = None,
        workdir: str | Path | None = None,
        **options: Any,
    ) -> Fitter:
        raise NotImplementedError

    @property
    def refits(self) -> bool:
        """Whether fitting again trains everything: false where a member (an ensemble's, a
        cascade's stage) is a trained model folder's path, loaded rather than trained."""
        members = getattr(self, "members", None) or {}
        return all(isinstance(spec, Mapping) for spec in members.values())

    @property
    def reads_descriptions(self) -> bool:
        """Whether this kind, or a member trained with it, scores a topic from its
        description (``labels.descriptions``): the encoder does, TF-IDF and the static
        kind do not."""
        members = getattr(self, "members", None) or {}
        specs = [self.get_params(deep=False), *members.values()]
        return any(isinstance(spec, Mapping) and "topic_descriptions" in spec for spec in specs)


def logistic_head(C: float, fitter: Any) -> Any:
    """The logistic regression every scikit-learn head is fitted with (TF-IDF, encoder),
    with the fitter's ``class_weight``, ``max_iter`` and ``seed``."""
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(
        C=C, class_weight=fitter.class_weight, max_iter=fitter.max_iter, random_state=fitter.seed
    )


Known = tuple[np.ndarray, np.ndarray, np.ndarray]  # topics known, tone known, weight


def topic_head(x: np.ndarray, y: np.ndarray, weight: np.ndarray, fitter: Any, i: int) -> tuple:
    """Topic ``i``'s logistic head on vectors ``x`` (labels ``y``) as (weights, bias)."""
    if len(set(y)) < 2:
        raise TopictoneError(f"topic #{i}: training data has no positive or no negative")
    head = logistic_head(fitter.topic_C, fitter).fit(x, y, sample_weight=weight)
    return head.coef_[0], head.intercept_[0]


def tone_head(
    x: np.ndarray, tone_true: np.ndarray, known: Known, n_tones: int, fitter: Any
) -> tuple[np.ndarray, np.ndarray]:
    """The multinomial tone head on vectors ``x``, one row per tone of the schema."""
    _, known_tone, weight = known
    tone = logistic_head(fitter.tone_C, fitter).fit(
        x[known_tone], tone_true[known_tone], sample_weight=weight[known_tone]
    )
    tone_w = np.zeros((n_tones, x.shape[1]))
    tone_b = np.full(n_tones, -1e4)  # a tone never seen in training is never predicted
    if len(tone.classes_) == 2:  # binary: scikit-learn keeps one row for the second class
        tone_w[tone.classes_[1]], tone_b[tone.classes_[1]] = tone.coef_[0], tone.intercept_[0]
        tone_b[tone.classes_[0]] = 0.0
    else:
        tone_w[tone.classes_], tone_b[tone.classes_] = tone.coef_, tone.intercept_
    return tone_w, tone_b


def linear_heads(
    x: np.ndarray,
    topic_true: np.ndarray,
    tone_true: np.ndarray,
    known: Known,
    n_tones: int,
    fitter: Any,
) -> dict[str, np.ndarray]:
    """Logistic heads on vectors ``x`` as the arrays a vector kind's predictor reads (the
    encoder's and the static kind's): a binary head per topic and the tone head."""
    rows, _, weight = known
    topics = [
        topic_head(x[rows], topic_true[rows, i], weight[rows], fitter, i)
        for i in range(topic_true.shape[1])
    ]
    tone_w, tone_b = tone_head(x, tone_true, known, n_tones, fitter)
    return {
        "topic_weight": np.asarray([w for w, _ in topics]),
        "topic_bias": np.asarray([b for _, b in topics]),
        "tone_weight": tone_w,
        "tone_bias": tone_b,
    }
