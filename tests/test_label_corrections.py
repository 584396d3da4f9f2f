"""import corrects=<file>: an audit's reviewed tasks back into a copy of the audited file."""

from __future__ import annotations

import json
import re
import tempfile
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_label_import import annotation, write_json

from topictone.infer.schema import LabelSchema
from topictone.train.data.labelled import read_labelled

SCHEMA = LabelSchema(
    ("defence", "counterterrorism", "technology"), ("positive", "neutral", "negative")
)
DATA_CFG = {"fields": {"id": "id", "text": "text", "topics": "topics", "tone": "tone"}, "keep": []}

# Line 1 has a BOM, line 2 a number written two ways, line 3 ends in CRLF, line 4 is
# blank, line 5 has no id (its id is "train.jsonl:5") and no final newline.
AUDITED = (
    b'\xef\xbb\xbf{"id": "a", "text": "Army tests a missile", "topics": [], "tone": "neutral"}\n'
    b'{"id":"b","text":"Stocks rise","topics":["technology"],"tone":"negative","w":1E2}\n'
    b'{"id": "c", "text": "Blast in market", "topics": ["counterterrorism"], '
    b'"tone": "negative"}\r\n'
    b"\n"
    b'{"text": "New AI chip", "topics": ["technology"], "tone": "positive", "lang": "en"}'
)


def review(row_id: str, text: str, topics: list[str], tone: str, ident: int = 1) -> dict:
    data = {"text": text, "topictone_id": row_id, "source": f"train.jsonl:{ident}"}
    return {"id": ident, "data": data, "annotations": [annotation(ident, topics, tone)]}


@pytest.fixture
def audited(tmp_path: Path) -> Path:
    path = tmp_path / "train.jsonl"
    path.write_bytes(AUDITED)
    return path


def run(cli, tmp_path: Path, audited: Path, tasks: list[dict], *extra: str):
    export = write_json(tmp_path / "review-export.json", tasks)
    out = tmp_path / "train.v2.jsonl"
    args = [f"input={export}", f"corrects={audited}", f"output={out}", *extra]
    return cli("topictone.train.label", "import", *args), out


def test_reviewed_rows_get_their_labels_and_every_other_byte_stays(tmp_path, audited, cli):
    tasks = [
        review("a", "Army tests a missile", ["defence"], "neutral", 1),
        review("b", "Stocks rise", [], "positive", 2),
        review("c", "Blast in market", ["counterterrorism"], "negative", 3),  # confirmed
        review("train.jsonl:5", "New AI chip", ["technology", "defence"], "positive", 4),
    ]
    result, out = run(cli, tmp_path, audited, tasks)
    assert result.returncode == 0, result.stderr
    assert "4 rows reviewed: 3 corrected, 1 confirmed" in result.stderr
    assert audited.read_bytes() == AUDITED  # the audited file is never touched
    lines = out.read_bytes().split(b"\n")
    before = AUDITED.split(b"\n")
    assert len(lines) == len(before) and lines[2:4] == before[2:4]  # confirmed, blank
    assert lines[0].startswith(b"\xef\xbb\xbf{")
    assert json.loads(lines[0][3:]) == {
        "id": "a", "text": "Army tests a missile", "topics": ["defence"], "tone": "neutral"
    }  # fmt: skip
    assert json.loads(lines[1]) == {
        "id": "b", "text": "Stocks rise", "topics": [], "tone": "positive", "w": 100.0
    }  # fmt: skip
    assert json.loads(lines[4])["topics"] == ["defence", "technology"]  # schema order
    assert json.loads(lines[4])["lang"] == "en" and not lines[4].endswith(b"\n")
    dataset = read_labelled(out, DATA_CFG, SCHEMA)
    assert dataset["id"] == ["a", "b", "c", "train.v2.jsonl:5"]  # no id: named by its line


@pytest.mark.parametrize(
    ("task", "message"),
    [
        (review("zz", "Stocks rise", [], "neutral"), "no row of .* has id 'zz'"),
        (review("b", "Stocks fall", [], "neutral"), "its text is not that of .*train.jsonl:2"),
        (review("b", "Stocks rise", ["sports"], "neutral"), "unknown topic 'sports'"),
        ({**review("b", "Stocks rise", [], "neutral"), "annotations": []}, "no annotation"),
        ({"id": 9, "data": "x"}, "no 'data' object"),
    ],
)
def test_each_bad_review_is_one_line_and_nothing_is_written(tmp_path, audited, cli, task, message):
    result, out = run(cli, tmp_path, audited, [task])
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and "review-export.json" in lines[0]
    assert re.search(message, lines[0]), lines[0]
    assert not out.exists()


def test_a_row_reviewed_twice_or_unreviewed_tasks(tmp_path, audited, cli):
    twice = [
        review("b", "Stocks rise", [], "neutral", 1),
        review("b", "Stocks rise", [], "neutral", 2),
    ]
    result, out = run(cli, tmp_path, audited, twice)
    assert result.returncode == 2 and "train.jsonl:2 again" in result.stderr
    assert not out.exists()
    unreviewed = {**review("a", "Army tests a missile", [], "neutral", 2), "annotations": []}
    tasks = [review("b", "Stocks rise", [], "neutral", 1), unreviewed]
    result, _ = run(cli, tmp_path, audited, tasks, "skip_unlabelled=true")
    assert result.returncode == 0, result.stderr
    assert "1 rows reviewed: 1 corrected, 0 confirmed, 1 unreviewed tasks skipped" in result.stderr


def test_a_number_the_rewrite_would_change_is_refused(tmp_path, cli):
    path = tmp_path / "train.jsonl"
    path.write_text(
        '{"id": "b", "text": "Stocks rise", "topics": [], "tone": "neutral", '
        '"w": 19.999999999999999999}\n',
        "utf-8",
    )
    result, out = run(cli, tmp_path, path, [review("b", "Stocks rise", [], "positive")])
    assert (
        result.returncode == 2 and "field 'w'" in result.stderr and "train.jsonl:1" in result.stderr
    )
    assert "by hand" in result.stderr and not out.exists()
    confirmed, out = run(cli, tmp_path, path, [review("b", "Stocks rise", [], "neutral")])
    assert confirmed.returncode == 0 and out.read_bytes() == path.read_bytes()  # kept as written


@pytest.mark.parametrize("case", ["exists", "append", "same file", "shared id", "csv"])
def test_outputs_and_files_it_will_not_use(tmp_path, audited, cli, case):
    task = review("b", "Stocks rise", [], "neutral")
    export = write_json(tmp_path / "review-export.json", [task])
    out = tmp_path / "train.v2.jsonl"
    args = [f"input={export}", f"corrects={audited}", f"output={out}"]
    if case == "exists":
        out.write_text("keep me\n")
    elif case == "append":
        args.append("append=true")
    elif case == "same file":
        args[2] = f"output={audited}"
    elif case == "shared id":
        audited.write_bytes(AUDITED.replace(b'"id": "c"', b'"id": "b"'))
    else:
        csv_file = tmp_path / "train.csv"
        csv_file.write_text("id,text,topics,tone\nb,Stocks rise,[],neutral\n")
        args[1] = f"corrects={csv_file}"
    result = cli("topictone.train.label", "import", *args)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    expected = {
        "exists": "name an output that does not exist",
        "append": "name an output that does not exist",
        "same file": "output",
        "shared id": "id 'b' is also on line 2",
        "csv": "as JSONL",
    }[case]
    assert expected in result.stderr
    assert audited.read_bytes() in (AUDITED, AUDITED.replace(b'"id": "c"', b'"id": "b"'))
    assert out.read_text() == "keep me\n" if case == "exists" else not out.exists()


NUMBERS = ["1E2", "-0", "0.1", "7", "12345678901234567890123", "2.50"]  # values a rewrite keeps
CHANGED = ["19.999999999999999999", "1e400"]  # values no float holds as written
WORDS = st.text(alphabet="abc XYZ रक्षा", min_size=1, max_size=12).filter(str.strip)


@st.composite
def audited_files(draw) -> tuple[bytes, list[dict], bool]:
    """A JSONL file of rows in varied spellings, the reviews of some rows, and whether a
    reviewed row holds a number no rewrite can keep."""
    n = draw(st.integers(1, 6))
    lines, rows, unkeepable = [], [], False
    for i in range(n):
        topics = draw(st.lists(st.sampled_from(SCHEMA.topics), unique=True))
        tone = draw(st.sampled_from(SCHEMA.tones))
        text = f"{draw(WORDS)} {i}"
        number = draw(st.sampled_from(NUMBERS + CHANGED))
        sep = draw(st.sampled_from([",", ", "]))
        fields = [f'"id":"r{i}"', f'"text":{json.dumps(text, ensure_ascii=draw(st.booleans()))}']
        fields += [f'"topics":{json.dumps(topics)}', f'"tone":"{tone}"', f'"n":{number}']
        fields = draw(st.permutations(fields))
        lines.append("{" + sep.join(fields) + "}" + draw(st.sampled_from(["", "\r"])))
        if draw(st.booleans()):
            lines.append("")
        review = draw(st.none() | st.tuples(st.lists(st.sampled_from(SCHEMA.topics), unique=True),
                                             st.sampled_from(SCHEMA.tones)))  # fmt: skip
        if review is not None:
            rows.append({"id": f"r{i}", "text": text, "answer": review})
            changed = (sorted(review[0], key=SCHEMA.topics.index), review[1]) != (
                sorted(topics, key=SCHEMA.topics.index),
                tone,
            )
            unkeepable |= changed and number in CHANGED
    return "\n".join(lines).encode("utf-8"), rows, unkeepable


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(audited_files())
def test_fuzzed_reviews_change_only_the_reviewed_labels(cli, case):
    data, reviews, unkeepable = case
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        audited = root / "train.jsonl"
        audited.write_bytes(data)
        tasks = [review(r["id"], r["text"], *r["answer"], i + 1) for i, r in enumerate(reviews)]
        result, out = run(cli, root, audited, tasks)
        if not reviews or unkeepable:
            assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
            assert not out.exists()
            return
        assert result.returncode == 0, result.stderr
        before, after = data.split(b"\n"), out.read_bytes().split(b"\n")
        assert len(before) == len(after)
        answers = {r["id"]: r["answer"] for r in reviews}
        for old, new in zip(before, after, strict=True):
            if not old.strip():
                assert new == old
                continue
            was, now = json.loads(old, parse_float=Decimal), json.loads(new, parse_float=Decimal)
            assert old.endswith(b"\r") == new.endswith(b"\r")
            if was["id"] not in answers:
                assert new == old
                continue
            topics, tone = answers[was["id"]]
            assert now["topics"] == [t for t in SCHEMA.topics if t in topics] or new == old
            assert now["tone"] == tone
            assert {k: v for k, v in now.items() if k not in ("topics", "tone")} == {
                k: v for k, v in was.items() if k not in ("topics", "tone")
            }
