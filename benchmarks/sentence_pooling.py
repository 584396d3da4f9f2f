"""Topics read sentence by sentence in articles: does a topic named in one sentence count?

    python benchmarks/sentence_pooling.py [--folds 5] [--min-words 8]

The seed example (``../shared/examples``) names terrorism in its headline and in one
sentence of a defence article; the guidelines label it counterterrorism, yet every model
misses it. The frozen encoder (``experiment=gold_encoder``) gives that sentence alone a
counterterrorism score of 0.9, so this asks whether scoring each article's sentences
(runs of at least ``--min-words`` words, split after ``. ! ? ।``) and pooling them with
the preset's window maximum would pay on gold. Topic heads are fitted as the preset
fits them (``EncoderFitter.fit_heads`` on the texts' averaged embeddings), ``--folds``
times over train for out-of-fold logits and once on all of train for dev; thresholds
are chosen for F1 on the out-of-fold train logits of each rule and applied unchanged to
dev + dev_articles (so dev is decided without dev). Headlines and title + leads keep
their own logits under every rule. Embeddings are cached: the first run embeds about
11,000 sentences (8 min on an AVX-512 BF16 CPU), later runs a minute.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from demo import train_config
from gold_quality import SHARED
from threshold_rules import paired_interval

SENTENCE_END = re.compile(r"(?<=[.!?।])\s+")
SEED = SHARED / "examples" / "india-israel-defence-mou.hi.txt"


def sentences(text: str, min_words: int) -> list[str]:
    """The text's sentences, each short one joined to the next (a dateline, a byline)."""
    out, current = [], ""
    for piece in SENTENCE_END.split(text):
        current = f"{current} {piece}" if current else piece
        if len(current.split()) >= min_words:
            out.append(current)
            current = ""
    if current:
        out = [*out[:-1], f"{out[-1]} {current}"] if out else [current]
    return out


def pooled_logits(model, texts: list[str], articles: np.ndarray, min_words: int):
    """Per text, topic logits of the encoder predictor ``model``: its own window maximum
    (the preset's rule) and the maximum over the article's sentences (NaN for texts that
    are not articles), its head reading each sentence as it reads a window."""
    window = model.logits_clean(texts)[0]
    pieces, owners = [], []
    for i in np.flatnonzero(articles):
        for sentence in sentences(texts[i], min_words):
            pieces.append(model.encoder.prompt + sentence)
            owners.append(i)
    sentence = np.full_like(window, -np.inf)
    if pieces:
        logits = model.head_logits(model.encoder.piece_vectors(pieces))[0]
        np.maximum.at(sentence, np.array(owners), logits)
    sentence[~articles] = np.nan
    return window, sentence


def rule(window: np.ndarray, sentence: np.ndarray, name: str, value: float) -> np.ndarray:
    """``window``: the preset; ``max``: the higher of the window and the sentence maximum
    less ``value``; ``mean``: the sentence maximum weighted ``value`` against the window."""
    out = window.copy()
    rows = ~np.isnan(sentence[:, 0])
    if name == "max":
        out[rows] = np.maximum(window[rows], sentence[rows] - value)
    elif name == "mean":
        out[rows] = (1 - value) * window[rows] + value * sentence[rows]
    return out


def main() -> None:
    from hydra.utils import instantiate
    from omegaconf import OmegaConf
    from sklearn.metrics import f1_score
    from sklearn.model_selection import KFold

    from infer.errors import TopictoneError
    from infer.predictors.encoder import EncoderPredictor
    from infer.schema import LabelSchema
    from infer.text import normalize
    from train.data import load_splits, targets
    from train.decision import tune_thresholds

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--min-words", type=int, default=8)
    args = parser.parse_args()
    if not (SHARED / "data" / "gold" / "train.jsonl").is_file():
        sys.exit(f"skipped: {SHARED / 'data' / 'gold'} not found (../shared beside the repository)")
    cfg = train_config(["experiment=gold_encoder", "model.progress=false"])
    schema = LabelSchema.from_dict(cfg.labels)
    splits = load_splits(cfg.data, schema)
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    fitter = instantiate({k: v for k, v in model_cfg.items() if k != "kind"})
    try:
        encoder = fitter.encoder()
    except TopictoneError as err:  # the backbone is not on this machine
        sys.exit(f"skipped: {err}")
    data = {}
    for split in ("train", "dev"):
        texts = [normalize(t) for t in splits[split]["text"]]
        articles = np.array(splits[split]["unit"]) == "article"
        data[split] = (texts, articles, targets(splits[split]))
    seed = ([normalize(SEED.read_text(encoding="utf-8"))], np.array([True]))
    texts, articles, (topic_true, tone_true) = data["train"]
    x = encoder.embed(texts)
    tones = len(schema.tones)

    def heads(rows: np.ndarray) -> EncoderPredictor:
        fitted = fitter.fit_heads(x[rows], topic_true[rows], tone_true[rows], n_tones=tones)
        return EncoderPredictor(schema, encoder, fitted, topic_pooling="max")

    n = len(texts)
    oof_window, oof_sentence = (np.zeros((n, len(schema.topics))) for _ in range(2))
    for fit, held in KFold(args.folds, shuffle=True, random_state=cfg.seed).split(np.arange(n)):
        w, s = pooled_logits(heads(fit), texts, articles, args.min_words)
        oof_window[held], oof_sentence[held] = w[held], s[held]
    full = heads(np.arange(n))
    dev_texts, dev_articles, (dev_true, _) = data["dev"]
    dev_window, dev_sentence = pooled_logits(full, dev_texts, dev_articles, args.min_words)
    seed_window, seed_sentence = pooled_logits(full, *seed, args.min_words)

    rules = [("window", 0.0), ("max", 0.0), ("max", 1.0), ("max", 2.0), ("max", 3.0)]
    rules += [("mean", 0.25), ("mean", 0.5)]
    print(
        "| rule | train OOF topics | train OOF articles: defence / CT / technology "
        "| dev topics | vs window [95% paired CI] | dev_articles: defence / CT / technology "
        "| seed example topics |"
    )
    print("|---|---|---|---|---|---|---|")
    base = None
    for name, value in rules:
        oof = rule(oof_window, oof_sentence, name, value)
        probability = 1 / (1 + np.exp(-oof))
        cut = np.array(list(tune_thresholds(schema, probability, topic_true).values()))
        logit_cut = np.log(cut / (1 - cut))
        oof_decided = oof >= logit_cut
        decided = rule(dev_window, dev_sentence, name, value) >= logit_cut
        base = decided if base is None else base
        seed_decided = rule(seed_window, seed_sentence, name, value)[0] >= logit_cut
        low, high = paired_interval(dev_true, base, decided)
        per_oof = f1_score(topic_true[articles], oof_decided[articles], average=None)
        per_dev = f1_score(dev_true[dev_articles], decided[dev_articles], average=None)
        dev_f1 = f1_score(dev_true, decided, average="macro")
        label = "window maximum (preset)" if name == "window" else f"{name}, {value:g}"
        print(
            f"| {label} | {f1_score(topic_true, oof_decided, average='macro'):.3f} "
            f"| {' / '.join(f'{v:.3f}' for v in per_oof)} | {dev_f1:.3f} "
            f"| {dev_f1 - f1_score(dev_true, base, average='macro'):+.3f} "
            f"[{low:+.3f}, {high:+.3f}] | {' / '.join(f'{v:.3f}' for v in per_dev)} "
            f"| {', '.join(t for t, k in zip(schema.topics, seed_decided, strict=True) if k)} |"
        )
    counts = [int(articles.sum()), int(dev_articles.sum())]
    print(f"(articles: {counts[0]} in train, {counts[1]} in dev_articles; {n} train texts)")


if __name__ == "__main__":
    main()
