"""Training data validation: every bad row is located by file, line and field."""

import json

import pytest

from topictone.infer.errors import InputError
from topictone.infer.schema import LabelSchema
from topictone.train.data.labelled import read_labelled, targets

SCHEMA = LabelSchema(
    topics=("defence", "counterterrorism", "technology"), tones=("positive", "neutral", "negative")
)
CFG = {
    "fields": {"id": "id", "text": "text", "topics": "topics", "tone": "tone"},
    "keep": ["lang"],
    "format": None,
}


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_reads_labels_as_multi_hot_and_index(tmp_path):
    f = write_jsonl(
        tmp_path / "t.jsonl",
        [
            {
                "id": "a",
                "text": "x",
                "topics": ["technology", "defence"],
                "tone": "negative",
                "lang": "en",
            },
            {"text": "y", "topics": [], "tone": "positive"},
        ],
    )
    ds = read_labelled(f, CFG, SCHEMA)
    topics, tone = targets(ds)
    assert topics.tolist() == [[1, 0, 1], [0, 0, 0]]
    assert tone.tolist() == [2, 0]
    assert ds["id"] == ["a", "t.jsonl:2"]
    assert ds["lang"] == ["en", None]


def test_csv_topics_as_pipe_list_or_json(tmp_path):
    f = tmp_path / "t.csv"
    f.write_text(
        'text,topics,tone\na,defence|technology,neutral\nb,"[""counterterrorism""]",neutral\nc,,neutral\n'
    )
    topics, _ = targets(read_labelled(f, CFG, SCHEMA))
    assert topics.tolist() == [[1, 0, 1], [0, 1, 0], [0, 0, 0]]


@pytest.mark.parametrize(
    "row,message",
    [
        (
            {"text": "x", "topics": ["sports"], "tone": "neutral"},
            "t.jsonl:2: field 'topics': unknown topic 'sports'",
        ),
        (
            {"text": "x", "topics": "defence", "tone": "neutral"},
            "t.jsonl:2: field 'topics': must be a list of topic names, got str",
        ),
        (
            {"text": "x", "topics": 3, "tone": "neutral"},
            "t.jsonl:2: field 'topics': must be a list",
        ),
        (
            {"text": "x", "topics": [], "tone": "angry"},
            "t.jsonl:2: field 'tone': unknown tone 'angry'",
        ),
        ({"text": "x", "topics": []}, "t.jsonl:2: field 'tone': missing"),
        ({"text": "x", "tone": "neutral"}, "t.jsonl:2: field 'topics': missing"),
        ({"topics": [], "tone": "neutral"}, "t.jsonl:2: field 'text': missing"),
        ({"text": "", "topics": [], "tone": "neutral"}, "t.jsonl:2: field 'text': empty text"),
        (
            {"text": "\u200b\x00", "topics": [], "tone": "neutral"},
            "t.jsonl:2: field 'text': empty text (nothing left",
        ),
        (
            {"text": "a \ud800", "topics": [], "tone": "neutral"},
            "t.jsonl:2: field 'text': not valid Unicode (a lone surrogate at character 2)",
        ),
        (
            {"text": ["x"], "topics": [], "tone": "neutral"},
            "t.jsonl:2: field 'text': must be a string",
        ),
    ],
)
def test_bad_rows(tmp_path, row, message):
    good = {"text": "ok", "topics": [], "tone": "neutral"}
    f = write_jsonl(tmp_path / "t.jsonl", [good, row])
    with pytest.raises(InputError) as err:
        read_labelled(f, CFG, SCHEMA)
    assert str(err.value).startswith(f"{tmp_path}/{message}")


def test_missing_file_gets_the_config_hint(tmp_path):
    with pytest.raises(InputError, match="gold data is read from"):
        read_labelled(
            tmp_path / "none.jsonl", {**CFG, "missing_hint": "the gold data is read from x"}, SCHEMA
        )


def unit_rows(units):
    return [
        {"text": f"text {i}", "topics": [], "tone": "neutral", "unit": unit}
        for i, unit in enumerate(units)
    ]
