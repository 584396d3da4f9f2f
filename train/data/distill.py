"""Distillation and self-training: a teacher scores unlabelled news, the student learns
from the gold labels plus the teacher's scores.

The teacher is any saved model folder (by default the gold ensemble). The pool is the
news texts of configured public data sets, deduplicated against every configured split
and against each other. A pool row carries the teacher's topic probabilities and tone
distribution as soft targets (what the transformer trains on), its decisions as hard
labels (what the scikit-learn kinds train on), a weight, and per head a confidence filter.
A second round is the same run with the student's folder as the teacher.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import datasets
import numpy as np

from topictone import infer
from topictone.infer.artifact import sha256
from topictone.infer.errors import TopictoneError
from topictone.infer.predictors.base import Predictor
from topictone.infer.predictors.embedding_cache import EmbeddingCache, fingerprint
from topictone.infer.schema import LabelSchema
from topictone.train.data.labelled import append_rows
from topictone.train.data.weak import read_source, source_text, text_key
from topictone.train.fitters.backbone import cache_root

TARGETS = ("soft", "hard")  # soft: the teacher's probabilities; hard: its decisions


def load_pool(
    sources: Iterable[Mapping[str, Any]], exclude_texts: Iterable[str], seed: int
) -> dict[str, list[str]]:
    """Up to ``max_rows`` texts of each source (a seeded sample), none repeating a text of
    ``exclude_texts`` or an earlier pool text: columns ``id``, ``text``, ``source``."""
    seen = {text_key(t) for t in exclude_texts}
    pool: dict[str, list[str]] = {"id": [], "text": [], "source": []}
    for source in sources:
        raw = read_source(source, "distill pool source")
        limit = source.get("max_rows", len(raw))
        taken = repeated = short = 0
        for i in np.random.default_rng(seed).permutation(len(raw)).tolist():
            if taken >= limit:
                break
            text = source_text(raw[i], source["text"])
            key = text_key(text)
            if len(text.strip()) < int(source.get("min_chars", 20)):
                short += 1
                continue
            if key in seen:
                repeated += 1
                continue
            seen.add(key)
            pool["id"].append(f"{source['name']}:{i}")
            pool["text"].append(text)
            pool["source"].append(source["name"])
            taken += 1
        print(
            f"distill pool {source['name']}: {taken} texts; left out {repeated} repeating a "
            f"configured split or an earlier pool text, {short} shorter than min_chars",
            flush=True,
        )
    return pool


def _load_teacher(path: str | Path) -> Predictor:
    folder = Path(path)
    if not (folder / "topictone.json").is_file():
        raise TopictoneError(
            f"distill.teacher={path}: not a topictone model folder; train the teacher first "
            "(the default: python -m benchmarks.quality.gold_quality, which writes "
            "runs/gold-quality/ensemble/model)"
        )
    # Public texts can be longer than a user's: the teacher reads the first 100k characters.
    return infer.load(folder, limits={"on_long_text": "truncate"})


def _teacher_scores(
    teacher: Predictor, folder: str | Path, texts: list[str], cache_dir: str | Path | None
) -> tuple[np.ndarray, np.ndarray]:
    """The teacher's (topic probabilities, tone distributions) for ``texts``; kept on disk
    by teacher and text, so a sweep over student settings scores the pool once."""
    root = cache_root(cache_dir)
    key = fingerprint(Path(folder), {"limits": teacher.limits.max_chars})
    cache = EmbeddingCache(root / "teacher-scores" / f"{key}.sqlite")
    n_topics = len(teacher.schema.topics)

    def score(batch: list[str]) -> np.ndarray:
        topics, tones = teacher.predict_scores(batch)
        return np.hstack([topics, tones])

    both = cache.get_or_embed(texts, score).reshape(len(texts), -1)
    return both[:, :n_topics], both[:, n_topics:]


def pool_rows(
    pool: Mapping[str, list[str]],
    scores: tuple[np.ndarray, np.ndarray],
    thresholds: Mapping[str, float],
    schema: LabelSchema,
    targets: str = "soft",
    weight: float = 1.0,
    min_confidence: float = 0.0,
) -> dict[str, list]:
    """Training columns for the pool: hard labels from the teacher's decisions, soft ones
    from its scores; a head whose teacher confidence is under ``min_confidence`` is unknown
    for that row (a topic's confidence: its distance from the threshold, scaled to [0, 1])."""
    if targets not in TARGETS:
        raise TopictoneError(
            f"distill.targets must be one of {', '.join(TARGETS)}, got {targets!r}"
        )
    if not 0.0 <= float(min_confidence) <= 1.0:
        raise TopictoneError(f"distill.min_confidence must be in [0, 1], got {min_confidence}")
    topic_p, tone_p = scores
    cut = np.array([thresholds[t] for t in schema.topics])
    decided = (topic_p >= cut).astype(float)
    above, below = np.maximum(1 - cut, 1e-6), np.maximum(cut, 1e-6)
    margin = np.where(decided > 0, (topic_p - cut) / above, (cut - topic_p) / below)
    tone = tone_p.argmax(axis=1)
    if targets == "hard":
        topic_soft, tone_soft = decided, np.eye(len(schema.tones))[tone]
    else:
        topic_soft, tone_soft = topic_p, tone_p
    n = len(pool["id"])
    return {
        "id": list(pool["id"]),
        "text": list(pool["text"]),
        "source": list(pool["source"]),
        "topics": decided.tolist(),
        "tone": tone.tolist(),
        "topics_soft": topic_soft.astype(float).tolist(),
        "tone_soft": tone_soft.astype(float).tolist(),
        "topics_known": (margin.min(axis=1) >= min_confidence).tolist(),
        "tone_known": (tone_p.max(axis=1) >= min_confidence).tolist(),
        "weight": [float(weight)] * n,
    }


def mix_distilled(
    train: datasets.Dataset,
    cfg: Mapping[str, Any],
    schema: LabelSchema,
    exclude_texts: Iterable[str],
    seed: int,
    run_dir: Path | None = None,
) -> datasets.Dataset:
    """``train`` plus the pool scored by ``cfg.teacher``; the pool's ids and teacher scores
    are written to ``run_dir/distill/pool.jsonl`` (the run folder says what it learnt from)."""
    teacher = _load_teacher(cfg["teacher"])
    if teacher.schema != schema:
        raise TopictoneError(
            f"distill.teacher={cfg['teacher']}: its labels {teacher.schema.to_dict()} differ "
            f"from the configured ones {schema.to_dict()}"
        )
    pool = load_pool(cfg["pool"], exclude_texts, seed)
    if not pool["id"]:
        raise TopictoneError("distill: the pool is empty (every text repeats a gold split?)")
    print(f"distill: teacher {cfg['teacher']} scores {len(pool['id'])} pool texts", flush=True)
    scores = _teacher_scores(teacher, cfg["teacher"], pool["text"], cfg.get("cache_dir"))
    rows = pool_rows(
        pool,
        scores,
        teacher.thresholds,
        schema,
        cfg.get("targets", "soft"),
        cfg.get("weight", 1.0),
        cfg.get("min_confidence", 0.0),
    )
    kept = (sum(rows["topics_known"]), sum(rows["tone_known"]))
    decided = np.asarray(rows["topics"]).sum(axis=0).astype(int).tolist()
    positives = dict(zip(schema.topics, decided, strict=True))
    tones = np.bincount(rows["tone"], minlength=len(schema.tones)).tolist()
    print(
        f"distill: topics known for {kept[0]}, tone for {kept[1]} of {len(rows['id'])}; teacher "
        f"decides {positives}, tones {dict(zip(schema.tones, tones, strict=True))}",
        flush=True,
    )
    if run_dir is not None:
        write_pool(run_dir / "distill" / "pool.jsonl", rows, teacher.kind)
    return append_rows(train, rows, schema)


def write_pool(path: Path, rows: Mapping[str, list], teacher_kind: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for i, row_id in enumerate(rows["id"]):
            record = {"id": row_id, "teacher": teacher_kind}
            record.update({k: rows[k][i] for k in rows if k not in ("id", "text")})
            handle.write(json.dumps(record) + "\n")


def teacher_identity(teacher: str | None) -> dict[str, str] | None:
    """What the manifest records of the teacher: its folder and its manifest's hash."""
    if not teacher:
        return None
    return {"path": str(teacher), "topictone.json": sha256(Path(teacher) / "topictone.json")}
