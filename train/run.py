"""One training run, as its steps: data → fit → score each split once → decide → evaluate
→ report → save, into the run folder. Each step is a call below :func:`run`."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from sklearn.utils._param_validation import InvalidParameterError

from topictone.infer.artifact import package_versions, save_model, sha256
from topictone.infer.cli import settings_of
from topictone.infer.errors import TopictoneError
from topictone.infer.machine import describe, machine
from topictone.infer.predictors.base import Predictor
from topictone.infer.schema import LabelSchema
from topictone.train.card import card_info
from topictone.train.data.distill import mix_distilled, teacher_identity
from topictone.train.data.labelled import (
    check_label_counts,
    load_splits,
    split_files,
    train_overlap,
)
from topictone.train.data.weak import mix_weak
from topictone.train.decisions.fitting import Fitted, fit_decisions
from topictone.train.decisions.scores import Scored, score_split
from topictone.train.fitters.base import Fitter
from topictone.train.folds import out_of_fold
from topictone.train.metrics.compute import format_table
from topictone.train.metrics.splits import (
    Evaluation,
    crossfit_predictions,
    evaluation,
    never_predicted,
    write_predictions,
)
from topictone.train.report import write_report
from topictone.train.schema import DecisionConfig

VERSIONED = (
    "topictone",
    "scikit-learn",
    "numpy",
    "scipy",
    "datasets",
    "evaluate",
    "hydra-core",
    "skops",
    "torch",
    "transformers",
    "tokenizers",
    "accelerate",
)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    if "torch" in sys.modules:
        sys.modules["torch"].manual_seed(seed)


def git_commit() -> str | None:
    """The commit of the code that ran (with '-dirty' for local changes), if in a repository."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("-dirty" if dirty else "")


def run(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Train, evaluate and save everything a run needs to be reproduced; return the metrics."""
    decision = decision_settings(cfg)
    print(f"machine: {describe()}", flush=True)  # stdout, beside the table: stderr is errors
    seed_everything(cfg.seed)
    schema = LabelSchema.from_dict(cfg.labels)
    splits, overlap = training_data(cfg, schema, run_dir)
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)  # nested members too
    fitter = fit_model(cfg, model_cfg, splits, schema, run_dir)
    predictor: Predictor = fitter.predictor_
    scored = {name: score_split(predictor, splits[name]) for name in EVALUATED if name in splits}
    oof = out_of_fold_scores(cfg, fitter, splits, schema, run_dir)
    fitted = fit_decisions(predictor, scored.get("dev"), decision, oof)
    evaluations = {name: evaluation(predictor, splits[name], s) for name, s in scored.items()}
    metrics = {**fitted.metrics, **{name: e.metrics for name, e in evaluations.items()}}
    write_split_predictions(run_dir / "predictions", evaluations, fitted, schema)
    silent = warn_never_predicted(predictor, evaluations)
    if cfg.report and evaluations:
        title = f"{fitter.kind} on {cfg.data.name}"
        thresholds = predictor.thresholds
        write_report(run_dir / "report", title, evaluations, schema, thresholds, fitted, silent)
    data_hashes = data_files_sha256(cfg, splits)
    card = model_card_info(
        cfg, model_cfg, splits, evaluations, fitted, predictor.thresholds, data_hashes
    )
    save_model(predictor, run_dir / "model", metrics, card)
    manifest = write_run_files(cfg, run_dir, metrics, fitter, silent, overlap, data_hashes)
    track(cfg, run_dir, fitter, metrics, manifest, data_hashes)
    print(f"\n{fitter.kind} on {cfg.data.name} — run folder {run_dir}\n")
    print(format_table(metrics, schema))
    if (share := metrics.get("dev_crossfit", {}).get("expensive_share")) is not None:
        print(f"cascade: {share:.0%} of the texts fitted on go to the expensive stage")
    return metrics


EVALUATED = ("dev", "test")  # the splits scored, evaluated and reported


def decision_settings(cfg: DictConfig) -> DecisionConfig:
    """The typed decision config; settings that contradict each other refused before any work."""
    # Merged onto the schema: a config composed without it (a sweep's trial) is typed too.
    typed = OmegaConf.merge(OmegaConf.structured(DecisionConfig), cfg.decision)
    decision: DecisionConfig = OmegaConf.to_object(typed)  # type: ignore[assignment]
    if not decision.use_dev and not decision.oof_folds:
        raise TopictoneError(
            "decision.use_dev=false fits the decisions on train texts the model did not "
            "train on: set decision.oof_folds too (5, say)"
        )
    if decision.oof_folds and (cfg.weak.sources or cfg.distill.teacher):
        raise TopictoneError(
            "decision.oof_folds: out-of-fold scores are for gold train only; "
            "turn weak and distill off or set decision.oof_folds=0"
        )
    return decision


def training_data(cfg: DictConfig, schema: LabelSchema, run_dir: Path) -> tuple[dict, dict]:
    """The checked splits (train with weak or distilled rows mixed in) and the texts dev
    and test share with train."""
    splits = load_splits(cfg.data, schema)
    overlap = train_overlap(splits, cfg.checks.max_overlap)
    if any(overlap.values()):
        print(f"note: texts also in train: {overlap}", file=sys.stderr, flush=True)
    every_text = [text for split in splits.values() for text in split["text"]]
    described = cfg.labels.get("descriptions") or {}
    check_label_counts(splits["train"], schema, cfg.checks.min_examples, described)
    if cfg.weak.sources:
        splits["train"] = mix_weak(splits["train"], cfg.weak.sources, schema, every_text, cfg.seed)
    if cfg.distill.teacher:
        distill = settings_of(cfg.distill, "distill")
        splits["train"] = mix_distilled(
            splits["train"], distill, schema, every_text, cfg.seed, run_dir
        )
    return splits, overlap


def fit_model(
    cfg: DictConfig, model_cfg: Any, splits: dict, schema: LabelSchema, run_dir: Path
) -> Fitter:
    """The configured fitter, fitted on train (dev for per-epoch figures)."""
    fitter: Fitter = instantiate(model_cfg)
    if cfg.labels.get("descriptions") and not fitter.reads_descriptions:
        raise TopictoneError(
            f"labels.descriptions: a '{fitter.kind}' model does not read topic descriptions "
            "(model=encoder does, and an ensemble or cascade with an encoder member); "
            "remove them or pick such a model"
        )
    if cfg.decision.oof_folds and not fitter.refits:
        raise TopictoneError(
            "decision.oof_folds: every part of the model must be trained in this run "
            "(a member loaded from a folder has seen all of train)"
        )
    try:
        fitter.fit(splits["train"], schema, dev=splits.get("dev"), workdir=run_dir / "checkpoints")
    except InvalidParameterError as err:  # a mistyped model.* override, found by scikit-learn
        raise TopictoneError(f"model settings: {err}") from None
    return fitter


def out_of_fold_scores(
    cfg: DictConfig, fitter: Fitter, splits: dict, schema: LabelSchema, run_dir: Path
) -> Scored | None:
    """Train scored out of fold (``decision.oof_folds``), else None."""
    if not cfg.decision.oof_folds:
        return None
    folds, train = cfg.decision.oof_folds, splits["train"]
    return out_of_fold(fitter, train, schema, folds, cfg.seed, run_dir / "oof")


def write_split_predictions(
    folder: Path, evaluations: dict[str, Evaluation], fitted: Fitted, schema: LabelSchema
) -> None:
    """``<split>.jsonl`` per split with the saved decisions; ``dev_crossfit.jsonl`` with
    each dev text decided by decisions fitted without it."""
    for name, e in evaluations.items():
        write_predictions(folder / f"{name}.jsonl", e.dataset, e.predictions, schema)
    if fitted.crossfit is not None:
        dev = evaluations["dev"].dataset
        predictions = crossfit_predictions(schema, fitted.crossfit)
        write_predictions(folder / "dev_crossfit.jsonl", dev, predictions, schema)


def warn_never_predicted(predictor: Predictor, evaluations: dict[str, Any]) -> dict:
    """Per split, the labels the model never outputs, each said loudly."""
    silent = never_predicted(predictor, evaluations)
    for name, labels in silent.items():
        print(
            f"WARNING: on {name} the model never predicts {', '.join(labels)}: it has not "
            "learned them (more epochs, a higher learning rate, or more examples)",
            file=sys.stderr,
            flush=True,
        )
    return silent


def data_files_sha256(cfg: DictConfig, splits: dict) -> dict[str, str]:
    """SHA-256 of every data file the run read: splits, weak sources, distillation pools."""
    return {
        **{f: sha256(Path(f)) for s in splits for f in split_files(cfg.data[s])},
        **{str(w.path): sha256(Path(w.path)) for w in cfg.weak.sources},
        **{str(w.path): sha256(Path(w.path)) for w in cfg.distill.pool or []},
    }


def model_card_info(
    cfg: DictConfig,
    model_cfg: Any,
    splits: dict,
    evaluations: dict[str, Evaluation],
    fitted: Fitted,
    thresholds: dict[str, float],
    data_hashes: dict[str, str],
) -> dict[str, Any]:
    """What the model card reports: the data, the settings and each split's figures by
    bucket, dev as cross-fitted where decisions were fitted."""
    schema = LabelSchema.from_dict(cfg.labels)
    evaluated = {n: (e.dataset, e.scores, e.truth, thresholds) for n, e in evaluations.items()}
    if fitted.crossfit is not None:  # the honest dev figures
        dev = evaluated.pop("dev")
        decided, (_, tone) = fitted.crossfit
        half = dict.fromkeys(schema.topics, 0.5)  # decided is 0/1 already
        evaluated = {"dev_crossfit": (dev[0], (decided, tone), dev[2], half), **evaluated}
    train_files = {f: data_hashes[f] for f in split_files(cfg.data.train)}
    settings = settings_of(cfg.decision, "decision")
    return card_info(cfg.data, model_cfg, settings, splits["train"], schema, train_files, evaluated)


def track(
    cfg: DictConfig,
    run_dir: Path,
    fitter: Fitter,
    metrics: dict,
    manifest: dict,
    data_hashes: dict[str, str],
) -> None:
    """The run in the configured tracker (MLflow, or nothing)."""
    tags = {
        "git_commit": manifest["git_commit"],
        "model.kind": fitter.kind,
        **{f"data.sha256.{name}": digest for name, digest in data_hashes.items()},
    }
    instantiate(cfg.tracking).log_run(
        run_dir,
        config=OmegaConf.to_container(cfg, resolve=True, enum_to_str=True),
        metrics=metrics,
        history=getattr(fitter, "history_", None),
        tags=tags,
    )


def write_run_files(
    cfg: DictConfig,
    run_dir: Path,
    metrics: dict,
    fitter: Any,
    silent: dict,
    overlap: dict,
    data_hashes: dict[str, str],
) -> dict[str, Any]:
    """config.yaml, metrics.json, history.json and manifest.json; the manifest returned."""
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True), encoding="utf-8")
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    if getattr(fitter, "history_", None):  # per-step losses and per-epoch dev figures
        history = json.dumps(fitter.history_, indent=1, default=float) + "\n"
        (run_dir / "history.json").write_text(history, encoding="utf-8")
    manifest = {
        "seed": cfg.seed,
        "git_commit": git_commit(),
        "command": sys.argv,
        "versions": package_versions(VERSIONED),
        "machine": machine(),  # training times hold only on a machine like this one
        "never_predicted": silent,  # per split, labels the model never outputs
        "train_overlap": overlap,  # per split, texts that also occur in train
        "data": data_hashes,
        "teacher": teacher_identity(cfg.distill.teacher),
    }
    (run_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest
