"""Typed configs: a wrong type or an unknown key fails when Hydra composes, in one line.

The top level (seed, checks, decision, data) has hand-written dataclasses; each model
kind's schema is built from its fitter's ``__init__`` signature (read from the source, so
registering imports no torch), so a fitter's parameters and its config keys cannot drift
apart. ``register()`` puts them in Hydra's ConfigStore:
``conf/train.yaml`` starts from ``train_schema``; each ``conf/model/<kind>.yaml`` from
``/schema/model/<kind>`` (a group of its own: a ``model`` group in the store would clash
with the inference commands' ``model=<folder>``).
"""

from __future__ import annotations

import ast
import dataclasses
import enum
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from types import GenericAlias
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

from topictone.infer.kinds import declared_kinds


class CalibrationMethod(str, enum.Enum):
    platt = "platt"
    temperature = "temperature"
    auto = "auto"  # per head, the method with the better cross-fitted macro-F1


class ThresholdMethod(str, enum.Enum):
    fixed = "fixed"
    f1 = "f1"
    precision = "precision"


@dataclass
class DecisionConfig:
    """How decisions are fitted after training (``conf/train.yaml``, ``decision:``)."""

    calibrate: bool = False
    calibration: CalibrationMethod = CalibrationMethod.platt
    oof_folds: int = 0
    use_dev: bool = True
    thresholds: ThresholdMethod = ThresholdMethod.fixed
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
    """The label schema (``conf/labels/``). ``descriptions`` (topic -> one sentence) and
    ``examples`` (topic -> a few texts) let the encoder score a topic with few or no
    labels from what it is about; neither is saved in a model's label schema."""

    topics: list[str] = field(default_factory=list)
    tones: list[str] = field(default_factory=list)
    descriptions: dict[str, str] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class TrainConfig:
    labels: LabelsConfig = field(default_factory=LabelsConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: Any = None  # typed by the model group's own schema
    model_kind: str = "${topictone.kind:${model._target_}}"  # derived: the fitter's kind
    weak: Any = None
    distill: Any = None
    tracking: Any = None
    hparams_search: Any = None
    seed: int = 13
    report: bool = True
    checks: ChecksConfig = field(default_factory=ChecksConfig)
    decision: DecisionConfig = field(default_factory=DecisionConfig)


SCALARS = {"int": int, "float": float, "str": str, "bool": bool}


def _omegaconf_type(annotation: ast.expr | None) -> Any:
    """A type OmegaConf can check, from a parameter's annotation as written: ``X | None``
    becomes Optional, tuples and lists of one scalar a typed list; anything else ``Any``."""
    if annotation is None:
        return Any
    if isinstance(annotation, ast.BinOp) and isinstance(annotation.op, ast.BitOr):
        parts = [annotation.left, annotation.right]
        others = [a for a in parts if not (isinstance(a, ast.Constant) and a.value is None)]
        inner = _omegaconf_type(others[0]) if len(others) == 1 else Any
        return Optional[inner]  # noqa: UP045
    if isinstance(annotation, ast.Name):
        return SCALARS.get(annotation.id, Any)
    if isinstance(annotation, ast.Subscript) and isinstance(annotation.value, ast.Name):
        container = annotation.value.id
        if container in ("tuple", "list", "Sequence"):
            items = (
                annotation.slice.elts
                if isinstance(annotation.slice, ast.Tuple)
                else [annotation.slice]
            )
            names = {i.id for i in items if isinstance(i, ast.Name)}
            scalar = SCALARS.get(names.pop()) if len(names) == 1 else None
            return GenericAlias(list, (scalar,)) if scalar else list[Any]  # list[scalar]
        if container in ("dict", "Mapping"):
            return dict[str, Any]
    return Any


def fitter_schema(module: str, name: str) -> type:
    """A dataclass with ``_target_`` and the fitter's ``__init__`` parameters,
    read from the fitter's source rather than imported: composing a config never imports
    torch or transformers."""
    spec = importlib.util.find_spec(module)  # imports the package, not the module
    assert spec is not None and spec.origin is not None, module
    source = Path(spec.origin).read_text(encoding="utf-8")
    [cls] = [n for n in ast.parse(source).body if isinstance(n, ast.ClassDef) and n.name == name]
    [init] = [n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"]
    fields: list[tuple[str, Any, Any]] = [
        ("_target_", str, field(default=f"{module}.{name}")),
        ("_recursive_", bool, field(default=True)),  # an ensemble builds its members itself
    ]
    args = init.args.args[1:]  # without self
    defaults = [None] * (len(args) - len(init.args.defaults)) + list(init.args.defaults)
    for arg, default in zip(args, defaults, strict=True):
        hint = _omegaconf_type(arg.annotation)
        entry: Any  # a dataclasses.field
        if default is None:  # required: MISSING until the config sets it
            entry = field(default=MISSING)
        else:
            try:
                value = ast.literal_eval(default)
            except ValueError:  # a named constant: the config always sets it
                hint, value = Any, None
            if isinstance(value, (list, tuple, dict)):

                def factory(v: Any = value) -> Any:
                    return list(v) if isinstance(v, tuple) else v

                entry = field(default_factory=factory)
            else:
                entry = field(default=value)
        fields.append((arg.arg, hint, entry))
    return dataclasses.make_dataclass(f"{name}Schema", fields)


FITTERS_DIR = Path(__file__).parent / "fitters"


def fitters() -> dict[str, tuple[str, str]]:
    """``{kind: (module, class)}``, read from each fitter's ``kind = ...`` (infer/kinds.py)."""
    found = declared_kinds(FITTERS_DIR, "topictone.train.fitters")
    return {kind: tuple(where.split(":")) for kind, where in found.items()}  # type: ignore[misc]


def kind_of(target: str) -> str:
    """The model kind a fitter's ``_target_`` trains (the ``model_kind`` of a config)."""
    for kind, (module, name) in fitters().items():
        if target == f"{module}.{name}":
            return kind
    known = ", ".join(fitters())
    raise ValueError(f"model._target_={target}: not a topictone fitter (known: {known})")


def register() -> None:
    """Store the schemas in Hydra's ConfigStore (idempotent)."""
    store = ConfigStore.instance()
    store.store(name="train_schema", node=TrainConfig)
    OmegaConf.register_new_resolver("topictone.kind", kind_of, replace=True)
    for kind, (module, name) in fitters().items():
        store.store(group="schema/model", name=kind, node=fitter_schema(module, name))
