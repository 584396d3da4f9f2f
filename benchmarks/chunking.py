"""What long-text windows change against truncation, on the multi-paragraph texts.

    python benchmarks/chunking.py --model <transformer model folder> [--data FILE ...]

Scores the same model on the texts whose ``unit`` is ``article`` truncated to the first
window, with the windows it was trained with (``max_windows`` overlapping windows pooled
per text), and with more windows (``--max-windows``), and prints the metrics side by side.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument(
        "--data",
        type=Path,
        nargs="+",
        default=[ROOT / "data/demo/dev.jsonl", ROOT / "data/demo/test.jsonl"],
    )
    parser.add_argument(
        "--max-windows",
        type=int,
        nargs="*",
        default=[8],
        help="window counts to compare besides 1 and the trained one",
    )
    args = parser.parse_args()

    import infer
    from train.data import read_labelled, targets
    from train.evaluation import compute_metrics

    predictor = infer.load(args.model)
    cfg = {
        "fields": {"id": "id", "text": "text", "topics": "topics", "tone": "tone"},
        "keep": ["unit"],
    }
    texts, topic_rows, tone_rows = [], [], []
    for path in args.data:
        data = read_labelled(path, cfg, predictor.schema)
        data = data.filter(lambda row: row["unit"] == "article")
        texts += data["text"]
        topics, tone = targets(data)
        topic_rows.append(topics)
        tone_rows.append(tone)
    import numpy as np

    topic_true, tone_true = np.concatenate(topic_rows), np.concatenate(tone_rows)
    windows = predictor.encode(predictor.preprocess(texts))
    print(
        f"{len(texts)} articles; windows per article with max_length {predictor.max_length}: "
        f"mean {np.mean([len(w) for w in windows]):.1f}, max {max(len(w) for w in windows)}"
    )

    saved = predictor.max_windows
    settings = sorted({1, saved, *args.max_windows})
    results = {}
    for max_windows in settings:
        predictor.max_windows = max_windows
        scores = predictor.predict_scores(texts)
        results[max_windows] = compute_metrics(
            predictor.schema, *scores, topic_true, tone_true, predictor.thresholds
        )
    keys = [f"topics/{t}_f1" for t in predictor.schema.topics]
    keys += ["topics/micro_f1", "topics/macro_f1", "tone/accuracy", "tone/macro_f1"]
    names = {
        m: "truncated" if m == 1 else f"{m} windows" + (" (trained)" if m == saved else "")
        for m in settings
    }
    print(f"{'metric':28} " + " ".join(f"{names[m]:>19}" for m in settings))
    for key in keys:
        print(f"{key:28} " + " ".join(f"{results[m][key]:19.4f}" for m in settings))
    print(json.dumps({"trained_max_windows": saved, "articles": len(texts)}))


if __name__ == "__main__":
    main()
