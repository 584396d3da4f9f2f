"""Transformer inference side by side: a pipeline-style loop, torch, ONNX fp32, ONNX int8.

    python -m infer.export model=<dir>; python -m infer.export model=<dir> quantize=int8
    python benchmarks/inference_speed.py --model <dir> [--limit N] [--runtimes ...]
        [--windows 1] [--mixed 150]

On the same trained transformer folder and the same texts — gold dev (headlines, title +
lead) and gold dev_articles (full articles, several windows each) — each runtime scores
every text; the table gives docs/s, tokens read/s and topic / tone macro-F1 at the
folder's thresholds. ``baseline`` is the encoder and heads called the way
``transformers.pipeline`` would: input order, fixed batches of 32, padded to the longest,
truncated at the model's window (one window a text); ``torch`` is the predictor (length-
sorted windows, up to ``max_windows`` a text, in the dtype it was trained in); ``onnx-fp32``
and ``onnx-int8`` the same predictor on ONNX Runtime. Targets (issue 10): int8 F1 within
0.01 of torch; int8 ≥ 3× the baseline's docs/s at one window, ≥ 1.5× with the windows.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import f1_score

ROOT = Path(__file__).resolve().parent.parent
GOLD = ROOT.parent / "shared" / "data" / "gold"
sys.path.insert(0, str(ROOT))

RUNTIMES = {
    "baseline": {"runtime": "torch"},
    "torch": {"runtime": "torch"},
    "onnx-fp32": {"runtime": "onnx", "graph": "fp32"},
    "onnx-int8": {"runtime": "onnx", "graph": "int8"},
}


def read(path: Path, limit: int | None) -> list[dict]:
    rows = [json.loads(line) for line in path.open(encoding="utf-8")]
    return rows[:limit] if limit else rows


def pipeline_style(predictor, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Topic and tone probabilities the way a text-classification pipeline would get them."""
    import torch

    from infer.predictors.base import scores_from_logits

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
    if not (GOLD / "dev.jsonl").is_file():
        sys.exit(f"skipped: {GOLD} not found (../shared beside the repository root)")
    import infer
    from train.evaluation import decisions

    if args.tfidf:
        tfidf_speed(args.tfidf)
    if not args.model:
        return
    sets = {
        "dev (headlines, title+lead)": read(GOLD / "dev.jsonl", args.limit),
        "dev_articles": read(GOLD / "dev_articles.jsonl", args.limit),
    }
    if args.mixed:
        mixed = sets["dev (headlines, title+lead)"][: args.mixed]
        mixed += sets["dev_articles"][: args.mixed]
        np.random.default_rng(0).shuffle(mixed)
        sets["mixed (dev + dev_articles, shuffled)"] = mixed
    options = {"max_windows": args.windows} if args.windows else {}
    print(
        "| runtime | texts | n | docs/s | tokens read/s | topics macro-F1 | tone macro-F1 "
        "| topics vs torch | tone vs torch |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    reference: dict[str, tuple[float, float]] = {}
    speed: dict[tuple[str, str], float] = {}
    for name in args.runtimes:
        predictor = infer.load(args.model, **RUNTIMES[name], **options)
        schema = predictor.schema
        for label, rows in sets.items():
            texts = [r["text"] for r in rows]
            topic_true = np.array([[t in r["topics"] for t in schema.topics] for r in rows])
            tone_true = np.array([schema.tones.index(r["tone"]) for r in rows])
            start = time.perf_counter()
            if name == "baseline":
                scores, probs = pipeline_style(predictor, texts)
            else:
                scores, probs = predictor.predict_scores(texts)
            seconds = time.perf_counter() - start
            windows = 1 if name == "baseline" else predictor.max_windows
            tokens = tokens_read(predictor, texts, windows)
            decided = decisions(scores, schema, predictor.thresholds)
            topics = f1_score(topic_true, decided, average="macro", zero_division=0.0)
            tone = f1_score(tone_true, probs.argmax(1), average="macro")
            if name == "torch":
                reference[label] = (topics, tone)
            speed[name, label] = len(texts) / seconds
            gap = (
                f"{topics - reference[label][0]:+.3f} | {tone - reference[label][1]:+.3f}"
                if label in reference
                else "| "
            )
            print(
                f"| {name} | {label} | {len(texts)} | {len(texts) / seconds:.1f} | "
                f"{tokens / seconds:.0f} | {topics:.3f} | {tone:.3f} | {gap} |",
                flush=True,
            )
    print()
    for label in sets:
        if ("baseline", label) in speed:
            for name in ("torch", "onnx-fp32", "onnx-int8"):
                if (name, label) in speed:
                    ratio = speed[name, label] / speed["baseline", label]
                    print(f"{label}: {name} docs/s / baseline docs/s = {ratio:.2f}")


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
    import infer

    rows = []
    for folder in folders:
        predictor = infer.load(folder)
        generic = copy.copy(predictor)
        generic._scorer = False  # the predictor's fallback where folding is not exact
        rows += [(folder, "generic", generic), (folder, "folded", predictor)]
    sets = {}
    for label, files in (
        ("dev headlines, repeated", ("dev.jsonl",)),
        ("train + dev headlines, distinct", ("train.jsonl", "dev.jsonl")),
    ):
        found = [
            r["text"] for f in files for r in read(GOLD / f, None) if r.get("unit") == "headline"
        ]
        headlines = list(dict.fromkeys(found))
        sets[label] = (headlines * (total // len(headlines) + 1))[:total]
    print(
        "| TF-IDF model folder | settings | path | texts | n | headlines/s | vs the first row "
        "| target |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for label, texts in sets.items():
        best = [float("inf")] * len(rows)
        for turn in range(4):  # every other pass in reverse: no row always runs first
            for k in range(len(rows)) if turn % 2 == 0 else reversed(range(len(rows))):
                predictor = rows[k][2]
                start = time.perf_counter()
                for i in range(0, len(texts), 2048):
                    predictor.predict(texts[i : i + 2048])
                best[k] = min(best[k], time.perf_counter() - start)
        for (folder, path, predictor), seconds in zip(rows, best, strict=True):
            print(
                f"| {folder} | {predictor.settings() or '-'} | {path} | {label} | "
                f"{len(texts)} | {len(texts) / seconds:,.0f} | {best[0] / seconds:.2f} "
                "| >= 20,000 |"
            )
    folded = [bool(p._scorer) for _, path, p in rows if path == "folded"]
    print(f"(folded: {folded})")
    print()


if __name__ == "__main__":
    main()
