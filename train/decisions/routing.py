"""A cascade's bands: which texts the cheap stage leaves to the expensive one.

Fitted like a calibration, on the rows the decision step fits on (dev, out-of-fold train,
or both; each cross-fitting fold fits its own), from both stages' calibrated scores. The
band of a topic is centred on the cheap stage's best-F1 cut, and the tone band is a
margin; each head's band widens by steps of its own (quantiles of the cheap stage's
distances from its cut, or of its tone margins), where a step buys the most F1 per text
sent on, until the target holds: the expensive stage's topic and tone macro-F1 within
``max_f1_loss``, or at most ``max_expensive_share`` of the texts sent on.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from sklearn.metrics import f1_score

from topictone.infer.predictors.base import Predictor, Scores
from topictone.infer.predictors.cascade import (
    Bands,
    CascadePredictor,
    decided_by,
    mixed,
    tone_margins,
)
from topictone.infer.schema import LabelSchema
from topictone.train.decisions.thresholds import ThresholdRule, apply_thresholds

STEPS = np.linspace(0.0, 1.0, 21)  # the widths tried, as quantiles of each head's distances
_Truth = tuple[np.ndarray, np.ndarray]


def fit_routing(
    predictor: Predictor, part_scores: Mapping[str, Scores], truth: _Truth, rows: np.ndarray
) -> None:
    """Fit a cascade's bands on ``rows`` (other kinds route nothing)."""
    if not isinstance(predictor, CascadePredictor):
        return
    cheap, expensive = (_rows(part_scores[name], rows) for name in ("cheap", "expensive"))
    target = predictor.target
    predictor.bands, predictor.fitted_share = fit_bands(
        predictor.schema,
        cheap,
        expensive,
        (truth[0][rows], truth[1][rows]),
        target.get("max_expensive_share"),
        target.get("max_f1_loss"),
        predictor.route_by,
    )


def routing_metrics(predictor: Predictor) -> dict[str, float]:
    """The share of texts a cascade sent on where its bands were fitted ({} for others)."""
    share = getattr(predictor, "fitted_share", None)
    return {} if share is None else {"expensive_share": share}


def fit_bands(
    schema: LabelSchema,
    cheap: Scores,
    expensive: Scores,
    truth: _Truth,
    max_share: float | None,
    max_loss: float | None,
    route_by: str = "text",
) -> tuple[Bands, float]:
    """Bands meeting ``max_loss`` within ``max_share`` (the best macro-F1 within
    ``max_share`` alone), and the share of these texts they send on.

    Greedy: from empty bands, widen one head's band a step at a time (a twentieth of its
    distances), the head whose step buys the most F1 per text sent on, until the target
    holds or no step fits under ``max_share``. ``route_by`` is the cascade's rule for
    what the expensive stage decides of a text it reads."""
    cuts = ThresholdRule("f1").tune(schema, cheap[0], truth[0])
    centre = np.array([cuts[t] for t in schema.topics])
    distances = np.column_stack([np.abs(cheap[0] - centre), tone_margins(cheap[1])])
    levels = np.quantile(distances, STEPS, axis=0)  # steps × heads: band widths
    levels[0] = 0.0  # routes nothing, as the smallest distance would if centre ± it were exact
    goal = np.array(_f1s(schema, expensive, truth)) - (max_loss or 0.0)

    def worth(step: np.ndarray) -> tuple[float, float]:
        """(the F1 a step's bands keep, as the target counts it; their share)."""
        # Through the Bands themselves: the share is what the saved bands route, to the
        # last bit of float rounding at a band's edge.
        bands = _bands(schema, centre, levels[step, np.arange(len(step))])
        decided = decided_by(route_by, bands.unsure(schema, cheap))
        kept = np.array(_f1s(schema, mixed(cheap, expensive, decided), truth))
        value = np.minimum(kept - goal, 0).sum() if max_loss is not None else kept.sum()
        return float(value), float((decided[0].any(axis=1) | decided[1]).mean())

    step = np.zeros(distances.shape[1], dtype=int)
    value, share = worth(step)
    while max_loss is None or value < 0:
        tried = []
        for head in np.flatnonzero(step < len(STEPS) - 1):
            wider = step.copy()
            wider[head] += 1
            found, wider_share = worth(wider)
            if max_share is None or wider_share <= max_share:
                gain = (found - value) / max(wider_share - share, 1e-6)
                tried.append((gain, -wider_share, head, found, wider_share))
        if not tried:
            break
        _, _, head, value, share = max(tried)
        step[head] += 1
    if max_loss is not None and value < 0 and max_share is None:
        return Bands.everything(schema), 1.0  # no bands meet the target: everything goes on
    return _bands(schema, centre, levels[step, np.arange(len(step))]), share


def _bands(schema: LabelSchema, centre: np.ndarray, widths: np.ndarray) -> Bands:
    """Bands around ``centre`` of the given widths (topics, then the tone margin); a
    width of the smallest distance routes nothing, as the bands are open."""
    topics = {
        t: (float(c - w), float(c + w))
        for t, c, w in zip(schema.topics, centre, widths[:-1], strict=True)
    }
    return Bands(topics, float(widths[-1]))


def _f1s(schema: LabelSchema, scores: Scores, truth: _Truth) -> tuple[float, float]:
    """Topic macro-F1 under best-F1 cuts on these texts, and tone macro-F1: the same
    in-sample measure for the expensive stage alone and for every mixture."""
    cuts = ThresholdRule("f1").tune(schema, scores[0], truth[0])
    topics = apply_thresholds(scores[0], schema, cuts)
    tones = list(range(len(schema.tones)))
    return (
        float(f1_score(truth[0], topics, average="macro", zero_division=0.0)),
        float(
            f1_score(
                truth[1], scores[1].argmax(axis=1), average="macro", labels=tones, zero_division=0.0
            )
        ),
    )


def _rows(scores: Scores, rows: np.ndarray) -> Scores:
    return scores[0][rows], scores[1][rows]
