"""TF-IDF: the batch CLI against the bare model on the same 100k+ rows, side by side.

    python -m benchmarks.speed.tfidf_batch_cli [--model runs/.../model] [--rows 100000]

Prints the seconds of normalising the texts alone (``predictor.preprocess``), then of
(a) the model's bare forward pass on pre-loaded, pre-normalised texts, (b)
``predictor.predict`` on pre-loaded texts, and (c) the whole
``python -m topictone.infer`` command (start-up, model load, read, normalise, predict, write),
and the ratio (c)/(a). Target: at most 1.5. Without --model it first trains the
default TF-IDF config on the demo corpus (not timed).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
from pathlib import Path

from benchmarks.common import demo_model, demo_texts, infer_cli, print_cpu, timed


def write_input(path: Path, texts: list[str]) -> float:
    """The texts as JSONL rows with an id and a source; the file's size in MB."""
    with path.open("w", encoding="utf-8") as handle:
        for i, text in enumerate(texts):
            row = {"id": i, "text": text, "source": "bench"}
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path.stat().st_size / 1e6


def in_process(predictor, texts: list[str], batch_size: int) -> tuple[float, float, float]:
    """Seconds of normalising, of the bare forward pass in batches, and of ``predict``."""
    normalising, clean = timed(predictor.preprocess, texts)

    def bare() -> None:
        for i in range(0, len(clean), batch_size):
            predictor.predict_scores_clean(clean[i : i + batch_size])

    forward, _ = timed(bare)
    api, _ = timed(predictor.predict, texts)
    return normalising, forward, api


def main() -> None:
    from topictone import infer

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=512)
    args = parser.parse_args()
    print_cpu()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = demo_model(args.model, work)
        texts = list(itertools.islice(itertools.cycle(demo_texts()), args.rows))
        size_mb = write_input(work / "in.jsonl", texts)
        normalising, bare, api = in_process(infer.load(model), texts, args.batch_size)
        paths = [f"input={work / 'in.jsonl'}", f"output={work / 'out.jsonl'}"]
        cli = infer_cli([f"model={model}", *paths, f"batch_size={args.batch_size}"])
        if cli.code != 0:
            sys.exit(f"error: python -m topictone.infer exited with {cli.code}: {cli.first_error}")
        with (work / "out.jsonl").open(encoding="utf-8") as handle:
            assert sum(1 for _ in handle) == len(texts)

    print(f"rows: {len(texts):,} ({size_mb:.1f} MB of JSONL, demo texts cycled)")
    print(f"normalize (predictor.preprocess) alone:              {normalising:8.2f} s")
    print(f"bare forward (pre-normalised, batches of {args.batch_size}): {bare:8.2f} s")
    print(f"predictor.predict on pre-loaded texts:              {api:8.2f} s")
    print(f"python -m topictone.infer, whole command:                     {cli.seconds:8.2f} s")
    print(f"ratio CLI / bare forward: {cli.seconds / bare:.2f}  (target <= 1.5)")


if __name__ == "__main__":
    main()
