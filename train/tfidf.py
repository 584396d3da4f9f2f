"""Fitting the TF-IDF baseline (the predictor itself lives in ``infer``)."""

from __future__ import annotations

from typing import Any

import datasets
import numpy as np
import sklearn
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import FeatureUnion

from infer.predictors.tfidf import TfidfPredictor
from infer.schema import LabelSchema
from infer.text import normalize
from train.data import partial_labels, targets

# Word characters plus Devanagari vowel signs and viramas, which `\w` misses: the
# default scikit-learn pattern cuts "भारत" into "रत". Dandas (U+0964/5) split words.
TOKEN_PATTERN = r"[\w\u0900-\u0963\u0966-\u097F]+"


class TfidfFitter:
    """Word and character n-gram TF-IDF, one-vs-rest logistic topics, multinomial tone.

    scikit-learn's contract: ``__init__`` only stores parameters, ``fit`` returns self
    and leaves the fitted predictor in ``predictor_``.
    """

    kind = "tfidf"

    def __init__(
        self,
        word_ngram_range: tuple[int, int] = (1, 2),
        char_ngram_range: tuple[int, int] = (2, 5),
        char_analyzer: str = "char_wb",
        min_df: int = 1,
        max_df: float = 1.0,
        max_features: int | None = None,
        sublinear_tf: bool = True,
        topic_C: float = 4.0,
        tone_C: float = 4.0,
        class_weight: str | None = "balanced",
        max_iter: int = 2000,
        seed: int = 0,
    ) -> None:
        self.word_ngram_range = word_ngram_range
        self.char_ngram_range = char_ngram_range
        self.char_analyzer = char_analyzer
        self.min_df = min_df
        self.max_df = max_df
        self.max_features = max_features
        self.sublinear_tf = sublinear_tf
        self.topic_C = topic_C
        self.tone_C = tone_C
        self.class_weight = class_weight
        self.max_iter = max_iter
        self.seed = seed

    def _vectorizer(self) -> FeatureUnion:
        common: dict[str, Any] = {
            "min_df": self.min_df,
            "max_df": self.max_df,
            "max_features": self.max_features,
            "sublinear_tf": self.sublinear_tf,
            "lowercase": True,
            "dtype": np.float64,
        }
        return FeatureUnion(
            [
                (
                    "word",
                    TfidfVectorizer(
                        analyzer="word",
                        ngram_range=tuple(self.word_ngram_range),
                        token_pattern=TOKEN_PATTERN,
                        **common,
                    ),
                ),
                (
                    "char",
                    TfidfVectorizer(
                        analyzer=self.char_analyzer,
                        ngram_range=tuple(self.char_ngram_range),
                        **common,
                    ),
                ),
            ]
        )

    def _linear(self, C: float) -> LogisticRegression:
        return LogisticRegression(
            C=C, class_weight=self.class_weight, max_iter=self.max_iter, random_state=self.seed
        )

    def fit(
        self,
        train: datasets.Dataset,
        schema: LabelSchema,
        dev: datasets.Dataset | None = None,
        **_: Any,
    ) -> TfidfFitter:
        texts = [normalize(t) for t in train["text"]]
        topic_true, tone_true = targets(train)
        vectorizer = self._vectorizer()
        features = vectorizer.fit_transform(texts)
        # Weakly labelled rows (train.weak) know only some labels and weigh less.
        known_topics, known_tone, weight = partial_labels(train)
        with sklearn.config_context(enable_metadata_routing=True):
            topic_model = OneVsRestClassifier(
                self._linear(self.topic_C).set_fit_request(sample_weight=True)
            ).fit(
                features[known_topics], topic_true[known_topics], sample_weight=weight[known_topics]
            )
        # The fit request is fitting-time state; skops cannot serialise it.
        for estimator in (topic_model.estimator, *topic_model.estimators_):
            estimator.__dict__.pop("_metadata_request", None)
        tone_model = self._linear(self.tone_C).fit(
            features[known_tone], tone_true[known_tone], sample_weight=weight[known_tone]
        )
        self.predictor_ = TfidfPredictor(schema, vectorizer, topic_model, tone_model)
        return self
