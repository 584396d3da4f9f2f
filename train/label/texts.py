"""Texts in and out of the labelling loop: the unlabelled pool, the labelled splits that
must not be labelled again, and the key that says two texts are the same.

Two texts are the same when they normalise (:func:`topictone.infer.text.normalize`) and casefold to
the same string: a headline scraped twice with other spacing or capitals is one text, so
it is neither labelled twice nor labelled again after it reached train or dev.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from topictone.infer.errors import InputError, TopictoneError
from topictone.infer.io.readers import MAX_LINE_BYTES, input_files, read_rows, require_text
from topictone.infer.limits import TextLimits
from topictone.infer.resources import conf_dir
from topictone.infer.text import normalize, text_problem


def text_key(text: str) -> str:
    """What makes two texts the same: the SHA-256 of the normalised, casefolded text."""
    return hashlib.sha256(normalize(text).casefold().encode("utf-8")).hexdigest()


def as_list(value: Any) -> list[str]:
    """One path or a list of them (a Hydra list or a plain one) as a list of strings."""
    if value is None:
        return []
    if isinstance(value, (str, os.PathLike)):
        return [str(value)]
    return [str(v) for v in value]


class KnownTexts:
    """Texts already labelled, by key, with where each was seen (``file:line``)."""

    def __init__(self) -> None:
        self.where: dict[str, str] = {}

    def add(self, text: str, where: str) -> None:
        self.where.setdefault(text_key(text), where)

    def find(self, text: str) -> str | None:
        """Where ``text`` (or the same text written otherwise) was seen, or None."""
        return self.where.get(text_key(text))

    def update(self, other: KnownTexts) -> None:
        for key, where in other.where.items():
            self.where.setdefault(key, where)

    def __len__(self) -> int:
        return len(self.where)

    @classmethod
    def of_files(cls, files: Iterable[str], text_field: str, fmt: str | None = None) -> KnownTexts:
        """Every text of ``files`` (labelled splits): a missing or bad file is one line."""
        known = cls()
        for file in files:
            for line, row, _ in read_rows(file, fmt):
                known.add(require_text(row, text_field, file, line), f"{file}:{line}")
        return known


RUN_CONFIG = "config.yaml"  # what `python -m topictone.train` writes into a run folder
MAX_RUN_CONFIG_BYTES = 1 << 20  # a run's config is a few kilobytes


def run_config(folder: str | Path) -> tuple[dict[str, Any], Path] | None:
    """The training config of a run folder, or of the run a model folder sits in (its
    ``config.yaml``), and where it was read; None where there is none.

    A run folder is a user's file: the config is read as plain data, bounded in size,
    and refused in one line where it is not YAML or holds an interpolation (``${...}``:
    a resolver such as ``oc.env`` would copy the environment, tokens included, into
    labelling configs). Training writes it resolved, so it never needs one."""
    folder = Path(folder)
    for run in (folder, folder.parent):
        path = run / RUN_CONFIG
        if path.is_file():
            return _plain_config(path), run
    return None


def _plain_config(path: Path) -> dict[str, Any]:
    size = path.stat().st_size
    if size > MAX_RUN_CONFIG_BYTES:
        raise TopictoneError(
            f"{path}: {size} bytes; a run config is at most {MAX_RUN_CONFIG_BYTES}"
        )
    try:
        data = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    except Exception as err:  # YAML or OmegaConf errors: one line, naming the file
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise TopictoneError(f"{path}: not a readable run config ({first})") from None
    if not isinstance(data, dict):
        raise TopictoneError(f"{path}: a run config is a mapping, got {type(data).__name__}")
    for where, value in config_nodes(data, ""):
        if isinstance(value, str) and "${" in value:
            raise TopictoneError(f"{path}: field '{where}' holds an interpolation (${{...}})")
    return {str(k): v for k, v in data.items()}


def config_nodes(node: Any, path: str) -> Iterator[tuple[str, Any]]:
    """``(dotted path, value)`` of every node below a plain config tree, depth first."""
    items = (
        node.items()
        if isinstance(node, dict)
        else enumerate(node)
        if isinstance(node, list)
        else ()
    )
    for key, value in items:
        where = (
            f"{path}[{key}]" if isinstance(node, list) else f"{path}.{key}" if path else str(key)
        )
        yield where, value
        yield from config_nodes(value, where)


def run_labels(config: dict[str, Any], where: Path) -> dict[str, Any]:
    """A run config's ``labels`` mapping (its schema and descriptions), checked."""
    labels = config.get("labels")
    if not isinstance(labels, dict):
        raise TopictoneError(f"{where}: field 'labels' must be a mapping, got {labels!r:.60}")
    descriptions = labels.get("descriptions")
    if descriptions is not None and not isinstance(descriptions, dict):
        raise TopictoneError(
            f"{where}: field 'labels.descriptions' must map topics to texts, "
            f"got {descriptions!r:.60}"
        )
    return labels


def label_preset(name: str) -> dict[str, Any]:
    """The label schema config ``conf/labels/<name>.yaml`` (or a YAML file named by its
    path): ``topics``, ``tones`` and, where given, topic ``descriptions``."""
    path = (
        Path(name) if name.endswith((".yaml", ".yml")) else conf_dir() / "labels" / f"{name}.yaml"
    )
    if not path.is_file():
        raise TopictoneError(f"labels={name}: no such label schema ({path})")
    data = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    if not isinstance(data, dict) or "topics" not in data or "tones" not in data:
        raise TopictoneError(f"{path}: a label schema needs 'topics' and 'tones'")
    return {str(k): v for k, v in data.items()}


@dataclass
class _PoolRow:
    """One unlabelled text: its stable id, where it came from, and fields carried along."""

    text: str
    id: str
    source: str
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Pool:
    """The texts left to label, and how many rows were left out and why."""

    rows: list[_PoolRow]
    read: int = 0
    duplicates: int = 0
    labelled: int = 0

    def summary(self) -> str:
        return (
            f"pool: {self.read} rows read, {self.duplicates} repeated in the pool, "
            f"{self.labelled} already labelled, {len(self.rows)} to choose from"
        )


@dataclass
class PoolReader:
    """Reads pool files (JSONL, CSV, Parquet; files, folders or globs) into a :class:`Pool`.

    A row without a usable text is an error at its file and line, as in the batch CLI:
    a pool is data someone prepared, and a silently dropped row hides a broken export."""

    text_field: str = "text"
    id_field: str | None = "id"
    carry: Sequence[str] = ()
    fmt: str | None = None
    limits: TextLimits = field(default_factory=TextLimits)
    max_line_bytes: int = MAX_LINE_BYTES

    def read(self, specs: Iterable[str], known: KnownTexts) -> Pool:
        pool = Pool(rows=[])
        seen: set[str] = set()
        ids: dict[str, str] = {}
        for spec in specs:
            for file in input_files(spec, self.fmt):
                for line, row, _ in read_rows(file, self.fmt, self.max_line_bytes):
                    pool.read += 1
                    text = self._text(row, file, line)
                    key = text_key(text)
                    if key in seen:
                        pool.duplicates += 1
                    elif known.where.get(key):
                        pool.labelled += 1
                    else:
                        seen.add(key)
                        pool.rows.append(self._row(text, row, file, line))
                        self._check_id(pool.rows[-1], ids, file, line)
        return pool

    def _text(self, row: dict[str, Any], file: Path, line: int) -> str:
        text = require_text(row, self.text_field, file, line)
        problem = text_problem(text) or self.limits.problem(text)
        if problem:
            raise InputError(problem, file, line, self.text_field)
        return text

    def _check_id(self, row: _PoolRow, ids: dict[str, str], file: Path, line: int) -> None:
        """Ids name tasks and then training rows: two texts under one id would be
        confused when the labels come back."""
        if row.id in ids:
            raise InputError(f"id {row.id!r} repeats {ids[row.id]}", file, line, self.id_field)
        ids[row.id] = row.source

    def _row(self, text: str, row: dict[str, Any], file: Path, line: int) -> _PoolRow:
        source = f"{file}:{line}"
        own = row.get(self.id_field) if self.id_field else None
        # A row's own id survives relabelling and reordering; file:line is the fallback.
        ident = source if own is None or str(own) == "" else str(own)
        extra = {name: _plain(row[name]) for name in self.carry if row.get(name) is not None}
        return _PoolRow(text=text, id=ident, source=source, extra=extra)


def _plain(value: Any) -> Any:
    """A value Label Studio's JSON can hold as it is; anything else (a Parquet date,
    bytes) as its text."""
    return value if isinstance(value, (str, int, float, bool)) else str(value)
