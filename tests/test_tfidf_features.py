"""The TF-IDF model's optional features: naive-Bayes scaled topics and the lead vectoriser."""

import json

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import DEMO, FAST_TFIDF, train_run
from hypothesis import given
from hypothesis import strategies as st
from sklearn.linear_model import LogisticRegression

from topictone import infer
from topictone.infer.errors import TopictoneError
from topictone.infer.text import lead
from topictone.train.fitters.tfidf import NaiveBayesScaled, log_count_ratio

NB_LEAD = [*FAST_TFIDF, "model.naive_bayes=true", "model.lead_chars=60"]


@pytest.fixture(scope="module")
def nb_lead_run(tmp_path_factory: pytest.TempPathFactory):
    run_dir = tmp_path_factory.mktemp("tfidf-nb-lead")
    train_run(NB_LEAD, run_dir)
    return run_dir


def test_lead_cuts_at_a_word_boundary():
    assert lead("Army tests missile", 100) == "Army tests missile"
    assert lead("Army tests missile", 12) == "Army tests"  # not "Army tests m"
    assert lead("Army tests missile", 10) == "Army tests"  # the cut falls on a space
    assert lead("Armytestsmissile", 5) == "Armyt"  # no space: a hard cut
    assert lead("भारत और इजरायल", 9) == "भारत और"


@given(st.text(alphabet=st.sampled_from("ab क\n ")), st.integers(0, 12))
def test_lead_is_a_short_prefix(text, chars):
    head = lead(text, chars)
    assert text.startswith(head) and len(head) <= max(chars, 0)
    assert head == text or len(text) > chars


def test_scaling_is_folded_into_plain_coefficients():
    X = sp.random(300, 40, density=0.15, random_state=0, format="csr")
    y = (X[:, 0].toarray().ravel() + X[:, 1].toarray().ravel() > 0).astype(int)
    weight = np.random.default_rng(0).uniform(0.2, 2.0, 300)
    model = NaiveBayesScaled(LogisticRegression(C=4.0), alpha=0.5).fit(X, y, sample_weight=weight)
    ratio = log_count_ratio(X, y, weight, alpha=0.5)
    scaled = X @ sp.diags(ratio)
    reference = LogisticRegression(C=4.0).fit(scaled, y, sample_weight=weight)
    assert type(model.linear_) is LogisticRegression
    np.testing.assert_allclose(
        model.decision_function(X), reference.decision_function(scaled), atol=1e-9
    )
    # The separating features get the largest ratios; weights count like repeated rows.
    assert np.argsort(-np.abs(ratio))[:2].tolist() in ([0, 1], [1, 0])
    twice = log_count_ratio(sp.vstack([X, X]), np.r_[y, y], alpha=0.5)
    np.testing.assert_allclose(log_count_ratio(X, y, np.full(300, 2.0), alpha=0.5), twice)


def test_a_run_with_both_saves_plain_types_and_predicts_the_same(nb_lead_run, tfidf_run):
    manifest = json.loads((nb_lead_run / "model" / "topictone.json").read_text())
    assert manifest["settings"] == {"lead_chars": 60}
    predictor = infer.load(nb_lead_run / "model")
    assert all(type(e) is LogisticRegression for e in predictor.topic_model.estimators_)
    rows = [json.loads(line) for line in (nb_lead_run / "predictions" / "dev.jsonl").open()]
    texts = {json.loads(x)["id"]: json.loads(x)["text"] for x in (DEMO / "dev.jsonl").open()}
    again = predictor.predict([texts[r["id"]] for r in rows])
    assert [r["prediction"]["topics"] for r in rows] == [p.topics for p in again]
    assert [r["prediction"]["tone"] for r in rows] == [p.tone for p in again]
    text = "Army tests a new missile. " * 10
    features = predictor.features(predictor.preprocess([text]))
    width = len(predictor.vectorizer.get_feature_names_out())
    assert features.shape[1] == width + len(predictor.lead_vectorizer.get_feature_names_out())
    assert features[:, width:].nnz > 0  # the lead is read
    plain = infer.load(tfidf_run / "model").predict([text])[0].topic_scores
    assert predictor.predict([text])[0].topic_scores != plain
    explained = predictor.predict([text], explain=True)[0].explanation
    assert explained and all(
        "lead:" not in term for terms in explained.values() for term, _ in terms
    )


@pytest.mark.parametrize(
    ("lead_chars", "message"),
    [
        (0, "not a topictone TF-IDF model"),
        (10**9, "lead_chars must be an integer"),
        ("60", "lead_chars"),
    ],
)
def test_a_manifest_that_lies_about_the_lead_is_refused(nb_lead_run, tmp_path, lead_chars, message):
    import shutil

    folder = shutil.copytree(nb_lead_run / "model", tmp_path / "model")
    path = folder / "topictone.json"
    manifest = json.loads(path.read_text())
    manifest["settings"]["lead_chars"] = lead_chars
    path.write_text(json.dumps(manifest))
    with pytest.raises(TopictoneError, match=message):
        infer.load(folder)


def test_the_predictor_takes_the_folded_path(nb_lead_run):
    predictor = infer.load(nb_lead_run / "model")
    texts = predictor.preprocess(
        [
            "Army tests a new missile. " * 30,
            *(json.loads(x)["text"] for x in (DEMO / "dev.jsonl").open()),
        ]
    )
    topics, tone = predictor._forward(texts)
    assert predictor._scorer and predictor._scorer.folded  # built on first use
    predictor._scorer = False  # the TF-IDF matrices and predict_proba
    generic = predictor._forward(texts)
    np.testing.assert_allclose(topics, generic[0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(tone, generic[1], rtol=0, atol=1e-12)
