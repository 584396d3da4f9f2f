"""Decisions fitted on dev, on a held-out slice of train, or on both: one model, compared.

    python -m train experiment=gold_transformer decision.holdout=0.2 hydra.run.dir=runs/held
    python benchmarks/holdout_decisions.py --run runs/held

The run kept a share of gold train out of training and saved the model's raw scores on
it (``holdout/scores.npz``; ``oof/scores.npz`` of a ``decision.oof_folds`` run works too).
Here the same model's raw scores on dev + dev_articles are computed once, and the
decisions (the run's calibration, then per-topic thresholds by each rule) are fitted on
  - dev alone, cross-fitted over 5 dev folds (what a run without held-out texts saves),
  - the train slice and dev, cross-fitted the same way with the slice in every fit,
  - the train slice alone, so dev only measures.
Every dev figure is decided without the text it scores; the paired 95% intervals are
against the first row. The last column gives the seed example's decisions
(``../shared/examples``) under each rule fitted on all of its texts.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
GOLD = ROOT.parent / "shared" / "data" / "gold"
SEED = ROOT.parent / "shared" / "examples" / "india-israel-defence-mou.hi.txt"
sys.path.insert(0, str(ROOT))

from demo import train_config  # noqa: E402
from threshold_rules import paired_interval  # noqa: E402


def main() -> None:
    from omegaconf import OmegaConf
    from sklearn.metrics import f1_score

    import infer
    from infer.schema import LabelSchema
    from train.data import load_splits, targets
    from train.decision import ScoreTree, crossfit_decision, fit_decision
    from train.evaluation import decisions
    from train.run import OOF_SCORES

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="a run folder")
    parser.add_argument("--rules", nargs="+", default=["f1", "auto"], help="decision.thresholds")
    args = parser.parse_args()
    if not (GOLD / "train.jsonl").is_file():
        sys.exit(f"skipped: {GOLD} not found (../shared beside the repository root)")
    saved = next(
        (p for d in ("holdout", "oof") if (p := args.run / d / OOF_SCORES).is_file()), None
    )
    if saved is None:
        sys.exit(f"{args.run}: no holdout/ or oof/ scores (train with decision.holdout=0.2)")
    with np.load(saved) as stored:
        arrays = {key: stored[key] for key in stored.files}
    cfg = train_config(["data=gold"])
    schema = LabelSchema.from_dict(cfg.labels)
    dev = load_splits(cfg.data, schema)["dev"]
    predictor = infer.load(args.run / "model")
    configured = OmegaConf.to_container(OmegaConf.load(args.run / "config.yaml").decision)

    held_tree = ScoreTree.from_arrays(arrays)
    seeded = SEED.is_file()  # the seed example rides along as the last row, never fitted on
    texts = [*dev["text"], *([SEED.read_text(encoding="utf-8")] if seeded else [])]
    tree = held_tree.concat(ScoreTree.of(predictor, predictor.preprocess(texts)))
    n_held, n_dev = len(arrays["tone_true"]), len(dev)
    dev_truth = targets(dev)
    extra = int(seeded)
    truth = (
        np.concatenate(
            [arrays["topic_true"], dev_truth[0], np.zeros((extra, len(schema.topics)), int)]
        ),
        np.concatenate([arrays["tone_true"], dev_truth[1], np.zeros(extra, int)]),
    )
    held_rows, dev_rows = np.arange(n_held), np.arange(n_held, n_held + n_dev)
    sources = {  # the rows always fitted on, and whether dev folds join them
        "dev alone": (np.zeros(0, dtype=int), True),
        f"train slice ({n_held}) + dev": (held_rows, True),
        f"train slice ({n_held}) alone": (held_rows, False),
    }

    results = []
    for rule in args.rules:
        decision = {**configured, "thresholds": rule}
        for name, (always, with_dev) in sources.items():
            fit_rows = np.concatenate([always, dev_rows]) if with_dev else always
            _, thresholds, every = fit_decision(predictor, tree, truth, fit_rows, decision)
            if with_dev:  # each dev fold decided by a fit without it
                decided, (_, tone) = crossfit_decision(
                    predictor, tree, truth, dev_rows, decision, always=always
                )
            else:
                decided = decisions(every[0][dev_rows], schema, thresholds)
                tone = every[1][dev_rows]
            seed = ""
            if seeded:
                on = decisions(every[0][-1:], schema, thresholds)[0]
                seed = ", ".join(t for t, v in zip(schema.topics, on, strict=True) if v)
                seed += f" + {schema.tones[int(every[1][-1].argmax())]}"
            cuts = " / ".join(f"{thresholds[t]:.2f}" for t in schema.topics)
            results.append((f"{name}, {rule}", decided, tone.argmax(1), seed, cuts))

    _, base_topics, base_tone, _, _ = results[0]
    print(
        "| decisions fitted on, rule | dev topics | defence / CT / technology | vs first "
        "[95% paired CI] | dev tone | vs first | thresholds | seed example |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for label, topics, tone, seed, cuts in results:
        per = f1_score(dev_truth[0], topics, average=None, zero_division=0)
        tone_f1 = f1_score(dev_truth[1], tone, average="macro")
        base_f1 = f1_score(dev_truth[0], base_topics, average="macro", zero_division=0)
        base_tone_f1 = f1_score(dev_truth[1], base_tone, average="macro")
        low, high = paired_interval(dev_truth[0], base_topics, topics)
        tlow, thigh = paired_interval(dev_truth[1], base_tone, tone)
        print(
            f"| {label} | {per.mean():.3f} | {' / '.join(f'{v:.3f}' for v in per)} "
            f"| {per.mean() - base_f1:+.3f} [{low:+.3f}, {high:+.3f}] | {tone_f1:.3f} "
            f"| {tone_f1 - base_tone_f1:+.3f} [{tlow:+.3f}, {thigh:+.3f}] | {cuts} | {seed} |"
        )
    print(f"(dev + dev_articles: {n_dev} texts; train slice: {n_held} texts from {saved})")


if __name__ == "__main__":
    main()
