"""Labelled data: read, validate row by row, and hold as a ``datasets.Dataset``.

Rows are read by ``topictone.infer.io.readers`` (line-numbered streaming) so every problem is
reported by file, line and field before training starts; the validated rows become a
``datasets.Dataset`` with multi-hot topics and an integer tone.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import datasets
import numpy as np

import topictone.infer.resources  # noqa: F401  (registers ${topictone.demo:...}, used by data configs)
from topictone.infer.errors import InputError
from topictone.infer.io.readers import detect_format, read_rows, require_text
from topictone.infer.schema import LabelSchema
from topictone.infer.text import text_problem


def _parse_topics(
    value: Any, schema: LabelSchema, file: Path, line: int, field: str, csv: bool = False
) -> list[str]:
    """A list of topic names; in CSV (all text) a JSON list or names joined by "|"."""
    if csv and isinstance(value, str):
        stripped = value.strip()
        if stripped.startswith("["):
            try:
                value = json.loads(stripped)
            except json.JSONDecodeError:
                raise InputError("not a valid JSON list", file, line, field) from None
        else:
            value = [t.strip() for t in stripped.split("|") if t.strip()]
    if not isinstance(value, list):
        raise InputError(
            f"must be a list of topic names, got {type(value).__name__}", file, line, field
        )
    for topic in value:
        if topic not in schema.topics:
            raise InputError(
                f"unknown topic {topic!r} (schema: {', '.join(schema.topics)})", file, line, field
            )
    return value


def read_labelled(
    path: str | Path, data_cfg: Mapping[str, Any], schema: LabelSchema
) -> datasets.Dataset:
    """Validate every row of a labelled file and return it as a Dataset.

    Columns: ``id``, ``text``, ``topics`` (multi-hot floats in schema order), ``tone``
    (index into the schema's tones), and each field named in ``keep`` (None where absent).
    """
    file = Path(path)
    fields = data_cfg["fields"]
    keep = list(data_cfg.get("keep") or [])
    columns: dict[str, list[Any]] = {
        "id": [],
        "text": [],
        "topics": [],
        "tone": [],
        **{k: [] for k in keep},
    }
    if not file.is_file() and data_cfg.get("missing_hint"):
        raise InputError(f"no such file; {data_cfg['missing_hint']}", file)
    is_csv = detect_format(file, data_cfg.get("format")) == "csv"
    for line, row, _ in read_rows(file, data_cfg.get("format")):
        text = require_text(row, fields["text"], file, line)
        if problem := text_problem(text):
            raise InputError(problem, file, line, fields["text"])
        if fields["topics"] not in row:
            raise InputError("missing", file, line, fields["topics"])
        topics = _parse_topics(row[fields["topics"]], schema, file, line, fields["topics"], is_csv)
        tone = row.get(fields["tone"])
        if tone is None:
            raise InputError("missing", file, line, fields["tone"])
        if tone not in schema.tones:
            raise InputError(
                f"unknown tone {tone!r} (schema: {', '.join(schema.tones)})",
                file,
                line,
                fields["tone"],
            )
        columns["id"].append(str(row.get(fields["id"], f"{file.name}:{line}")))
        columns["text"].append(text)
        columns["topics"].append([float(t in topics) for t in schema.topics])
        columns["tone"].append(schema.tones.index(tone))
        for name in keep:
            value = row.get(name)
            columns[name].append(None if value is None else str(value))
    return datasets.Dataset.from_dict(columns)


def targets(dataset: datasets.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Multi-hot topic matrix (n × topics, int) and tone indices (n,)."""
    topics = np.asarray(dataset["topics"], dtype=int).reshape(len(dataset), -1)
    return topics, np.asarray(dataset["tone"], dtype=int)


def split_files(value: Any) -> list[str]:
    """A split's files: one path, or a list of paths read one after the other."""
    if not value:
        return []
    return [str(value)] if isinstance(value, (str, Path)) else [str(v) for v in value]


def read_split(value: Any, data_cfg: Mapping[str, Any], schema: LabelSchema) -> datasets.Dataset:
    """Every file of a split, validated and concatenated in order."""
    parts = [read_labelled(path, data_cfg, schema) for path in split_files(value)]
    return parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)


def load_splits(data_cfg: Mapping[str, Any], schema: LabelSchema) -> dict[str, datasets.Dataset]:
    """The configured splits that have a path or a list of paths (train is required)."""
    splits = {}
    for split in ("train", "dev", "test"):
        if split_files(data_cfg.get(split)):
            splits[split] = read_split(data_cfg.get(split), data_cfg, schema)
    if "train" not in splits:
        raise InputError("data config has no train file")
    return splits


def partial_labels(dataset: datasets.Dataset) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Which rows know their topics, which their tone, and each row's weight.

    Labelled data knows both with weight 1; weak sources (``topictone.train.data.weak``) may know
    one.
    """
    n = len(dataset)
    if "weight" not in dataset.column_names:
        return np.ones(n, dtype=bool), np.ones(n, dtype=bool), np.ones(n)
    return (
        np.asarray(dataset["topics_known"], dtype=bool),
        np.asarray(dataset["tone_known"], dtype=bool),
        np.asarray(dataset["weight"], dtype=float),
    )


_PARTIAL = ("topics_known", "tone_known", "weight")  # weak and distilled rows know less
_SOFT = ("topics_soft", "tone_soft")  # distilled rows: a teacher's probabilities


def _soft_columns(dataset: Mapping[str, list], n_tones: int) -> dict[str, list]:
    """Hard labels as soft targets: topics as floats, the tone as a one-hot distribution."""
    return {
        "topics_soft": [[float(v) for v in row] for row in dataset["topics"]],
        "tone_soft": [np.eye(n_tones)[t].tolist() for t in dataset["tone"]],
    }


def append_rows(
    train: datasets.Dataset, rows: Mapping[str, list], schema: LabelSchema
) -> datasets.Dataset:
    """``train`` with extra rows (weak or distilled) appended.

    ``rows`` holds id, text, topics, tone and the ``PARTIAL`` columns, and may hold the
    ``SOFT`` ones. Columns one side lacks are filled in: labelled rows know everything
    with weight 1, hard labels stand in for soft ones, other fields (``lang``...) are None.
    """
    n_new = len(rows["id"])
    if not n_new:
        return train
    base = {name: list(train[name]) for name in train.column_names}
    base.setdefault("topics_known", [True] * len(train))
    base.setdefault("tone_known", [True] * len(train))
    base.setdefault("weight", [1.0] * len(train))
    new = dict(rows)
    if any(name in new or name in base for name in _SOFT):
        for side in (base, new):
            if not all(name in side for name in _SOFT):
                side.update(_soft_columns(side, len(schema.tones)))
    for here, there, n in ((base, new, n_new), (new, base, len(train))):
        for name in list(here):
            if name not in there:
                here[name] = [None if v is None else str(v) for v in here[name]]
                there[name] = [None] * n
    return datasets.Dataset.from_dict({name: base[name] + list(new[name]) for name in base})


def check_label_counts(
    train: datasets.Dataset, schema: LabelSchema, minimum: int, described: Iterable[str] = ()
) -> None:
    """Refuse training when a topic or tone has fewer than ``minimum`` examples in train
    (or a topic no negative): its head would learn nothing and score it 0 forever. A
    ``described`` topic (``labels.descriptions``) may have fewer positives: the encoder
    scores it from its description (a kind that cannot says so when it fits)."""
    topic_true, tone_true = targets(train)
    known_topics, known_tone, _ = partial_labels(train)
    for i, topic in enumerate(schema.topics):
        positives = int(topic_true[known_topics, i].sum())
        negatives = int(known_topics.sum()) - positives
        few = positives < minimum and topic not in set(described)
        if few or negatives < minimum:
            raise InputError(
                f"topic '{topic}' has {positives} positive and {negatives} negative training "
                f"examples; at least {minimum} of each are needed (checks.min_examples)"
            )
    for i, tone in enumerate(schema.tones):
        count = int((tone_true[known_tone] == i).sum())
        if count < minimum:
            raise InputError(
                f"tone '{tone}' has {count} training examples; at least {minimum} are needed "
                "(checks.min_examples)"
            )


def train_overlap(splits: dict[str, datasets.Dataset], max_share: float) -> dict[str, int]:
    """Per evaluation split, how many texts also occur in train (after normalisation);
    an error when the share exceeds ``max_share``: such figures measure memory."""
    from topictone.infer.text import normalize

    seen = {normalize(t) for t in splits["train"]["text"]}
    counts: dict[str, int] = {}
    for name in ("dev", "test"):
        if name in splits:
            texts = splits[name]["text"]
            counts[name] = sum(normalize(t) in seen for t in texts)
            if texts and counts[name] / len(texts) > max_share:
                raise InputError(
                    f"{counts[name]} of the {len(texts)} {name} texts also occur in train "
                    f"(more than checks.max_overlap={max_share}); evaluation would measure memory"
                )
    return counts
