"""Distillation: the pool, the teacher's targets, their mixing, and students of each kind."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import DEMO, FAST_TFIDF, compose_train, run_config, tiny_transformer_overrides
from omegaconf import open_dict

from topictone import infer
from topictone.infer.errors import TopictoneError
from topictone.infer.schema import LabelSchema

SCHEMA = LabelSchema(
    ["defence", "counterterrorism", "technology"], ["positive", "neutral", "negative"]
)


def demo_texts(split: str) -> list[str]:
    return [json.loads(line)["text"] for line in (DEMO / f"{split}.jsonl").open(encoding="utf-8")]


def write_pool(folder: Path) -> list[dict]:
    """Two pool sources: a CSV of headlines (one repeating demo dev, one repeated, one too
    short) and a JSONL of sentences."""
    folder.mkdir(parents=True, exist_ok=True)
    dev_text = demo_texts("dev")[0]
    (folder / "heads.csv").write_text(
        "headline,section\n"
        '"Navy inducts a new stealth frigate built at home",a\n'
        '"Startup unveils a cheaper chip for phones and laptops",b\n'
        '"Navy inducts a new stealth frigate built at home",c\n'
        '"Short one",d\n'
        f'"{dev_text}",e\n'
        '"Police foil a bomb plot at the railway station",f\n',
        encoding="utf-8",
    )
    (folder / "sentences.jsonl").write_text(
        "\n".join(
            json.dumps({"sentence": s})
            for s in (
                "The ministry said the budget for the air force would rise this year",
                "Hackers stole the data of millions of bank customers overnight",
                "Startup unveils a cheaper chip for phones and laptops!",  # repeats the CSV
            )
        )
        + "\n",
        encoding="utf-8",
    )
    return [
        {
            "name": "heads",
            "builder": "csv",
            "path": str(folder / "heads.csv"),
            "text": ["headline"],
        },
        {
            "name": "sentences",
            "builder": "json",
            "path": str(folder / "sentences.jsonl"),
            "text": ["sentence"],
            "max_rows": 1,
        },
    ]


def test_pool_is_deduplicated_against_splits_and_itself(tmp_path, capsys):
    from topictone.train.data.distill import load_pool

    sources = write_pool(tmp_path)
    pool = load_pool(sources, demo_texts("dev"), seed=0)
    out = capsys.readouterr().out
    assert sorted(pool["text"][:3]) == sorted(
        [
            "Navy inducts a new stealth frigate built at home",
            "Startup unveils a cheaper chip for phones and laptops",
            "Police foil a bomb plot at the railway station",
        ]
    )
    assert pool["source"] == ["heads"] * 3 + ["sentences"]  # max_rows=1 for the second
    assert "Startup unveils" not in pool["text"][3]
    assert "distill pool heads: 3 texts; left out 2 repeating" in out
    assert "1 shorter than min_chars" in out
    assert len(set(pool["id"])) == 4
    missing = {**sources[0], "path": str(tmp_path / "nope.csv")}
    with pytest.raises(TopictoneError, match=r"distill pool source heads: .*nope\.csv not found"):
        load_pool([missing], [], seed=0)


def test_teacher_targets_follow_its_thresholds_and_confidence():
    from topictone.train.data.distill import pool_rows

    pool = {"id": ["a", "b", "c"], "text": ["x", "y", "z"], "source": ["s"] * 3}
    topic_p = np.array([[0.95, 0.30, 0.10], [0.50, 0.05, 0.85], [0.45, 0.25, 0.90]])
    tone_p = np.array([[0.8, 0.1, 0.1], [0.4, 0.35, 0.25], [0.1, 0.1, 0.8]])
    thresholds = {"defence": 0.4, "counterterrorism": 0.2, "technology": 0.5}
    rows = pool_rows(pool, (topic_p, tone_p), thresholds, SCHEMA, weight=0.5, min_confidence=0.5)
    assert rows["topics"] == [[1, 1, 0], [1, 0, 1], [1, 1, 1]]  # the teacher's cuts, not 0.5
    assert rows["tone"] == [0, 0, 2]
    assert np.allclose(rows["topics_soft"], topic_p) and np.allclose(rows["tone_soft"], tone_p)
    # Confidence: every topic at least half-way from its cut to 0 or 1; the top tone >= 0.5.
    assert rows["topics_known"] == [False, False, False]
    assert rows["tone_known"] == [True, False, True]
    assert rows["weight"] == [0.5] * 3
    sure = pool_rows(pool, (topic_p, tone_p), dict.fromkeys(SCHEMA.topics, 0.5), SCHEMA)
    assert all(sure["topics_known"]) and all(sure["tone_known"])  # min_confidence 0: all kept
    hard = pool_rows(pool, (topic_p, tone_p), thresholds, SCHEMA, targets="hard")
    assert hard["topics_soft"] == hard["topics"] and hard["tone_soft"][1] == [1.0, 0.0, 0.0]
    with pytest.raises(TopictoneError, match=r"distill\.targets must be one of soft, hard"):
        pool_rows(pool, (topic_p, tone_p), thresholds, SCHEMA, targets="warm")
    with pytest.raises(TopictoneError, match=r"min_confidence must be in \[0, 1\]"):
        pool_rows(pool, (topic_p, tone_p), thresholds, SCHEMA, min_confidence=2)


def test_appended_rows_give_labelled_rows_soft_targets_too():
    import datasets

    from topictone.train.data.labelled import append_rows, partial_labels, targets

    train = datasets.Dataset.from_dict(
        {
            "id": ["g1", "g2"],
            "text": ["gold one", "gold two"],
            "topics": [[1, 0, 0], [0, 0, 0]],
            "tone": [2, 1],
            "lang": ["en", "hi"],
        }
    )
    rows = {
        "id": ["p1"],
        "text": ["pool one"],
        "source": ["news"],
        "topics": [[0.0, 1.0, 0.0]],
        "tone": [0],
        "topics_soft": [[0.2, 0.7, 0.1]],
        "tone_soft": [[0.6, 0.3, 0.1]],
        "topics_known": [True],
        "tone_known": [False],
        "weight": [0.25],
    }
    mixed = append_rows(train, rows, SCHEMA)
    assert mixed["topics_soft"][:2] == [[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
    assert mixed["tone_soft"][:2] == [[0.0, 0.0, 1.0], [0.0, 1.0, 0.0]]
    assert mixed["tone_soft"][2] == [0.6, 0.3, 0.1]
    assert mixed["lang"] == ["en", "hi", None] and mixed["source"] == [None, None, "news"]
    known_topics, known_tone, weight = partial_labels(mixed)
    assert known_topics.tolist() == [True, True, True]
    assert known_tone.tolist() == [True, True, False]
    assert weight.tolist() == [1.0, 1.0, 0.25]
    assert targets(mixed)[0].tolist() == [[1, 0, 0], [0, 0, 0], [0, 1, 0]]


def test_soft_tone_targets_equal_hard_ones_when_one_hot():
    torch = pytest.importorskip("torch")
    from topictone.infer.predictors.network import TopicToneModel

    class Encoder(torch.nn.Module):
        config = type("Config", (), {"hidden_size": 4})()

        def forward(self, input_ids, attention_mask):
            hidden = input_ids.unsqueeze(-1).float().expand(-1, -1, 4)
            return type("Out", (), {"last_hidden_state": hidden * torch.arange(1.0, 5.0)})()

    torch.manual_seed(0)
    model = TopicToneModel(Encoder(), 3, 3, dropout=0.0, tone_class_weight=[0.5, 1.0, 3.0])
    inputs = {
        "input_ids": torch.tensor([[1, 2], [3, 4], [2, 2]]),
        "attention_mask": torch.ones(3, 2, dtype=torch.long),
        "doc_index": torch.tensor([0, 1, 2]),
        "topic_labels": torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]),
        "tone_weight": torch.tensor([1.0, 0.5, 2.0]),
    }
    hard = model(**inputs, tone_labels=torch.tensor([0, 2, 1]))["loss"]
    one_hot = torch.eye(3)[[0, 2, 1]]
    soft = model(**inputs, tone_labels=one_hot)["loss"]
    assert torch.allclose(hard, soft)
    smoothed = model(**inputs, tone_labels=0.8 * one_hot + 0.2 / 3)["loss"]
    assert not torch.allclose(hard, smoothed)


def distill_config(overrides: list[str], teacher: Path, sources: list[dict], **settings):
    cfg = compose_train([*overrides, "distill=news", f"distill.teacher={teacher}"])
    with open_dict(cfg):
        cfg.distill.pool = sources
        cfg.distill.cache_dir = settings.pop("cache_dir")
        cfg.distill.update(settings)
    return cfg


def test_tfidf_student_learns_from_the_teacher(tfidf_run, tmp_path, capsys, monkeypatch):
    from topictone.infer.predictors.base import Predictor

    teacher = tfidf_run / "model"
    sources = write_pool(tmp_path / "pool")
    calls = []
    original = Predictor.predict_scores
    monkeypatch.setattr(
        Predictor,
        "predict_scores",
        lambda self, texts: calls.append(len(texts)) or original(self, texts),
    )
    cfg = distill_config(FAST_TFIDF, teacher, sources, cache_dir=str(tmp_path / "cache"))
    run_config(cfg, tmp_path / "run")
    out = capsys.readouterr().out
    assert f"distill: teacher {teacher} scores 4 pool texts" in out
    assert calls[0] == 4  # the pool, before training and evaluation score dev and test
    pool = [json.loads(line) for line in (tmp_path / "run/distill/pool.jsonl").open()]
    assert [p["source"] for p in pool] == ["heads"] * 3 + ["sentences"]
    assert all(len(p["topics_soft"]) == 3 and len(p["tone_soft"]) == 3 for p in pool)
    assert pool[0]["teacher"] == "tfidf" and "text" not in pool[0]
    manifest = json.loads((tmp_path / "run/manifest.json").read_text())
    assert manifest["teacher"]["path"] == str(teacher)
    assert sources[0]["path"] in manifest["data"]
    assert "distill" in (tmp_path / "run/config.yaml").read_text()
    # The teacher's scores are cached: a second run scores no pool text.
    calls.clear()
    run_config(cfg, tmp_path / "again")
    assert 4 not in calls  # dev and test are scored through the score tree, the pool not at all
    again = [json.loads(line) for line in (tmp_path / "again/distill/pool.jsonl").open()]
    assert np.allclose([p["topics_soft"] for p in again], [p["topics_soft"] for p in pool])
    assert infer.load(tmp_path / "run/model").predict(["Navy frigate"])[0].topic_scores


def test_transformer_student_trains_on_soft_targets(
    tfidf_run, tiny_backbone, tmp_path, monkeypatch
):
    from topictone.train.fitters import transformer

    seen = []
    original = transformer.WindowCollator.__call__

    def spy(self, features):
        batch = original(self, features)
        seen.append(batch["tone_labels"])
        return batch

    monkeypatch.setattr(transformer.WindowCollator, "__call__", spy)
    sources = write_pool(tmp_path / "pool")
    overrides = [*tiny_transformer_overrides(tiny_backbone), "model.epochs=1"]  # every row once
    cfg = distill_config(
        overrides, tfidf_run / "model", sources, cache_dir=str(tmp_path / "cache"), weight=0.5
    )
    run_config(cfg, tmp_path / "run")
    soft = [t for t in seen if t.is_floating_point()]  # training batches; dev keeps class ids
    assert sum(len(t) for t in soft) == 240 + 4 and all(t.shape[1] == 3 for t in soft)
    assert any(not torch_is_one_hot(t) for t in soft)  # the pool rows carry teacher scores
    assert infer.load(tmp_path / "run/model").kind == "transformer"


def torch_is_one_hot(tone: object) -> bool:
    return bool(((tone == 0) | (tone == 1)).all())


def test_distillation_errors(tfidf_run, tmp_path, capsys):
    sources = write_pool(tmp_path / "pool")
    cache = str(tmp_path / "cache")
    cfg = distill_config(FAST_TFIDF, tmp_path / "nothing", sources, cache_dir=cache)
    with pytest.raises(TopictoneError, match="not a topictone model folder; train the teacher"):
        run_config(cfg, tmp_path / "a")
    from topictone.train.data.distill import mix_distilled

    other = LabelSchema(SCHEMA.topics, ["negative", "neutral", "positive"])  # tones reordered
    settings = {"teacher": str(tfidf_run / "model"), "pool": sources, "cache_dir": cache}
    with pytest.raises(TopictoneError, match=r"its labels .* differ from the configured ones"):
        mix_distilled(None, settings, other, [], seed=0)
    cfg = distill_config(FAST_TFIDF, tfidf_run / "model", sources[:1], cache_dir=cache)
    with open_dict(cfg):
        cfg.distill.pool[0]["max_rows"] = 0
    with pytest.raises(TopictoneError, match="the pool is empty"):
        run_config(cfg, tmp_path / "c")


def test_news_pool_preset_reads_the_raw_news(tmp_path):
    from conftest import SHARED

    from topictone.train.data.distill import load_pool

    cfg = compose_train(["experiment=gold_distilled"])
    assert cfg.distill.teacher == "runs/gold-quality/ensemble/model" and cfg.model.epochs == 2
    if not (SHARED / "data" / "raw").is_dir():
        pytest.skip("../shared/data/raw is absent: the news pool cannot be read")
    from conftest import ROOT

    sources = [{**s, "path": str(ROOT / s["path"]), "max_rows": 20} for s in cfg.distill.pool]
    pool = load_pool(sources, [], seed=13)
    assert len(pool["id"]) == 20 * len(sources)
    assert {"bbc-hindi-headlines", "bbc-news-english", "newsmtsc"} <= set(pool["source"])
