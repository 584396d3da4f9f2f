"""One rule for every text, applied by ``Predictor.preprocess``: what the API refuses, the
batch CLI, the service and the Ray engine refuse too (their own tests check that they go
through it); here the rule itself, and the API's iterables."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from topictone import infer
from topictone.infer.errors import TextError
from topictone.infer.text import normalize, unicode_problem

# Texts the service called empty while the API and the CLI scored them.
NOTHING_TO_READ = ["   ", "\x00\x00", "\u200b\u200b", "\n\t \u00ad", "\ufeff"]


@pytest.fixture(scope="module")
def predictor(tfidf_run):
    return infer.load(tfidf_run / "model")


@pytest.mark.parametrize("text", NOTHING_TO_READ, ids=repr)
def test_a_text_that_normalises_to_nothing_is_refused(predictor, text):
    with pytest.raises(TextError) as err:
        predictor.predict(["Army tests new missile", text])
    assert err.value.index == 1 and "empty text" in str(err.value)


@pytest.mark.parametrize("text", ["abc \ud800 def", "\udfff", "भारत \udc80"], ids=repr)
def test_a_lone_surrogate_is_refused_with_its_position(predictor, text):
    with pytest.raises(TextError) as err:
        predictor.predict([text])
    assert err.value.index == 0 and "lone surrogate at character" in str(err.value)
    assert str(text.index(next(c for c in text if "\ud800" <= c <= "\udfff"))) in str(err.value)


def test_a_generator_is_read_once(predictor):
    texts = ["Army tests new missile", "AI chip export rules", "आतंकी हमले में जवान शहीद"]
    assert predictor.predict(t for t in texts) == predictor.predict(texts)
    scores = predictor.predict_scores(iter(texts))
    assert scores[0].shape == (3, len(predictor.schema.topics))


def test_one_string_is_still_refused(predictor):
    with pytest.raises(infer.TopictoneError, match="not one string"):
        predictor.predict("Army tests new missile")


ODD = st.sampled_from(["\ud800", "\udfff", "\u200b", "\x00", "\ufeff", " ", "\n", "\t"])


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.text(alphabet=st.one_of(st.characters(), ODD), max_size=40))
def test_the_rule_is_exactly_valid_unicode_with_something_to_read(predictor, text):
    readable = unicode_problem(text) is None and bool(normalize(text))
    try:
        [prediction] = predictor.predict([text])
    except TextError as err:
        assert not readable and err.index == 0 and "\n" not in str(err)
    else:
        assert readable and prediction.tone in predictor.schema.tones
