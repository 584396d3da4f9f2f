"""Transformer inference side by side: a pipeline-style loop, torch, ONNX fp32, ONNX int8.

    python -m topictone.infer.export model=<dir>
    python -m topictone.infer.export model=<dir> quantize=int8
    python -m benchmarks.speed.inference_speed --model <dir> [--limit N] [--runtimes ...]
        [--windows 1] [--mixed 150]
    python -m benchmarks.speed.inference_speed --tfidf <folder> [<folder> ...]

On the same trained transformer folder and the same texts — gold dev (headlines, title +
lead) and gold dev_articles (full articles, several windows each) — each runtime scores
every text; the table gives docs/s, tokens read/s and topic / tone macro-F1 at the
folder's thresholds. ``baseline`` is the encoder and heads called the way
``transformers.pipeline`` would: input order, fixed batches of 32, padded to the longest,
truncated at the model's window (one window a text); ``torch`` is the predictor (length-
sorted windows, up to ``max_windows`` a text, in the dtype it was trained in); ``onnx-fp32``
and ``onnx-int8`` the same predictor on ONNX Runtime. Targets (issue 10): int8 F1 within
0.01 of torch; int8 ≥ 3× the baseline's docs/s at one window, ≥ 1.5× with the windows.
With ``--tfidf``, TF-IDF folders first (see ``tfidf_speed``).
"""

from __future__ import annotations

import argparse
import time
from functools import partial
from pathlib import Path

import numpy as np
from sklearn.metrics import f1_score

from benchmarks.common import (
    decide,
    gold_rows,
    print_cpu,
    require_gold,
    timed,
    truth,
)

RUNTIMES = {
    "baseline": {"runtime": "torch"},
    "torch": {"runtime": "torch"},
    "onnx-fp32": {"runtime": "onnx", "graph": "fp32"},
    "onnx-int8": {"runtime": "onnx", "graph": "int8"},
}
DEV, ARTICLES = "dev (headlines, title+lead)", "dev_articles"


def pipeline_style(predictor, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Topic and tone probabilities the way a text-classification pipeline would get them."""
    import torch

    from topictone.infer.predictors.base import scores_from_logits

    network, tokenizer = predictor.model, predictor.tokenizer
    topic, tone = [], []
    for start in range(0, len(texts), 32):
        batch = tokenizer(
            [predictor.prefix + t for t in texts[start : start + 32]],
            padding=True,
            truncation=True,
            max_length=predictor.max_length,
            return_tensors="pt",
        )
        autocast = torch.autocast("cpu", torch.bfloat16, enabled=predictor.dtype == "bfloat16")
        with torch.inference_mode(), autocast:
            t, o = network.window_logits(batch["input_ids"], batch["attention_mask"])
        topic.append(t.float().numpy())
        tone.append(o.float().numpy())
    return predictor.calibration.apply(
        scores_from_logits(np.concatenate(topic), np.concatenate(tone))
    )


def tokens_read(predictor, texts: list[str], windows: int) -> int:
    docs = predictor.encode(texts)
    return sum(sum(len(w) for w in doc[:windows]) for doc in docs)


def text_sets(limit: int | None, mixed: int) -> dict[str, list[dict]]:
    sets = {DEV: gold_rows("dev", limit=limit), ARTICLES: gold_rows("dev_articles", limit=limit)}
    if mixed:
        rows = sets[DEV][:mixed] + sets[ARTICLES][:mixed]
        np.random.default_rng(0).shuffle(rows)
        sets["mixed (dev + dev_articles, shuffled)"] = rows
    return sets


def measure(name: str, predictor, rows: list[dict]) -> tuple[float, int, float, float]:
    """Docs/s, tokens read, topic and tone macro-F1 of one runtime on one text set."""
    schema = predictor.schema
    texts = [r["text"] for r in rows]
    topic_true, tone_true = truth(rows, schema)
    if name == "baseline":
        seconds, (scores, probs) = timed(pipeline_style, predictor, texts)
    else:
        seconds, (scores, probs) = timed(predictor.predict_scores, texts)
    windows = 1 if name == "baseline" else predictor.max_windows
    tokens = tokens_read(predictor, texts, windows)
    decided = decide(scores, schema, predictor.thresholds)
    topics = f1_score(topic_true, decided, average="macro", zero_division=0.0)
    tone = f1_score(tone_true, probs.argmax(1), average="macro")
    return len(texts) / seconds, tokens / seconds, topics, tone


def runtimes_table(model: Path, names: list[str], sets: dict, options: dict) -> dict:
    """The runtimes' table; docs/s by (runtime, text set)."""
    from topictone import infer

    print(
        "| runtime | texts | n | docs/s | tokens read/s | topics macro-F1 | tone macro-F1 "
        "| topics vs torch | tone vs torch |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    reference: dict[str, tuple[float, float]] = {}
    speed: dict[tuple[str, str], float] = {}
    for name in names:
        predictor = infer.load(model, **RUNTIMES[name], **options)
        for label, rows in sets.items():
            docs, tokens, topics, tone = measure(name, predictor, rows)
            if name == "torch":
                reference[label] = (topics, tone)
            speed[name, label] = docs
            gap = (
                f"{topics - reference[label][0]:+.3f} | {tone - reference[label][1]:+.3f}"
                if label in reference
                else "| "
            )
            print(
                f"| {name} | {label} | {len(rows)} | {docs:.1f} | {tokens:.0f} | {topics:.3f} "
                f"| {tone:.3f} | {gap} |",
                flush=True,
            )
    return speed


def print_ratios(sets: dict, speed: dict) -> None:
    print()
    for label in sets:
        if ("baseline", label) in speed:
            for name in ("torch", "onnx-fp32", "onnx-int8"):
                if (name, label) in speed:
                    ratio = speed[name, label] / speed["baseline", label]
                    print(f"{label}: {name} docs/s / baseline docs/s = {ratio:.2f}")


def generic_predict(predictor, texts: list[str]) -> list:
    """A TF-IDF predictor's ``predict`` by the generic path: the TF-IDF matrices built and
    stacked (``predictor.features``), then each model's ``predict_proba`` — what the
    predictor itself does where folding would not be exact."""
    clean = predictor.preprocess(texts)
    features = predictor.features(clean)
    topic = np.asarray(predictor.topic_model.predict_proba(features), dtype=float)
    tone = np.zeros((len(clean), len(predictor.schema.tones)))
    tone[:, predictor.tone_model.classes_] = predictor.tone_model.predict_proba(features)
    return predictor.postprocess(predictor.calibration.apply((topic, tone)), predictor.thresholds)


def folds_exactly(predictor) -> bool:
    """Whether the predictor scores by the folded path (``folded_scorer`` is exact)."""
    from topictone.infer.predictors.folded import folded_scorer

    parts = (predictor.vectorizer, predictor.topic_model, predictor.tone_model)
    lead = (predictor.lead_vectorizer, predictor.lead_chars)
    return bool(folded_scorer(*parts, len(predictor.schema.topics), *lead))


def headline_sets(total: int) -> dict[str, list[str]]:
    sets = {}
    for label, splits in (
        ("dev headlines, repeated", ("dev",)),
        ("train + dev headlines, distinct", ("train", "dev")),
    ):
        found = [r["text"] for r in gold_rows(*splits) if r.get("unit") == "headline"]
        headlines = list(dict.fromkeys(found))
        sets[label] = (headlines * (total // len(headlines) + 1))[:total]
    return sets


def best_seconds(rows: list[tuple], texts: list[str]) -> list[float]:
    """Each row's best of four passes in calls of 2,048, the rows taking turns pass by pass
    (every other pass in reverse: no row always runs first)."""
    best = [float("inf")] * len(rows)
    for turn in range(4):
        for k in range(len(rows)) if turn % 2 == 0 else reversed(range(len(rows))):
            predict = rows[k][3]
            start = time.perf_counter()
            for i in range(0, len(texts), 2048):
                predict(texts[i : i + 2048])
            best[k] = min(best[k], time.perf_counter() - start)
    return best


def tfidf_speed(folders: list[Path], total: int = 20_000) -> None:
    """TF-IDF predictors on headlines repeated to ``total`` texts, in calls of 2,048 (what
    the batch CLI hands it), best of four passes each, the rows taking turns pass by pass
    (in reverse every other pass) so that a busy moment of the CPU hits them alike. Each
    folder twice: as it predicts (scores folded into one product with the n-gram counts,
    ``infer/predictors/folded.py``) and by the generic path (the TF-IDF matrices built and
    stacked, then each model's ``predict_proba``). Two sets of headlines: gold dev's 330,
    so that a call of 2,048 holds each about six times (and each word about eleven times),
    and gold train's and dev's 3,450 distinct ones, no text twice in a call (each word
    about three times), as in a real dump."""
    from topictone import infer

    rows = []
    for folder in folders:
        predictor = infer.load(folder)
        rows += [(folder, "generic", predictor, partial(generic_predict, predictor))]
        rows += [(folder, "folded", predictor, predictor.predict)]
    print(
        "| TF-IDF model folder | settings | path | texts | n | headlines/s | vs the first row "
        "| target |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for label, texts in headline_sets(total).items():
        best = best_seconds(rows, texts)
        for (folder, path, predictor, _), seconds in zip(rows, best, strict=True):
            print(
                f"| {folder} | {predictor.settings() or '-'} | {path} | {label} | "
                f"{len(texts)} | {len(texts) / seconds:,.0f} | {best[0] / seconds:.2f} "
                "| >= 20,000 |"
            )
    folded = [folds_exactly(p) for _, path, p, _ in rows if path == "folded"]
    print(f"(folded: {folded})")
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="a transformer model folder")
    parser.add_argument(
        "--tfidf",
        type=Path,
        nargs="+",
        help="TF-IDF model folders: headlines/s (target >= 20,000), each against the first",
    )
    parser.add_argument("--limit", type=int, help="at most this many texts of each file")
    parser.add_argument("--runtimes", nargs="+", default=list(RUNTIMES), choices=list(RUNTIMES))
    parser.add_argument(
        "--windows", type=int, help="windows a text for the predictor rows (default: the model's)"
    )
    parser.add_argument(
        "--mixed",
        type=int,
        default=0,
        help="also a mixed set: this many dev texts and as many dev_articles, shuffled",
    )
    args = parser.parse_args()
    require_gold()
    print_cpu()
    if args.tfidf:
        tfidf_speed(args.tfidf)
    if not args.model:
        return
    sets = text_sets(args.limit, args.mixed)
    options = {"max_windows": args.windows} if args.windows else {}
    speed = runtimes_table(args.model, args.runtimes, sets, options)
    print_ratios(sets, speed)


if __name__ == "__main__":
    main()
