"""Quality on gold dev + dev_articles: the presets, overall and per language / length bucket.

    python -m benchmarks.quality.gold_quality [--runs DIR] [--reuse]
        [--models tfidf encoder ensemble]

Trains ``experiment=gold_<kind>`` for each model into DIR/<kind> (default
``runs/gold-quality``; ``--reuse`` reads runs already there; the ensemble loads the
encoder and transformer runs there as its members where their model settings are its
members', rather than training them again: not the one-epoch transformer), then prints a
Markdown table of topic and tone macro-F1 per model and per ``lang`` / ``unit`` bucket
(``unit=article`` is dev_articles): at 0.5 thresholds; honest, with a bootstrap 95%
interval (the run's ``predictions/dev_crossfit.jsonl``: calibration and thresholds
cross-fitted on dev folds, or, with ``decision.use_dev=false``, fitted on out-of-fold
train scores alone); and with the saved decisions (optimistic where they were fitted on
dev), against the targets; the buckets more than 0.05 below the overall
figure; and the labels of ``../shared/examples/india-israel-defence-mou.hi.txt``.
``--models transformer`` adds the fine-tuned transformer (``experiment=gold_transformer``,
embeddinggemma's top layers, 9 minutes of an idle 2-core CPU); ``--models distilled`` the
e5 transformer trained as the ensemble's student (``experiment=gold_distilled``, the ensemble
run in DIR its teacher).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from benchmarks.common import (
    ROOT,
    SEED_EXAMPLE,
    bootstrap_interval,
    compute_metrics,
    crossfit_predictions,
    decide,
    dev_predictions,
    one_line_errors,
    require_gold,
    resolve_encoder,
    train_cli,
    train_config,
)

TARGETS = {
    "tfidf": (0.82, 0.65),
    "encoder": (0.86, 0.76),
    "transformer": (0.84, 0.74),
    "ensemble": (0.88, 0.76),
    "distilled": (0.84, 0.74),  # the transformer preset as the ensemble's student
    "tfidf_distilled": (0.82, 0.65),  # TF-IDF as the ensemble's student
}
STUDENTS = ("distilled", "tfidf_distilled")  # the ensemble run in --runs is their teacher
KINDS = tuple(TARGETS)
DEFAULT_KINDS = ("tfidf", "encoder", "ensemble")
BUCKET_GAP = 0.05  # no language or length bucket more than this below the overall figure
# embeddinggemma: the encoder, the transformer's backbone, and the ensemble's members
# (also the students' teacher)
NEEDS_ENCODER = ("encoder", "transformer", "ensemble", *STUDENTS)


def buckets_of(rows: list[dict]) -> list[tuple[str, np.ndarray]]:
    """``all``, then one mask per value of ``lang`` and of ``unit``."""
    out = [("all", np.ones(len(rows), dtype=bool))]
    for field in ("lang", "unit"):
        values = np.array([str(r.get(field)) for r in rows])
        out += [(f"{field}={v}", values == v) for v in sorted(set(values))]
    return out


def bucket_metrics(run: Path) -> list[tuple]:
    """(bucket, n, topics macro-F1 honest, topics macro-F1 dev-fitted, tone macro-F1 honest,
    bootstrap 95% intervals of the honest topic and tone figures)."""
    manifest, schema, rows, (topic_true, tone_true), (scores, probs) = dev_predictions(run)
    decided = decide(scores, schema, manifest.thresholds)
    honest_probs = probs
    crossfit = crossfit_predictions(run, schema, rows)
    if crossfit is not None:  # with nothing fitted on dev, dev's own figures are honest
        decided, honest_probs = crossfit
    half = dict.fromkeys(schema.topics, 0.5)
    out = []
    for name, mask in buckets_of(rows):
        truth = (topic_true[mask], tone_true[mask])
        fitted = compute_metrics(schema, scores[mask], probs[mask], *truth, manifest.thresholds)
        honest = compute_metrics(schema, decided[mask], honest_probs[mask], *truth, half)
        interval = bootstrap_interval(
            decided[mask], truth[0], honest_probs[mask].argmax(axis=1), truth[1]
        )
        topics, tone = honest["topics/macro_f1"], honest["tone/macro_f1"]
        out.append((name, int(mask.sum()), topics, fitted["topics/macro_f1"], tone))
        out[-1] += (interval["topics/macro_f1"], interval["tone/macro_f1"])
    return out


def same_member(run: Path, member: str, extra: list[str]) -> bool:
    """Whether ``run`` trained the model ``experiment=gold_ensemble`` would train as its
    ``member``: a run of an older preset, or of other settings, is retrained instead."""
    from omegaconf import OmegaConf

    if not (run / "model" / "topictone.json").is_file():
        return False
    wanted = train_config(["experiment=gold_ensemble", *extra]).model.members[member]
    saved = OmegaConf.load(run / "config.yaml").model

    def settings(cfg) -> dict:
        resolved = OmegaConf.to_container(cfg, resolve=True)
        return {k: v for k, v in resolved.items() if k != "progress"}

    return settings(wanted) == settings(saved)


def train(kind: str, run: Path, runs: Path, extra: list[str]) -> None:
    overrides = [f"experiment=gold_{kind}", f"hydra.run.dir={run}", *extra]
    if kind in ("transformer", "encoder", "distilled"):
        overrides.append("model.progress=false")
    if kind in STUDENTS:
        overrides.append(f"distill.teacher={runs / 'ensemble' / 'model'}")
    if kind == "ensemble":
        # A gold_encoder or gold_transformer run in --runs whose model settings are those
        # of gold_ensemble's member (same seed too) is loaded instead of trained again.
        # The TF-IDF member takes a minute to train: it is trained.
        for member in ("encoder", "transformer"):
            if same_member(runs / member, member, extra):
                overrides.append(f"model.members.{member}={runs / member / 'model'}")
    train_cli(overrides, output="stderr")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "gold-quality")
    parser.add_argument("--reuse", action="store_true", help="read runs already in --runs")
    parser.add_argument("--models", nargs="+", choices=KINDS, default=list(DEFAULT_KINDS))
    parser.add_argument(
        "--override",
        nargs="+",
        default=[],
        metavar="KIND:KEY=VALUE",
        help="a training override for one model, e.g. tfidf:decision.oof_folds=5",
    )
    args = parser.parse_args()
    overrides: dict[str, list[str]] = {}
    for item in args.override:
        kind, _, override = item.partition(":")
        overrides.setdefault(kind, []).append(override)
    args.override = overrides
    return args


def available(models: list[str]) -> list[str]:
    """``models``, teachers before their students, less those whose encoder is absent."""
    from topictone.infer import TopictoneError

    models = sorted(set(models), key=KINDS.index)
    if set(NEEDS_ENCODER) & set(models):
        try:
            resolve_encoder("google/embeddinggemma-300m")
        except TopictoneError as err:
            print(f"skipped {', '.join(NEEDS_ENCODER)}: {err}", file=sys.stderr)
            models = [k for k in models if k not in NEEDS_ENCODER]
    return models


def print_model(kind: str, run: Path, gaps: list[str]) -> None:
    """A model's rows of the table; its buckets far below its overall figure go to ``gaps``."""
    metrics = json.loads((run / "metrics.json").read_text())
    before = metrics.get("dev_before_fitting", metrics["dev"])
    topics_t, tone_t = TARGETS[kind]
    target = f"{topics_t:.2f} / {tone_t:.2f}" if topics_t else "-"
    print(
        f"| {kind} | all, 0.5 thresholds, before dev fitting | {before['n']} | "
        f"{before['topics/macro_f1']:.3f} | | {before['tone/macro_f1']:.3f} | |"
    )
    buckets = bucket_metrics(run)
    overall = buckets[0]
    for name, n, honest, fitted, tone, topic_ci, tone_ci in buckets:
        print(
            f"| {kind} | {name} | {n} | {honest:.3f} [{topic_ci[0]:.3f}, {topic_ci[1]:.3f}] "
            f"| {fitted:.3f} | {tone:.3f} [{tone_ci[0]:.3f}, {tone_ci[1]:.3f}] | "
            f"{target if name == 'all' else ''} |"
        )
        for what, value, ref in (("topics", honest, overall[2]), ("tone", tone, overall[4])):
            if value < ref - BUCKET_GAP:
                gaps.append(f"{kind} {name}: {what} {value:.3f} vs {ref:.3f} overall")


def main() -> None:
    from topictone import infer

    args = parse_args()
    require_gold(word="error")
    models = available(args.models)
    runs = args.runs.resolve()
    for kind in models:
        if not (args.reuse and (runs / kind / "metrics.json").is_file()):
            train(kind, runs / kind, runs, args.override.get(kind, []))
    print(
        "| model | dev bucket | n | topics macro-F1, honest (decisions fitted without the "
        "text) [95% CI] | topics macro-F1, saved decisions (optimistic if fitted on dev) "
        "| tone macro-F1, honest [95% CI] "
        "| target topics / tone |"
    )
    print("|---|---|---|---|---|---|---|")
    example = SEED_EXAMPLE.read_text(encoding="utf-8")
    labels, gaps = {}, []
    for kind in models:
        print_model(kind, runs / kind, gaps)
        [p] = infer.load(runs / kind / "model").predict([example])
        labels[kind] = f"topics {p.topics}, tone {p.tone}"
    print()
    print(f"Buckets more than {BUCKET_GAP} below the overall figure: {'; '.join(gaps) or 'none'}")
    print()
    print("Seed example (expected: all three topics, positive):")
    for kind, text in labels.items():
        print(f"- {kind}: {text}")


if __name__ == "__main__":
    one_line_errors(main)
