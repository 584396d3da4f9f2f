"""One training run: seed → data → fit → evaluate → save → report, into the run folder."""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from sklearn.model_selection import KFold, train_test_split
from sklearn.utils._param_validation import InvalidParameterError

from infer.artifact import package_versions, save_model, sha256
from infer.errors import TopictoneError
from infer.machine import describe, machine
from infer.predictors.base import Predictor
from infer.schema import LabelSchema, Prediction
from train.card import card_info
from train.data import (
    check_label_counts,
    load_splits,
    split_files,
    targets,
    train_overlap,
)
from train.decision import (
    ScoreTree,
    calibration_errors,
    choose_methods,
    crossfit_decision,
    fit_decision,
    set_calibrations,
)
from train.distill import mix_distilled, teacher_identity
from train.evaluation import compute_metrics, decisions, format_table
from train.report import write_report
from train.weak import mix_weak

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


@dataclass
class Evaluation:
    """One split scored by a predictor: what metrics, predictions and the report need."""

    dataset: datasets.Dataset
    scores: tuple[np.ndarray, np.ndarray]
    truth: tuple[np.ndarray, np.ndarray]
    metrics: dict[str, Any]
    predictions: list


def evaluate_split(predictor: Predictor, dataset: datasets.Dataset) -> Evaluation:
    scores = predictor.predict_scores(dataset["text"])
    truth = targets(dataset)
    metrics = compute_metrics(predictor.schema, *scores, *truth, predictor.thresholds)
    metrics.update(calibration_errors(predictor.schema, scores, *truth))
    predictions = predictor.postprocess(scores, predictor.thresholds)
    return Evaluation(dataset, scores, truth, metrics, predictions)


def write_predictions(
    path: Path, dataset: datasets.Dataset, predictions: list, schema: LabelSchema
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    extra = [c for c in dataset.column_names if c not in ("id", "text", "topics", "tone")]
    with path.open("w", encoding="utf-8") as handle:
        for row, prediction in zip(dataset, predictions, strict=True):
            record = {
                "id": row["id"],
                "topics": [t for t, on in zip(schema.topics, row["topics"], strict=True) if on],
                "tone": schema.tones[row["tone"]],
                **{c: row[c] for c in extra},
                "prediction": prediction.to_dict(),
            }
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")


@dataclass
class Fitted:
    """What fitting decisions produced: metrics, and dev's cross-fitted (honest) outputs."""

    metrics: dict[str, Any]
    crossfit: tuple[np.ndarray, tuple[np.ndarray, np.ndarray]] | None = None


OOF_SCORES = "scores.npz"  # out-of-fold train scores, beside the folds' work folders


def out_of_fold(
    model_cfg: dict[str, Any],
    train: datasets.Dataset,
    schema: LabelSchema,
    folds: int,
    seed: int,
    workdir: Path,
) -> tuple[ScoreTree, tuple[np.ndarray, np.ndarray]]:
    """Raw scores for every train text from a model fitted on the other folds (the same
    model config, trained ``folds`` times), and the matching truth.

    They are also saved as ``workdir/scores.npz`` (``OOF_SCORES``): each row's ``id``,
    the truth and every part's raw scores, so rules that combine or decide can be
    compared later without training again."""
    tree: ScoreTree | None = None
    topic_parts, tone_parts, id_parts = [], [], []
    splits = KFold(folds, shuffle=True, random_state=seed).split(np.arange(len(train)))
    for k, (fit_rows, held_rows) in enumerate(splits):
        print(f"out-of-fold scores: fold {k + 1}/{folds}", file=sys.stderr, flush=True)
        fitter = instantiate({key: v for key, v in model_cfg.items() if key != "kind"})
        fitter.fit(train.select(fit_rows), schema, dev=None, workdir=workdir / f"fold{k}")
        held = train.select(held_rows)
        predictor = fitter.predictor_
        part = ScoreTree.of(predictor, predictor.preprocess(held["text"]))
        tree = part if tree is None else tree.concat(part)
        topic_true, tone_true = targets(held)
        topic_parts.append(topic_true)
        tone_parts.append(tone_true)
        id_parts.append([str(i) for i in held["id"]])
    assert tree is not None
    truth = (np.concatenate(topic_parts), np.concatenate(tone_parts))
    save_scores(workdir, np.concatenate(id_parts), truth, tree)
    return tree, truth


def save_scores(
    workdir: Path, ids: np.ndarray, truth: tuple[np.ndarray, np.ndarray], tree: ScoreTree
) -> None:
    """``workdir/scores.npz``: each row's id, its truth and every part's raw scores."""
    workdir.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        workdir / OOF_SCORES, id=ids, topic_true=truth[0], tone_true=truth[1], **tree.arrays()
    )


def holdout_strata(train: datasets.Dataset, share: float) -> list[str]:
    """Each text's stratum for the held-out slice: its unit, its rarest topic (or none)
    and its tone; where that stratum is too small to give the slice a text, its unit and
    rarest topic, then its unit, then none (a text left alone in its stratum joins the
    largest one). Every topic then reaches the slice in proportion, a rare one too,
    and not by chance."""
    n = len(train)
    units = [str(u) for u in train["unit"]] if "unit" in train.column_names else [""] * n
    topics = targets(train)[0]
    rarity = np.where(topics, topics.sum(axis=0), len(train) + 1)  # per text and topic
    rarest = np.where(topics.any(axis=1), rarity.argmin(axis=1), -1)
    keys = list(zip(units, map(str, rarest), map(str, train["tone"]), strict=True))
    floor = max(2, math.ceil(1 / share))  # texts a stratum needs to expect one held out
    depth = [3] * n  # how much of its key each text's stratum keeps
    while True:
        strata = ["|".join(key[:d]) for key, d in zip(keys, depth, strict=True)]
        counts = Counter(strata)
        coarser = [
            d - 1 if d and counts[s] < floor else d for s, d in zip(strata, depth, strict=True)
        ]
        if coarser == depth:
            largest = counts.most_common(1)[0][0]
            return [s if counts[s] > 1 else largest for s in strata]
        depth = coarser


def split_holdout(
    train: datasets.Dataset, share: float, seed: int
) -> tuple[datasets.Dataset, datasets.Dataset]:
    """``share`` of train, kept out of training to fit the decisions on, in proportion per
    unit, topic set and tone (``holdout_strata``), so every length bucket and every topic
    is in it."""
    if not 0.0 < share < 1.0:
        raise TopictoneError(f"decision.holdout must lie between 0 and 1, got {share}")
    rows = np.arange(len(train))
    try:
        kept, held = train_test_split(
            rows, test_size=share, random_state=seed, stratify=holdout_strata(train, share)
        )
    except ValueError:  # too few texts for as many strata as the slice would hold
        kept, held = train_test_split(rows, test_size=share, random_state=seed)
    return train.select(np.sort(kept)), train.select(np.sort(held))


def holdout_scores(
    predictor: Predictor, held: datasets.Dataset, workdir: Path
) -> tuple[ScoreTree, tuple[np.ndarray, np.ndarray]]:
    """Raw scores of the held-out train texts by the model trained without them (saved
    like the out-of-fold ones), and their truth."""
    truth = targets(held)
    counts = zip(predictor.schema.topics, truth[0].sum(axis=0), strict=True)
    positives = ", ".join(f"{topic} {n}" for topic, n in counts)
    print(
        f"decision.holdout: scoring {len(held)} held-out train texts (positives: {positives})",
        file=sys.stderr,
        flush=True,
    )
    tree = ScoreTree.of(predictor, predictor.preprocess(held["text"]))
    save_scores(workdir, np.asarray([str(i) for i in held["id"]]), truth, tree)
    return tree, truth


def fit_decisions(
    predictor: Predictor,
    dev: datasets.Dataset | None,
    decision: dict[str, Any],
    oof: tuple[ScoreTree, tuple[np.ndarray, np.ndarray]] | None = None,
    source: str = "oof",
) -> Fitted:
    """Calibrate scores and tune thresholds on dev (and ``oof``, scores of train texts the
    model did not train on, when given: out-of-fold, or a held-out slice as ``source``
    says) as configured; with ``decision.use_dev=false`` on ``oof`` alone.

    Returns the dev metrics before fitting (``dev_before_fitting``) when anything was
    fitted: the later ``dev`` figures are then optimistic, ``test`` stays honest. And
    ``dev_crossfit``: each dev text decided by calibrations and thresholds fitted without
    it (on the other dev folds and ``oof``; on ``oof`` alone when dev is not used, so
    dev then scores the very decisions saved), an honest estimate of what unseen texts get.
    """
    predictor.thresholds = dict.fromkeys(predictor.schema.topics, float(decision["fixed"]))
    use_dev = decision.get("use_dev", True) or oof is None  # run() refuses the latter
    if dev is None or (not decision["calibrate"] and decision["thresholds"] == "fixed"):
        return Fitted({})
    before = evaluate_split(predictor, dev).metrics
    tree = ScoreTree.of(predictor, predictor.preprocess(dev["text"]))
    truth = targets(dev)
    if oof is not None:
        tree = oof[0].concat(tree)
        truth = (np.concatenate([oof[1][0], truth[0]]), np.concatenate([oof[1][1], truth[1]]))
    dev_rows = np.arange(len(truth[1]) - len(dev), len(truth[1]))
    fit_rows = np.arange(len(truth[1])) if use_dev else np.arange(dev_rows[0])
    if use_dev:  # before `auto` is resolved below: the honest folds choose it themselves
        decided, scores = crossfit_decision(
            predictor, tree, truth, dev_rows, decision, folds=decision["crossfit_folds"]
        )
    if decision["calibrate"] and decision.get("calibration") == "auto":
        methods = choose_methods(predictor, tree, truth, fit_rows, decision)
        print(
            f"decision.calibration=auto chose {methods[0]} for topics, {methods[1]} for tone",
            file=sys.stderr,
            flush=True,
        )
        decision = {**decision, "calibration": methods}
    calibrations, thresholds, every = fit_decision(predictor, tree, truth, fit_rows, decision)
    set_calibrations(predictor, calibrations)
    predictor.thresholds = thresholds
    if not use_dev:  # dev took no part: its figures under the saved decisions are honest
        scores = (every[0][dev_rows], every[1][dev_rows])
        decided = decisions(scores[0], predictor.schema, thresholds)
    topic_true, tone_true = targets(dev)
    half = dict.fromkeys(predictor.schema.topics, 0.5)  # decided is 0/1 already
    honest = {
        **compute_metrics(predictor.schema, decided, scores[1], topic_true, tone_true, half),
        **calibration_errors(predictor.schema, scores, topic_true, tone_true),
    }
    if oof is not None:
        honest[f"fitted_with_{source}_train_texts"] = len(oof[1][1])
    honest["fitted_with_dev"] = bool(use_dev)
    return Fitted({"dev_before_fitting": before, "dev_crossfit": honest}, (decided, scores))


def crossfit_predictions(
    schema: LabelSchema, crossfit: tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]
) -> list[Prediction]:
    decided, (topic_scores, tone_probs) = crossfit
    return [
        Prediction(
            topics=[t for t, on in zip(schema.topics, row, strict=True) if on],
            topic_scores=dict(zip(schema.topics, scores.tolist(), strict=True)),
            tone=schema.tones[int(np.argmax(tone))],
            tone_scores=dict(zip(schema.tones, tone.tolist(), strict=True)),
        )
        for row, scores, tone in zip(decided, topic_scores, tone_probs, strict=True)
    ]


def never_predicted(predictor: Predictor, evaluations: dict[str, Evaluation]) -> dict:
    """Per split, the topics never decided and the tones never chosen for any text."""
    out = {}
    for name, evaluation in evaluations.items():
        predictions = evaluation.predictions
        labels = [
            t for t in predictor.schema.topics if not any(t in p.topics for p in predictions)
        ] + [t for t in predictor.schema.tones if not any(p.tone == t for p in predictions)]
        if labels and predictions:
            out[name] = labels
    return out


def run(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Train, evaluate and save everything a run needs to be reproduced; return the metrics."""
    check_decision_settings(cfg)
    print(f"machine: {describe()}", flush=True)  # stdout, beside the table: stderr is errors
    seed_everything(cfg.seed)
    schema = LabelSchema.from_dict(cfg.labels)
    splits, held, overlap = training_data(cfg, schema, run_dir)
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)  # nested members too
    fitter = fit_model(cfg, model_cfg, splits, schema, held is not None, run_dir)
    predictor: Predictor = fitter.predictor_
    decision = OmegaConf.to_container(cfg.decision, resolve=True, enum_to_str=True)
    fitted = decide(cfg, model_cfg, predictor, splits, held, decision, run_dir)
    metrics = fitted.metrics
    evaluations = evaluate_splits(predictor, splits, schema, run_dir)
    metrics.update({name: e.metrics for name, e in evaluations.items()})
    silent = warn_never_predicted(predictor, evaluations)
    if cfg.report and evaluations:
        write_report(
            run_dir / "report",
            f"{cfg.model.kind} on {cfg.data.name}",
            evaluations,
            schema,
            predictor.thresholds,
            fitting=metrics,
            never_predicted=silent,
            decision=decision,
        )
    data_hashes = data_files_sha256(cfg, splits)
    evaluated = card_evaluations(predictor, evaluations, fitted.crossfit, schema)
    train_files = {f: data_hashes[f] for f in split_files(cfg.data.train)}
    card = card_info(cfg.data, model_cfg, decision, splits["train"], schema, train_files, evaluated)
    save_model(predictor, run_dir / "model", metrics, card)
    manifest = write_run_files(cfg, run_dir, metrics, fitter, silent, overlap, data_hashes)
    tags = {
        "git_commit": manifest["git_commit"],
        "model.kind": cfg.model.kind,
        **{f"data.sha256.{name}": digest for name, digest in data_hashes.items()},
    }
    instantiate(cfg.tracking).log_run(
        run_dir,
        config=OmegaConf.to_container(cfg, resolve=True, enum_to_str=True),
        metrics=metrics,
        history=getattr(fitter, "history_", None),
        tags=tags,
    )
    print(f"\n{cfg.model.kind} on {cfg.data.name} — run folder {run_dir}\n")
    print(format_table(metrics, schema))
    return metrics


def check_decision_settings(cfg: DictConfig) -> None:
    """Refuse, before any work, decision settings that contradict each other."""
    if not cfg.decision.use_dev and not (cfg.decision.oof_folds or cfg.decision.holdout):
        raise TopictoneError(
            "decision.use_dev=false fits the decisions on train texts the model did not "
            "train on: set decision.oof_folds too (5, say) or decision.holdout (0.2, say)"
        )
    if cfg.decision.oof_folds and cfg.decision.holdout:
        raise TopictoneError(
            "decision.oof_folds and decision.holdout are two ways to score unseen train "
            "texts: set one of them to 0"
        )


def training_data(cfg: DictConfig, schema: LabelSchema, run_dir: Path) -> tuple[dict, Any, dict]:
    """The checked splits (train with its held-out slice taken out and weak or distilled
    rows mixed in), the held-out slice (or None) and the texts dev and test share with train."""
    splits = load_splits(cfg.data, schema)
    overlap = train_overlap(splits, cfg.checks.max_overlap)
    if any(overlap.values()):
        print(f"note: texts also in train: {overlap}", file=sys.stderr, flush=True)
    # Every gold text, the held-out ones too: weak and distilled pools must repeat none.
    every_text = [text for split in splits.values() for text in split["text"]]
    held = None
    if cfg.decision.holdout:  # before weak or distilled rows join: held-out texts are gold
        splits["train"], held = split_holdout(splits["train"], cfg.decision.holdout, cfg.seed)
    check_label_counts(splits["train"], schema, cfg.checks.min_examples)  # what is trained on
    if cfg.weak.sources:
        splits["train"] = mix_weak(splits["train"], cfg.weak.sources, schema, every_text, cfg.seed)
    if cfg.distill.teacher:
        distill = OmegaConf.to_container(cfg.distill, resolve=True)
        splits["train"] = mix_distilled(
            splits["train"], distill, schema, every_text, cfg.seed, run_dir
        )
    return splits, held, overlap


def fit_model(
    cfg: DictConfig,
    model_cfg: Any,
    splits: dict,
    schema: LabelSchema,
    holds_out: bool,
    run_dir: Path,
) -> Any:
    """The configured fitter, fitted on train (dev for per-epoch figures)."""
    fitter = instantiate({k: v for k, v in model_cfg.items() if k != "kind"})
    if (cfg.decision.oof_folds or holds_out) and not getattr(fitter, "refits", True):
        raise TopictoneError(
            "decision.oof_folds and decision.holdout: every part of the model must be "
            "trained in this run (a member loaded from a folder has seen all of train)"
        )
    if cfg.decision.oof_folds and (cfg.weak.sources or cfg.distill.teacher):
        raise TopictoneError(
            "decision.oof_folds: out-of-fold scores are for gold train only; "
            "turn weak and distill off or set decision.oof_folds=0"
        )
    try:
        fitter.fit(splits["train"], schema, dev=splits.get("dev"), workdir=run_dir / "checkpoints")
    except InvalidParameterError as err:  # a mistyped model.* override, found by scikit-learn
        raise TopictoneError(f"model settings: {err}") from None
    return fitter


def decide(
    cfg: DictConfig,
    model_cfg: Any,
    predictor: Predictor,
    splits: dict,
    held: Any,
    decision: Any,
    run_dir: Path,
) -> Any:
    """Calibration and thresholds fitted on dev and unseen train scores; the cross-fitted
    dev decisions written beside the others."""
    schema = predictor.schema
    oof, source = None, "oof"
    if cfg.decision.oof_folds:
        oof = out_of_fold(
            model_cfg, splits["train"], schema, cfg.decision.oof_folds, cfg.seed, run_dir / "oof"
        )
    if held is not None:
        oof, source = holdout_scores(predictor, held, run_dir / "holdout"), "holdout"
    fitted = fit_decisions(predictor, splits.get("dev"), decision, oof, source)
    if fitted.crossfit is not None:
        write_predictions(
            run_dir / "predictions" / "dev_crossfit.jsonl",
            splits["dev"],
            crossfit_predictions(schema, fitted.crossfit),
            schema,
        )
    return fitted


def evaluate_splits(
    predictor: Predictor, splits: dict, schema: LabelSchema, run_dir: Path
) -> dict[str, Any]:
    """Dev and test evaluated with the saved decisions, their predictions written."""
    evaluations = {
        name: evaluate_split(predictor, splits[name]) for name in ("dev", "test") if name in splits
    }
    for name, evaluation in evaluations.items():
        write_predictions(
            run_dir / "predictions" / f"{name}.jsonl",
            evaluation.dataset,
            evaluation.predictions,
            schema,
        )
    return evaluations


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


def card_evaluations(
    predictor: Predictor, evaluations: dict[str, Any], crossfit: Any, schema: LabelSchema
) -> dict[str, tuple]:
    """What the model card reports per split; dev as cross-fitted where it was."""
    evaluated = {
        name: (e.dataset, e.scores, e.truth, predictor.thresholds)
        for name, e in evaluations.items()
    }
    if crossfit is not None:  # the honest dev figures, not the dev-fitted ones
        decided, (_, tone) = crossfit
        half = dict.fromkeys(schema.topics, 0.5)
        dev = evaluated.pop("dev")
        evaluated = {"dev_crossfit": (dev[0], (decided, tone), dev[2], half), **evaluated}
    return evaluated


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
