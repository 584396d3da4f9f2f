"""``python -m topictone.train.label select``: which unlabelled texts to label next.

A model scores the pool; the texts it is least sure of teach it most per label. Three
strategies, each a small object with ``pick(texts, scores, n)``:

- ``uncertainty``: each topic ranks the pool by its score's distance to its threshold,
  the tone by its margin (top tone probability minus the second); the topics take turns
  (a text's best rank under any topic), and topics and tone share the picks (the better
  of the two); only the topic's distance when ``topic=`` names one.
- ``diverse``: the uncertainty order, skipping each text as similar as ``max_similarity``
  (cosine over character n-gram TF-IDF) to one already picked, so one story told by ten
  outlets is labelled once, not ten times.
- ``random``: a seeded uniform sample, the baseline the others must beat.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from omegaconf import DictConfig
from scipy.stats import rankdata
from sklearn.feature_extraction.text import TfidfVectorizer
from tqdm.auto import tqdm

from topictone import infer
from topictone.infer.cli import CONF_DIR, command, integer_options, settings_of
from topictone.infer.errors import TopictoneError
from topictone.infer.io.outputs import check_output
from topictone.infer.predictors.base import Predictor
from topictone.infer.text import normalize
from topictone.train.label import studio
from topictone.train.label.texts import (
    RUN_CONFIG,
    KnownTexts,
    Pool,
    PoolReader,
    as_list,
    run_config,
    run_labels,
)

_STRATEGIES = ("uncertainty", "diverse", "random")


@dataclass
class PoolScores:
    """Calibrated scores of the pool: topics (n × topics), tones (n × tones), and each
    topic's threshold (topics,)."""

    topics: np.ndarray
    tones: np.ndarray
    thresholds: np.ndarray

    def __len__(self) -> int:
        return len(self.topics)


def percentile(values: np.ndarray) -> np.ndarray:
    """Each value's rank scaled to [0, 1] (ties share their mean rank)."""
    if len(values) < 2:
        return np.zeros(len(values))
    return (rankdata(values) - 1) / (len(values) - 1)


def certainty(scores: PoolScores, topic: int | None = None) -> np.ndarray:
    """Each text's certainty as a rank in [0, 1]: 0 the text the model is least sure of.

    Ranks, not raw values, are combined: a distance to a threshold and a tone margin
    are on different scales, and a rank treats them alike. The topics' side is each text's
    best rank under any topic, so the topics take turns and a rare topic's borderline texts
    are not crowded out; the text's place is then the better of its topics' rank and its
    tone's, so topics and tone share the picks. A mean of ranks would favour texts unsure
    of everything at once (BENCHMARKS.md, "The labelling loop, per strategy")."""
    distance = np.abs(scores.topics - scores.thresholds)
    if topic is not None:
        return percentile(distance[:, topic])
    tones = np.sort(scores.tones, axis=1)
    margin = tones[:, -1] - tones[:, -2]
    topic_ranks = np.column_stack([rankdata(column) for column in distance.T])
    return percentile(np.minimum(rankdata(topic_ranks.min(axis=1)), rankdata(margin)))


def _most_uncertain(certainty: np.ndarray, n: int) -> np.ndarray:
    """The ``n`` least certain texts, ties in pool order."""
    return np.lexsort((np.arange(len(certainty)), certainty))[:n]


class UncertaintySampler:
    def __init__(self, topic: int | None = None) -> None:
        self.topic = topic

    def pick(self, texts: list[str], scores: PoolScores, n: int) -> np.ndarray:
        return _most_uncertain(certainty(scores, self.topic), n)


class DiverseSampler:
    """The most uncertain texts in turn, each skipped when its cosine similarity (character
    n-gram TF-IDF) to a text already picked reaches ``max_similarity``: the uncertainty
    order is kept, only near-duplicates of a pick give way."""

    def __init__(self, topic: int | None = None, max_similarity: float = 0.6) -> None:
        self.topic = topic
        self.max_similarity = max_similarity

    def pick(self, texts: list[str], scores: PoolScores, n: int) -> np.ndarray:
        check_similarity(self.max_similarity)
        order = _most_uncertain(certainty(scores, self.topic), len(texts))
        block = self.block(n)
        try:
            vectorizer = self.space(texts, order, n)
        except ValueError:  # no text has a character n-gram: none is like another
            return order[:n]
        chosen: list[int] = []
        picked = None  # the chosen texts' vectors
        for start in range(0, len(order), block):
            rows = order[start : start + block]
            vectors = vectorizer.transform([_fold(texts[i]) for i in rows])
            kept = _unlike(vectors, picked, self.max_similarity, n - len(chosen))
            chosen += rows[kept].tolist()
            picked = vectors[kept] if picked is None else sp.vstack([picked, vectors[kept]], "csr")
            if len(chosen) == n:
                break
        return np.asarray(chosen, dtype=int)

    @staticmethod
    def block(n: int) -> int:
        return min(max(4 * n, 256), _BLOCK)

    def space(self, texts: list[str], order: np.ndarray, n: int) -> TfidfVectorizer:
        """The vectorizer similarities are measured in: its n-gram weights (IDF) come from
        the first block of the uncertainty order, the texts competing for the picks."""
        return char_vectorizer().fit([_fold(texts[i]) for i in order[: self.block(n)]])


_BLOCK = 2048  # candidates compared at once: a block x block similarity matrix stays small
# Characters of a text compared: a story is told long before this (every gold text is
# shorter), and it bounds the vectorizer's work on a hostile pool: a block of 2,048
# texts of random characters this long took 300 s and 3.1 GiB.
SIMILARITY_CHARS = 10_000


def check_similarity(value: object) -> None:
    """``max_similarity``, from a config or a caller: a number in (0, 1]."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not number or not 0 < value <= 1:  # type: ignore[operator]
        raise TopictoneError(f"max_similarity must be a number in (0, 1], got {value!r}")


def _fold(text: str) -> str:
    return normalize(text[:SIMILARITY_CHARS]).casefold()


def char_vectorizer() -> TfidfVectorizer:
    """Character 2-4-grams within words: another outlet's wording of one headline shares
    most of them, in Hindi and English alike."""
    return TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), sublinear_tf=True)


def char_vectors(texts: list[str]):
    """L2-normalised character n-gram TF-IDF rows of ``texts``."""
    return char_vectorizer().fit_transform([_fold(t) for t in texts])


def _unlike(vectors, picked, max_similarity: float, n: int) -> np.ndarray:
    """Up to ``n`` rows of ``vectors`` in order, each less similar than ``max_similarity``
    to every row of ``picked`` and to every row kept before it."""
    allowed = np.ones(vectors.shape[0], dtype=bool)
    if picked is not None and picked.shape[0]:
        allowed = (vectors @ picked.T).max(axis=1).toarray().ravel() < max_similarity
    among = (vectors @ vectors.T).toarray()
    kept: list[int] = []
    for row in np.flatnonzero(allowed):
        if len(kept) == n:
            break
        if not kept or among[row, kept].max() < max_similarity:
            kept.append(int(row))
    return np.asarray(kept, dtype=int)


class RandomSampler:
    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def pick(self, texts: list[str], scores: PoolScores, n: int) -> np.ndarray:
        rng = np.random.default_rng(self.seed)
        return rng.choice(len(texts), size=min(n, len(texts)), replace=False)


def sampler(strategy: str, topic: int | None, max_similarity: float, seed: int):
    if strategy == "uncertainty":
        return UncertaintySampler(topic)
    if strategy == "diverse":
        return DiverseSampler(topic, max_similarity)
    if strategy == "random":
        return RandomSampler(seed)
    raise TopictoneError(f"unknown strategy {strategy!r} (use {', '.join(_STRATEGIES)})")


def _topic_index(predictor: Predictor, topic: str | None) -> int | None:
    if topic is None:
        return None
    if topic not in predictor.schema.topics:
        raise TopictoneError(
            f"topic={topic!r} is not a topic of the model ({', '.join(predictor.schema.topics)})"
        )
    return predictor.schema.topics.index(topic)


def _score_pool(
    predictor: Predictor, texts: list[str], batch_size: int, progress: bool = True
) -> PoolScores:
    """Calibrated scores, a batch at a time so a large pool shows its progress."""
    topics, tones = [], []
    with tqdm(total=len(texts), desc="scoring", unit="texts", disable=not progress) as bar:
        for start in range(0, len(texts), batch_size):
            topic, tone = predictor.predict_scores(texts[start : start + batch_size])
            topics.append(topic)
            tones.append(tone)
            bar.update(len(topic))
    thresholds = np.array([predictor.thresholds[t] for t in predictor.schema.topics])
    return PoolScores(np.concatenate(topics), np.concatenate(tones), thresholds)


def _build_tasks(
    predictor: Predictor,
    pool: Pool,
    scores: PoolScores,
    picked: np.ndarray,
    certainty: np.ndarray,
    version: str,
) -> list[dict]:
    """Tasks for the picked rows, in pick order; each prediction's score is its text's
    certainty rank (Label Studio shows the lowest score first)."""
    chosen = (scores.topics[picked], scores.tones[picked])
    predictions = predictor.postprocess(chosen, predictor.thresholds)
    tasks = []
    for index, decided in zip(picked.tolist(), predictions, strict=True):
        row = pool.rows[index]
        guess = studio.prediction(version, certainty[index], decided.topics, decided.tone)
        tasks.append(studio.task(row.text, row.id, row.source, row.extra, [guess]))
    return tasks


def _read_pool(cfg: DictConfig, predictor: Predictor) -> Pool:
    """The pool's texts less repeats and texts of the excluded (labelled) files."""
    known = KnownTexts.of_files(as_list(cfg.exclude), cfg.exclude_field)
    reader = PoolReader(
        cfg.text_field, cfg.id_field, as_list(cfg.carry), cfg.pool_format, predictor.limits
    )
    pool = reader.read(as_list(cfg.pool), known)
    print(pool.summary(), file=sys.stderr, flush=True)
    if not pool.rows:
        raise TopictoneError("no text left to choose from (every pool text is labelled already)")
    return pool


def run_descriptions(model: str) -> dict[str, str]:
    """The topic descriptions the model was trained with (``labels.descriptions`` in its
    run's config), which become the labelling config's hover hints."""
    found = run_config(model)
    if found is None or "labels" not in found[0]:  # no run config, or another tool's
        return {}
    config, run = found
    return dict(run_labels(config, run / RUN_CONFIG).get("descriptions") or {})


def _checked(cfg: DictConfig) -> None:
    """The numeric options, typed on the command line: one line for a wrong one."""
    integer_options(cfg, {"n": 1, "batch_size": 1, "seed": 0})
    check_similarity(cfg.max_similarity)


@command(f"{CONF_DIR}/label", "select")
def main(cfg: DictConfig) -> None:
    _checked(cfg)
    output = Path(cfg.output)
    config_file = studio.config_path(output)
    for target in (output, config_file):  # before the model loads: fail fast
        check_output(target, as_list(cfg.pool))
    trained = run_descriptions(cfg.model)  # before the model loads: fail fast
    predictor = infer.load(cfg.model, limits=settings_of(cfg.limits, "limits"))
    topic = _topic_index(predictor, cfg.topic)
    chooser = sampler(cfg.strategy, topic, float(cfg.max_similarity), int(cfg.seed))
    descriptions = {**trained, **settings_of(cfg.descriptions, "descriptions")}
    config_xml = studio.labelling_config(predictor.schema, descriptions)
    pool = _read_pool(cfg, predictor)
    texts = [row.text for row in pool.rows]
    scores = _score_pool(predictor, texts, int(cfg.batch_size), bool(cfg.progress))
    picked = np.asarray(chooser.pick(texts, scores, int(cfg.n)))
    version = studio.model_version(cfg.model, predictor.kind)
    tasks = _build_tasks(predictor, pool, scores, picked, certainty(scores, topic), version)
    studio.write_texts(
        {output: studio.tasks_json(tasks), config_file: config_xml}, as_list(cfg.pool)
    )
    print(
        f"{len(tasks)} tasks ({cfg.strategy}) -> {output}; config -> {config_file}", file=sys.stderr
    )


if __name__ == "__main__":
    main()
