"""``python -m topictone.train.label audit``: training rows whose labels look wrong, worst first.

Each row is scored by a model that never saw it: the file is split into ``folds``, and a
TF-IDF model (:class:`topictone.train.fitters.tfidf.TfidfFitter`, with the run's settings where the
run is a TF-IDF one) fitted on the other folds gives its probabilities. cleanlab rates each given
label against them: every topic's self-confidence
(``cleanlab.multilabel_classification.rank.get_label_quality_scores_per_class``) and the
tone's (``cleanlab.rank.get_label_quality_scores``). One ranking combines them as the odds
that one of the row's labels was changed (:func:`flip_odds`). cleanlab's aggregated topic
quality and ``find_label_issues`` flags (``multi_label=True`` for topics) go into the
report, and ``top=null`` reviews exactly the flagged rows.

Writes Label Studio tasks for review (the given labels and the out-of-fold prediction as
two predictions, to compare and correct) and a report (CSV or JSONL) of the ranked rows.
"""

from __future__ import annotations

import csv
import inspect
import io
import json
import math
import sys
from pathlib import Path
from typing import Any

import datasets
import numpy as np
from omegaconf import DictConfig, OmegaConf
from sklearn.model_selection import StratifiedKFold

from topictone.infer.artifact import MANIFEST, read_manifest
from topictone.infer.cli import CONF_DIR, command, settings_of
from topictone.infer.errors import InputError, TopictoneError
from topictone.infer.io.outputs import check_output
from topictone.infer.io.readers import read_rows
from topictone.infer.schema import LabelSchema
from topictone.train.data.labelled import read_labelled, targets
from topictone.train.fitters.tfidf import TfidfFitter
from topictone.train.label import studio
from topictone.train.label.texts import label_preset

_RUN_CONFIG = "config.yaml"  # what `python -m topictone.train` writes into a run folder


def audit_settings(model: str | None) -> tuple[dict[str, Any], LabelSchema | None, str]:
    """The TF-IDF settings and label schema of a run folder or model folder, and where
    they came from; a run of another kind (or none) gets the default TF-IDF settings."""
    if model is None:
        return {}, None, "default TF-IDF settings"
    folder = Path(model)
    run = folder if (folder / _RUN_CONFIG).is_file() else folder.parent
    schema = None
    if (folder / MANIFEST).is_file() or (folder / "model" / MANIFEST).is_file():
        found = folder if (folder / MANIFEST).is_file() else folder / "model"
        schema = read_manifest(found, verify=False).schema
    elif not (folder / _RUN_CONFIG).is_file():
        raise TopictoneError(f"model={model}: neither a run folder nor a model folder")
    if not (run / _RUN_CONFIG).is_file():
        return {}, schema, "default TF-IDF settings (no run config beside the model)"
    config = settings_of(OmegaConf.load(run / _RUN_CONFIG), str(run / _RUN_CONFIG))
    schema = schema or LabelSchema.from_dict(config["labels"])
    settings = config.get("model") or {}
    kind = config.get("model_kind")
    if kind != "tfidf":
        return {}, schema, f"default TF-IDF settings (the run's model is {kind}, not tfidf)"
    # Only TfidfFitter's own parameters (the config also holds Hydra's _target_ and such).
    known = inspect.signature(TfidfFitter).parameters
    params = {k: v for k, v in settings.items() if k in known}
    return params, schema, f"the TF-IDF settings of {run / _RUN_CONFIG}"


def _check_counts(topic_true: np.ndarray, tone_true: np.ndarray, schema: LabelSchema, folds: int):
    """Every fold's model must see each label: each tone (folds are stratified by tone)
    and each topic's positives and negatives at least ``folds`` times."""
    for i, tone in enumerate(schema.tones):
        if (count := int((tone_true == i).sum())) < folds:
            raise TopictoneError(f"tone '{tone}' has {count} rows; folds={folds} needs {folds}")
    for i, topic in enumerate(schema.topics):
        positives = int(topic_true[:, i].sum())
        if min(positives, len(topic_true) - positives) < folds:
            raise TopictoneError(
                f"topic '{topic}' has {positives} positive rows of {len(topic_true)}; "
                f"folds={folds} needs at least {folds} positives and negatives"
            )


def _flip_odds(
    per_topic: np.ndarray, tone: np.ndarray, n_tones: int, floor: float = 1e-6
) -> np.ndarray:
    """How much likelier each row's labels are if one label was changed than if none
    was, from cleanlab's self-confidences (the out-of-fold probability of each given
    label): a changed topic is any one of the topics, a changed tone any other tone.

    ``(1 - s) / s`` is the odds that a label with self-confidence ``s`` was changed; the
    topics' odds are averaged (one topic of T changed) and the tone's split over the
    other tones. Summing them compares a confident topic contradiction with a doubtful
    tone on one scale: ranking by the worse of two ranks spent half the review on
    tones, where a TF-IDF model is least sure, and found fewer errors (docs/labelling.md)."""
    topics = np.clip(per_topic, floor, 1.0)
    tones = np.clip(tone, floor, 1.0)
    return ((1 - topics) / topics).mean(axis=1) + (1 - tones) / ((n_tones - 1) * tones)


class LabelAuditor:
    """Out-of-fold probabilities and cleanlab label quality for labelled rows.

    After ``fit``: ``topic_probs_`` / ``tone_probs_`` (out of fold), ``topic_quality_`` /
    ``tone_quality_`` (cleanlab, 0 worst to 1 best), ``topic_issue_`` / ``tone_issue_``
    (flagged by ``find_label_issues``), ``quality_`` (``1 / (1 + flip odds)``, lower is
    more suspect; :func:`flip_odds`) and ``ranking_`` (row indices, most suspect first)."""

    def __init__(self, folds: int = 5, seed: int = 0, settings: dict[str, Any] | None = None):
        self.folds = folds
        self.seed = seed
        self.settings = settings

    def fit(self, dataset: datasets.Dataset, schema: LabelSchema) -> LabelAuditor:
        self.schema_ = schema
        topic_true, tone_true = targets(dataset)
        _check_counts(topic_true, tone_true, schema, self.folds)
        self.topic_probs_, self.tone_probs_ = self._out_of_fold(dataset, schema, tone_true)
        self._rate(topic_true, tone_true)
        return self

    def _out_of_fold(
        self, dataset: datasets.Dataset, schema: LabelSchema, tone_true: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        topics = np.zeros((len(dataset), len(schema.topics)))
        tones = np.zeros((len(dataset), len(schema.tones)))
        splits = StratifiedKFold(self.folds, shuffle=True, random_state=self.seed)
        for k, (fit_rows, held) in enumerate(splits.split(np.zeros(len(tone_true)), tone_true)):
            print(f"audit: fold {k + 1}/{self.folds}", file=sys.stderr, flush=True)
            params = {**(self.settings or {}), "seed": self.seed}
            fitter = TfidfFitter(**params).fit(dataset.select(fit_rows), schema)
            topics[held], tones[held] = fitter.predictor_.predict_scores(
                dataset.select(held)["text"]
            )
        return topics, tones

    def _rate(self, topic_true: np.ndarray, tone_true: np.ndarray) -> None:
        from cleanlab.filter import find_label_issues
        from cleanlab.multilabel_classification.rank import (
            get_label_quality_scores as multilabel_quality,
        )
        from cleanlab.multilabel_classification.rank import get_label_quality_scores_per_class
        from cleanlab.rank import get_label_quality_scores

        topic_sets = [np.flatnonzero(row).tolist() for row in topic_true]
        self.topic_quality_ = multilabel_quality(topic_sets, self.topic_probs_)
        self.tone_quality_ = get_label_quality_scores(tone_true, self.tone_probs_)
        # n_jobs=1: cleanlab's default forks a process pool, which hung for minutes on a
        # busy machine; at these sizes one process is as fast, and the flags are the same.
        self.topic_issue_ = find_label_issues(
            topic_sets, self.topic_probs_, multi_label=True, n_jobs=1
        )
        self.tone_issue_ = find_label_issues(tone_true, self.tone_probs_, n_jobs=1)
        per_topic = get_label_quality_scores_per_class(topic_sets, self.topic_probs_)
        self.quality_ = 1.0 / (
            1.0 + _flip_odds(per_topic, self.tone_quality_, len(self.schema_.tones))
        )
        self.ranking_ = np.lexsort((np.arange(len(self.quality_)), self.quality_))

    def top(self, top: float | int | None) -> np.ndarray:
        """The ``top`` most suspect rows: a count (an int), a share (a float in (0, 1]),
        or None for the rows cleanlab flags (in ranking order)."""
        _check_top(top)
        if top is None:
            flagged = self.topic_issue_ | self.tone_issue_
            return self.ranking_[flagged[self.ranking_]]
        if isinstance(top, float):
            return self.ranking_[
                : math.ceil(round(top * len(self.ranking_), 9))
            ]  # 0.04 × 150 = 6.000…01
        return self.ranking_[:top]


def _check_top(top: Any) -> None:
    if top is None:
        return
    if isinstance(top, bool) or not isinstance(top, (int, float)) or top <= 0:
        raise TopictoneError(f"top must be a count, a share in (0, 1] or null, got {top!r}")
    if isinstance(top, float) and top > 1:
        raise TopictoneError(f"top={top}: a share is at most 1 (a count is an integer)")


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
    top = settings_of(cfg)["top"]
    _check_top(top)  # before minutes of fitting
    settings, schema, origin = audit_settings(cfg.model)
    schema = schema or LabelSchema.from_dict(label_preset(cfg.labels))
    dataset, lines = _read_training(cfg.data, cfg, schema)
    print(f"audit: {len(dataset)} rows, {cfg.folds} folds, {origin}", file=sys.stderr)
    auditor = LabelAuditor(int(cfg.folds), int(cfg.seed), settings).fit(dataset, schema)
    rows = _review_rows(auditor, dataset, lines, auditor.top(top))
    version = f"audit-tfidf-oof{cfg.folds}-seed{cfg.seed}"
    tasks = _review_tasks(rows, str(cfg.data), version)
    studio.write_texts({output: studio.tasks_json(tasks), report: _report_text(rows, report)})
    print(f"{len(rows)} rows to review -> {output}; report -> {report}", file=sys.stderr)


if __name__ == "__main__":
    main()
