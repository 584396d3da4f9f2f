"""What long-text windows change against truncation, on the multi-paragraph texts.

    python -m benchmarks.quality.chunking --model <transformer model folder> [--data FILE ...]

Scores the same model on the texts whose ``unit`` is ``article`` truncated to the first
window, with the windows it was trained with (``max_windows`` overlapping windows pooled
per text), and with more windows (``--max-windows``), and prints the metrics side by side.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from benchmarks.common import DEMO, compute_metrics, read_labelled, targets

FIELDS = {
    "fields": {"id": "id", "text": "text", "topics": "topics", "tone": "tone"},
    "keep": ["unit"],
}


def articles(paths: list[Path], schema) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The article texts of ``paths`` and their topic and tone truth."""
    texts, topic_rows, tone_rows = [], [], []
    for path in paths:
        data = read_labelled(path, FIELDS, schema)
        data = data.filter(lambda row: row["unit"] == "article")
        texts += data["text"]
        topics, tone = targets(data)
        topic_rows.append(topics)
        tone_rows.append(tone)
    return texts, np.concatenate(topic_rows), np.concatenate(tone_rows)


def print_table(predictor, results: dict, saved: int) -> None:
    settings = list(results)
    keys = [f"topics/{t}_f1" for t in predictor.schema.topics]
    keys += ["topics/micro_f1", "topics/macro_f1", "tone/accuracy", "tone/macro_f1"]
    names = {
        m: "truncated" if m == 1 else f"{m} windows" + (" (trained)" if m == saved else "")
        for m in settings
    }
    print(f"{'metric':28} " + " ".join(f"{names[m]:>19}" for m in settings))
    for key in keys:
        print(f"{key:28} " + " ".join(f"{results[m][key]:19.4f}" for m in settings))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument(
        "--data", type=Path, nargs="+", default=[DEMO / "dev.jsonl", DEMO / "test.jsonl"]
    )
    parser.add_argument(
        "--max-windows",
        type=int,
        nargs="*",
        default=[8],
        help="window counts to compare besides 1 and the trained one",
    )
    args = parser.parse_args()
    from topictone import infer

    predictor = infer.load(args.model)
    texts, topic_true, tone_true = articles(args.data, predictor.schema)
    windows = predictor.encode(predictor.preprocess(texts))
    print(
        f"{len(texts)} articles; windows per article with max_length {predictor.max_length}: "
        f"mean {np.mean([len(w) for w in windows]):.1f}, max {max(len(w) for w in windows)}"
    )
    saved = predictor.max_windows
    results = {}
    for max_windows in sorted({1, saved, *args.max_windows}):
        predictor.max_windows = max_windows
        scores = predictor.predict_scores(texts)
        results[max_windows] = compute_metrics(
            predictor.schema, *scores, topic_true, tone_true, predictor.thresholds
        )
    print_table(predictor, results, saved)
    print(json.dumps({"trained_max_windows": saved, "articles": len(texts)}))


if __name__ == "__main__":
    main()
