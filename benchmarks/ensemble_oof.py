"""TF-IDF and the frozen encoder combined: weights compared by cross-validation over train.

    python benchmarks/ensemble_oof.py [--folds 5] [--weights 0.3 0.4 0.5 0.6 0.7]

The gold ensemble without the transformer (``experiment=gold_ensemble``, its members'
preset settings) is fitted ``--folds`` times on the other folds of gold train
(``train.run.out_of_fold``), so every train text has out-of-fold scores from both members,
then once on all of train to score dev + dev_articles. Each row combines the members'
raw scores by one rule: either member alone, or the weighted mean of their topic logits
and of their tone distributions (``w`` is TF-IDF's weight). Topic thresholds are chosen
for F1 (the presets' rule) on the out-of-fold train scores and applied unchanged to dev,
so the dev columns are decided without dev; the last column is the dev difference to the plain mean
(``w=0.5``) with a paired bootstrap 95% interval. A second table gives each rule's
out-of-fold train figures per unit (headline, title + lead, article): 6 times dev's texts,
so it tells a unit's systematic gap from dev's noise. The encoder needs its embeddings
cached (one ``experiment=gold_encoder`` run); otherwise it embeds train five times over.
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


def combined(scores: dict, w: float | None, name: str | None) -> tuple[np.ndarray, np.ndarray]:
    """One member's scores (``name``) or the weighted mean of both (``w`` for TF-IDF)."""
    from infer.decision import logit

    if name is not None:
        return scores[name]
    (tf_topic, tf_tone), (en_topic, en_tone) = scores["tfidf"], scores["encoder"]
    topic = 1 / (1 + np.exp(-(w * logit(tf_topic) + (1 - w) * logit(en_topic))))
    return topic, w * tf_tone + (1 - w) * en_tone


def main() -> None:
    from hydra.utils import instantiate
    from omegaconf import OmegaConf
    from sklearn.metrics import f1_score
    from sklearn.model_selection import KFold

    from infer.schema import LabelSchema
    from train.data import load_splits, targets
    from train.decision import ScoreTree, tune_thresholds
    from train.run import out_of_fold

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--weights", type=float, nargs="+", default=[0.3, 0.4, 0.5, 0.6, 0.7])
    args = parser.parse_args()
    if not (GOLD / "train.jsonl").is_file():
        sys.exit(f"skipped: {GOLD} not found (../shared beside the repository root)")
    cfg = train_config(
        ["experiment=gold_ensemble", "~model.members.transformer", "~model.weights.transformer"]
    )
    schema = LabelSchema.from_dict(cfg.labels)
    splits = load_splits(cfg.data, schema)
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    with tempfile.TemporaryDirectory() as tmp:
        oof_tree, oof_truth = out_of_fold(
            model_cfg, splits["train"], schema, args.folds, cfg.seed, Path(tmp)
        )
        fitter = instantiate({k: v for k, v in model_cfg.items() if k != "kind"})
        fitter.fit(splits["train"], schema, dev=None, workdir=Path(tmp) / "all")
    predictor = fitter.predictor_
    dev_tree = ScoreTree.of(predictor, predictor.preprocess(splits["dev"]["text"]))
    dev_truth = targets(splits["dev"])
    oof = {name: part.raw for name, part in oof_tree.parts.items()}
    dev = {name: part.raw for name, part in dev_tree.parts.items()}

    def f1_thresholds(truth: np.ndarray, topic: np.ndarray) -> np.ndarray:
        """The presets' F1 rule (``decision.thresholds=f1``), fitted on ``truth`` alone."""
        return np.array(list(tune_thresholds(schema, topic, truth).values()))

    rules = [("tfidf alone", None, "tfidf"), ("encoder alone", None, "encoder")]
    rules += [(f"logit mean, w={w:g}", w, None) for w in args.weights]
    base = combined(dev, 0.5, None)
    base_decided = base[0] >= f1_thresholds(oof_truth[0], combined(oof, 0.5, None)[0])
    print(
        "| rule | train OOF topics | OOF defence / CT / technology | train OOF tone "
        "| dev topics | dev defence / CT / technology | dev tone "
        "| dev topics vs w=0.5 [95% paired CI] |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for label, w, name in rules:
        oof_topic, oof_tone = combined(oof, w, name)
        dev_topic, dev_tone = combined(dev, w, name)
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
    print(f"(train {len(oof_truth[1])} texts, {args.folds} folds; dev {len(dev_truth[1])} texts)")

    # out_of_fold concatenates the held-out folds in KFold's order: the units in that order
    train_rows = np.arange(len(splits["train"]))
    folds = KFold(args.folds, shuffle=True, random_state=cfg.seed).split(train_rows)
    order = np.concatenate([held for _, held in folds])
    units = np.array(splits["train"]["unit"])[order]
    names = sorted(set(units), key=list(units).index)
    print()
    print(
        "| rule | "
        + " | ".join(f"train OOF topics / tone, {u} (n={(units == u).sum()})" for u in names)
        + " |"
    )
    print("|---|" + "---|" * len(names))
    for label, w, name in rules:
        oof_topic, oof_tone = combined(oof, w, name)
        decided = oof_topic >= f1_thresholds(oof_truth[0], oof_topic)
        cells = []
        for unit in names:
            rows = units == unit
            topics = f1_score(oof_truth[0][rows], decided[rows], average="macro", zero_division=0)
            tone = f1_score(oof_truth[1][rows], oof_tone[rows].argmax(1), average="macro")
            cells.append(f"{topics:.3f} / {tone:.3f}")
        print(f"| {label} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
