"""TF-IDF: the batch CLI against the bare model on the same 100k+ rows, side by side.

    python benchmarks/tfidf_batch_cli.py [--model runs/.../model] [--rows 100000]

Prints the seconds of normalising the texts alone (``predictor.preprocess``), then of
(a) the model's bare forward pass on pre-loaded, pre-normalised texts, (b)
``predictor.predict`` on pre-loaded texts, and (c) the whole
``python -m infer`` command (start-up, model load, read, normalise, predict, write),
and the ratio (c)/(a). Target: at most 1.5. Without --model it first trains the
default TF-IDF config on the demo corpus (not timed).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from demo import demo_model, demo_texts  # noqa: E402

import infer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=512)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = demo_model(args.model, work)
        base = demo_texts()
        texts = [t for t, _ in zip(itertools.cycle(base), range(args.rows), strict=False)]
        source = work / "in.jsonl"
        with source.open("w", encoding="utf-8") as handle:
            for i, text in enumerate(texts):
                handle.write(
                    json.dumps({"id": i, "text": text, "source": "bench"}, ensure_ascii=False)
                    + "\n"
                )
        size_mb = source.stat().st_size / 1e6
        predictor = infer.load(model)

        start = time.perf_counter()
        clean = predictor.preprocess(texts)
        normalising = time.perf_counter() - start
        start = time.perf_counter()
        for i in range(0, len(clean), args.batch_size):
            predictor.predict_scores_clean(clean[i : i + args.batch_size])
        bare = time.perf_counter() - start

        start = time.perf_counter()
        predictor.predict(texts)
        api = time.perf_counter() - start

        start = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "infer",
                f"model={model}",
                f"input={source}",
                f"output={work / 'out.jsonl'}",
                f"batch_size={args.batch_size}",
                "progress=false",
            ],
            cwd=ROOT,
            check=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        cli = time.perf_counter() - start
        with (work / "out.jsonl").open(encoding="utf-8") as handle:
            assert sum(1 for _ in handle) == len(texts)

    print(f"rows: {len(texts):,} ({size_mb:.1f} MB of JSONL, demo texts cycled)")
    print(f"normalize (predictor.preprocess) alone:              {normalising:8.2f} s")
    print(f"bare forward (pre-normalised, batches of {args.batch_size}): {bare:8.2f} s")
    print(f"predictor.predict on pre-loaded texts:              {api:8.2f} s")
    print(f"python -m infer, whole command:                     {cli:8.2f} s")
    print(f"ratio CLI / bare forward: {cli / bare:.2f}  (target <= 1.5)")


if __name__ == "__main__":
    main()
