"""Frozen-encoder throughput on this machine: bfloat16 against float32, side by side.

    python -m benchmarks.speed.encoder_speed [--backbone google/embeddinggemma-300m] [--n 64]

Embeds the first N gold dev headlines / title + leads and the first N/4 dev_articles (first
256 tokens, the gold_encoder settings) in each dtype and prints texts/s and the lowest
cosine between the two dtypes' embeddings. Skips with a message where the encoder or
../shared is absent (python ../shared/tools/fetch_embeddinggemma.py puts the default there).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from benchmarks.common import gold_rows, print_cpu, require_gold, resolve_encoder, timed

DTYPES = ("float32", "bfloat16")


def encoders(backbone: str) -> dict:
    """The encoder in each dtype, with the gold_encoder settings; a clean skip if absent."""
    from topictone.infer import TopictoneError
    from topictone.infer.predictors.encoder import load_encoder

    try:
        folder = resolve_encoder(backbone)
    except TopictoneError as err:
        sys.exit(f"skipped: {err}")
    return {
        dtype: load_encoder(folder, dtype=dtype, prompt_name="Classification", max_length=256)
        for dtype in DTYPES
    }


def compare(name: str, texts: list[str], by_dtype: dict) -> str:
    rate, vectors = {}, {}
    for dtype, encoder in by_dtype.items():
        seconds, vectors[dtype] = timed(encoder.embed, texts)
        rate[dtype] = len(texts) / seconds
    a, b = vectors["float32"], vectors["bfloat16"]
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    return (
        f"| {name} | {len(texts)} | {rate['float32']:.1f} | {rate['bfloat16']:.1f} | "
        f"{rate['bfloat16'] / rate['float32']:.2f}x | {cosine.min():.4f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="google/embeddinggemma-300m")
    parser.add_argument("--n", type=int, default=64)
    args = parser.parse_args()
    require_gold("dev.jsonl", "dev_articles.jsonl")
    by_dtype = encoders(args.backbone)
    sets = {
        "dev headlines / title+lead": [r["text"] for r in gold_rows("dev", limit=args.n)],
        "dev_articles (first 256 tokens)": [
            r["text"] for r in gold_rows("dev_articles", limit=max(1, args.n // 4))
        ],
    }
    print_cpu()
    print("| texts | n | float32 texts/s | bfloat16 texts/s | speed-up | min cosine |")
    print("|---|---|---|---|---|---|")
    for name, texts in sets.items():
        print(compare(name, texts, by_dtype))


if __name__ == "__main__":
    main()
