"""Predictors by model kind, imported lazily so the TF-IDF path never imports torch."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

from infer.errors import TopictoneError

if TYPE_CHECKING:
    from infer.predictors.base import Predictor

REGISTRY: dict[str, str] = {
    "tfidf": "infer.predictors.tfidf:TfidfPredictor",
    "transformer": "infer.predictors.transformer:TransformerPredictor",
    "ensemble": "infer.predictors.ensemble:EnsemblePredictor",
    "encoder": "infer.predictors.encoder:EncoderPredictor",
}


def predictor_class(kind: str) -> type[Predictor]:
    try:
        module, name = REGISTRY[kind].split(":")
    except KeyError:
        raise TopictoneError(
            f"unknown model kind {kind!r:.60} (known: {', '.join(REGISTRY)})"
        ) from None
    try:
        return getattr(import_module(module), name)
    except ImportError as err:
        raise TopictoneError(
            f"model kind '{kind}' needs a missing package ({err.name}); "
            "install topictone[transformer]"
        ) from None
