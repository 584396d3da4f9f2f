"""Ensemble members combined: rules compared by cross-validation over train.

    python -m benchmarks.quality.ensemble_oof [--folds 5] [--weights 0.3 0.4 0.5 0.6 0.7]
    python -m benchmarks.quality.ensemble_oof --run <ensemble run trained with decision.oof_folds>

Without ``--run``, the gold ensemble without the transformer (``experiment=gold_ensemble``,
its members' preset settings) is trained by ``python -m topictone.train`` with
``decision.oof_folds=<--folds>`` into a temporary folder: fitted ``--folds`` times on the
other folds of gold train, so every train text has out-of-fold scores from both members
(the run's ``oof/scores.npz``), then once on all of train, whose model scores dev +
dev_articles. With ``--run``, the out-of-fold scores are the ones that run saved and its
model scores dev: any members, the transformer too, without training again. Each row
combines the members' raw scores by one rule: a member alone, the plain mean of every
member's topic logits and tone distributions, and (two members) weighted means, ``w`` the
first member's weight; (more members) the plain mean without each one. Topic thresholds
are chosen for F1 (the presets' rule) on the out-of-fold train scores and applied
unchanged to dev, so the dev columns are decided without dev; the last column is the dev
difference to the plain mean with a paired bootstrap 95% interval. A second table gives
each rule's out-of-fold train figures per unit (headline, title + lead, article): 6 times
dev's texts, so it tells a unit's systematic gap from dev's noise. The encoder needs its
embeddings cached (one ``experiment=gold_encoder`` run); otherwise it embeds train five
times over.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.common import (
    OOF_SCORES,
    cache_loaded_embeddings,
    configured_splits,
    f1_thresholds,
    joined,
    macro_f1,
    paired_interval,
    require_gold,
    targets,
    train_cli,
)

WITHOUT_TRANSFORMER = [
    "experiment=gold_ensemble",
    "~model.members.transformer",
    "~model.weights.transformer",
]


def combined(scores: dict, weights: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
    """The weighted mean of the members' topic logits and of their tone distributions."""
    from topictone.infer.decision import logit

    total = sum(weights.values())
    topic = sum(w * logit(scores[name][0]) for name, w in weights.items()) / total
    tone = sum(w * scores[name][1] for name, w in weights.items()) / total
    return 1 / (1 + np.exp(-topic)), tone


def rules(names: list[str], grid: list[float]) -> list[tuple[str, dict[str, float]]]:
    """Each member alone, the plain mean, and weighted means or leave-one-out means."""
    out = [(f"{name} alone", {name: 1.0}) for name in names]
    out.append(("plain mean", dict.fromkeys(names, 1.0)))
    if len(names) == 2:
        first, second = names
        out += [(f"logit mean, w={w:g}", {first: w, second: 1 - w}) for w in grid if w != 0.5]
    else:
        out += [(f"mean without {n}", {m: 1.0 for m in names if m != n}) for n in names]
    return out


def trained_run(folds: int, work: Path) -> Path:
    """The ensemble without the transformer trained with out-of-fold scores into ``work``."""
    run = work / "run"
    overrides = [*WITHOUT_TRANSFORMER, f"decision.oof_folds={folds}", "report=false"]
    train_cli([*overrides, f"hydra.run.dir={run}"], output="stderr")
    return run


def saved_scores(run: Path) -> tuple[object, dict[str, np.ndarray]]:
    """The run's ensemble predictor (its embedding cache attached) and its oof arrays."""
    from topictone import infer

    saved = run / OOF_SCORES
    if not saved.is_file():
        sys.exit(f"{saved}: not found (train the run with decision.oof_folds=5)")
    predictor = infer.load(run / "model")
    cache_loaded_embeddings(predictor, run / "model")
    with np.load(saved) as stored:
        return predictor, {key: stored[key] for key in stored.files}


def f1_cut(schema, truth: np.ndarray, topic: np.ndarray) -> np.ndarray:
    """The presets' F1 rule (``decision.thresholds=f1``), fitted on ``truth`` alone."""
    return np.array(list(f1_thresholds(schema, topic, truth).values()))


def print_rules(schema, compared: list, oof: dict, oof_truth: tuple, dev: dict, dev_truth: tuple):
    """The first table: each rule on out-of-fold train and on dev, against the plain mean."""
    from sklearn.metrics import f1_score

    plain = dict.fromkeys(oof, 1.0)
    base_decided = combined(dev, plain)[0] >= f1_cut(schema, oof_truth[0], combined(oof, plain)[0])
    print(
        "| rule | train OOF topics | OOF defence / CT / technology | train OOF tone "
        "| dev topics | dev defence / CT / technology | dev tone "
        "| dev topics vs plain mean [95% paired CI] |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for label, weights in compared:
        oof_topic, oof_tone = combined(oof, weights)
        dev_topic, dev_tone = combined(dev, weights)
        cut = f1_cut(schema, oof_truth[0], oof_topic)
        per_oof = f1_score(oof_truth[0], oof_topic >= cut, average=None)
        decided = dev_topic >= cut
        per_dev = f1_score(dev_truth[0], decided, average=None)
        low, high = paired_interval(dev_truth[0], base_decided, decided)
        print(
            f"| {label} | {per_oof.mean():.3f} | {joined(per_oof)} "
            f"| {f1_score(oof_truth[1], oof_tone.argmax(1), average='macro'):.3f} "
            f"| {per_dev.mean():.3f} | {joined(per_dev)} "
            f"| {f1_score(dev_truth[1], dev_tone.argmax(1), average='macro'):.3f} "
            f"| {per_dev.mean() - f1_score(dev_truth[0], base_decided, average='macro'):+.3f} "
            f"[{low:+.3f}, {high:+.3f}] |"
        )
    print(f"(train {len(oof_truth[1])} texts; dev {len(dev_truth[1])} texts)")


def print_units(schema, compared: list, oof: dict, oof_truth: tuple, units: np.ndarray) -> None:
    """The second table: each rule's out-of-fold train figures per unit."""
    from sklearn.metrics import f1_score

    kinds = sorted(set(units), key=list(units).index)
    print()
    print(
        "| rule | "
        + " | ".join(f"train OOF topics / tone, {u} (n={(units == u).sum()})" for u in kinds)
        + " |"
    )
    print("|---|" + "---|" * len(kinds))
    for label, weights in compared:
        oof_topic, oof_tone = combined(oof, weights)
        decided = oof_topic >= f1_cut(schema, oof_truth[0], oof_topic)
        cells = []
        for unit in kinds:
            rows = units == unit
            tone = f1_score(oof_truth[1][rows], oof_tone[rows].argmax(1), average="macro")
            cells.append(f"{macro_f1(oof_truth[0][rows], decided[rows]):.3f} / {tone:.3f}")
        print(f"| {label} | {' | '.join(cells)} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--weights", type=float, nargs="+", default=[0.3, 0.4, 0.5, 0.6, 0.7])
    parser.add_argument("--run", type=Path, help="an ensemble run folder with oof/scores.npz")
    args = parser.parse_args()
    require_gold("train.jsonl")
    _, schema, splits = configured_splits(WITHOUT_TRANSFORMER)
    with tempfile.TemporaryDirectory() as tmp:  # the trained run's folder, when trained
        run = args.run or trained_run(args.folds, Path(tmp))
        predictor, arrays = saved_scores(run)
        members = predictor.parts()
        if not members:
            sys.exit(f"{run / 'model'}: a {predictor.kind} model; --run takes an ensemble run")
        clean = predictor.preprocess(splits["dev"]["text"])
        dev = {name: member.raw_scores_clean(clean) for name, member in members.items()}
    oof = {n: (arrays[f"{n}/topic"], arrays[f"{n}/tone"]) for n in members}
    oof_truth = (arrays["topic_true"], arrays["tone_true"])
    compared = rules(list(members), args.weights)
    print_rules(schema, compared, oof, oof_truth, dev, targets(splits["dev"]))
    by_id = dict(zip(map(str, splits["train"]["id"]), splits["train"]["unit"], strict=True))
    units = np.array([by_id[str(i)] for i in arrays["id"]])
    print_units(schema, compared, oof, oof_truth, units)


if __name__ == "__main__":
    main()
