"""The TF-IDF predictor's linear scores, computed straight from the n-gram counts.

A vectoriser block's TF-IDF row is ``tf ⊙ idf / ‖tf ⊙ idf‖`` and the models are linear,
so the block's share of every decision value is ``(tf @ (idf ⊙ W)) / sqrt(tf² @ idf²)``:
one sparse product per block over the counts, instead of weighting and normalising the
TF-IDF matrices, stacking them and multiplying once per model.

The lead vectoriser (``lead_chars``) reads a text no longer than the lead whole, with the
same analyser, and its vocabulary is drawn from the same texts' openings: for such a text
(every headline) its block is the main block's counts seen through the lead's IDF and
weights, moved onto the main vocabulary's columns. The text is hashed and looked up once,
not twice. Longer texts' leads are read by the lead's own n-grams.

Equal to ``predict_proba`` on the stacked TF-IDF features up to float rounding
(``tests/test_tfidf_features.py``). :func:`folded_scorer` returns None for anything it
cannot reproduce exactly, and the predictor keeps the generic path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import numpy as np
from scipy.special import expit, softmax
from sklearn.linear_model import LogisticRegression

from topictone.infer.predictors.ngrams import HashedNgrams, hashed
from topictone.infer.text import lead


@dataclass
class Block:
    """One TfidfVectorizer's share of the decision values: its hashed n-grams, its
    columns' ``idf ⊙ W`` (one group of outputs, or two with the lead folded in) and
    ``idf²`` per group (None: the vectoriser does not normalise)."""

    ngrams: HashedNgrams
    weights: np.ndarray
    squares: np.ndarray | None
    sublinear: bool

    def scores(self, texts: list[str]) -> np.ndarray:
        counts = self.ngrams.counts(texts)
        if self.sublinear:
            np.log(counts.data, out=counts.data)
            counts.data += 1
        out = np.asarray(counts @ self.weights)
        if self.squares is None:
            return out
        norms = np.sqrt(np.asarray(counts.multiply(counts) @ self.squares))
        norms = np.repeat(norms, out.shape[1] // norms.shape[1], axis=1)
        return np.divide(out, norms, out=np.zeros_like(out), where=norms > 0)


class FoldedScorer:
    """Topic probabilities and tone probabilities (over the tone model's classes) of a
    TF-IDF predictor's texts; see the module docstring."""

    def __init__(
        self,
        main: list[Block],
        lead_blocks: list[Block],
        lead_chars: int,
        folded: bool,
        intercept: np.ndarray,
        n_topics: int,
    ) -> None:
        self.main = main
        self.lead_blocks = lead_blocks
        self.lead_chars = lead_chars
        self.folded = folded  # the lead's share of short texts comes from the main blocks
        self.intercept = intercept
        self.n_topics = n_topics

    def __call__(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        outputs = len(self.intercept)
        decision = np.tile(self.intercept, (len(texts), 1))
        lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
        short = lengths <= self.lead_chars if self.folded else np.zeros(len(texts), bool)
        for block in self.main:
            out = block.scores(texts)
            decision += out[:, :outputs]
            if self.folded:
                decision[short] += out[short, outputs:]
        if self.lead_chars:
            rows = np.flatnonzero(~short)
            if len(rows):
                leads = [lead(texts[i], self.lead_chars) for i in rows]
                decision[rows] += sum(block.scores(leads) for block in self.lead_blocks)
        topics = expit(decision[:, : self.n_topics])
        tone = decision[:, self.n_topics :]
        if tone.shape[1] == 1:  # a binary tone model: scikit-learn's sigmoid pair
            positive = expit(tone[:, 0])
            return topics, np.stack([1 - positive, positive], axis=1)
        return topics, softmax(tone, axis=1)


def folded_scorer(
    vectorizer: Any,
    topic_model: Any,
    tone_model: Any,
    n_topics: int,
    lead_vectorizer: Any = None,
    lead_chars: int = 0,
) -> FoldedScorer | None:
    """The folded scorer of these fitted parts, or None where it would not be exact."""
    weights = _linear_weights(topic_model, tone_model, n_topics)
    main = _parts(vectorizer)
    leads = _parts(lead_vectorizer) if lead_chars else []
    if weights is None or main is None or leads is None:
        return None
    coef, intercept = weights
    width = sum(ngrams.width for _, ngrams in main)
    if coef.shape[0] != width + sum(ngrams.width for _, ngrams in leads):
        return None
    folded = bool(leads) and len(leads) == len(main)
    main_blocks, lead_blocks, offset = [], [], 0
    for index, (vec, ngrams) in enumerate(main):
        blocks = [_block(vec, ngrams, coef[offset : offset + ngrams.width])]
        offset += ngrams.width
        if folded:
            lead_vec, lead_ngrams = leads[index]
            start = width + sum(n.width for _, n in leads[:index])
            lead_block = _block(lead_vec, lead_ngrams, coef[start : start + lead_ngrams.width])
            lead_blocks.append(lead_block)
            moved = _moved(vec, lead_vec, lead_block)
            folded = moved is not None
            blocks.append(cast(Block, moved))  # None only once folded is False: then unread
        main_blocks.append(blocks)
    if leads and not folded:  # every text's lead read by the lead's own n-grams
        lead_blocks, start = [], width
        for lead_vec, lead_ngrams in leads:
            end = start + lead_ngrams.width
            lead_blocks.append(_block(lead_vec, lead_ngrams, coef[start:end]))
            start = end
    return FoldedScorer(
        [_joined(blocks) if folded else blocks[0] for blocks in main_blocks],
        lead_blocks,
        lead_chars,
        folded,
        intercept,
        n_topics,
    )


def _linear_weights(
    topic_model: Any, tone_model: Any, n_topics: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """Every output's coefficients (features × outputs: the topics, then the tone model's
    rows) and intercepts, where both models are plain logistic regressions."""
    estimators = getattr(topic_model, "estimators_", None)
    if (
        not getattr(topic_model, "multilabel_", False)
        or estimators is None
        or len(estimators) != n_topics
        or not all(type(e) is LogisticRegression for e in estimators)
        or type(tone_model) is not LogisticRegression
    ):
        return None
    rows = [e.coef_ for e in estimators] + [tone_model.coef_]
    if any(r.ndim != 2 or r.shape[1] != rows[0].shape[1] for r in rows):
        return None
    if any(r.shape[0] != 1 for r in rows[:-1]):
        return None
    intercepts = [np.atleast_1d(e.intercept_) for e in (*estimators, tone_model)]
    return np.vstack(rows).T.astype(np.float64), np.concatenate(intercepts).astype(np.float64)


def _parts(vectorizer: Any) -> list[tuple[Any, HashedNgrams]] | None:
    """Each TfidfVectorizer of a vectoriser (a FeatureUnion's parts, or itself) with its
    exact hashed n-grams; None if any part has none or is weighted."""
    if getattr(vectorizer, "transformer_weights", None):
        return None
    parts = [v for _, v in getattr(vectorizer, "transformer_list", [(None, vectorizer)])]
    found = []
    for vec in parts:
        ngrams = hashed(vec)
        transformer = getattr(vec, "_tfidf", None)
        if ngrams is None or getattr(transformer, "norm", None) not in ("l2", None):
            return None
        found.append((vec, ngrams))
    return found


def _idf(vec: Any) -> np.ndarray:
    transformer = vec._tfidf
    return transformer.idf_ if transformer.use_idf else np.ones(len(vec.vocabulary_))


def _block(vec: Any, ngrams: HashedNgrams, coef: np.ndarray) -> Block:
    idf = _idf(vec)
    squares = idf[:, None] ** 2 if vec._tfidf.norm == "l2" else None
    return Block(ngrams, coef * idf[:, None], squares, bool(vec._tfidf.sublinear_tf))


def _moved(vec: Any, lead_vec: Any, lead_block: Block) -> Block | None:
    """The lead block on the main vectoriser's columns, or None unless both analyse texts
    alike and every lead term is a main term."""
    if vec.get_params() != lead_vec.get_params():
        return None
    get = vec.vocabulary_.get
    terms = sorted(lead_vec.vocabulary_, key=lead_vec.vocabulary_.get)
    columns = np.fromiter((get(t, -1) for t in terms), dtype=np.int64, count=len(terms))
    if (columns < 0).any():
        return None
    weights = np.zeros((len(vec.vocabulary_), lead_block.weights.shape[1]))
    weights[columns] = lead_block.weights
    squares = None
    if lead_block.squares is not None:
        squares = np.zeros((len(vec.vocabulary_), 1))
        squares[columns] = lead_block.squares
    return Block(lead_block.ngrams, weights, squares, lead_block.sublinear)


def _joined(blocks: list[Block]) -> Block:
    """A main block and its moved lead block as one: the two groups side by side."""
    main, moved = blocks  # alike in sublinear_tf and norm: _moved checked their params
    squares = None
    if main.squares is not None:
        assert moved.squares is not None, "_moved checked that both normalise"
        squares = np.hstack([main.squares, moved.squares])
    return Block(main.ngrams, np.hstack([main.weights, moved.weights]), squares, main.sublinear)
