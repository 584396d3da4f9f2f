"""topictone's base layer: everything needed to use a trained model.

>>> import infer
>>> predictor = infer.load("runs/.../model")
>>> predictor.predict(["Army tests new missile"])[0].topics
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from topictone.infer.artifact import Manifest, read_manifest, save_model
from topictone.infer.errors import InputError, TextError, TopictoneError
from topictone.infer.limits import TextLimits
from topictone.infer.predictors import predictor_class
from topictone.infer.predictors.base import Predictor
from topictone.infer.schema import LabelSchema, Prediction
from topictone.infer.text import normalize

__all__ = [
    "InputError",
    "LabelSchema",
    "Manifest",
    "Prediction",
    "Predictor",
    "TextError",
    "TextLimits",
    "TopictoneError",
    "load",
    "normalize",
    "save_model",
]


def load(
    path: str | os.PathLike[str],
    limits: TextLimits | Mapping[str, Any] | None = None,
    model_sha256: str | None = None,
    **options: Any,
) -> Predictor:
    """Load any saved topictone model folder; ``options`` go to the kind's loader.

    ``limits`` bound each text (:class:`TextLimits`: ``max_chars``, ``on_long_text``).
    ``model_sha256``, the SHA-256 of the folder's ``topictone.json``, pins the exact model:
    the manifest holds every file's checksum, so any other folder is refused, even one
    whose checksums were recomputed after an edit."""
    folder = Path(path)
    bounds = TextLimits.of(limits)
    manifest = read_manifest(folder, model_sha256=model_sha256)
    predictor = predictor_class(manifest.kind).load(folder, manifest, **options)
    predictor.limits = bounds
    return predictor
