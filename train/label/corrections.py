"""Reviewed audit tasks back into the audited file: ``import input=<export> corrects=<file>``.

``audit`` writes each row it doubts as a task carrying the row's id; a reviewer confirms
or corrects the labels in Label Studio and exports the project. Importing that export with
``corrects=<the audited JSONL>`` writes a copy of the file in which every reviewed row
carries the reviewer's topics and tone. Every other line is kept byte for byte, a reviewed
row keeps its other fields (their values exactly), and nothing is written unless every
task names a row of the file, holds that row's text and has one valid answer.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from topictone.infer.errors import InputError, TopictoneError
from topictone.infer.io.readers import read_records
from topictone.infer.schema import LabelSchema
from topictone.train.data.labelled import read_labelled
from topictone.train.label.answers import Labels, task_labels, task_name
from topictone.train.label.studio import ID_KEY, TEXT

TOPICS, TONE, TEXT_FIELD = "topics", "tone", "text"  # the training format's fields
_BOM = b"\xef\xbb\xbf"


@dataclass
class AuditedRow:
    """One row of the audited file: its physical line (1-based), parsed object and text."""

    line: int
    row: dict[str, Any]
    raw: str


def audited_rows(
    path: Path, data_cfg: dict[str, Any], schema: LabelSchema
) -> dict[str, AuditedRow]:
    """The file's rows by id, as training reads them (every row checked first); an id
    that two rows share cannot say which one a task reviews, so it is refused."""
    if path.suffix.lower() != ".jsonl":
        raise TopictoneError(f"{path}: corrects= takes the audited training file as JSONL")
    ids = read_labelled(path, data_cfg, schema)["id"]
    rows: dict[str, AuditedRow] = {}
    for ident, (line, row, _, raw) in zip(ids, read_records(path, "jsonl"), strict=True):
        if ident in rows:
            raise InputError(f"id {ident!r} is also on line {rows[ident].line}", path, line, "id")
        rows[ident] = AuditedRow(line, row, raw or "")
    return rows


def corrected_line(found: AuditedRow, labels: Labels, path: Path) -> str:
    """The row with the reviewer's labels, its other fields' values unchanged (a number
    that would come out as another value is refused rather than rounded)."""
    row = {**found.row, TOPICS: list(labels.topics), TONE: labels.tone}
    try:
        line = json.dumps(row, ensure_ascii=False)
        line.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate in another field: kept as its escape
        line = json.dumps(row)

    def others(text: str) -> dict[str, Any]:
        parsed = json.loads(text, parse_float=Decimal)
        return {k: v for k, v in parsed.items() if k not in (TOPICS, TONE)}

    before = others(found.raw)
    after = others(line)
    if before != after:
        field = next((k for k in before if before[k] != after.get(k)), None)
        raise InputError(
            "a number the rewritten row would change; correct this row by hand",
            path,
            found.line,
            field,
        )
    return line


@dataclass
class Corrector:
    """Matches each exported task to its row and keeps the reviewer's answer."""

    schema: LabelSchema
    rows: dict[str, AuditedRow]
    path: Path
    skip_unlabelled: bool = False
    skipped: int = 0

    def answers(self, tasks: list[Any], export: str) -> dict[int, Labels]:
        """Reviewed labels by the row's line; InputError names the task."""
        answers: dict[int, Labels] = {}
        for index, task in enumerate(tasks):
            name = task_name(task, index) if isinstance(task, dict) else f"task #{index + 1}"
            try:
                found, labels = self.answer(task)
            except ValueError as err:
                raise InputError(f"{name}: {err}", export) from None
            if labels is None:
                continue
            if found.line in answers:
                raise InputError(f"{name}: reviews {self.path}:{found.line} again", export)
            answers[found.line] = labels
        return answers

    def answer(self, task: Any) -> tuple[AuditedRow, Labels | None]:
        data = task.get("data") if isinstance(task, dict) else None
        if not isinstance(data, dict):
            raise ValueError("not a Label Studio task (no 'data' object)")
        ident = data.get(ID_KEY)
        found = self.rows.get(str(ident)) if ident is not None else None
        if found is None:
            raise ValueError(f"no row of {self.path} has id {ident!r} (audit tasks carry it)")
        if data.get(TEXT) != found.row.get(TEXT_FIELD):
            raise ValueError(f"its text is not that of {self.path}:{found.line} (edited since?)")
        labels = task_labels(task, self.schema)
        if labels is None:
            if not self.skip_unlabelled:
                raise ValueError("no annotation (review it, or set skip_unlabelled=true)")
            self.skipped += 1
        return found, labels


def corrected_file(
    path: Path, corrector: Corrector, answers: dict[int, Labels]
) -> tuple[bytes, int]:
    """The audited file's bytes with the reviewed rows replaced, and how many changed."""
    by_line = {found.line: found for found in corrector.rows.values()}
    lines = path.read_bytes().split(b"\n")  # numbered as the reader numbers them
    changed = 0
    for number, labels in answers.items():
        found = by_line[number]
        given = Labels(
            tuple(t for t in corrector.schema.topics if t in found.row[TOPICS]), found.row[TONE]
        )
        if labels == given:
            continue
        old = lines[number - 1]
        prefix = _BOM if number == 1 and old.startswith(_BOM) else b""
        ending = b"\r" if old.endswith(b"\r") else b""
        lines[number - 1] = prefix + corrected_line(found, labels, path).encode("utf-8") + ending
        changed += 1
    return b"\n".join(lines), changed


def report(reviewed: int, changed: int, skipped: int, output: Path) -> None:
    unreviewed = f", {skipped} unreviewed tasks skipped" if skipped else ""
    print(
        f"{reviewed} rows reviewed: {changed} corrected, {reviewed - changed} confirmed"
        f"{unreviewed} -> {output}",
        file=sys.stderr,
    )
