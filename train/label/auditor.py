"""Out-of-fold probabilities for labelled rows, rated by cleanlab: the audit's estimator.

Each row is scored by models that never saw it: the rows are split into ``folds`` (stratified
by tone), and a clone of each given fitter (TF-IDF, the run's own kind) is fitted on the
other folds. Each head's out-of-fold scores then go through a logistic regression on the
models' log-odds fitted on the given labels (stacking, as scikit-learn's
``StackingClassifier`` does; with one model, a calibration): on gold train with 5 % of
labels changed, stacking TF-IDF and the encoder this way found more changed rows in the
audit's top 5 % than TF-IDF alone or a weighted mean of the two (docs/labelling.md).

cleanlab rates each given label against those probabilities: every topic's self-confidence
(``cleanlab.multilabel_classification.rank.get_label_quality_scores_per_class``) and the
tone's (``cleanlab.rank.get_label_quality_scores``). One ranking combines them as the odds
that one of the row's labels was changed (:func:`flip_odds`). cleanlab's aggregated topic
quality and ``find_label_issues`` flags (``multi_label=True`` for topics) are kept too.
"""

from __future__ import annotations

import math
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import datasets
import numpy as np
from sklearn.base import clone
from sklearn.model_selection import StratifiedKFold

from topictone.infer.errors import TopictoneError
from topictone.infer.schema import LabelSchema
from topictone.train.data.labelled import targets
from topictone.train.fitters.base import Fitter
from topictone.train.fitters.tfidf import TfidfFitter

_FLOOR = 1e-6  # probabilities are clipped here before odds and logs


def check_counts(topic_true: np.ndarray, tone_true: np.ndarray, schema: LabelSchema, folds: int):
    """Every fold's model must see each label: each tone (folds are stratified by tone)
    and each topic's positives and negatives at least ``folds`` times."""
    for i, tone in enumerate(schema.tones):
        if (count := int((tone_true == i).sum())) < folds:
            raise TopictoneError(f"tone '{tone}' has {count} rows; folds={folds} needs {folds}")
    for i, topic in enumerate(schema.topics):
        positives = int(topic_true[:, i].sum())
        if min(positives, len(topic_true) - positives) < folds:
            raise TopictoneError(
                f"topic '{topic}' has {positives} positive rows of {len(topic_true)}; "
                f"folds={folds} needs at least {folds} positives and negatives"
            )


def flip_odds(per_topic: np.ndarray, tone: np.ndarray, n_tones: int) -> np.ndarray:
    """How much likelier each row's labels are if one label was changed than if none
    was, from cleanlab's self-confidences (the out-of-fold probability of each given
    label): a changed topic is any one of the topics, a changed tone any other tone.

    ``(1 - s) / s`` is the odds that a label with self-confidence ``s`` was changed; the
    topics' odds are averaged (one topic of T changed) and the tone's split over the
    other tones. Summing them compares a confident topic contradiction with a doubtful
    tone on one scale: ranking by the worse of two ranks spent half the review on
    tones, where a TF-IDF model is least sure, and found fewer errors (docs/labelling.md)."""
    topics = np.clip(per_topic, _FLOOR, 1.0)
    tones = np.clip(tone, _FLOOR, 1.0)
    return ((1 - topics) / topics).mean(axis=1) + (1 - tones) / ((n_tones - 1) * tones)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, _FLOOR, 1 - _FLOOR)
    return np.log(p / (1 - p))


def stack_topics(parts: Sequence[np.ndarray], truth: np.ndarray) -> np.ndarray:
    """Per topic, a logistic regression on the models' out-of-fold log-odds, fitted on
    the given labels, and its probabilities (stacking; with one model, calibration)."""
    columns = []
    for j in range(truth.shape[1]):
        x = np.column_stack([_logit(part[:, j]) for part in parts])
        columns.append(_stacker().fit(x, truth[:, j]).predict_proba(x)[:, 1])
    return np.column_stack(columns)


def stack_tone(parts: Sequence[np.ndarray], truth: np.ndarray) -> np.ndarray:
    """A multinomial logistic regression on the models' out-of-fold log-probabilities."""
    x = np.column_stack([np.log(np.clip(part, _FLOOR, 1.0)) for part in parts])
    return _stacker().fit(x, truth).predict_proba(x)


def _stacker():
    from sklearn.linear_model import LogisticRegression

    # A few coefficients on thousands of rows: all but unpenalised.
    return LogisticRegression(C=100.0, max_iter=1000)


class LabelAuditor:
    """Out-of-fold probabilities and cleanlab label quality for labelled rows.

    ``fitters``: unfitted fitters (default: TF-IDF with its default settings); each is
    cloned per fold. After ``fit``: ``topic_probs_`` / ``tone_probs_`` (out of fold,
    stacked), ``topic_quality_`` / ``tone_quality_`` (cleanlab, 0 worst to 1 best), ``topic_issue_``
    / ``tone_issue_`` (flagged by ``find_label_issues``), ``quality_`` (``1 / (1 + flip
    odds)``, lower is more suspect) and ``ranking_`` (row indices, most suspect first)."""

    def __init__(self, folds: int = 5, seed: int = 0, fitters: Sequence[Fitter] | None = None):
        self.folds = folds
        self.seed = seed
        self.fitters = fitters

    def fit(self, dataset: datasets.Dataset, schema: LabelSchema) -> LabelAuditor:
        self.schema_ = schema
        topic_true, tone_true = targets(dataset)
        check_counts(topic_true, tone_true, schema, self.folds)
        parts = [
            self._out_of_fold(fitter, dataset, schema, tone_true)
            for fitter in (self.fitters or [TfidfFitter()])
        ]
        self.topic_probs_ = stack_topics([p[0] for p in parts], topic_true)
        self.tone_probs_ = stack_tone([p[1] for p in parts], tone_true)
        self.rate(topic_true, tone_true)
        return self

    def _out_of_fold(
        self, fitter: Fitter, dataset: datasets.Dataset, schema: LabelSchema, tone_true: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        topics = np.zeros((len(dataset), len(schema.topics)))
        tones = np.zeros((len(dataset), len(schema.tones)))
        splits = StratifiedKFold(self.folds, shuffle=True, random_state=self.seed)
        with tempfile.TemporaryDirectory(prefix="topictone-audit-") as work:
            for k, (rows, held) in enumerate(splits.split(np.zeros(len(tone_true)), tone_true)):
                print(f"audit: {fitter.kind}, fold {k + 1}/{self.folds}", file=sys.stderr)
                fold = clone(fitter)
                if "seed" in fold.get_params():
                    fold.set_params(seed=self.seed)
                fold.fit(dataset.select(rows), schema, workdir=Path(work) / f"fold{k}")
                topics[held], tones[held] = fold.predictor_.predict_scores(
                    dataset.select(held)["text"]
                )
        return topics, tones

    def rate(self, topic_true: np.ndarray, tone_true: np.ndarray) -> LabelAuditor:
        """cleanlab's ratings of the given labels against ``topic_probs_`` / ``tone_probs_``."""
        from cleanlab.filter import find_label_issues
        from cleanlab.multilabel_classification.rank import (
            get_label_quality_scores as multilabel_quality,
        )
        from cleanlab.multilabel_classification.rank import get_label_quality_scores_per_class
        from cleanlab.rank import get_label_quality_scores

        topic_sets = [np.flatnonzero(row).tolist() for row in topic_true]
        self.topic_quality_ = multilabel_quality(topic_sets, self.topic_probs_)
        self.tone_quality_ = get_label_quality_scores(tone_true, self.tone_probs_)
        # n_jobs=1: cleanlab's default forks a process pool, which hung for minutes on a
        # busy machine; at these sizes one process is as fast, and the flags are the same.
        self.topic_issue_ = find_label_issues(
            topic_sets, self.topic_probs_, multi_label=True, n_jobs=1
        )
        self.tone_issue_ = find_label_issues(tone_true, self.tone_probs_, n_jobs=1)
        per_topic = get_label_quality_scores_per_class(topic_sets, self.topic_probs_)
        odds = flip_odds(per_topic, self.tone_quality_, len(self.schema_.tones))
        self.quality_ = 1.0 / (1.0 + odds)
        self.ranking_ = np.lexsort((np.arange(len(self.quality_)), self.quality_))
        return self

    def top(self, top: float | int | None) -> np.ndarray:
        """The ``top`` most suspect rows: a count (an int), a share (a float in (0, 1]),
        or None for the rows cleanlab flags (in ranking order)."""
        check_top(top)
        if top is None:
            flagged = self.topic_issue_ | self.tone_issue_
            return self.ranking_[flagged[self.ranking_]]
        if isinstance(top, float):  # round: 0.04 × 150 = 6.000…01
            return self.ranking_[: math.ceil(round(top * len(self.ranking_), 9))]
        return self.ranking_[:top]


def check_top(top: object) -> None:
    if top is None:
        return
    if isinstance(top, bool) or not isinstance(top, (int, float)) or top <= 0:
        raise TopictoneError(f"top must be a count, a share in (0, 1] or null, got {top!r}")
    if isinstance(top, float) and top > 1:
        raise TopictoneError(f"top={top}: a share is at most 1 (a count is an integer)")
