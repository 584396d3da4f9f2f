"""A topic from its description: the encoder's prototype head.

A topic with a description (``labels.descriptions``) and fewer than ``prototype_below``
positive labels gets a prototype head instead, so that a new topic predicts from day one:
sigmoid(a·cos(e, p) + b). The prototype p is the description's embedding (query prompt)
plus the direction of its texts (examples and labelled positives: their mean less the mean
of all training texts, as every embedding shares a large common part that would otherwise
swamp a few texts' average), weighted n/(n + W) for n texts. A plain average of the
description and the texts ranked the left-out topic's train texts far worse (average
precision 0.64 against 0.84 at 8 positives, 0.61 against 0.85 at 32:
benchmarks/quality/topic_from_description.py).

How much the description weighs (W, as many texts) depends on the topic: gold's
counterterrorism and technology gained from their positives' direction, defence lost by it
on dev (0.72 from its description alone, 0.65 with 32 positives at W = 32). W is chosen per
topic from ``DESCRIPTION_WEIGHTS`` on the training labels alone: each candidate's prototype,
built without a fold of the positives, ranks that fold among the texts labelled negative
(AUC, which labelled-positive vs unlabelled ranking keeps in order with the true one); the
best mean wins (:func:`description_weight`). On unit-length embeddings (the encoder
normalises) the head is the linear head w = a·p/|p|, so the predictor and the saved folder
do not change; on an encoder that does not normalise it is a·(e·p/|p|) + b, a projection
on the prototype's direction.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from scipy.stats import rankdata

from topictone.infer.errors import TopictoneError
from topictone.infer.predictors.encoder import SentenceEncoder
from topictone.infer.predictors.hf_files import read_json
from topictone.infer.schema import LabelSchema
from topictone.infer.text import normalize
from topictone.train.fitters.base import logistic_head

PRIOR_SHARE = 0.10  # a described topic with no positive label flags this share of train at 0.5
DEFAULT_SLOPE = 40.0  # its a where no other described topic has labels to fit one on (gold,
# embeddinggemma: 38-49 for the three topics' descriptions alone)
DESCRIPTION_WEIGHT = 32  # W with no positive label to choose it on
DESCRIPTION_WEIGHTS = (8, 32, 128, math.inf)  # the candidates for W; inf: the description alone
WEIGHT_FOLDS = 8  # at most: each positive is held out once
QUERY_PROMPTS = ("query", "Retrieval-query")  # descriptions are queries for the topic's texts


class Anchor(NamedTuple):
    """What a topic's prototype starts from: its description and example texts."""

    description: np.ndarray  # (dimension,), unit length
    examples: np.ndarray  # (n, dimension), unit rows


def prototype(
    anchor: Anchor,
    positives: np.ndarray,
    centre: np.ndarray,
    description_weight: float = DESCRIPTION_WEIGHT,
) -> np.ndarray:
    """The unit prototype direction: the description plus its texts' direction (examples
    and ``positives``, less ``centre``: the training texts' mean), that direction weighted
    n/(n + ``description_weight``): the more texts, the more they decide."""
    texts = np.concatenate([anchor.examples, _unit(positives)])
    if not len(texts) or math.isinf(description_weight):
        return anchor.description
    share = len(texts) / (len(texts) + description_weight)
    offset = _unit((texts.mean(axis=0) - centre)[None])[0]
    return _unit((anchor.description + share * offset)[None])[0]


def description_weight(anchor: Anchor, x: np.ndarray, y: np.ndarray) -> float:
    """The candidate W under which prototypes built without a fold of the positives rank
    that fold highest among the texts labelled negative (mean AUC over up to
    ``WEIGHT_FOLDS`` folds, positives dealt in turn); ``DESCRIPTION_WEIGHT`` with no
    positive or no negative. Ties go to the earlier candidate."""
    positives, negatives = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    if not len(positives) or not len(negatives):
        return DESCRIPTION_WEIGHT
    centre = x.mean(axis=0)
    folds = np.arange(len(positives)) % min(len(positives), WEIGHT_FOLDS)
    mean_auc = []
    for candidate in DESCRIPTION_WEIGHTS:
        aucs = []
        for fold in np.unique(folds):
            kept = x[positives[folds != fold]]
            direction = prototype(anchor, kept, centre, candidate)
            held = x[positives[folds == fold]] @ direction
            aucs.append(_auc(held, x[negatives] @ direction))
        mean_auc.append(float(np.mean(aucs)))
    return DESCRIPTION_WEIGHTS[int(np.argmax(mean_auc))]


def _auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """The share of (positive, negative) pairs in order, ties counted half."""
    ranks = rankdata(np.concatenate([positive, negative]))[: len(positive)]
    n_pos = len(positive)
    return float((ranks.sum() - n_pos * (n_pos + 1) / 2) / (n_pos * len(negative)))


def _unit(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1: a prototype averages directions, whatever the encoder."""
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def _query_prompt(folder: Path, fallback: str) -> str:
    """The backbone's query prompt (sentence-transformers ``prompts``), else ``fallback``."""
    config = folder / "config_sentence_transformers.json"
    prompts = read_json(config).get("prompts", {}) if config.is_file() else {}
    found = [prompts[name] for name in QUERY_PROMPTS if isinstance(prompts.get(name), str)]
    return found[0] if found else fallback


def _checked_descriptions(
    descriptions: dict[str, Any], examples: dict[str, list], schema: LabelSchema
) -> dict[str, str]:
    """The descriptions, each of a schema topic and a non-empty text; examples only for
    described topics (a prototype starts from its description), each a non-empty text."""
    for field, entries in (("descriptions", descriptions), ("examples", examples)):
        unknown = [str(t) for t in entries if t not in schema.topics]
        if unknown:
            raise TopictoneError(
                f"labels.{field}: unknown topic '{unknown[0]}' (the schema's: "
                f"{', '.join(schema.topics)})"
            )
    for topic, description in descriptions.items():
        if not isinstance(description, str) or not description.strip():
            raise TopictoneError(f"labels.descriptions.{topic}: must be a non-empty text")
    for topic, texts in examples.items():
        if topic not in descriptions:
            raise TopictoneError(
                f"labels.examples.{topic}: give the topic a description too "
                f"(labels.descriptions.{topic})"
            )
        if isinstance(texts, str) or any(not isinstance(t, str) or not t.strip() for t in texts):
            raise TopictoneError(f"labels.examples.{topic}: must be a list of non-empty texts")
    return dict(descriptions)


def prototype_head(
    fitter: Any,
    x: np.ndarray,
    topic_true: np.ndarray,
    known: tuple[np.ndarray, np.ndarray, np.ndarray],
    i: int,
    anchors: dict[int, Anchor],
) -> tuple[np.ndarray, float]:
    """Topic ``i``'s head a·p/|p|, b: p its :func:`prototype` (description, examples and
    labelled positives, the description weighed by :func:`description_weight`); (a, b)
    fitted on cos(e, p) over the texts where topics are labelled, or, with no positive, a
    borrowed from the other described topics (:func:`zero_label_slope`) and b flagging
    ``PRIOR_SHARE`` of those texts at 0.5."""
    rows, _, weight = known
    y = topic_true[rows, i]
    chosen = description_weight(anchors[i], x[rows], y)
    direction = prototype(anchors[i], x[rows][y == 1], x[rows].mean(axis=0), chosen)
    cosine = x[rows] @ direction
    if not y.any():
        slope = zero_label_slope(fitter, x, topic_true, known, anchors)
        return slope * direction, float(-slope * np.quantile(cosine, 1 - PRIOR_SHARE))
    if y.all():
        raise TopictoneError(f"topic #{i}: training data has no negative")
    slope, bias = one_feature_head(fitter, cosine, y, weight[rows])
    return slope * direction, bias


def one_feature_head(
    fitter: Any, feature: np.ndarray, y: np.ndarray, weight: np.ndarray
) -> tuple[float, float]:
    """Slope and intercept of a logistic regression on one feature, fitted standardised
    (so that the penalty does not shrink the steep slope a cosine needs)."""
    mean, scale = float(feature.mean()), float(feature.std()) or 1.0
    head = logistic_head(fitter.topic_C, fitter).fit(
        ((feature - mean) / scale)[:, None], y, sample_weight=weight
    )
    slope = float(head.coef_[0, 0]) / scale
    return slope, float(head.intercept_[0]) - slope * mean


def zero_label_slope(
    fitter: Any,
    x: np.ndarray,
    topic_true: np.ndarray,
    known: tuple[np.ndarray, np.ndarray, np.ndarray],
    anchors: dict[int, Anchor],
) -> float:
    """The median slope of the other described topics' heads on their anchors alone
    (what a topic without labels has), fitted on their labels; ``DEFAULT_SLOPE`` where
    no described topic has both positives and negatives."""
    rows, _, weight = known
    slopes = []
    for j, anchor in anchors.items():
        y = topic_true[rows, j]
        if 0 < y.sum() < len(y):
            cosine = x[rows] @ prototype(anchor, x[:0], x[rows].mean(axis=0))
            slopes.append(one_feature_head(fitter, cosine, y, weight[rows])[0])
    return float(np.median(slopes)) if slopes else DEFAULT_SLOPE


def topic_anchors(
    descriptions: dict | None,
    examples: dict | None,
    encoder: SentenceEncoder,
    folder: Path,
    schema: LabelSchema,
) -> dict[int, Anchor]:
    """Per described topic's index, its description's unit vector (embedded with the
    backbone's query prompt, where it has one: the description asks for the topic's
    texts; it ranked gold train's topics better than the classification prompt) and
    its examples' (embedded as texts are)."""
    described = _checked_descriptions(dict(descriptions or {}), dict(examples or {}), schema)
    if not described:
        return {}
    prompt = _query_prompt(folder, encoder.prompt)
    anchors = {}
    for topic, description in described.items():
        query = _unit(encoder.piece_vectors([prompt + normalize(description)]))[0]
        texts_given = list((examples or {}).get(topic, []))
        texts = (
            encoder.embed([normalize(t) for t in texts_given])
            if texts_given
            else np.zeros((0, len(query)))
        )
        anchors[schema.topics.index(topic)] = Anchor(query, _unit(texts))
    return anchors
