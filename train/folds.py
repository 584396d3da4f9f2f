"""Out-of-fold scores: every train text scored by a model fitted without it.

``decision.oof_folds=k`` trains a clone of the run's fitter ``k`` more times; the scores let
decisions be fitted on train texts the saved model did not train on (with or without dev).
They are saved as ``oof/scores.npz`` so rules that combine or decide can be compared later
without training again.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, cast

import datasets
import numpy as np
from sklearn.base import clone
from sklearn.model_selection import KFold

from topictone.infer.schema import LabelSchema
from topictone.train.decisions.scores import Scored, score_split
from topictone.train.fitters.base import Fitter

OOF_SCORES = "scores.npz"  # out-of-fold train scores, beside the folds' work folders


def out_of_fold(
    fitter: Fitter,
    train: datasets.Dataset,
    schema: LabelSchema,
    folds: int,
    seed: int,
    workdir: Path,
) -> Scored:
    """Raw scores for every train text from a clone of ``fitter`` fitted on the other
    folds, with their truth; also saved as ``workdir/scores.npz`` (``OOF_SCORES``)."""
    parts: list[Scored] = []
    ids: list[str] = []
    splits = KFold(folds, shuffle=True, random_state=seed).split(np.arange(len(train)))
    for k, (fit_rows, held_rows) in enumerate(splits):
        print(f"out-of-fold scores: fold {k + 1}/{folds}", file=sys.stderr, flush=True)
        fold = clone(fitter).fit(
            train.select(fit_rows), schema, dev=None, workdir=workdir / f"fold{k}"
        )
        parts.append(score_split(fold.predictor_, train.select(held_rows)))
        ids += [str(i) for i in train.select(held_rows)["id"]]
    scored = parts[0]
    for part in parts[1:]:
        scored = scored.concat(part)
    _save_scores(workdir, np.asarray(ids), scored)
    return scored


def _save_scores(workdir: Path, ids: np.ndarray, scored: Scored) -> None:
    """``workdir/scores.npz``: each row's id, its truth and every part's raw scores."""
    workdir.mkdir(parents=True, exist_ok=True)
    topic_true, tone_true = scored.truth
    np.savez_compressed(
        workdir / OOF_SCORES,
        id=ids,
        topic_true=topic_true,
        tone_true=tone_true,
        # Any: mypy would match the arrays against the keyword allow_pickle (a bool)
        **cast("dict[str, Any]", scored.tree.arrays()),
    )
