"""What 100 more labels buy: a learning curve over gold train subsets, measured on gold dev.

    python -m benchmarks.quality.label_gain [--models tfidf]
        [--sizes 100 200 400 800 1600 3200 4290] [--seeds 0 1 2] [--folds 3]
        [--out runs/label-gain]

For each size and seed, ``size`` gold train texts are drawn (seed-controlled; each topic
and each tone first gets up to 5 positives where the size allows, the rest is drawn
proportionally from each (tone, topics) stratum), the model is fitted with the
``experiment=gold_<kind>`` preset's model settings (``conf/experiment/gold_tfidf.yaml``
over ``conf/model/tfidf.yaml``), and scored on gold dev + dev_articles (710 texts).
Decisions are honest, nothing fitted on dev: ``--folds K`` (default 3; the preset uses 5)
tunes per-topic F1 thresholds on K-fold out-of-fold scores over the drawn subset alone (K
more fits per point); ``--folds 0`` decides topics at 0.5 on the uncalibrated scores,
which few labels push far below 0.5 (topics macro-F1 near 0.1 at 100 labels). Tone is the
argmax of the uncalibrated distribution either way. So the full-size point is not the
preset's own figure (which calibrates and fits thresholds on out-of-fold train).

Prints the CPU line, then size | topics macro-F1 mean over seeds [min-max] | tone
macro-F1 mean [min-max] | gain per 100 labels against the previous size; per run, the
bootstrap 95% intervals and per-label F1. Writes ``label_gain.md``, ``results.json``
and ``label_gain.png`` (where matplotlib is installed) into ``--out``. Where every seed
draws the same texts (the whole train set) the fitted model is reused: the fit is
deterministic (lbfgs).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import (
    bootstrap_interval,
    configured_splits,
    cpu_line,
    decide,
    f1_thresholds,
    one_line_errors,
    require_gold,
    targets,
)
from benchmarks.curves import Point, curve_table, preset_fitter, runs_table, summary

KINDS = ("tfidf",)
SIZES = (100, 200, 400, 800, 1600, 3200, 4290)
SEEDS = (0, 1, 2)
MIN_POSITIVES = 5  # checks.min_examples: each topic and tone gets this many where it can


def draw(
    topic_true: np.ndarray,
    tone_true: np.ndarray,
    size: int,
    seed: int,
    n_tones: int,
    min_positives: int = MIN_POSITIVES,
) -> np.ndarray:
    """Sorted row indices of ``size`` texts: first up to ``min_positives`` of each topic
    and each tone (fewer where ``size`` is small, never more than exist), then the rest
    drawn proportionally from each (tone, topics) stratum (largest remainders)."""
    n = len(tone_true)
    if size >= n:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    columns = [topic_true[:, j] == 1 for j in range(topic_true.shape[1])]
    columns += [tone_true == k for k in range(n_tones)]
    floor = max(1, min(min_positives, size // (2 * len(columns))))
    chosen = np.zeros(n, dtype=bool)
    for positive in columns:
        missing = floor - int((chosen & positive).sum())
        pool = np.flatnonzero(positive & ~chosen)
        if missing > 0 and len(pool):
            chosen[rng.choice(pool, min(missing, len(pool)), replace=False)] = True
    left = size - int(chosen.sum())
    if left > 0:
        weights = 2 ** np.arange(topic_true.shape[1])
        strata = tone_true * weights.sum() * 2 + topic_true @ weights
        pool = np.flatnonzero(~chosen)
        keys, counts = np.unique(strata[pool], return_counts=True)
        share = left * counts / counts.sum()
        quota = np.floor(share).astype(int)
        rest = share - quota + rng.random(len(share)) * 1e-9  # random ties
        quota[np.argsort(-rest)[: left - quota.sum()]] += 1
        for key, take in zip(keys, quota, strict=True):
            members = pool[strata[pool] == key]
            chosen[rng.choice(members, take, replace=False)] = True
    return np.flatnonzero(chosen)


def topic_decisions(
    make_fitter: Callable[[int], Any],
    schema: Any,
    subset: Any,
    seed: int,
    dev_scores: np.ndarray,
    folds: int,
) -> np.ndarray:
    """Dev topic decisions: at 0.5 (``folds`` < 2), or at F1 thresholds tuned on
    out-of-fold scores over ``subset`` alone."""
    if folds < 2:
        return decide(dev_scores, schema, dict.fromkeys(schema.topics, 0.5))
    from sklearn.model_selection import KFold

    topic_true, _ = targets(subset)
    oof = np.zeros((len(subset), len(schema.topics)))
    for fit_rows, held_rows in KFold(folds, shuffle=True, random_state=seed).split(oof):
        predictor = make_fitter(seed).fit(subset.select(fit_rows), schema).predictor_
        oof[held_rows], _ = predictor.predict_scores(subset.select(held_rows)["text"])
    return decide(dev_scores, schema, f1_thresholds(schema, oof, topic_true))


def learning_curve(
    make_fitter: Callable[[int], Any],
    schema: Any,
    train: Any,
    dev: Any,
    sizes: Sequence[int],
    seeds: Sequence[int],
    folds: int = 0,
    model: str = "tfidf",
    log: Callable[[str], None] = lambda _: None,
) -> list[Point]:
    """One ``Point`` per size and seed: ``make_fitter(seed)`` fitted on the drawn subset of
    ``train``, scored on ``dev``."""
    from sklearn.metrics import f1_score

    topic_true, tone_true = targets(train)
    dev_topics, dev_tones = targets(dev)
    n_tones = len(schema.tones)
    reused: dict[tuple, tuple] = {}
    points = []
    for size in sizes:
        for seed in seeds:
            start = time.perf_counter()
            rows = draw(topic_true, tone_true, size, seed, n_tones)
            key = tuple(rows) if len(rows) == len(train) else (seed, *rows)
            if key not in reused:
                subset = train.select(rows)
                predictor = make_fitter(seed).fit(subset, schema).predictor_
                scores, probs = predictor.predict_scores(dev["text"])
                decided = topic_decisions(make_fitter, schema, subset, seed, scores, folds)
                tone_pred = probs.argmax(axis=1)
                interval = bootstrap_interval(decided, dev_topics, tone_pred, dev_tones)
                reused[key] = (decided, tone_pred, interval)
            decided, tone_pred, interval = reused[key]
            per_topic = f1_score(dev_topics, decided, average=None, zero_division=0)
            per_tone = f1_score(
                dev_tones, tone_pred, labels=range(n_tones), average=None, zero_division=0
            )
            positives = {t: int(topic_true[rows, j].sum()) for j, t in enumerate(schema.topics)}
            positives |= {t: int((tone_true[rows] == k).sum()) for k, t in enumerate(schema.tones)}
            point = Point(
                model=model,
                size=len(rows),
                seed=seed,
                topics_f1=float(per_topic.mean()),
                tone_f1=float(per_tone.mean()),
                topics_ci=interval["topics/macro_f1"],
                tone_ci=interval["tone/macro_f1"],
                per_topic=dict(zip(schema.topics, map(float, per_topic), strict=True)),
                per_tone=dict(zip(schema.tones, map(float, per_tone), strict=True)),
                positives=positives,
                seconds=time.perf_counter() - start,
            )
            points.append(point)
            log(
                f"{model} size {point.size} seed {seed}: topics {point.topics_f1:.3f} "
                f"tone {point.tone_f1:.3f} ({point.seconds:.0f} s)"
            )
    return points


def plot(points: Sequence[Point], path: Path) -> bool:
    """Mean macro-F1 against size (min–max band over seeds); False where matplotlib is
    not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    figure, axis = plt.subplots(figsize=(7, 4.5))
    entries = summary(points)
    for model in dict.fromkeys(e["model"] for e in entries):
        mine = [e for e in entries if e["model"] == model]
        sizes = [e["size"] for e in mine]
        for what in ("topics", "tone"):
            mean, low, high = zip(*(e[what] for e in mine), strict=True)
            axis.plot(sizes, mean, marker="o", label=f"{model} {what} macro-F1")
            axis.fill_between(sizes, low, high, alpha=0.2)
    axis.set_xscale("log")
    axis.set_xlabel("gold train labels")
    axis.set_ylabel("macro-F1 on gold dev + dev_articles")
    axis.set_title("What more labels buy (band: min–max over seeds)")
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return True


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=KINDS, default=["tfidf"])
    parser.add_argument("--sizes", nargs="+", type=int, default=list(SIZES))
    parser.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    parser.add_argument(
        "--folds",
        type=int,
        default=3,
        help="0: topics at 0.5; K > 1: F1 thresholds tuned on K-fold out-of-fold scores "
        "over the drawn subset (K more fits per point)",
    )
    parser.add_argument("--out", type=Path, default=Path("runs") / "label-gain")
    args = parser.parse_args()
    if min(args.sizes) < 1 or args.folds == 1 or args.folds < 0:
        parser.error("sizes must be positive, --folds 0 or at least 2")
    return args


def main() -> None:
    started = time.perf_counter()
    args = parse_args()
    cpu = cpu_line()
    print(cpu, flush=True)
    require_gold("train.jsonl", "dev.jsonl", "dev_articles.jsonl", word="error")
    points: list[Point] = []
    for kind in args.models:
        _, schema, splits = configured_splits([f"experiment=gold_{kind}"])
        train, dev = splits["train"], splits["dev"]
        sizes = sorted({min(s, len(train)) for s in args.sizes})
        points += learning_curve(
            preset_fitter(kind),
            schema,
            train,
            dev,
            sizes,
            args.seeds,
            args.folds,
            kind,
            lambda line: print(line, file=sys.stderr, flush=True),
        )
    decision = (
        "topics at 0.5 (uncalibrated)"
        if args.folds < 2
        else f"topics at F1 thresholds tuned on {args.folds}-fold out-of-fold scores of the subset"
    )
    table = curve_table(points)
    print("\n".join(table))
    wall = time.perf_counter() - started
    command = "python -m benchmarks.quality.label_gain " + " ".join(sys.argv[1:])
    args.out.mkdir(parents=True, exist_ok=True)
    report = [
        "# What more labels buy (gold dev + dev_articles, 710 texts)",
        "",
        cpu,
        "",
        f"Command: `{command}`; wall time {wall:.0f} s. Decisions: {decision}; tone: argmax. "
        "Nothing fitted on dev.",
        "",
        *table,
        "",
        "## Each run (bootstrap 95% intervals over dev texts)",
        "",
        *runs_table(points),
        "",
    ]
    (args.out / "label_gain.md").write_text("\n".join(report), encoding="utf-8")
    (args.out / "results.json").write_text(
        json.dumps(
            {"command": command, "cpu": cpu, "decision": decision, "wall_s": wall}
            | {"points": [asdict(p) for p in points], "summary": summary(points)},
            indent=1,
        ),
        encoding="utf-8",
    )
    if plot(points, args.out / "label_gain.png"):
        print(f"wrote {args.out / 'label_gain.md'}, {args.out / 'label_gain.png'}")
    else:
        print(f"wrote {args.out / 'label_gain.md'}; no PNG: matplotlib is not installed")
    print(f"wall time {wall:.0f} s")


if __name__ == "__main__":
    one_line_errors(main)
