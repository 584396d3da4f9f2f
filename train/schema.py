"""Typed configs: a wrong type or an unknown key fails when Hydra composes, in one line.

The top level (seed, checks, decision, data) has hand-written dataclasses; each model
kind's schema is built from its fitter's ``__init__`` signature, so a fitter's parameters
and its config keys cannot drift apart. ``register()`` puts them in Hydra's ConfigStore:
``conf/train.yaml`` starts from ``train_schema``; each ``conf/model/<kind>.yaml`` from
``/schema/model/<kind>`` (a group of its own: a ``model`` group in the store would clash
with the inference commands' ``model=<folder>``).
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


class Calibration(str, enum.Enum):
    platt = "platt"
    temperature = "temperature"


class Thresholds(str, enum.Enum):
    fixed = "fixed"
    f1 = "f1"
    precision = "precision"
    auto = "auto"


@dataclass
class DecisionConfig:
    calibrate: bool = False
    calibration: Calibration = Calibration.platt
    oof_folds: int = 0
    thresholds: Thresholds = Thresholds.fixed
    shrink: float = 0.0
    fixed: float = 0.5
    target_precision: float = 0.8
    crossfit_folds: int = 5


@dataclass
class ChecksConfig:
    min_examples: int = 5
    max_overlap: float = 0.05


@dataclass
class FieldsConfig:
    id: str = "id"
    text: str = "text"
    topics: str = "topics"
    tone: str = "tone"


@dataclass
class DataConfig:
    name: str = "data"
    train: Any = None  # a path, or a list of paths read one after the other
    dev: Any = None
    test: Any = None
    format: Optional[str] = None  # noqa: UP045 (OmegaConf reads typing.Optional)
    fields: FieldsConfig = field(default_factory=FieldsConfig)
    keep: list[str] = field(default_factory=list)
    missing_hint: Optional[str] = None  # noqa: UP045
    license: Optional[str] = None  # noqa: UP045
    license_name: Optional[str] = None  # noqa: UP045


@dataclass
class LabelsConfig:
    topics: list[str] = field(default_factory=list)
    tones: list[str] = field(default_factory=list)


@dataclass
class TrainConfig:
    labels: LabelsConfig = field(default_factory=LabelsConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: Any = None  # typed by the model group's own schema
    weak: Any = None
    distill: Any = None
    tracking: Any = None
    hparams_search: Any = None
    seed: int = 13
    report: bool = True
    checks: ChecksConfig = field(default_factory=ChecksConfig)
    decision: DecisionConfig = field(default_factory=DecisionConfig)


def _omegaconf_type(hint: Any) -> Any:
    """An annotation OmegaConf can check: tuples become lists, ``X | None`` Optional."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        inner = _omegaconf_type(args[0]) if len(args) == 1 else Any
        return Optional[inner]  # noqa: UP045
    if origin in (tuple, list) or hint in (tuple, list):
        args = typing.get_args(hint)
        element = args[0] if args and all(a == args[0] for a in args if a is not Ellipsis) else Any
        return list[element] if element in (int, float, str, bool) else list[Any]
    if origin in (dict, Mapping) or hint in (dict, Mapping):
        return dict[str, Any]
    if hint in (int, float, str, bool):
        return hint
    return Any


def fitter_schema(fitter: type, kind: str) -> type:
    """A dataclass with ``_target_``, ``kind`` and the fitter's ``__init__`` parameters."""
    hints = typing.get_type_hints(fitter.__init__)
    fields: list[tuple[str, Any, Any]] = [
        ("_target_", str, field(default=f"{fitter.__module__}.{fitter.__qualname__}")),
        ("kind", str, field(default=kind)),
        ("_recursive_", bool, field(default=True)),  # an ensemble builds its members itself
    ]
    for name, param in inspect.signature(fitter.__init__).parameters.items():
        if name == "self" or param.kind in (param.VAR_KEYWORD, param.VAR_POSITIONAL):
            continue
        hint = _omegaconf_type(hints.get(name, Any))
        default = param.default
        if default is inspect.Parameter.empty:  # required: MISSING until the config sets it
            spec = field(default=MISSING)
        elif isinstance(default, (list, dict, tuple)):
            spec = field(default_factory=lambda d=default: list(d) if isinstance(d, tuple) else d)
        else:
            spec = field(default=default)
        fields.append((name, hint, spec))
    return dataclasses.make_dataclass(f"{fitter.__name__}Schema", fields)


FITTERS = {
    "tfidf": "train.tfidf:TfidfFitter",
    "encoder": "train.encoder:EncoderFitter",
    "transformer": "train.transformer:TransformerFitter",
    "ensemble": "train.ensemble:EnsembleFitter",
}


def model_fitters() -> dict[str, type]:
    """The fitter of each kind that imports here (the TF-IDF install has no torch: the
    torch kinds' configs then stay untyped, and fail when used, as before)."""
    import importlib

    fitters = {}
    for kind, spec in FITTERS.items():
        module, _, name = spec.partition(":")
        try:
            fitters[kind] = getattr(importlib.import_module(module), name)
        except ImportError:
            continue
    return fitters


def register() -> None:
    """Store the schemas in Hydra's ConfigStore (idempotent)."""
    store = ConfigStore.instance()
    store.store(name="train_schema", node=TrainConfig)
    fitters = model_fitters()
    for kind in FITTERS:
        node = fitter_schema(fitters[kind], kind) if kind in fitters else {}
        store.store(group="schema/model", name=kind, node=node)
