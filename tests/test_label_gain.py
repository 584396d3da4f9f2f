"""benchmarks.quality.label_gain on the demo corpus: the draws, the curve and its table."""

from __future__ import annotations

import sys
from unittest import mock

import numpy as np
import pytest
from conftest import ROOT

if str(ROOT) not in sys.path:  # the benchmarks live beside the package, not inside it
    sys.path.insert(0, str(ROOT))

from benchmarks.common import configured_splits, targets, tfidf_fitter
from benchmarks.quality import label_gain

SIZES = [60, 240]  # 240: the whole demo train set, drawn alike by every seed
SEEDS = [0, 1]


@pytest.fixture(scope="module")
def demo():
    _, schema, splits = configured_splits(["data=demo"])
    return schema, splits["train"], splits["dev"]


@pytest.fixture(scope="module")
def points(demo):
    schema, train, dev = demo

    def make(seed: int):  # small settings: the same code path in seconds
        return tfidf_fitter(char_ngram_range=(2, 4), min_df=2, seed=seed)

    def quick_interval(*args):  # the same intervals from 200 resamples: seconds, not tens
        from topictone.train.metrics.compute import bootstrap_interval

        return bootstrap_interval(*args, rounds=200)

    with mock.patch.object(label_gain, "bootstrap_interval", quick_interval):
        return label_gain.learning_curve(make, schema, train, dev, SIZES, SEEDS, folds=2)


def test_draw_is_seeded_and_gives_each_label_positives(demo):
    schema, train, _ = demo
    topic_true, tone_true = targets(train)
    n_tones = len(schema.tones)
    first = label_gain.draw(topic_true, tone_true, 30, 0, n_tones)
    assert len(first) == len(set(first)) == 30
    assert np.array_equal(first, label_gain.draw(topic_true, tone_true, 30, 0, n_tones))
    assert not np.array_equal(first, label_gain.draw(topic_true, tone_true, 30, 1, n_tones))
    floor = 30 // (2 * (len(schema.topics) + n_tones))  # 2 of each with 3 topics, 3 tones
    assert topic_true[first].sum(axis=0).min() >= floor
    assert np.bincount(tone_true[first], minlength=n_tones).min() >= floor
    everything = label_gain.draw(topic_true, tone_true, 10_000, 0, n_tones)
    assert np.array_equal(everything, np.arange(len(train)))


def test_curve_has_one_point_per_size_and_seed_within_bounds(demo, points):
    schema, train, _ = demo
    assert [(p.size, p.seed) for p in points] == [(s, d) for s in SIZES for d in SEEDS]
    for p in points:
        assert sum(p.positives[t] for t in schema.tones) == p.size
        figures = [p.topics_f1, p.tone_f1, *p.topics_ci, *p.tone_ci]
        figures += [*p.per_topic.values(), *p.per_tone.values()]
        assert all(0.0 <= f <= 1.0 for f in figures), p
        assert p.topics_ci[0] <= p.topics_ci[1] and p.tone_ci[0] <= p.tone_ci[1]
        assert p.topics_f1 == pytest.approx(np.mean(list(p.per_topic.values())))
        assert list(p.per_topic) == list(schema.topics)
        assert list(p.per_tone) == list(schema.tones)
    whole = [p for p in points if p.size == len(train)]
    assert whole[0].topics_f1 == whole[1].topics_f1  # the same texts, the same model
    assert any(p.topics_f1 > 0 for p in points)


def test_table_rows_columns_and_gains(points):
    lines = label_gain.curve_table(points)
    assert len(lines) == 2 + len(SIZES)
    assert lines[1] == "|---|---|---|---|---|"
    cells = [line.strip("| ").split(" | ") for line in lines]
    cells[1] = ["separator"] * 5
    assert all(len(c) == 5 for c in cells)
    assert cells[0][1] == "size" and "gain per 100 labels" in cells[0][4]
    assert [int(c[1]) for c in cells[2:]] == SIZES

    def figures(cell: str) -> tuple[float, float, float]:
        mean, spread = cell.rstrip("]").split(" [")
        low, high = spread.split("–")
        return float(mean), float(low), float(high)

    means = []
    for c in cells[2:]:
        for cell in (c[2], c[3]):
            mean, low, high = figures(cell)
            assert 0.0 <= low <= mean <= high <= 1.0
        means.append((figures(c[2])[0], figures(c[3])[0]))
    assert cells[2][4] == "–, –"
    topics_gain, tone_gain = (float(g) for g in cells[3][4].split(", "))
    per_100 = 100 / (SIZES[1] - SIZES[0])
    assert topics_gain == pytest.approx((means[1][0] - means[0][0]) * per_100, abs=2e-3)
    assert tone_gain == pytest.approx((means[1][1] - means[0][1]) * per_100, abs=2e-3)
    runs = label_gain.runs_table(points)
    assert len(runs) == 2 + len(points)
