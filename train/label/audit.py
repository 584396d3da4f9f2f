"""``python -m topictone.train.label audit``: training rows whose labels look wrong, worst first.

Every row is scored out of fold (:class:`topictone.train.label.auditor.LabelAuditor`) by
TF-IDF and, for a run of another kind, by that kind too, and rated by cleanlab. Writes
Label Studio tasks for review (the given labels and the out-of-fold guess as two
predictions, to compare and correct) and a report (CSV or JSONL) of the ranked rows.
"""

from __future__ import annotations

import csv
import inspect
import io
import json
import sys
from pathlib import Path
from typing import Any

import datasets
import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from topictone.infer.artifact import MANIFEST, read_manifest
from topictone.infer.cli import CONF_DIR, command, integer_options, settings_of
from topictone.infer.errors import InputError, TopictoneError
from topictone.infer.io.outputs import check_output
from topictone.infer.io.readers import read_rows
from topictone.infer.schema import LabelSchema
from topictone.train.data.labelled import read_labelled, targets
from topictone.train.fitters.base import Fitter
from topictone.train.fitters.tfidf import TfidfFitter
from topictone.train.label import studio
from topictone.train.label.auditor import LabelAuditor, check_top
from topictone.train.label.texts import (
    RUN_CONFIG,
    config_nodes,
    label_preset,
    run_config,
    run_labels,
)
from topictone.train.schema import kind_of


def audit_fitters(
    model: str | None, own_kind: bool = True, tfidf: dict[str, Any] | None = None
) -> tuple[list[Fitter], LabelSchema | None, str]:
    """The fitters the audit scores out of fold, the label schema of a run folder or model
    folder, and what they are: TF-IDF (the run's settings where the run is a TF-IDF one,
    else ``tfidf``) and, where the run is of another kind and ``own_kind``, that kind too."""
    tfidf = tfidf or {}
    if model is None:
        return [TfidfFitter(**tfidf)], None, "TF-IDF (the audit's settings)"
    folder = Path(model)
    schema = None
    if (folder / MANIFEST).is_file() or (folder / "model" / MANIFEST).is_file():
        found = folder if (folder / MANIFEST).is_file() else folder / "model"
        schema = read_manifest(found, verify=False).schema
    elif not (folder / RUN_CONFIG).is_file():
        raise TopictoneError(f"model={model}: neither a run folder nor a model folder")
    if (found_run := run_config(folder)) is None:
        return [TfidfFitter(**tfidf)], schema, "TF-IDF (no run config beside the model)"
    config, run = found_run
    where = run / RUN_CONFIG
    fitters, origin = fitters_of(config.get("model") or {}, str(where), own_kind, tfidf)
    return fitters, schema or LabelSchema.from_dict(run_labels(config, where)), origin


def fitters_of(
    settings: dict[str, Any], where: str, own_kind: bool, tfidf: dict[str, Any]
) -> tuple[list[Fitter], str]:
    """The audit's fitters for a run's ``model`` config (``where`` it was read), and what
    they are; ``tfidf``: the TF-IDF settings beside a run of another kind."""
    kind = checked_kind(settings, where)
    if kind == "tfidf":
        known = inspect.signature(TfidfFitter).parameters  # not Hydra's _target_ and such
        params = {k: v for k, v in settings.items() if k in known}
        return [TfidfFitter(**params)], f"TF-IDF (the settings of {where})"
    if not own_kind:
        return [TfidfFitter(**tfidf)], "TF-IDF (the audit's settings; own_kind=false)"
    own: Fitter = instantiate(settings)
    if not own.refits:  # as decision.oof_folds refuses in training
        raise TopictoneError(
            f"{where}: the run's {kind} model loads trained members, which have seen every "
            "row: their scores would not be out of fold (own_kind=false audits with TF-IDF)"
        )
    return [TfidfFitter(**tfidf), own], f"TF-IDF and the {kind} model of {where}"


def checked_kind(settings: dict[str, Any], where: str) -> str:
    """The kind a run's ``model`` config trains, once every ``_target_`` in it (an
    ensemble's members too) is a topictone fitter: a run folder is a user's file, and
    building it must not run other code."""
    if "_target_" not in settings:
        raise TopictoneError(f"{where}: field 'model._target_' is missing")
    for path, target in config_nodes(settings, "model"):
        if not path.endswith("._target_"):
            continue
        try:
            kind_of(target if isinstance(target, str) else repr(target))
        except ValueError as err:
            raise TopictoneError(f"{where}: field '{path}': {err}") from None
    return kind_of(settings["_target_"])


def _labels_of(schema: LabelSchema, topics: np.ndarray, tone: int) -> tuple[list[str], str]:
    return [t for t, on in zip(schema.topics, topics, strict=True) if on], schema.tones[tone]


def _review_rows(
    auditor: LabelAuditor, dataset: datasets.Dataset, lines: list[int], picked: np.ndarray
) -> list[dict[str, Any]]:
    """One report row per picked training row, most suspect first."""
    schema = auditor.schema_
    topic_true, tone_true = targets(dataset)
    rows = []
    for rank, i in enumerate(picked.tolist(), start=1):
        given = _labels_of(schema, topic_true[i], tone_true[i])
        guess = _labels_of(schema, auditor.topic_probs_[i] >= 0.5, auditor.tone_probs_[i].argmax())
        rows.append(
            {
                "rank": rank,
                "line": lines[i],
                "id": dataset[i]["id"],
                "given_topics": "|".join(given[0]),
                "given_tone": given[1],
                "predicted_topics": "|".join(guess[0]),
                "predicted_tone": guess[1],
                "quality": round(float(auditor.quality_[i]), 6),
                "topic_quality": round(float(auditor.topic_quality_[i]), 6),
                "tone_quality": round(float(auditor.tone_quality_[i]), 6),
                "topic_issue": bool(auditor.topic_issue_[i]),
                "tone_issue": bool(auditor.tone_issue_[i]),
                "text": dataset[i]["text"],
            }
        )
    return rows


def _review_tasks(rows: list[dict[str, Any]], data_file: str, version: str) -> list[dict]:
    """Tasks showing the given labels and the out-of-fold guess as two predictions; the
    score (lower: more suspect) orders them in Label Studio."""
    tasks = []
    for row in rows:
        given = ([t for t in row["given_topics"].split("|") if t], row["given_tone"])
        guess = ([t for t in row["predicted_topics"].split("|") if t], row["predicted_tone"])
        predictions = [
            studio.prediction("given-labels", row["quality"], *given),
            studio.prediction(version, row["quality"], *guess),
        ]
        source = f"{data_file}:{row['line']}"
        tasks.append(studio.task(row["text"], str(row["id"]), source, {}, predictions))
    return tasks


def _report_text(rows: list[dict[str, Any]], path: Path) -> str:
    if path.suffix.lower() == ".jsonl":
        return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    if path.suffix.lower() != ".csv":
        raise TopictoneError(f"{path}: the report is .csv or .jsonl")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else ["rank"])
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _read_training(path: str, cfg: DictConfig, schema: LabelSchema):
    """The training rows (validated as training reads them) and each row's line."""
    data_cfg = {"fields": OmegaConf.to_container(cfg.fields), "keep": [], "format": cfg.format}
    dataset = read_labelled(path, data_cfg, schema)
    lines = [line for line, _, _ in read_rows(path, cfg.format)]
    if len(dataset) < 2 * cfg.folds:
        raise InputError(f"{len(dataset)} rows; folds={cfg.folds} needs more", path)
    return dataset, lines


@command(f"{CONF_DIR}/label", "audit")
def main(cfg: DictConfig) -> None:
    output = Path(cfg.output)
    report = Path(cfg.report) if cfg.report else output.with_name(f"{output.stem}.report.csv")
    for target in (output, report):
        check_output(target, [cfg.data])
    integer_options(cfg, {"folds": 2, "seed": 0})
    top = settings_of(cfg)["top"]
    check_top(top)  # before minutes of fitting
    tfidf = settings_of(cfg.tfidf, "tfidf")
    fitters, schema, origin = audit_fitters(cfg.model, bool(cfg.own_kind), tfidf)
    schema = schema or LabelSchema.from_dict(label_preset(cfg.labels))
    dataset, lines = _read_training(cfg.data, cfg, schema)
    print(f"audit: {len(dataset)} rows, {cfg.folds} folds, {origin}", file=sys.stderr)
    auditor = LabelAuditor(int(cfg.folds), int(cfg.seed), fitters).fit(dataset, schema)
    rows = _review_rows(auditor, dataset, lines, auditor.top(top))
    kinds = "+".join(fitter.kind for fitter in fitters)
    version = f"audit-{kinds}-oof{cfg.folds}-seed{cfg.seed}"
    tasks = _review_tasks(rows, str(cfg.data), version)
    studio.write_texts({output: studio.tasks_json(tasks), report: _report_text(rows, report)})
    print(f"{len(rows)} rows to review -> {output}; report -> {report}", file=sys.stderr)


if __name__ == "__main__":
    main()
