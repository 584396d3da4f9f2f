"""Training data validation: every bad row is located by file, line and field."""

import json

import numpy as np
import pytest

from infer.errors import InputError
from infer.schema import LabelSchema
from train.data import read_labelled, targets

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


@pytest.mark.parametrize(
    ("power", "expected"),
    # 6 headlines, 3 title + leads, 1 article: shares 0.6, 0.3, 0.1
    [
        (0.0, [1.0, 1.0, 1.0]),
        (1.0, [1 / 0.6, 1 / 0.3, 1 / 0.1]),
        (0.5, [0.6**-0.5, 0.3**-0.5, 0.1**-0.5]),
    ],
)
def test_unit_balance_weights_each_unit_by_its_share(tmp_path, power, expected):
    from train.data import balance_units, load_splits, partial_labels

    path = write_jsonl(tmp_path / "t.jsonl", unit_rows(["h"] * 6 + ["tl"] * 3 + ["a"]))
    cfg = {**CFG, "keep": ["unit"], "train": str(path), "unit_balance": power}
    train = load_splits(cfg, SCHEMA)["train"]
    known_topics, known_tone, weight = partial_labels(train)
    assert known_topics.all() and known_tone.all()
    expected = np.array([expected[0]] * 6 + [expected[1]] * 3 + [expected[2]])
    np.testing.assert_allclose(weight, expected / expected.mean())
    # weights already there (weak rows at 0.5) are multiplied, not replaced
    weak = train.select_columns(["text", "topics", "tone", "unit"])
    for name, values in (("topics_known", [True] * 10), ("tone_known", [True] * 10)):
        weak = weak.add_column(name, values)
    again = balance_units(weak.add_column("weight", [0.5] * 10), power)
    np.testing.assert_allclose(partial_labels(again)[2], 0.5 * expected / expected.mean())


def test_unit_balance_without_units_is_one_line(tmp_path):
    from train.data import load_splits

    path = write_jsonl(tmp_path / "t.jsonl", unit_rows(["h", "a"]))
    cfg = {**CFG, "train": str(path), "unit_balance": 0.5}  # keep: lang only
    with pytest.raises(InputError, match=r"data.unit_balance needs each train row's 'unit'"):
        load_splits(cfg, SCHEMA)
    assert "weight" not in load_splits({**cfg, "unit_balance": 0.0}, SCHEMA)["train"].column_names
    with pytest.raises(InputError, match=r"data.unit_balance must be >= 0, got -1.0"):
        load_splits({**cfg, "keep": ["unit"], "unit_balance": -1.0}, SCHEMA)
