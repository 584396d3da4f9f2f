"""Quality on gold dev + dev_articles: the presets, overall and per language / length bucket.

    python benchmarks/gold_quality.py [--runs DIR] [--reuse] [--models tfidf encoder ensemble]

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
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
sys.path.insert(0, str(ROOT))

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


def prediction_rows(path: Path, schema, fields: dict[str, str]) -> list[dict]:
    """A saved predictions file's rows, each checked for its truth and the ``prediction``
    fields these scripts read (``fields``: each field's content, ``topics`` or ``tones``
    for a score per name, ``topic list`` for decided topics): a bad file gets one line
    naming file, line and field, not a traceback."""
    from infer.errors import InputError
    from infer.io import read_rows

    def labels(value, names) -> bool:
        return isinstance(value, list) and all(v in names for v in value)

    def scores(value, names) -> bool:
        return isinstance(value, dict) and all(
            isinstance(value.get(n), (int, float)) and not isinstance(value[n], bool) for n in names
        )

    topics, tones = list(schema.topics), list(schema.tones)
    rows = []
    for line, row, _ in read_rows(path, "jsonl"):
        prediction = row.get("prediction")
        checks = [
            ("id", isinstance(row.get("id"), (str, int)), "expected a text or a number"),
            ("topics", labels(row.get("topics"), schema.topics), f"expected a list of {topics}"),
            ("tone", row.get("tone") in schema.tones, f"expected one of {tones}"),
            ("prediction", isinstance(prediction, dict), "expected an object"),
        ]
        for field, what in fields.items() if isinstance(prediction, dict) else ():
            names = topics if what.startswith("topic") else tones
            ok = (labels if what == "topic list" else scores)(prediction.get(field), names)
            expected = "a list of" if what == "topic list" else "a number for each of"
            checks.append((f"prediction.{field}", ok, f"expected {expected} {names}"))
        for name, ok, expected in checks:
            if not ok:
                raise InputError(expected, path, line, name)
        rows.append(row)
    return rows


def dev_predictions(run: Path) -> tuple:
    """A run's saved dev predictions: manifest, schema, rows, (topic truth, tone truth),
    (calibrated topic scores, tone distributions)."""
    from infer.artifact import read_manifest

    manifest = read_manifest(run / "model", verify=False)
    schema = manifest.schema
    read = {"topic_scores": "topics", "tone_scores": "tones"}
    rows = prediction_rows(run / "predictions" / "dev.jsonl", schema, read)
    topic_true = np.array([[t in r["topics"] for t in schema.topics] for r in rows], dtype=int)
    tone_true = np.array([schema.tones.index(r["tone"]) for r in rows])
    scores = np.array([[r["prediction"]["topic_scores"][t] for t in schema.topics] for r in rows])
    probs = np.array([[r["prediction"]["tone_scores"][t] for t in schema.tones] for r in rows])
    return manifest, schema, rows, (topic_true, tone_true), (scores, probs)


def crossfit_predictions(run: Path, schema, rows: list[dict]) -> tuple | None:
    """The run's honest dev outputs (``predictions/dev_crossfit.jsonl``: each text decided
    by calibrations and thresholds fitted without it): topic decisions, tone distributions."""
    path = run / "predictions" / "dev_crossfit.jsonl"
    if not path.is_file():
        return None
    honest = prediction_rows(path, schema, {"topics": "topic list", "tone_scores": "tones"})
    if [r["id"] for r in honest] != [r["id"] for r in rows]:
        sys.exit(f"error: {path} does not match the run's dev predictions")
    decided = np.array([[t in r["prediction"]["topics"] for t in schema.topics] for r in honest])
    probs = np.array([[r["prediction"]["tone_scores"][t] for t in schema.tones] for r in honest])
    return decided.astype(int), probs


def bucket_metrics(run: Path) -> list[tuple]:
    """(bucket, n, topics macro-F1 honest, topics macro-F1 dev-fitted, tone macro-F1 honest,
    bootstrap 95% intervals of the honest topic and tone figures)."""
    from train.evaluation import bootstrap_interval, compute_metrics, decisions

    manifest, schema, rows, (topic_true, tone_true), (scores, probs) = dev_predictions(run)
    decided = decisions(scores, schema, manifest.thresholds)
    honest_probs = probs
    crossfit = crossfit_predictions(run, schema, rows)
    if crossfit is not None:  # with nothing fitted on dev, dev's own figures are honest
        decided, honest_probs = crossfit
    half = dict.fromkeys(schema.topics, 0.5)
    out = []
    buckets = [("all", np.ones(len(rows), dtype=bool))]
    for field in ("lang", "unit"):
        values = np.array([str(r.get(field)) for r in rows])
        buckets += [(f"{field}={v}", values == v) for v in sorted(set(values))]
    for name, mask in buckets:
        truth = (topic_true[mask], tone_true[mask])
        fitted = compute_metrics(schema, scores[mask], probs[mask], *truth, manifest.thresholds)
        honest = compute_metrics(schema, decided[mask], honest_probs[mask], *truth, half)
        interval = bootstrap_interval(
            decided[mask], truth[0], honest_probs[mask].argmax(axis=1), truth[1]
        )
        out.append(
            (
                name,
                int(mask.sum()),
                honest["topics/macro_f1"],
                fitted["topics/macro_f1"],
                honest["tone/macro_f1"],
                interval["topics/macro_f1"],
                interval["tone/macro_f1"],
            )
        )
    return out


def same_member(run: Path, member: str, extra: list[str]) -> bool:
    """Whether ``run`` trained the model ``experiment=gold_ensemble`` would train as its
    ``member``: a run of an older preset, or of other settings, is retrained instead."""
    from demo import train_config
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
    print(f"$ python -m train {' '.join(overrides)}", file=sys.stderr, flush=True)
    subprocess.run(
        [sys.executable, "-m", "train", *overrides],
        cwd=ROOT,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
    )


def one_line_errors(main: Callable[[], None]) -> None:
    """Runs a script's ``main``: a bad run folder or file ends in one line, not a traceback."""
    from infer.errors import TopictoneError

    try:
        main()
    except TopictoneError as err:
        sys.exit(f"error: {err}")


def main() -> None:
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
    if not (SHARED / "data" / "gold" / "dev.jsonl").is_file():
        sys.exit(f"error: {SHARED / 'data/gold'} not found: needs ../shared beside the repo")

    import infer
    from infer.errors import TopictoneError
    from train.encoder import resolve_encoder

    # embeddinggemma: the encoder, the transformer's backbone, and the ensemble's members
    # (also the students' teacher)
    needs_encoder = ("encoder", "transformer", "ensemble", *STUDENTS)
    args.models = sorted(set(args.models), key=KINDS.index)  # teachers before their students
    if set(needs_encoder) & set(args.models):
        try:
            resolve_encoder("google/embeddinggemma-300m")
        except TopictoneError as err:
            print(f"skipped {', '.join(needs_encoder)}: {err}", file=sys.stderr)
            args.models = [k for k in args.models if k not in needs_encoder]
    runs = args.runs.resolve()
    for kind in args.models:
        if not (args.reuse and (runs / kind / "metrics.json").is_file()):
            train(kind, runs / kind, runs, args.override.get(kind, []))
    print(
        "| model | dev bucket | n | topics macro-F1, honest (decisions fitted without the "
        "text) [95% CI] | topics macro-F1, saved decisions (optimistic if fitted on dev) "
        "| tone macro-F1, honest [95% CI] "
        "| target topics / tone |"
    )
    print("|---|---|---|---|---|---|---|")
    example = (SHARED / "examples" / "india-israel-defence-mou.hi.txt").read_text(encoding="utf-8")
    labels, gaps = {}, []
    for kind in args.models:
        run = runs / kind
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
        [p] = infer.load(run / "model").predict([example])
        labels[kind] = f"topics {p.topics}, tone {p.tone}"
    print()
    print(f"Buckets more than {BUCKET_GAP} below the overall figure: {'; '.join(gaps) or 'none'}")
    print()
    print("Seed example (expected: all three topics, positive):")
    for kind, text in labels.items():
        print(f"- {kind}: {text}")


if __name__ == "__main__":
    one_line_errors(main)
