"""Predictors by model kind, imported lazily so the TF-IDF path never imports torch."""

from __future__ import annotations

from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING

from topictone.infer.errors import TopictoneError
from topictone.infer.kinds import declared_kinds

if TYPE_CHECKING:
    from topictone.infer.predictors.base import Predictor

# kind -> "module:Class", read from each predictor's ``kind = ...`` (infer/kinds.py)
REGISTRY: dict[str, str] = declared_kinds(Path(__file__).parent, __name__)


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
