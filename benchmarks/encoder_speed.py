"""Frozen-encoder throughput on this machine: bfloat16 against float32, side by side.

    python benchmarks/encoder_speed.py [--backbone google/embeddinggemma-300m] [--n 64]

Embeds the first N gold dev headlines / title + leads and the first N/4 dev_articles (first
256 tokens, the gold_encoder settings) in each dtype and prints texts/s and the lowest
cosine between the two dtypes' embeddings. Skips with a message where the encoder or
../shared is absent (python ../shared/tools/fetch_embeddinggemma.py puts the default there).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
GOLD = ROOT.parent / "shared" / "data" / "gold"
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="google/embeddinggemma-300m")
    parser.add_argument("--n", type=int, default=64)
    args = parser.parse_args()
    from infer.errors import TopictoneError
    from infer.predictors.encoder import load_encoder
    from train.encoder import resolve_encoder

    if not (GOLD / "dev.jsonl").is_file():
        sys.exit(f"skipped: {GOLD} not found (needs ../shared beside the repo)")
    try:
        folder = resolve_encoder(args.backbone)
    except TopictoneError as err:
        sys.exit(f"skipped: {err}")
    sets = {
        "dev headlines / title+lead": [json.loads(x)["text"] for x in (GOLD / "dev.jsonl").open()],
        "dev_articles (first 256 tokens)": [
            json.loads(x)["text"] for x in (GOLD / "dev_articles.jsonl").open()
        ],
    }
    sets = {k: v[: args.n if "head" in k else max(1, args.n // 4)] for k, v in sets.items()}
    print("| texts | n | float32 texts/s | bfloat16 texts/s | speed-up | min cosine |")
    print("|---|---|---|---|---|---|")
    encoders = {
        dtype: load_encoder(folder, dtype=dtype, prompt_name="Classification", max_length=256)
        for dtype in ("float32", "bfloat16")
    }
    for name, texts in sets.items():
        rate, vectors = {}, {}
        for dtype, encoder in encoders.items():
            start = time.perf_counter()
            vectors[dtype] = encoder.embed(texts)
            rate[dtype] = len(texts) / (time.perf_counter() - start)
        a, b = vectors["float32"], vectors["bfloat16"]
        cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
        print(
            f"| {name} | {len(texts)} | {rate['float32']:.1f} | {rate['bfloat16']:.1f} | "
            f"{rate['bfloat16'] / rate['float32']:.2f}x | {cosine.min():.4f} |"
        )


if __name__ == "__main__":
    main()
