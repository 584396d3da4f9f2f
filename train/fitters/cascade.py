"""Fitting a cascade: train (or load) its cheap and expensive stages. The bands that route
texts between them are fitted later with the decisions (``decisions/routing.py``), on
scores the stages did not train on."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import datasets

from topictone.infer.errors import TopictoneError
from topictone.infer.predictors.cascade import STAGES, CascadePredictor, check_route
from topictone.infer.schema import LabelSchema
from topictone.train.fitters.base import Fitter
from topictone.train.fitters.ensemble import fit_members


class CascadeFitter(Fitter):
    """``members.cheap`` and ``members.expensive`` are model configs or trained model
    folders, as an ensemble's members are. ``max_expensive_share`` (a fraction of texts)
    or ``max_f1_loss`` (topic and tone macro-F1 against the expensive stage alone) is the
    target the bands are fitted for; with both, the share caps the loss target.
    ``route_by``: what the expensive stage decides of a text it reads, every score
    (``text``) or only the unsure heads' (``head``; see ``infer/predictors/cascade.py``)."""

    kind = "cascade"

    def __init__(
        self,
        members: Mapping[str, Any],
        max_expensive_share: float | None = None,
        max_f1_loss: float | None = 0.01,
        route_by: str = "text",
    ) -> None:
        self.members = members
        self.max_expensive_share = max_expensive_share
        self.max_f1_loss = max_f1_loss
        self.route_by = route_by

    def fit(
        self,
        train: datasets.Dataset,
        schema: LabelSchema,
        dev: datasets.Dataset | None = None,
        workdir: str | Path | None = None,
        **_: Any,
    ) -> CascadeFitter:
        if set(self.members) != set(STAGES):
            raise TopictoneError(
                f"model.members: a cascade has two stages, cheap and expensive; got "
                f"{', '.join(map(str, self.members))}"
            )
        target = (self.max_expensive_share, self.max_f1_loss)
        if all(t is None for t in target) or any(
            t is not None and not 0.0 <= t <= 1.0 for t in target
        ):
            raise TopictoneError(
                "model.max_expensive_share and model.max_f1_loss: set one or both, each "
                f"in [0, 1]; got {target[0]} and {target[1]}"
            )
        stages, self.fitters_ = fit_members(self.members, train, schema, dev, workdir)
        self.predictor_ = CascadePredictor(
            schema,
            stages["cheap"],
            stages["expensive"],
            target={"max_expensive_share": target[0], "max_f1_loss": target[1]},
            route_by=check_route(self.route_by),
        )
        return self
