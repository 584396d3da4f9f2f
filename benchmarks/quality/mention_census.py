"""Gold texts that name some words: how many per split, and how they are labelled.

    python -m benchmarks.quality.mention_census
    python -m benchmarks.quality.mention_census --words 'terror|आतंक' --also 'cooperat|सहयोग|MoU'

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
import re
from collections import Counter

from benchmarks.common import gold_rows, require_gold

SPLITS = ("train", "dev", "dev_articles")


def census_row(split: str, words: re.Pattern, also: re.Pattern, topic: str) -> str:
    rows = gold_rows(split)
    named = [r for r in rows if words.search(r["text"])]
    articles = [r for r in named if r.get("unit") == "article"]
    both = [r for r in named if also.search(r["text"])]
    labels = Counter(" + ".join(sorted(r["topics"])) or "none" for r in both)
    return (
        f"| {split} | {len(rows)} | {len(named)} "
        f"| {sum(topic in r['topics'] for r in named)} | {len(articles)} "
        f"| {sum(topic in r['topics'] for r in articles)} | {len(both)} "
        f"| {', '.join(f'{k}: {n}' for k, n in labels.most_common()) or '-'} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--words", default=r"terror|आतंक")
    parser.add_argument("--also", default=r"cooperat|collaborat|सहयोग|समझौत|\bMoU\b|pact|agreement")
    parser.add_argument("--topic", default="counterterrorism")
    args = parser.parse_args()
    require_gold(*(f"{split}.jsonl" for split in SPLITS))
    words, also = re.compile(args.words, re.I), re.compile(args.also, re.I)
    print(
        f"| split | texts | matching words | of them {args.topic} | articles matching "
        f"| of them {args.topic} | matching also | their topics |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for split in SPLITS:
        print(census_row(split, words, also, args.topic))


if __name__ == "__main__":
    main()
