"""topictone's base layer: everything needed to use a trained model.

>>> import infer
>>> predictor = infer.load("runs/.../model")
>>> predictor.predict(["Army tests new missile"])[0].topics
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from infer.artifact import Manifest, read_manifest, save_model
from infer.errors import InputError, TopictoneError
from infer.predictors import predictor_class
from infer.predictors.base import Predictor
from infer.schema import LabelSchema, Prediction
from infer.text import normalize

__all__ = [
    "InputError",
    "LabelSchema",
    "Manifest",
    "Prediction",
    "Predictor",
    "TopictoneError",
    "load",
    "normalize",
    "save_model",
]


def load(path: str | os.PathLike[str], **options: Any) -> Predictor:
    """Load any saved topictone model folder; ``options`` go to the kind's loader."""
    folder = Path(path)
    manifest = read_manifest(folder)
    return predictor_class(manifest.kind).load(folder, manifest, **options)
