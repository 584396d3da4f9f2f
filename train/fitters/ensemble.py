"""Fitting an ensemble: train each member (or load one already trained), then combine."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import datasets
from hydra.utils import instantiate

from topictone import infer
from topictone.infer.artifact import read_manifest
from topictone.infer.errors import TopictoneError
from topictone.infer.predictors.base import Predictor
from topictone.infer.predictors.ensemble import EnsemblePredictor
from topictone.infer.schema import LabelSchema
from topictone.train.fitters.base import Fitter


class EnsembleFitter(Fitter):
    """Members are model configs (each with ``_target_`` and ``kind``, as in ``conf/model/``)
    or paths of trained model folders, which are loaded instead of retrained. Calibration
    and thresholds are fitted afterwards on the ensemble, like any model's."""

    kind = "ensemble"

    def __init__(
        self, members: Mapping[str, Any], weights: Mapping[str, float] | None = None
    ) -> None:
        self.members = members
        self.weights = weights

    def fit(
        self,
        train: datasets.Dataset,
        schema: LabelSchema,
        dev: datasets.Dataset | None = None,
        workdir: str | Path | None = None,
        **_: Any,
    ) -> EnsembleFitter:
        predictors, self.fitters_ = fit_members(self.members, train, schema, dev, workdir)
        self.predictor_ = EnsemblePredictor(schema, predictors, self.weights)
        return self


def fit_members(
    members: Mapping[str, Any],
    train: datasets.Dataset,
    schema: LabelSchema,
    dev: datasets.Dataset | None,
    workdir: str | Path | None,
) -> tuple[dict[str, Predictor], dict[str, Fitter]]:
    """Each member fitted from its config, or loaded where it is a model folder's path;
    the predictors, and the fitters of those trained here."""
    workdir = Path(workdir or "checkpoints")
    predictors: dict[str, Predictor] = {}
    fitters: dict[str, Fitter] = {}
    for name, spec in members.items():
        if isinstance(spec, (str, Path)):
            predictors[name] = _load_member(spec)
            continue
        if not isinstance(spec, Mapping) or "_target_" not in spec:
            raise TopictoneError(
                f"model.members.{name}: give a model config (with _target_) or the path "
                "of a trained model folder"
            )
        fitter = instantiate(spec)
        fitter.fit(train, schema, dev=dev, workdir=workdir / name)
        fitters[name] = fitter
        predictors[name] = fitter.predictor_
    return predictors, fitters


def _load_member(folder: str | Path) -> Predictor:
    """A trained member folder. Saved again inside the new model: a transformer's torch
    weights, even where an exported ONNX graph would be the faster runtime."""
    kind = read_manifest(folder, verify=False).kind
    options: dict[str, Any] = {"runtime": "torch"} if kind == "transformer" else {}
    predictor = infer.load(folder, **options)
    if kind in ("encoder", "ensemble", "cascade"):  # torch only where an encoder may be
        from topictone.train.fitters.encoder import cache_loaded_embeddings

        cache_loaded_embeddings(predictor, folder)
    return predictor
