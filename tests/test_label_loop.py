"""benchmarks.quality.label_loop on a tiny synthetic corpus: the loop reveals a pool label
only once its text is picked, grows the labelled set by one step a round, and writes its
files (TF-IDF, two rounds of picks per strategy)."""

from __future__ import annotations

import dataclasses
import json
import sys
from unittest import mock

import numpy as np
import pytest
from conftest import ROOT

if str(ROOT) not in sys.path:  # the benchmarks live beside the package, not inside it
    sys.path.insert(0, str(ROOT))

from benchmarks.common import read_labelled, tfidf_fitter, train_config
from benchmarks.quality import label_loop

START, STEP, UNTIL = 24, 8, 40  # two rounds of picks after the start
WORDS = {
    "defence": "army navy missile frigate",
    "counterterrorism": "terror militants bomb attack",
    "technology": "software chip startup satellite",
    "positive": "praised record growth wins",
    "neutral": "announced meeting scheduled report",
    "negative": "crisis killed losses collapse",
}
FILLER = "city river market school road train court garden festival bridge".split()


def corpus(n: int, seed: int, prefix: str) -> list[dict]:
    """``n`` rows, each topic in about a third of them and every tone alike, each text
    its labels' words and a few random filler words (no two texts alike)."""
    rng = np.random.default_rng(seed)
    topics, tones = list(WORDS)[:3], list(WORDS)[3:]
    rows = []
    for i in range(n):
        mine = [t for j, t in enumerate(topics) if (i + j) % 3 == 0 or rng.random() < 0.15]
        tone = tones[i % 3]
        words = [w for label in (*mine, tone) for w in rng.choice(WORDS[label].split(), 2)]
        words += [*rng.choice(FILLER, 3), f"{prefix}{i}"]
        rng.shuffle(words)
        rows.append({"id": f"{prefix}-{i}", "text": " ".join(words), "topics": mine, "tone": tone})
    return rows


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    """Every strategy's run from one start draw, each sampler call recorded."""
    folder = tmp_path_factory.mktemp("loop")
    cfg = train_config(
        ["data=demo", "decision.calibrate=true", "decision.thresholds=f1", "decision.use_dev=false"]
    )
    from topictone.infer import LabelSchema

    schema = LabelSchema.from_dict(cfg.labels)
    splits = {}
    for name, n, seed in (("train", 72, 0), ("dev", 30, 1)):
        path = folder / f"{name}.jsonl"
        path.write_text("\n".join(json.dumps(r) for r in corpus(n, seed, name)), encoding="utf-8")
        splits[name] = read_labelled(path, cfg.data, schema)
    settings = label_loop.Settings(START, STEP, UNTIL, UNTIL, folds=2, max_similarity=0.6)
    calls = []
    real = label_loop.product_sampler

    def spy(strategy: str, max_similarity: float, seed: int):
        chooser = real(strategy, max_similarity, seed)

        def pick(texts, scores, n):
            chosen = chooser.pick(texts, scores, n)
            calls.append((strategy, list(texts), [texts[i] for i in chosen], len(scores)))
            return chosen

        return mock.Mock(pick=pick)

    def quick_interval(*args):  # 100 resamples: the same intervals' code path, fast
        from topictone.train.metrics.compute import bootstrap_interval

        return bootstrap_interval(*args, rounds=100)

    make = label_loop.SharedEncoder(lambda seed: tfidf_fitter(char_ngram_range=(2, 4), seed=seed))
    simulation = label_loop.Simulation(
        "tfidf", make, schema, cfg.decision, splits["train"], splits["dev"], settings
    )
    with (
        mock.patch.object(label_loop, "product_sampler", spy),
        mock.patch.object(label_loop, "bootstrap_interval", quick_interval),
    ):
        rounds = simulation.run(0)
    return splits["train"], settings, rounds, calls, folder


def test_labelled_set_grows_by_one_step_and_no_text_twice(simulated):
    train, _, rounds, _, _ = simulated
    assert [r.strategy for r in rounds] == [s for s in label_loop.STRATEGIES for _ in range(3)]
    every_id = set(train["id"])
    for strategy in label_loop.STRATEGIES:
        mine = [r for r in rounds if r.strategy == strategy]
        assert [r.point.size for r in mine] == [START, START + STEP, UNTIL]
        assert [len(r.added) for r in mine] == [START, STEP, STEP]
        revealed = [i for r in mine for i in r.added]
        assert len(revealed) == len(set(revealed)) == UNTIL  # no text picked twice
        assert set(revealed) <= every_id
        labels = mine[-1].point.positives
        assert sum(labels[t] for t in ("positive", "neutral", "negative")) == UNTIL
    starts = [r.added for r in rounds if r.point.size == START]
    assert starts[0] == starts[1] == starts[2]  # one start draw, its fit shared
    assert len({r.point.topics_f1 for r in rounds if r.point.size == START}) == 1


def test_sampler_sees_only_the_pool_and_picks_leave_it(simulated):
    train, _, rounds, calls, _ = simulated
    text_of = dict(zip(train["id"], train["text"], strict=True))
    assert [c[0] for c in calls] == [s for s in label_loop.STRATEGIES for _ in range(2)]
    for strategy in label_loop.STRATEGIES:
        mine = [r for r in rounds if r.strategy == strategy]
        picks = [c for c in calls if c[0] == strategy]
        for before, after, (_, texts, picked, scored) in zip(
            mine[:-1], mine[1:], picks, strict=True
        ):
            labelled = {text_of[i] for r in mine[: mine.index(after)] for i in r.added}
            assert len(labelled) == before.point.size
            assert set(texts) == set(train["text"]) - labelled  # the pool is the rest
            assert scored == len(texts) == len(train) - before.point.size
            assert picked == [text_of[i] for i in after.added]  # revealed once picked
            assert not set(picked) & labelled


def test_oracle_refuses_a_second_reveal(simulated):
    train = simulated[0]
    oracle = label_loop.Oracle(train)
    assert oracle.reveal([3, 1]) == [train["id"][3], train["id"][1]]
    assert len(oracle.labelled()) == 2 and 3 not in oracle.pool()
    with pytest.raises(ValueError, match="twice"):
        oracle.reveal([1])


def test_figures_tables_and_files(simulated, tmp_path):
    _, settings, rounds, _, _ = simulated
    for r in rounds:
        figures = [r.point.topics_f1, r.point.tone_f1, *r.point.per_topic.values()]
        assert all(0.0 <= f <= 1.0 for f in figures)
    facts = {"command": "test", "cpu": "CPU: test", "wall_s": 1.0, "method": "test"}
    lines = label_loop.write_outputs(tmp_path, rounds, settings, facts)
    table = label_loop.strategy_table(rounds, "tfidf")
    assert len(table) == 2 + 3 and table[0].count("|") == 1 + 1 + 6
    assert any(line.startswith("tfidf topics: random reaches") for line in lines)
    for name in ("label_loop.md", "results.json"):
        assert (tmp_path / name).stat().st_size > 0
    pytest.importorskip("matplotlib")
    assert (tmp_path / "label_loop.png").stat().st_size > 0
    again = tmp_path / "again"
    label_loop.main(["--tables-from", str(tmp_path / "results.json"), "--out", str(again)])
    assert (again / "label_loop.md").read_text() == (tmp_path / "label_loop.md").read_text()


def test_runs_of_other_seeds_join_and_a_seed_twice_is_refused(simulated, tmp_path):
    _, settings, seed0, _, _ = simulated
    seed1 = [  # another seed's run: every figure moved, so a lost seed shows in the means
        dataclasses.replace(
            r, point=dataclasses.replace(r.point, seed=1, topics_f1=r.point.topics_f1 / 2)
        )
        for r in seed0
    ]
    rounds = seed0 + seed1
    facts = {"command": "test", "cpu": "CPU: test", "wall_s": 1.0, "method": "test"}
    whole = tmp_path / "whole"
    label_loop.write_outputs(whole, rounds, settings, facts)
    halves = []
    for seed in (0, 1):
        half = tmp_path / f"seed{seed}"
        mine = [r for r in rounds if r.point.seed == seed]
        label_loop.write_outputs(half, mine, settings, facts)
        halves.append(str(half / "results.json"))
    joined = tmp_path / "joined"
    label_loop.main(["--tables-from", *halves, "--out", str(joined)])
    tables = (joined / "label_loop.md").read_text().split("## Every round")[0]
    assert (
        tables.split("\n")[5:]
        == (whole / "label_loop.md").read_text().split("## Every round")[0].split("\n")[5:]
    )
    with pytest.raises(SystemExit, match="also in"):
        label_loop.main(["--tables-from", halves[0], halves[0], "--out", str(joined)])


def test_the_transformer_round_takes_the_labels_a_strategy_had(simulated, tmp_path):
    from benchmarks.quality import label_loop_transformer as last

    _, settings, rounds, _, _ = simulated
    facts = {"command": "test", "cpu": "CPU: test", "wall_s": 1.0, "method": "test"}
    label_loop.write_outputs(tmp_path, rounds, settings, facts)
    saved = json.loads((tmp_path / "results.json").read_text("utf-8"))
    for strategy in label_loop.STRATEGIES:
        mine = [r for r in rounds if r.strategy == strategy]
        for upto, r in enumerate(mine, 1):
            ids = last.labelled_ids(saved, "tfidf", 0, strategy, r.point.size)
            assert ids == [i for earlier in mine[:upto] for i in earlier.added]
    with pytest.raises(SystemExit, match="no tfidf seed 0 random round at 7 labels"):
        last.labelled_ids(saved, "tfidf", 0, "random", 7)
