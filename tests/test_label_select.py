"""`python -m topictone.train.label select`: which texts are chosen, and the Label Studio files."""

from __future__ import annotations

import hashlib
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from conftest import DEMO
from hypothesis import given, settings
from hypothesis import strategies as st

from topictone.train.label import studio
from topictone.train.label.selection import (
    DiverseSampler,
    PoolScores,
    RandomSampler,
    UncertaintySampler,
    certainty,
    char_vectors,
)

# The import format of a task with predictions (Label Studio 1.x "Basic Label Studio
# JSON format" + "Import pre-annotated data"): what select and audit write.
CHOICES_RESULT = {
    "type": "object",
    "required": ["from_name", "to_name", "type", "value"],
    "properties": {
        "from_name": {"enum": ["topics", "tone"]},
        "to_name": {"const": "text"},
        "type": {"const": "choices"},
        "value": {
            "type": "object",
            "required": ["choices"],
            "properties": {"choices": {"type": "array", "items": {"type": "string"}}},
        },
    },
}
TASKS_SCHEMA = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["data", "predictions"],
        "additionalProperties": False,
        "properties": {
            "data": {
                "type": "object",
                "required": ["text", "topictone_id", "source"],
                "properties": {"text": {"type": "string", "minLength": 1}},
            },
            "predictions": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "required": ["model_version", "score", "result"],
                    "additionalProperties": False,
                    "properties": {
                        "model_version": {"type": "string"},
                        "score": {"type": "number"},
                        "result": {"type": "array", "items": CHOICES_RESULT},
                    },
                },
            },
        },
    },
}


def check_tasks(tasks: list, config_xml: str) -> None:
    """The tasks follow the import format, and every choice exists in the config."""
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(tasks, TASKS_SCHEMA)
    allowed = config_choices(config_xml)
    for task in tasks:
        for prediction in task["predictions"]:
            controls = [r["from_name"] for r in prediction["result"]]
            assert controls.count("tone") == 1 and controls.count("topics") <= 1
            for result in prediction["result"]:
                assert result["value"]["choices"]  # an empty control has no result at all
                assert set(result["value"]["choices"]) <= allowed[result["from_name"]]


def config_choices(config_xml: str) -> dict[str, set[str]]:
    root = ET.fromstring(config_xml)
    assert root.tag == "View"
    text = root.find("Text")
    assert text is not None and text.get("name") == "text" and text.get("value") == "$text"
    controls = {c.get("name"): c for c in root.findall("Choices")}
    assert controls["topics"].get("choice") == "multiple"
    assert controls["tone"].get("choice") == "single"
    assert controls["tone"].get("required") == "true"
    assert all(c.get("toName") == "text" for c in controls.values())
    return {name: {x.get("value") for x in c.findall("Choice")} for name, c in controls.items()}


def test_no_topic_means_no_topics_result():
    assert studio.choices_result([], "neutral") == [
        {
            "from_name": "tone",
            "to_name": "text",
            "type": "choices",
            "value": {"choices": ["neutral"]},
        }
    ]
    assert [r["from_name"] for r in studio.choices_result(["defence"], "neutral")] == [
        "topics",
        "tone",
    ]


# --- the strategies, on scores made up for the purpose ---------------------------------


def scores(topics: list[list[float]], tones: list[list[float]]) -> PoolScores:
    return PoolScores(np.array(topics), np.array(tones), np.array([0.5, 0.5, 0.5]))


def test_uncertainty_puts_texts_near_a_threshold_with_a_flat_tone_first():
    pool = scores(
        [[0.95, 0.02, 0.01], [0.51, 0.02, 0.01], [0.9, 0.45, 0.0], [0.99, 0.01, 0.0]],
        [[0.9, 0.05, 0.05], [0.34, 0.33, 0.33], [0.5, 0.4, 0.1], [0.98, 0.01, 0.01]],
    )
    assert UncertaintySampler().pick([""] * 4, pool, 4).tolist() == [1, 2, 0, 3]
    # Only the named topic's distance counts: row 2 is nearest the second threshold.
    assert UncertaintySampler(topic=1).pick([""] * 4, pool, 1).tolist() == [2]
    # Row 1 is nearest the first topic's threshold and has the flattest tone; row 2
    # nearest the second topic's: each first of a topic, 1 first of the tone too.
    sure = certainty(pool)
    assert sure[1] == 0.0 < sure[2] < sure[0] < sure[3] == 1.0


def test_uncertainty_lets_topics_and_tone_take_turns():
    # One topic: distance ranks A1 C2 E3 D4 B5, tone margin ranks B1 C2 E3 A4 D5. Each
    # side's nearest text comes first (A for the topic, B for the tone), then C; a sum
    # of ranks would have put C, second for both, before either.
    pool = PoolScores(
        np.array([[0.51], [0.9], [0.52], [0.7], [0.6]]),
        np.array(
            [
                [0.65, 0.35, 0.0],
                [0.34, 0.33, 0.33],
                [0.4, 0.38, 0.22],
                [0.75, 0.25, 0.0],
                [0.5, 0.4, 0.1],
            ]
        ),
        np.array([0.5]),
    )
    assert UncertaintySampler().pick([""] * 5, pool, 5).tolist() == [0, 1, 2, 4, 3]


def test_each_strategy_picks_n_distinct_texts():
    rng = np.random.default_rng(1)
    texts = [f"headline number {i} about {w}" for i, w in enumerate(rng.integers(0, 99, 40))]
    pool = PoolScores(rng.random((40, 3)), rng.dirichlet([1, 1, 1], 40), np.full(3, 0.5))
    for strategy in (UncertaintySampler(), DiverseSampler(), RandomSampler(seed=3)):
        picked = strategy.pick(texts, pool, 7)
        assert len(picked) == 7 and len(set(picked.tolist())) == 7
    assert len(UncertaintySampler().pick(texts, pool, 100)) == 40  # fewer texts than n


def test_random_is_seeded():
    pool = PoolScores(np.zeros((50, 3)), np.full((50, 3), 1 / 3), np.full(3, 0.5))
    texts = [str(i) for i in range(50)]
    first = RandomSampler(seed=5).pick(texts, pool, 10).tolist()
    assert first == RandomSampler(seed=5).pick(texts, pool, 10).tolist()
    assert first != RandomSampler(seed=6).pick(texts, pool, 10).tolist()


def near_duplicate_pairs(texts: list[str], picked: np.ndarray) -> int:
    vectors = char_vectors([texts[i] for i in picked])
    similar = (vectors @ vectors.T).toarray()
    return int((np.triu(similar, k=1) > 0.8).sum())


def test_diverse_picks_fewer_near_duplicates_than_uncertainty():
    # Twenty rewordings of one story, each a little less certain than any distinct text:
    # uncertainty takes the story ten times, diversity spreads over distinct stories.
    story = [f"Army inducts new light tank regiment in Ladakh, report {i}" for i in range(20)]
    others = [
        "Startup unveils Hindi voice assistant for farmers",
        "Police arrest two suspects after blast at railway station",
        "मौसम विभाग ने भारी बारिश की चेतावनी जारी की",
        "Navy test-fires supersonic cruise missile from destroyer",
        "सरकार ने सेमीकंडक्टर संयंत्र के लिए मंजूरी दी",
        "Cyber attack hits hospital records across three states",
        "Cricket board names new coach ahead of the series",
        "Security forces kill three militants in Kupwara encounter",
        "Satellite launch postponed after a technical glitch",
        "Air force receives first batch of indigenous trainers",
        "आतंकी साजिश नाकाम, हथियारों का जखीरा बरामद",
        "Chip maker opens design centre in Bengaluru",
    ]
    texts = story + others
    distance = np.r_[np.linspace(0.0, 0.05, 20), np.linspace(0.06, 0.3, len(others))]
    pool = PoolScores(
        (0.5 + distance)[:, None].repeat(3, axis=1),
        np.tile([0.34, 0.33, 0.33], (len(texts), 1)),
        np.full(3, 0.5),
    )
    by_uncertainty = UncertaintySampler().pick(texts, pool, 10)
    diverse = DiverseSampler().pick(texts, pool, 10)
    assert near_duplicate_pairs(texts, by_uncertainty) >= 30  # all ten are the story
    assert near_duplicate_pairs(texts, diverse) == 0
    # the story once (its most uncertain wording), then the distinct texts in order
    assert diverse.tolist() == [0, *range(20, 29)]


@settings(max_examples=40, deadline=None)
@given(
    stories=st.lists(st.integers(0, 7), min_size=1, max_size=300),
    noise=st.lists(st.floats(0, 1), min_size=300, max_size=300),
    n=st.integers(1, 40),
    max_similarity=st.sampled_from([0.3, 0.6, 0.9, 0.99]),
)
def test_diverse_keeps_uncertainty_order_and_skips_only_near_duplicates(
    stories, noise, n, max_similarity
):
    # Pools of a few stories told many times (over several blocks when large): each pick
    # is the most uncertain text not yet too like an earlier pick.
    words = ["army tank", "cyber attack", "रक्षा सौदा", "rocket launch", "आतंकी हमला"]
    texts = [f"{words[s % 5]} report {s} day {i % 3}" for i, s in enumerate(stories)]
    distance = np.asarray(noise[: len(texts)])
    pool = PoolScores(
        (0.5 + distance)[:, None].repeat(3, axis=1),
        np.tile([0.34, 0.33, 0.33], (len(texts), 1)),
        np.full(3, 0.5),
    )
    sampler = DiverseSampler(max_similarity=max_similarity)
    picked = sampler.pick(texts, pool, n).tolist()
    order = np.lexsort((np.arange(len(texts)), certainty(pool)))  # uncertainty's order
    vectors = sampler.space(texts, order, n).transform([t.casefold() for t in texts])
    similar = (vectors @ vectors.T).toarray()
    expected: list[int] = []
    for row in order.tolist():  # the rule, the slow way: one text at a time, whole pool
        if len(expected) < n and all(similar[row, p] < max_similarity for p in expected):
            expected.append(row)
    assert picked == expected
    assert all(similar[a, b] < max_similarity for a in picked for b in picked if a != b)


# --- the command -------------------------------------------------------------------------


def write_pool(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    return path


@pytest.fixture
def pool(tmp_path: Path) -> Path:
    """Fresh texts, plus one demo train text written otherwise and one repeat."""
    demo_text = json.loads((DEMO / "train.jsonl").read_text("utf-8").splitlines()[0])["text"]
    rows = [
        {"id": f"p{i}", "text": text, "lang": "en", "unit": "headline"}
        for i, text in enumerate(
            [
                "Army test-fires a new anti-tank missile in Rajasthan",
                "Startup launches an AI chip for phones",
                "Police foil terror plot, three held with explosives",
                "Monsoon arrives early in Kerala",
                "Navy commissions a stealth frigate",
                "Hackers target a power grid with ransomware",
                "Parliament passes the new budget",
                "Drone makers win a defence contract",
            ]
        )
    ]
    rows.append({"id": "dup-of-train", "text": "  " + demo_text.upper() + "  "})
    rows.append({"id": "repeat", "text": "startup   launches an AI chip for phones"})
    return write_pool(tmp_path / "pool.jsonl", rows)


@pytest.mark.parametrize("strategy", ["uncertainty", "diverse", "random"])
def test_select_writes_n_tasks_and_the_config(tfidf_run, pool, tmp_path, cli, strategy):
    out = tmp_path / "tasks.json"
    model = tfidf_run / "model"
    result = cli(
        "topictone.train.label", "select", f"model={model}", f"pool={pool}", "n=5",
        f"strategy={strategy}", f"output={out}", "max_similarity=0.5",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "10 rows read, 1 repeated in the pool, 1 already labelled, 8 to choose from" in (
        result.stderr
    )
    tasks = json.loads(out.read_text("utf-8"))
    config_xml = (tmp_path / "tasks.config.xml").read_text("utf-8")
    check_tasks(tasks, config_xml)
    assert len(tasks) == 5
    ids = [t["data"]["topictone_id"] for t in tasks]
    assert len(set(ids)) == 5 and not {"dup-of-train", "repeat"} & set(ids)
    for task in tasks:  # the row's own id, where it came from, and the carried fields
        line = int(task["data"]["topictone_id"][1:]) + 1
        assert task["data"]["source"] == f"{pool}:{line}"
        assert task["data"]["lang"] == "en" and task["data"]["unit"] == "headline"
    digest = hashlib.sha256((model / "topictone.json").read_bytes()).hexdigest()
    assert {p["model_version"] for t in tasks for p in t["predictions"]} == {f"tfidf-{digest[:12]}"}
    assert config_choices(config_xml) == {
        "topics": {"defence", "counterterrorism", "technology"},
        "tone": {"positive", "neutral", "negative"},
    }
    if strategy == "uncertainty":  # the least certain first, as Label Studio sorts
        assert [t["predictions"][0]["score"] for t in tasks] == sorted(
            t["predictions"][0]["score"] for t in tasks
        )


def test_select_with_no_exclusion_offers_the_split_text(tfidf_run, pool, tmp_path, cli):
    out = tmp_path / "tasks.json"
    result = cli(
        "topictone.train.label", "select", f"model={tfidf_run / 'model'}", f"pool={pool}", "n=20",
        f"output={out}", "exclude=[]",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    ids = {t["data"]["topictone_id"] for t in json.loads(out.read_text("utf-8"))}
    assert "dup-of-train" in ids and "repeat" not in ids and len(ids) == 9


def select_hints(model, pool, tmp_path, cli, *args: str) -> dict:
    """The hover hint of each choice in the labelling config `select` writes."""
    out = tmp_path / "tasks.json"
    result = cli(
        "topictone.train.label", "select", f"model={model}", f"pool={pool}", "n=2",
        f"output={out}", *args,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    root = ET.fromstring((tmp_path / "tasks.config.xml").read_text("utf-8"))
    return {c.get("value"): c.get("hint") for c in root.iter("Choice")}


def test_topic_descriptions_become_hints(tfidf_run, pool, tmp_path, cli):
    """Given to select; or the labels.descriptions the model was trained with, which a
    `descriptions.<topic>` given to select replaces."""
    import shutil

    from omegaconf import OmegaConf

    given = '+descriptions.defence="Armed forces, weapons & procurement"'
    hints = select_hints(tfidf_run / "model", pool, tmp_path, cli, given)
    assert hints["defence"] == "Armed forces, weapons & procurement"
    assert hints["technology"] is None
    run = tmp_path / "run"
    shutil.copytree(tfidf_run / "model", run / "model")
    config = OmegaConf.load(tfidf_run / "config.yaml")
    config.labels.descriptions = {"technology": "Phones, chips", "defence": "Armed forces"}
    OmegaConf.save(config, run / "config.yaml")
    hints = select_hints(run / "model", pool, tmp_path, cli, "+descriptions.defence=Soldiers")
    assert hints["technology"] == "Phones, chips" and hints["defence"] == "Soldiers"
    (run / "config.yaml").write_text("hydra: {job: {name: other}}\n", "utf-8")  # not ours
    assert select_hints(run / "model", pool, tmp_path, cli)["technology"] is None


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "labels:\n  descriptions:\n    defence: ${oc.env:HOME}",
            "field 'labels.descriptions.defence' holds an interpolation",
        ),
        ("labels: [1, 2]", "field 'labels' must be a mapping"),
        ("labels: {descriptions: [a]}", "field 'labels.descriptions' must map topics to texts"),
        ("labels: {a: [", "not a readable run config"),
        ("a: " + "[" * 400 + "]" * 400, "not a readable run config"),
        ("- 1", "a run config is a mapping, got list"),
        ("# " + "x" * (1 << 20), "bytes; a run config is at most 1048576"),
    ],
)
def test_a_hostile_run_config_is_one_line(tfidf_run, pool, tmp_path, cli, text, message):
    """The run config beside a model folder is a user's file: read as bounded plain data
    (no resolver copies the environment into the labelling config), one line otherwise."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tfidf_run / "model", run / "model")
    (run / "config.yaml").write_text(text + "\n", "utf-8")
    out = tmp_path / "tasks.json"
    args = [f"model={run / 'model'}", f"pool={pool}", "n=2", f"output={out}"]
    result = cli("topictone.train.label", "select", *args)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: {run / 'config.yaml'}: ")
    assert message in result.stderr and not out.exists()


@pytest.mark.parametrize(
    "row,args,message",
    [
        ({"txt": "no text field"}, [], "pool.jsonl:2: field 'text': missing"),
        ({"text": "   "}, [], "pool.jsonl:2: field 'text': empty text"),
        ({"id": "a", "text": "same id again"}, [], "pool.jsonl:2: field 'id': id 'a' repeats"),
        ({"text": "fine"}, ["topic=sports"], "topic='sports' is not a topic of the model"),
        ({"text": "fine"}, ["strategy=smart"], "unknown strategy 'smart'"),
        ({"text": "fine"}, ["exclude=[missing.jsonl]"], "missing.jsonl: no such file"),
        ({"text": "fine"}, ["n=0"], "n must be an integer of at least 1, got 0"),
        ({"text": "fine"}, ["n=abc"], "n must be an integer of at least 1, got 'abc'"),
        ({"text": "fine"}, ["batch_size=1.5"], "batch_size must be an integer of at least 1"),
        ({"text": "fine"}, ["seed=-1"], "seed must be an integer of at least 0"),
        ({"text": "fine"}, ["max_similarity=abc"], "max_similarity must be a number in (0, 1]"),
        ({"text": "fine"}, ["max_similarity=0"], "max_similarity must be a number in (0, 1]"),
        ({"text": "fine"}, ["max_similarity=true"], "max_similarity must be a number in (0, 1]"),
        ({"text": "fine"}, ["+descriptions.sport=x"], "descriptions: unknown topic 'sport'"),
    ],
)
def test_select_errors_are_one_line_and_write_nothing(tfidf_run, tmp_path, cli, row, args, message):
    pool = write_pool(tmp_path / "pool.jsonl", [{"id": "a", "text": "Army parade"}, row])
    out = tmp_path / "tasks.json"
    result = cli(
        "topictone.train.label", "select", f"model={tfidf_run / 'model'}", f"pool={pool}",
        f"output={out}",
        *args,
    )  # fmt: skip
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and message in lines[-1], result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pool.jsonl"]


def test_help_lists_the_subcommands_and_unknown_ones_fail(cli):
    result = cli("train.label", "--help")
    assert result.returncode == 0
    for name in ("select", "import", "audit", "push", "pull"):
        assert (
            f"  {name} " in result.stdout
            and f"python -m topictone.train.label {name} " in result.stdout
        )
    wrong = cli("train.label", "sellect")
    assert wrong.returncode == 2
    assert wrong.stderr.strip() == (
        "error: unknown subcommand 'sellect' "
        "(use select, import, audit, push, pull; --help lists them)"
    )


def test_python_m_topictone_label_is_the_same_command():
    """The short name runs the same commands, in a fresh interpreter as a user would."""
    from conftest import run_cli

    short, long = run_cli("topictone.label", "--help"), run_cli("train.label", "--help")
    assert short.returncode == long.returncode == 0 and short.stdout == long.stdout
    wrong = run_cli("topictone.label", "sellect")
    assert wrong.returncode == 2 and "unknown subcommand 'sellect'" in wrong.stderr


def test_the_topics_take_turns_and_share_the_picks_with_the_tone():
    # Rows 0-2 are each nearest one topic's threshold; row 3 has the flattest tone; row 4
    # is second nearest for every topic (a mean over topics would favour it).
    pool = scores(
        [[0.5, 0.9, 0.9], [0.9, 0.5, 0.9], [0.9, 0.9, 0.5], [0.99, 0.99, 0.99], [0.6, 0.6, 0.6]],
        [[0.9, 0.1, 0.0], [0.9, 0.1, 0.0], [0.9, 0.1, 0.0], [0.34, 0.33, 0.33], [0.9, 0.1, 0.0]],
    )
    picked = UncertaintySampler().pick([""] * 5, pool, 5).tolist()
    assert set(picked[:4]) == {0, 1, 2, 3} and picked[-1] == 4
    assert picked.index(3) < 2  # the tone's first pick comes with the topics' first


def test_diverse_compares_a_bounded_prefix_of_each_text():
    """Two texts that differ only past SIMILARITY_CHARS are one text to ``diverse``."""
    from topictone.train.label.selection import SIMILARITY_CHARS

    story = "Army inducts new light tank regiment in Ladakh. " * (SIMILARITY_CHARS // 48 + 1)
    texts = [story + "x" * 5000, story + "सेना " * 2000, "Chip maker opens design centre"]
    pool = PoolScores(
        np.array([[0.5], [0.51], [0.6]]), np.tile([0.34, 0.33, 0.33], (3, 1)), np.array([0.5])
    )
    assert DiverseSampler(max_similarity=0.999).pick(texts, pool, 3).tolist() == [0, 2]
