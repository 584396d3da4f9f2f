"""Ensemble members combined: rules compared by cross-validation over train.

    python benchmarks/ensemble_oof.py [--folds 5] [--weights 0.3 0.4 0.5 0.6 0.7]
    python benchmarks/ensemble_oof.py --run <ensemble run trained with decision.oof_folds>

Without ``--run``, the gold ensemble without the transformer (``experiment=gold_ensemble``,
its members' preset settings) is fitted ``--folds`` times on the other folds of gold train
(``train.run.out_of_fold``), so every train text has out-of-fold scores from both members,
then once on all of train to score dev + dev_articles. With ``--run``, the out-of-fold
scores are the ones that run saved (``oof/scores.npz``) and its model scores dev: any
members, the transformer too, without training again. Each row combines the members' raw
scores by one rule: a member alone, the plain mean of every member's topic logits and
tone distributions, and (two members) weighted means, ``w`` the first member's weight;
(more members) the plain mean without each one. Topic thresholds are chosen for F1 (the
presets' rule) on the out-of-fold train scores and applied unchanged to dev, so the dev
columns are decided without dev; the last column is the dev difference to the plain mean
with a paired bootstrap 95% interval. A second table gives each rule's out-of-fold train
figures per unit (headline, title + lead, article): 6 times dev's texts, so it tells a
unit's systematic gap from dev's noise. The encoder needs its embeddings cached (one
``experiment=gold_encoder`` run); otherwise it embeds train five times over.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
GOLD = ROOT.parent / "shared" / "data" / "gold"
sys.path.insert(0, str(ROOT))

from demo import train_config  # noqa: E402
from threshold_rules import paired_interval  # noqa: E402


def combined(scores: dict, weights: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
    """The weighted mean of the members' topic logits and of their tone distributions."""
    from infer.decision import logit

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


def main() -> None:
    from hydra.utils import instantiate
    from omegaconf import OmegaConf
    from sklearn.metrics import f1_score

    import infer
    from infer.schema import LabelSchema
    from train.data import load_splits, targets
    from train.decision import ScoreTree, tune_thresholds
    from train.encoder import cache_loaded_embeddings
    from train.run import OOF_SCORES, out_of_fold

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--weights", type=float, nargs="+", default=[0.3, 0.4, 0.5, 0.6, 0.7])
    parser.add_argument("--run", type=Path, help="an ensemble run folder with oof/scores.npz")
    args = parser.parse_args()
    if not (GOLD / "train.jsonl").is_file():
        sys.exit(f"skipped: {GOLD} not found (../shared beside the repository root)")
    cfg = train_config(
        ["experiment=gold_ensemble", "~model.members.transformer", "~model.weights.transformer"]
    )
    schema = LabelSchema.from_dict(cfg.labels)
    splits = load_splits(cfg.data, schema)
    with tempfile.TemporaryDirectory() as tmp:
        if args.run is None:
            model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
            out_of_fold(model_cfg, splits["train"], schema, args.folds, cfg.seed, Path(tmp))
            fitter = instantiate({k: v for k, v in model_cfg.items() if k != "kind"})
            fitter.fit(splits["train"], schema, dev=None, workdir=Path(tmp) / "all")
            predictor, saved = fitter.predictor_, Path(tmp) / OOF_SCORES
        else:
            saved = args.run / "oof" / OOF_SCORES
            if not saved.is_file():
                sys.exit(f"{saved}: not found (train the run with decision.oof_folds=5)")
            predictor = infer.load(args.run / "model")
            cache_loaded_embeddings(predictor, args.run / "model")
        with np.load(saved) as stored:
            arrays = {key: stored[key] for key in stored.files}
    names = list(predictor.parts())
    if not names:
        sys.exit(f"{args.run / 'model'}: a {predictor.kind} model; --run takes an ensemble run")
    oof = {n: (arrays[f"{n}/topic"], arrays[f"{n}/tone"]) for n in names}
    oof_truth = (arrays["topic_true"], arrays["tone_true"])
    dev_tree = ScoreTree.of(predictor, predictor.preprocess(splits["dev"]["text"]))
    dev = {name: part.raw for name, part in dev_tree.parts.items()}
    dev_truth = targets(splits["dev"])

    def f1_thresholds(truth: np.ndarray, topic: np.ndarray) -> np.ndarray:
        """The presets' F1 rule (``decision.thresholds=f1``), fitted on ``truth`` alone."""
        return np.array(list(tune_thresholds(schema, topic, truth).values()))

    compared = rules(names, args.weights)
    plain = dict.fromkeys(names, 1.0)
    base_cut = f1_thresholds(oof_truth[0], combined(oof, plain)[0])
    base_decided = combined(dev, plain)[0] >= base_cut
    print(
        "| rule | train OOF topics | OOF defence / CT / technology | train OOF tone "
        "| dev topics | dev defence / CT / technology | dev tone "
        "| dev topics vs plain mean [95% paired CI] |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for label, weights in compared:
        oof_topic, oof_tone = combined(oof, weights)
        dev_topic, dev_tone = combined(dev, weights)
        cut = f1_thresholds(oof_truth[0], oof_topic)
        per_oof = f1_score(oof_truth[0], oof_topic >= cut, average=None)
        decided = dev_topic >= cut
        per_dev = f1_score(dev_truth[0], decided, average=None)
        low, high = paired_interval(dev_truth[0], base_decided, decided)
        print(
            f"| {label} | {per_oof.mean():.3f} | {' / '.join(f'{v:.3f}' for v in per_oof)} "
            f"| {f1_score(oof_truth[1], oof_tone.argmax(1), average='macro'):.3f} "
            f"| {per_dev.mean():.3f} | {' / '.join(f'{v:.3f}' for v in per_dev)} "
            f"| {f1_score(dev_truth[1], dev_tone.argmax(1), average='macro'):.3f} "
            f"| {per_dev.mean() - f1_score(dev_truth[0], base_decided, average='macro'):+.3f} "
            f"[{low:+.3f}, {high:+.3f}] |"
        )
    print(f"(train {len(oof_truth[1])} texts; dev {len(dev_truth[1])} texts)")

    by_id = dict(zip(map(str, splits["train"]["id"]), splits["train"]["unit"], strict=True))
    units = np.array([by_id[str(i)] for i in arrays["id"]])
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
        decided = oof_topic >= f1_thresholds(oof_truth[0], oof_topic)
        cells = []
        for unit in kinds:
            rows = units == unit
            topics = f1_score(oof_truth[0][rows], decided[rows], average="macro", zero_division=0)
            tone = f1_score(oof_truth[1][rows], oof_tone[rows].argmax(1), average="macro")
            cells.append(f"{topics:.3f} / {tone:.3f}")
        print(f"| {label} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
