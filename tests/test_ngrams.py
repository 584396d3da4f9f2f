"""The vectorised n-gram features equal scikit-learn's, bit for bit."""

import json

import numpy as np
import pytest
from conftest import DEMO
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.pipeline import FeatureUnion

from topictone.infer.predictors.ngrams import CharWbNgrams, WordNgrams, fast_transform

EDGES = [
    "",
    "   ",
    "a",
    "I",
    "İstanbul ÀB ß",
    "x\x00y z",
    "😀 emoji 😀😀",
    "क ख",
    "tab\there\n\nnew  lines\u00a0nbsp",
    "a b c d e f",
    "सेना ने नई मिसाइल का परीक्षण किया",
]
TOKENS = r"[\w\u0900-\u0963\u0966-\u097F]+"
SETTINGS = [
    {"analyzer": "char_wb", "ngram_range": (2, 5), "sublinear_tf": True},
    {"analyzer": "char_wb", "ngram_range": (1, 3), "lowercase": False, "min_df": 2},
    {"analyzer": "char_wb", "ngram_range": (4, 6), "binary": True, "norm": None},  # short words
    {"analyzer": "word", "ngram_range": (1, 2), "token_pattern": TOKENS, "sublinear_tf": True},
    {"analyzer": "word", "ngram_range": (2, 3), "max_df": 0.3},  # bigrams whose words are pruned
    {"analyzer": "word", "ngram_range": (1, 1), "use_idf": False, "dtype": np.float32},
    {"analyzer": "char_wb", "ngram_range": (3, 10**6)},  # n beyond any word: whole words
]


def corpus() -> list[str]:
    return [json.loads(line)["text"] for line in (DEMO / "train.jsonl").open(encoding="utf-8")]


@pytest.mark.parametrize("options", SETTINGS)
def test_the_same_matrix_as_scikit_learn(options):
    texts = corpus()
    vectorizer = TfidfVectorizer(**options).fit(texts)
    kind = CharWbNgrams if options["analyzer"] == "char_wb" else WordNgrams
    assert kind.supports(vectorizer)
    fast = kind(vectorizer)
    assert fast.exact
    for batch in (texts, EDGES, [texts[0]]):
        ours, theirs = fast.transform(batch), vectorizer.transform(batch)
        assert ours.shape == theirs.shape and ours.dtype == theirs.dtype
        assert (ours != theirs).nnz == 0


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.text(alphabet=st.sampled_from("ab cक ख\n\tÀ😀-"), max_size=30), min_size=1, max_size=8
    )
)
def test_random_texts(texts):
    train = [*corpus()[:80], "ab ba क ख cab"]
    for options in SETTINGS[:2] + SETTINGS[3:5]:
        vectorizer = TfidfVectorizer(**options).fit(train)
        ours = fast_transform(vectorizer)(texts)
        assert (ours != vectorizer.transform(texts)).nnz == 0


def test_unsupported_vectorisers_keep_scikit_learns_path():
    texts = corpus()
    for options in (
        {"analyzer": "char_wb", "strip_accents": "unicode"},
        {"analyzer": "word", "stop_words": "english"},
        {"analyzer": "word", "token_pattern": r"\S+ \S+"},  # tokens with spaces
        {"analyzer": "char"},
    ):
        vectorizer = TfidfVectorizer(**options).fit(texts)
        assert fast_transform(vectorizer) == vectorizer.transform
    union = FeatureUnion(
        [("w", TfidfVectorizer()), ("c", TfidfVectorizer(analyzer="char_wb"))]
    ).fit(texts)
    assert (fast_transform(union)(texts) != union.transform(texts)).nnz == 0


def test_the_tfidf_predictor_uses_it(tfidf_run):
    from topictone import infer

    predictor = infer.load(tfidf_run / "model")
    texts = corpus()[:50] + EDGES[2:]  # blank texts are refused by preprocess
    clean = predictor.preprocess(texts)
    assert (predictor.features(clean) != predictor.vectorizer.transform(clean)).nnz == 0
    assert predictor._transform != predictor.vectorizer.transform  # the vectorised path
    import pickle

    again = pickle.loads(pickle.dumps(predictor))  # e.g. shipped to a worker process
    assert (again.features(clean) != predictor.features(clean)).nnz == 0


def test_long_batches_are_hashed_in_slices(monkeypatch):
    """Memory is bounded by the slice, not the batch; the matrix is the same."""
    import topictone.infer.predictors.ngrams as ngrams

    texts = corpus()
    for options in (SETTINGS[0], SETTINGS[3]):
        vectorizer = TfidfVectorizer(**options).fit(texts)
        fast = fast_transform(vectorizer)
        whole = fast(texts)
        monkeypatch.setattr(ngrams, "CHUNK_CHARS", 500)  # several texts a slice, or one
        sliced = fast(texts)
        monkeypatch.undo()
        assert (sliced != whole).nnz == 0 and (sliced != vectorizer.transform(texts)).nnz == 0


def test_the_overflow_table_finds_terms_of_shared_slots():
    """Terms whose slot is shared again (low bits alike) are found by binary search."""
    from topictone.infer.predictors.ngrams import Overflow

    table = Overflow(np.array([5, 5 + (1 << 10), 7], dtype=np.uint64), np.array([10, 11, 12]))
    grams = np.array([5, 5 + (1 << 10), 7, 8, 5 + (1 << 11), 0], dtype=np.uint64)
    assert table.columns_of(grams).tolist() == [10, 11, 12, -1, -1, -1]
    assert Overflow(np.zeros(0, np.uint64), np.zeros(0, np.int64)).columns_of(grams).tolist() == [
        -1
    ] * len(grams)
