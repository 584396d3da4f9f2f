"""Topics read sentence by sentence in articles: does a topic named in one sentence count?

    python -m benchmarks.quality.sentence_pooling [--folds 5] [--min-words 8]

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

import numpy as np

from benchmarks.common import (
    SEED_EXAMPLE,
    configured_fitter,
    configured_splits,
    f1_thresholds,
    paired_interval,
    require_gold,
    targets,
)

SENTENCE_END = re.compile(r"(?<=[.!?।])\s+")
RULES = [("window", 0.0), ("max", 0.0), ("max", 1.0), ("max", 2.0), ("max", 3.0)]
RULES += [("mean", 0.25), ("mean", 0.5)]


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


def encoder_or_skip(fitter):
    from topictone.infer import TopictoneError

    try:
        return fitter.encoder()
    except TopictoneError as err:  # the backbone is not on this machine
        sys.exit(f"skipped: {err}")


def texts_of(splits: dict, split: str) -> tuple[list[str], np.ndarray, tuple]:
    """A split's normalised texts, which of them are articles, and their truth."""
    from topictone.infer import normalize

    texts = [normalize(t) for t in splits[split]["text"]]
    articles = np.array(splits[split]["unit"]) == "article"
    return texts, articles, targets(splits[split])


class Logits:
    """Window and sentence-maximum logits: out of fold over train, and for dev and the
    seed example by heads fitted on all of train (as the preset fits them)."""

    def __init__(self, cfg, schema, splits: dict, folds: int, min_words: int) -> None:
        from sklearn.model_selection import KFold

        from topictone.infer.predictors.encoder import EncoderPredictor

        fitter = configured_fitter(cfg)
        encoder = encoder_or_skip(fitter)
        seed = [normalize_seed()]
        self.train = texts, articles, (topic_true, tone_true) = texts_of(splits, "train")
        self.dev = dev_texts, dev_articles, _ = texts_of(splits, "dev")
        x = encoder.embed(texts)

        def heads(rows: np.ndarray) -> EncoderPredictor:
            fitted = fitter.fit_heads(
                x[rows], topic_true[rows], tone_true[rows], n_tones=len(schema.tones)
            )
            return EncoderPredictor(schema, encoder, fitted, topic_pooling="max")

        n = len(texts)
        self.oof = tuple(np.zeros((n, len(schema.topics))) for _ in range(2))
        for fit, held in KFold(folds, shuffle=True, random_state=cfg.seed).split(np.arange(n)):
            w, s = pooled_logits(heads(fit), texts, articles, min_words)
            self.oof[0][held], self.oof[1][held] = w[held], s[held]
        full = heads(np.arange(n))
        self.dev_logits = pooled_logits(full, dev_texts, dev_articles, min_words)
        self.seed_logits = pooled_logits(full, seed, np.array([True]), min_words)


def normalize_seed() -> str:
    from topictone.infer import normalize

    return normalize(SEED_EXAMPLE.read_text(encoding="utf-8"))


def rule_row(schema, logits: Logits, name: str, value: float, base: np.ndarray | None):
    """One rule's Markdown row and its dev decisions (the first rule's are the base)."""
    from sklearn.metrics import f1_score

    _, articles, (topic_true, _) = logits.train
    _, dev_articles, (dev_true, _) = logits.dev
    oof = rule(*logits.oof, name, value)
    probability = 1 / (1 + np.exp(-oof))
    cut = np.array(list(f1_thresholds(schema, probability, topic_true).values()))
    logit_cut = np.log(cut / (1 - cut))
    oof_decided = oof >= logit_cut
    decided = rule(*logits.dev_logits, name, value) >= logit_cut
    base = decided if base is None else base
    seed_decided = rule(*logits.seed_logits, name, value)[0] >= logit_cut
    low, high = paired_interval(dev_true, base, decided)
    per_oof = f1_score(topic_true[articles], oof_decided[articles], average=None)
    per_dev = f1_score(dev_true[dev_articles], decided[dev_articles], average=None)
    dev_f1 = f1_score(dev_true, decided, average="macro")
    label = "window maximum (preset)" if name == "window" else f"{name}, {value:g}"
    return (
        f"| {label} | {f1_score(topic_true, oof_decided, average='macro'):.3f} "
        f"| {' / '.join(f'{v:.3f}' for v in per_oof)} | {dev_f1:.3f} "
        f"| {dev_f1 - f1_score(dev_true, base, average='macro'):+.3f} "
        f"[{low:+.3f}, {high:+.3f}] | {' / '.join(f'{v:.3f}' for v in per_dev)} "
        f"| {', '.join(t for t, k in zip(schema.topics, seed_decided, strict=True) if k)} |"
    ), base


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--min-words", type=int, default=8)
    args = parser.parse_args()
    require_gold("train.jsonl")
    cfg, schema, splits = configured_splits(["experiment=gold_encoder", "model.progress=false"])
    logits = Logits(cfg, schema, splits, args.folds, args.min_words)
    print(
        "| rule | train OOF topics | train OOF articles: defence / CT / technology "
        "| dev topics | vs window [95% paired CI] | dev_articles: defence / CT / technology "
        "| seed example topics |"
    )
    print("|---|---|---|---|---|---|---|")
    base = None
    for name, value in RULES:
        line, base = rule_row(schema, logits, name, value, base)
        print(line)
    counts = [int(logits.train[1].sum()), int(logits.dev[1].sum())]
    n = len(logits.train[0])
    print(f"(articles: {counts[0]} in train, {counts[1]} in dev_articles; {n} train texts)")


if __name__ == "__main__":
    main()
