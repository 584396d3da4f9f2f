"""Label Studio's side of the loop: the labelling config, tasks with predictions, and
writing them so that nothing appears unless everything was written.

Formats followed (Label Studio 1.x, ``label-studio-sdk`` 2.x): a task to import is
``{"data": {...}, "predictions": [{"model_version", "score", "result"}]}``; a choices
result is ``{"from_name", "to_name", "type": "choices", "value": {"choices": [...]}}``,
where ``from_name`` is the ``<Choices>`` control's name and ``to_name`` the ``<Text>``
object's. A prediction's ``score`` orders the Data Manager: the lowest first. A control
left empty has no result at all (Label Studio's own exports do the same), so a text
predicted to have no topic carries only the tone.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

from topictone.infer.artifact import MANIFEST, sha256
from topictone.infer.errors import TopictoneError
from topictone.infer.io.outputs import check_output, output_folder
from topictone.infer.paths import follow_umask
from topictone.infer.schema import LabelSchema

TEXT = "text"  # the <Text> object, and the data key it shows
TOPICS = "topics"  # the multiple-choice control
TONE = "tone"  # the single-choice control
ID_KEY = "topictone_id"  # the row id a task carries there and back


def labelling_config(schema: LabelSchema, descriptions: Mapping[str, str] | None = None) -> str:
    """The project's labelling config: the text, topics (any number, none included) and
    exactly one tone; a topic's description becomes its hover hint."""
    hints = _checked_descriptions(schema, descriptions)
    lines = ["<View>", f'  <Text name="{TEXT}" value="${TEXT}"/>']
    lines.append(f'  <Choices name="{TOPICS}" toName="{TEXT}" choice="multiple">')
    for topic in schema.topics:
        hint = f" hint={quoteattr(hints[topic])}" if topic in hints else ""
        lines.append(f"    <Choice value={quoteattr(topic)}{hint}/>")
    lines.append("  </Choices>")
    lines.append(f'  <Choices name="{TONE}" toName="{TEXT}" choice="single" required="true">')
    lines.extend(f"    <Choice value={quoteattr(tone)}/>" for tone in schema.tones)
    lines.extend(["  </Choices>", "</View>", ""])
    return "\n".join(lines)


def _checked_descriptions(
    schema: LabelSchema, descriptions: Mapping[str, Any] | None
) -> dict[str, str]:
    """Topic descriptions (select's ``descriptions``), each for a topic of the schema."""
    found = dict(descriptions or {})
    for topic, text in found.items():
        if topic not in schema.topics:
            raise TopictoneError(
                f"descriptions: unknown topic {topic!r} (the model's: {', '.join(schema.topics)})"
            )
        if not isinstance(text, str) or not text.strip():
            raise TopictoneError(f"descriptions.{topic}: must be a non-empty text")
    return {topic: " ".join(text.split()) for topic, text in found.items()}


def choices_result(topics: Sequence[str], tone: str) -> list[dict[str, Any]]:
    """The result items of labels: the topics (when there are any) and the tone."""
    result = []
    if topics:
        result.append(_choices(TOPICS, list(topics)))
    result.append(_choices(TONE, [tone]))
    return result


def _choices(control: str, values: list[str]) -> dict[str, Any]:
    return {
        "from_name": control,
        "to_name": TEXT,
        "type": "choices",
        "value": {"choices": values},
    }


def prediction(model_version: str, score: float, topics: Sequence[str], tone: str) -> dict:
    return {
        "model_version": model_version,
        "score": round(float(score), 6),
        "result": choices_result(topics, tone),
    }


def task(text: str, ident: str, source: str, extra: Mapping[str, Any], predictions: list) -> dict:
    """One task to import: the text with its id and origin, and the predictions."""
    data: dict[str, Any] = {TEXT: text, ID_KEY: ident, "source": source}
    data.update((name, value) for name, value in extra.items() if name not in data)
    return {"data": data, "predictions": predictions}


def model_version(folder: str | os.PathLike[str], kind: str) -> str:
    """``<kind>-<first 12 hex of topictone.json's SHA-256>``: the manifest holds every
    file's checksum, so this names the exact model, and a retrained one differs."""
    return f"{kind}-{sha256(Path(folder) / MANIFEST)[:12]}"


def tasks_json(tasks: list[dict]) -> str:
    return json.dumps(tasks, ensure_ascii=False, indent=1) + "\n"


def config_path(output: str | os.PathLike[str]) -> Path:
    """``tasks.json`` → ``tasks.config.xml``, beside it."""
    target = Path(output)
    return target.with_name(f"{target.stem}.config.xml")


def write_texts(contents: Mapping[Path, str], inputs: Sequence[str] = ()) -> None:
    """Write every file or none: each goes to a temporary file beside its target, and
    the targets are replaced only once all of them are written."""
    for target in contents:
        check_output(target, inputs)
    parts: list[tuple[str, Path]] = []
    try:
        for target, text in contents.items():
            with output_folder(target):
                fd, tmp = tempfile.mkstemp(
                    prefix=f".{target.name}.{os.getpid()}.", suffix=".part", dir=target.parent
                )
                parts.append((tmp, target))
                with open(fd, "w", encoding="utf-8", newline="") as handle:
                    handle.write(text)
                follow_umask(Path(tmp))
        for tmp, target in parts:
            os.replace(tmp, target)
    finally:
        for tmp, _ in parts:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
