"""``python -m topictone.train.label import``: a finished Label Studio project back into training
rows.

Reads Label Studio's JSON export (Export → JSON: a list of tasks, each with its
``annotations``) and writes JSONL rows that ``topictone.train.data.labelled.read_labelled`` loads:
``id`` (the task's ``topictone_id``, else ``labelstudio-<task id>``), ``text``, ``topics``,
``tone`` and the carried fields (``lang``, ``unit``). Cancelled (skipped) annotations
are ignored. Every problem is one line naming the task, and nothing is written unless
every task is valid: an unknown label, a missing tone, two annotations that disagree, a
task nobody annotated (unless ``skip_unlabelled=true``), a text that a labelled split
already has or that the export repeats. With ``corrects=<file>`` the export is an audit's
review instead (:mod:`topictone.train.label.corrections`): its answers replace the labels of
the rows they name, in a copy of that file.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from topictone.infer.cli import CONF_DIR, command
from topictone.infer.errors import InputError, TopictoneError
from topictone.infer.io.outputs import check_output, output_folder
from topictone.infer.paths import follow_umask
from topictone.infer.schema import LabelSchema
from topictone.infer.text import text_problem
from topictone.train.data.labelled import read_labelled
from topictone.train.label.answers import task_labels, task_name
from topictone.train.label.corrections import Corrector, audited_rows, corrected_file, report
from topictone.train.label.studio import ID_KEY, TEXT
from topictone.train.label.texts import KnownTexts, as_list, label_preset

# The training format's fields, as conf/data/demo.yaml names them.
DATA_CFG: dict[str, Any] = {
    "fields": {"id": "id", "text": "text", "topics": "topics", "tone": "tone"},
    "keep": [],
    "format": "jsonl",
}


@dataclass
class _Importer:
    """Turns exported tasks into training rows, refusing any it cannot vouch for."""

    schema: LabelSchema
    known: KnownTexts  # texts of the labelled splits (and of the file appended to)
    ids: set[str] = field(default_factory=set)  # ids the file appended to has
    carry: tuple[str, ...] = ("lang", "unit")
    skip_unlabelled: bool = False
    skipped: int = 0

    def rows(self, tasks: list[Any], path: str) -> list[dict[str, Any]]:
        rows, seen = [], KnownTexts()
        for index, task in enumerate(tasks):
            name = task_name(task, index) if isinstance(task, Mapping) else f"task #{index + 1}"
            try:
                row = self.row(task, seen)
            except ValueError as err:
                raise InputError(f"{name}: {err}", path) from None
            if row is not None:
                rows.append(row)
                seen.add(row["text"], name)
                self.ids.add(row["id"])
        return rows

    def row(self, task: Any, seen: KnownTexts) -> dict[str, Any] | None:
        if not isinstance(task, Mapping) or not isinstance(task.get("data"), Mapping):
            raise ValueError("not a Label Studio task (no 'data' object)")
        data = task["data"]
        text = data.get(TEXT)
        if not isinstance(text, str):
            raise ValueError(f"data.{TEXT} is missing or not a text")
        if problem := text_problem(text):
            raise ValueError(f"data.{TEXT}: {problem}")
        labels = task_labels(task, self.schema)
        if labels is None:
            if self.skip_unlabelled:
                self.skipped += 1
                return None
            raise ValueError("no annotation (label it, or set skip_unlabelled=true)")
        if where := self.known.find(text):
            raise ValueError(f"its text is labelled already ({where})")
        if where := seen.find(text):
            raise ValueError(f"its text repeats {where}")
        ident = str(data.get(ID_KEY) or f"labelstudio-{task.get('id', '?')}")
        if ident in self.ids:
            raise ValueError(f"id {ident!r} is taken already")
        extra = {k: data[k] for k in self.carry if data.get(k) is not None}
        return {
            "id": ident,
            "text": text,
            "topics": list(labels.topics),
            "tone": labels.tone,
            **extra,
        }


# An export is read whole: a bound keeps a hostile or mistaken file from taking the memory.
MAX_EXPORT_BYTES = 256 << 20


def read_export(path: str) -> list[Any]:
    """The tasks of a Label Studio JSON export (a list)."""
    file = Path(path)
    if not file.is_file():
        raise InputError("no such file", file)
    if file.stat().st_size > MAX_EXPORT_BYTES:
        raise InputError(f"larger than {MAX_EXPORT_BYTES} bytes; export in parts", file)
    try:
        tasks = json.loads(file.read_text(encoding="utf-8"))
    except RecursionError:
        raise InputError("not valid JSON (nested too deeply)", file) from None
    except json.JSONDecodeError as err:
        raise InputError(
            f"not valid JSON ({err.msg}, column {err.colno})", file, err.lineno
        ) from None
    except UnicodeDecodeError:
        raise InputError("not valid UTF-8 text", file) from None
    if not isinstance(tasks, list):
        raise InputError("not a Label Studio JSON export (expected a list of tasks)", file)
    return tasks


def write_rows(
    output: Path, rows: list[dict[str, Any]], before: bytes, schema: LabelSchema
) -> None:
    """``before`` (the file appended to) and then ``rows``, as JSONL, replacing
    ``output`` only once the whole file reads back as training data."""
    with output_folder(output):
        fd, tmp = tempfile.mkstemp(
            prefix=f".{output.name}.{os.getpid()}.", suffix=".part", dir=output.parent
        )
        try:
            with open(fd, "wb") as handle:
                handle.write(before)
                if rows and before and not before.endswith(b"\n"):
                    handle.write(b"\n")
                for row in rows:
                    handle.write(json.dumps(row, ensure_ascii=False).encode("utf-8") + b"\n")
            # The very reader training uses: what it refuses is never left behind.
            read_labelled(tmp, DATA_CFG, schema)
            follow_umask(Path(tmp))
            os.replace(tmp, output)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def _existing_rows(
    output: Path, append: bool, schema: LabelSchema
) -> tuple[bytes, KnownTexts, set]:
    """The file to append to (validated as training data), its texts and its ids."""
    if not output.exists():
        return b"", KnownTexts(), set()
    if not append:
        raise TopictoneError(
            f"{output}: exists; set append=true to add to it, or choose another output"
        )
    ids = set(read_labelled(output, DATA_CFG, schema)["id"])  # every row checked first
    return output.read_bytes(), KnownTexts.of_files([str(output)], "text"), ids


def correct(cfg: DictConfig, schema: LabelSchema) -> None:
    """``corrects=<file>``: a copy of the audited file with the reviewed rows' labels."""
    audited, output = Path(cfg.corrects), Path(cfg.output)
    if cfg.append or output.exists():
        raise TopictoneError(
            f"{output}: corrects= writes a new file (the audited one stays as it was); "
            "name an output that does not exist"
        )
    check_output(output, [cfg.input, cfg.corrects])
    rows = audited_rows(audited, DATA_CFG, schema)
    corrector = Corrector(schema, rows, audited, bool(cfg.skip_unlabelled))
    answers = corrector.answers(read_export(cfg.input), cfg.input)
    if not answers:
        raise TopictoneError(f"{cfg.input}: no reviewed task")
    data, changed = corrected_file(audited, corrector, answers)
    write_rows(output, [], data, schema)
    report(len(answers), changed, corrector.skipped, output)


@command(f"{CONF_DIR}/label", "import")
def main(cfg: DictConfig) -> None:
    output = Path(cfg.output)
    if output.suffix.lower() != ".jsonl":
        raise TopictoneError(f"{output}: training rows are written as JSONL; name a .jsonl output")
    check_output(output, [cfg.input])
    schema = LabelSchema.from_dict(label_preset(cfg.labels))
    if cfg.corrects:
        return correct(cfg, schema)
    before, known, ids = _existing_rows(output, bool(cfg.append), schema)
    known.update(KnownTexts.of_files(as_list(cfg.exclude), cfg.exclude_field))
    importer = _Importer(schema, known, ids, tuple(as_list(cfg.carry)), bool(cfg.skip_unlabelled))
    rows = importer.rows(read_export(cfg.input), cfg.input)
    if not rows:
        raise TopictoneError(f"{cfg.input}: no annotated task to import")
    write_rows(output, rows, before, schema)
    skipped = f", {importer.skipped} unlabelled tasks skipped" if importer.skipped else ""
    print(f"{len(rows)} rows -> {output}{skipped}", file=sys.stderr)


if __name__ == "__main__":
    main()
