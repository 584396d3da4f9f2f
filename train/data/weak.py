"""Weak supervision: public data sets whose own categories map partly onto our labels.

A source maps each of its categories to topics and/or a tone; what a source does not
say stays unknown (its rows train only the head whose label they carry). Rows whose
category is not mapped are dropped and counted; rows that repeat a text of the
configured splits (the gold sets were drawn from these same sources) are dropped too,
so no dev or test text leaks in through its category.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

import datasets
import numpy as np

from topictone.infer.errors import TopictoneError
from topictone.infer.schema import LabelSchema
from topictone.infer.text import normalize
from topictone.train.data.labelled import append_rows

_KEY = re.compile(r"\W+")


def text_key(text: str, chars: int = 50) -> str:
    """A loose identity for a text: its first characters, lower-cased, punctuation dropped."""
    return _KEY.sub("", normalize(text).lower())[:chars]


def read_source(source: Mapping[str, Any], what: str) -> datasets.Dataset:
    """A configured public data set (``builder``, ``path``, ``load_kwargs``) as one split."""
    try:
        return datasets.load_dataset(
            source["builder"],
            data_files=str(source["path"]),
            split="train",
            **dict(source.get("load_kwargs") or {}),
        )
    except FileNotFoundError:
        raise TopictoneError(f"{what} {source['name']}: {source['path']} not found") from None


def source_text(row: Mapping[str, Any], fields: Iterable[str]) -> str:
    """The text of one row: its configured fields joined (a title and its lead)."""
    return ". ".join(str(row[f]).strip() for f in fields if row[f])


def _load_source(
    source: Mapping[str, Any], schema: LabelSchema, exclude: set[str], seed: int
) -> dict[str, list]:
    """One source's rows as columns: text, topics, tone, known masks, weight, id."""
    raw = read_source(source, "weak source")
    mapping = {str(k): v for k, v in source["map"].items()}
    columns: dict[str, list] = {
        k: [] for k in ("id", "text", "topics", "tone", "topics_known", "tone_known", "weight")
    }
    unmapped = duplicates = 0
    order = np.random.default_rng(seed).permutation(len(raw))
    for i in order.tolist():
        row = raw[i]
        target = mapping.get(str(row[source["label"]]).strip())
        if target is None:
            unmapped += 1
            continue
        text = source_text(row, source["text"])
        if not text.strip() or text_key(text) in exclude:
            duplicates += 1
            continue
        topics = target.get("topics")
        tone = target.get("tone")
        for topic in topics or []:
            if topic not in schema.topics:
                raise TopictoneError(f"weak source {source['name']}: unknown topic '{topic}'")
        if tone is not None and tone not in schema.tones:
            raise TopictoneError(f"weak source {source['name']}: unknown tone '{tone}'")
        columns["id"].append(f"{source['name']}:{i}")
        columns["text"].append(text)
        columns["topics"].append([float(t in (topics or [])) for t in schema.topics])
        columns["topics_known"].append(topics is not None)
        columns["tone"].append(schema.tones.index(tone) if tone is not None else 0)
        columns["tone_known"].append(tone is not None)
        columns["weight"].append(float(source.get("weight", 1.0)))
        if len(columns["id"]) >= source.get("max_rows", len(raw)):
            break
    print(
        f"weak source {source['name']}: {len(columns['id'])} rows mixed in, {unmapped} with "
        f"unmapped categories and {duplicates} repeating a configured split (or empty) left out"
    )
    return columns


def mix_weak(
    train: datasets.Dataset,
    sources: Iterable[Mapping[str, Any]],
    schema: LabelSchema,
    exclude_texts: Iterable[str],
    seed: int,
) -> datasets.Dataset:
    """The training split with every weak source appended (gold rows: all known, weight 1)."""
    sources = list(sources)
    if not sources:
        return train
    exclude = {text_key(t) for t in exclude_texts}
    rows: dict[str, list] = {}
    for source in sources:
        for name, values in _load_source(source, schema, exclude, seed).items():
            rows.setdefault(name, []).extend(values)
    return append_rows(train, rows, schema)
