"""The folded TF-IDF scores equal predict_proba on the stacked TF-IDF matrices."""

import json

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import DEMO
from sklearn.base import clone
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import FeatureUnion
from test_ngrams import EDGES, SETTINGS, TOKENS

from topictone.infer.predictors.folded import folded_scorer
from topictone.infer.text import lead

TOPICS = ["defence", "counterterrorism", "technology"]
TONES = ["positive", "neutral", "negative"]
LEAD = 50


def demo() -> tuple[list[str], np.ndarray, np.ndarray]:
    rows = [json.loads(line) for line in (DEMO / "train.jsonl").open(encoding="utf-8")]
    topics = np.array([[t in r["topics"] for t in TOPICS] for r in rows], dtype=int)
    return [r["text"] for r in rows], topics, np.array([TONES.index(r["tone"]) for r in rows])


def fitted(options: dict, lead_options: dict | None = None, tones: int = 3) -> tuple:
    """A word + other-analyser union, its lead twin, and linear models on both."""
    texts, topics, tone = demo()
    word = TfidfVectorizer(ngram_range=(1, 2), token_pattern=TOKENS, sublinear_tf=True)
    main = FeatureUnion([("word", word), ("other", TfidfVectorizer(**options))]).fit(texts)
    leads = [lead(t, LEAD) for t in texts]
    lead_vec = clone(main).set_params(**(lead_options or {})).fit(leads)
    X = sp.hstack([main.transform(texts), lead_vec.transform(leads)], format="csr")
    topic_model = OneVsRestClassifier(LogisticRegression(C=4.0)).fit(X, topics)
    tone_model = LogisticRegression(C=4.0).fit(X, np.minimum(tone, tones - 1))
    return main, lead_vec, topic_model, tone_model


def reference(main, lead_vec, topic_model, tone_model, texts: list[str]) -> tuple:
    leads = [lead(t, LEAD) for t in texts]
    X = sp.hstack([main.transform(texts), lead_vec.transform(leads)], format="csr")
    return topic_model.predict_proba(X), tone_model.predict_proba(X)


def batch() -> list[str]:
    texts, _, _ = demo()
    return [*texts[:40], *EDGES, "Army tests a new missile. " * 30, texts[0] * 3]


@pytest.mark.parametrize("options", SETTINGS)
def test_folded_scores_equal_predict_proba(options):
    main, lead_vec, topic_model, tone_model = fitted(options)
    scorer = folded_scorer(main, topic_model, tone_model, len(TOPICS), lead_vec, LEAD)
    assert scorer is not None and scorer.folded  # short texts: one lookup for both blocks
    ours = scorer(batch())
    theirs = reference(main, lead_vec, topic_model, tone_model, batch())
    tolerance = 1e-6 if options.get("dtype") == np.float32 else 1e-12
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=tolerance)


def test_a_lead_analysed_otherwise_is_read_by_its_own_ngrams():
    lead_options = {"word__ngram_range": (1, 1), "other__lowercase": False}
    main, lead_vec, topic_model, tone_model = fitted(SETTINGS[0], lead_options, tones=2)
    scorer = folded_scorer(main, topic_model, tone_model, len(TOPICS), lead_vec, LEAD)
    assert scorer is not None and not scorer.folded
    ours = scorer(batch())
    theirs = reference(main, lead_vec, topic_model, tone_model, batch())
    assert ours[1].shape == (len(batch()), 2)  # a binary tone model: its sigmoid pair
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)


@pytest.mark.filterwarnings("ignore:Label not 2 is present")
def test_what_it_cannot_reproduce_keeps_the_generic_path():
    main, lead_vec, topic_model, tone_model = fitted(SETTINGS[0])
    args = (len(TOPICS), lead_vec, LEAD)
    l1 = clone(main).set_params(other__norm="l1").fit(demo()[0])
    assert folded_scorer(l1, topic_model, tone_model, *args) is None
    constant = OneVsRestClassifier(LogisticRegression()).fit(
        sp.csr_matrix(np.eye(4)), np.array([[1, 0, 0], [0, 1, 0], [1, 0, 0], [0, 1, 0]])
    )  # a topic never seen positive: a constant predictor, not a logistic regression
    assert folded_scorer(main, constant, tone_model, *args) is None
    assert folded_scorer(main, topic_model, tone_model, 2, lead_vec, LEAD) is None
