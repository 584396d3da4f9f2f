"""Gold texts that name some words: how many per split, and how they are labelled.

    python benchmarks/mention_census.py
    python benchmarks/mention_census.py --words 'terror|आतंक' --also 'cooperat|सहयोग|MoU'

Why a model misses a text is often a question about the data: do the labelled texts hold
that kind of text at all, and how did the annotators label it there? This counts the
gold texts matching ``--words`` (a regular expression, case-insensitive), the full
articles among them, and those also matching ``--also``, with the topic labels they
carry. It prints counts only, never texts (the data's licences forbid copying them).
The defaults ask about the seed example: an article on a defence pact that names
terrorism as a shared challenge.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from pathlib import Path

GOLD = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "gold"
SPLITS = ("train", "dev", "dev_articles")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--words", default=r"terror|आतंक")
    parser.add_argument("--also", default=r"cooperat|collaborat|सहयोग|समझौत|\bMoU\b|pact|agreement")
    parser.add_argument("--topic", default="counterterrorism")
    args = parser.parse_args()
    if not (GOLD / "train.jsonl").is_file():
        sys.exit(f"skipped: {GOLD} not found (../shared beside the repository root)")
    words, also = re.compile(args.words, re.I), re.compile(args.also, re.I)
    print(
        f"| split | texts | matching words | of them {args.topic} | articles matching "
        f"| of them {args.topic} | matching also | their topics |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for split in SPLITS:
        with (GOLD / f"{split}.jsonl").open(encoding="utf-8") as handle:
            rows = [json.loads(line) for line in handle]
        named = [r for r in rows if words.search(r["text"])]
        articles = [r for r in named if r.get("unit") == "article"]
        both = [r for r in named if also.search(r["text"])]
        labels = Counter(" + ".join(sorted(r["topics"])) or "none" for r in both)
        print(
            f"| {split} | {len(rows)} | {len(named)} "
            f"| {sum(args.topic in r['topics'] for r in named)} | {len(articles)} "
            f"| {sum(args.topic in r['topics'] for r in articles)} | {len(both)} "
            f"| {', '.join(f'{k}: {n}' for k, n in labels.most_common()) or '-'} |"
        )


if __name__ == "__main__":
    main()
