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

from sklearn.base import BaseEstimator

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


def logistic_head(C: float, fitter: Any) -> Any:
    """The logistic regression every scikit-learn head is fitted with (TF-IDF, encoder),
    with the fitter's ``class_weight``, ``max_iter`` and ``seed``."""
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(
        C=C, class_weight=fitter.class_weight, max_iter=fitter.max_iter, random_state=fitter.seed
    )
