"""What a Label Studio task's annotations answer: its topics and tone, checked against the
label schema (an unknown label, a missing tone, two annotations that disagree: ValueError)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from topictone.infer.schema import LabelSchema
from topictone.train.label.studio import ID_KEY, TONE, TOPICS


@dataclass(frozen=True)
class Labels:
    """One annotation's answer: topics in schema order, and the tone."""

    topics: tuple[str, ...]
    tone: str

    def __str__(self) -> str:
        return f"topics [{', '.join(self.topics)}], tone {self.tone}"


def task_name(task: Mapping[str, Any], index: int) -> str:
    """How errors name a task: Label Studio's id (else its place), and our row id."""
    name = f"task {task.get('id', f'#{index + 1}')}"
    data = task.get("data")
    if isinstance(data, Mapping) and data.get(ID_KEY) is not None:
        name += f" ({data[ID_KEY]})"
    return name


def parse_result(result: Any, schema: LabelSchema) -> Labels:
    """The labels an annotation's ``result`` holds; ValueError says what is wrong."""
    if not isinstance(result, list):
        raise ValueError("its result is not a list")
    chosen: dict[str, list[str]] = {}
    for item in result:
        control = item.get("from_name") if isinstance(item, Mapping) else None
        if control not in (TOPICS, TONE):
            raise ValueError(f"unknown control {control!r} (the labelling config has topics, tone)")
        value = item.get("value")
        values = value.get("choices") if isinstance(value, Mapping) else None
        if item.get("type") != "choices" or not isinstance(values, list):
            raise ValueError(f"{control}: not a choices result")
        if control in chosen:
            raise ValueError(f"{control} is answered twice")
        chosen[control] = values
    for topic in chosen.get(TOPICS, []):
        if topic not in schema.topics:
            raise ValueError(f"unknown topic {topic!r} (schema: {', '.join(schema.topics)})")
    tones = chosen.get(TONE, [])
    if len(tones) != 1:
        raise ValueError("no tone" if not tones else f"{len(tones)} tones, one is needed")
    if tones[0] not in schema.tones:
        raise ValueError(f"unknown tone {tones[0]!r} (schema: {', '.join(schema.tones)})")
    topics = tuple(t for t in schema.topics if t in chosen.get(TOPICS, []))
    return Labels(topics, tones[0])


def task_labels(task: Mapping[str, Any], schema: LabelSchema) -> Labels | None:
    """The task's one answer, None when no annotation stands (all cancelled or none);
    ValueError when an annotation is malformed or two disagree."""
    annotations = task.get("annotations") or []
    if not isinstance(annotations, list):
        raise ValueError("its annotations are not a list")
    answers: dict[Labels, Any] = {}
    for annotation in annotations:
        if not isinstance(annotation, Mapping):
            raise ValueError("an annotation is not an object")
        if annotation.get("was_cancelled"):  # skipped in Label Studio: no answer
            continue
        try:
            labels = parse_result(annotation.get("result"), schema)
        except ValueError as err:
            raise ValueError(f"annotation {annotation.get('id', '?')}: {err}") from None
        answers.setdefault(labels, annotation.get("id", "?"))
    if len(answers) > 1:
        (first, a), (second, b) = list(answers.items())[:2]
        raise ValueError(f"annotations {a} and {b} disagree ({first} vs {second})")
    return next(iter(answers), None)
