"""The labelling loop's last round with the transformer: what each strategy's labels give it.

    python -m benchmarks.quality.label_loop_transformer --results runs/label-loop/results.json \\
        [--kind tfidf] [--seed 0] [--at random=1500,uncertainty=1500,diverse=1500,random=2000] \\
        [--experiment gold_transformer] [--out runs/label-loop-transformer] [overrides ...]

``label_loop`` refits TF-IDF and the encoder every round; a fine-tune each round would take
hours on CPU, so the transformer comes in here, once per strategy: the texts a simulated
loop (``--kind``, ``--seed`` of a ``label_loop`` results file) had labelled when it reached
``--at``'s sizes are written as a training file (gold train's own lines), and the preset
trains on them (``python -m topictone.train experiment=<preset> data.train=<file>``; dev is
gold dev + dev_articles as always). Printed: each run's honest topic and tone macro-F1
(cross-fitted dev decisions) with 95% bootstrap intervals, and its difference from random
at the same size with a paired interval.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from benchmarks.common import (
    GOLD,
    bootstrap_interval,
    cpu_line,
    macro_f1,
    one_line_errors,
    paired_interval,
    require_gold,
    train_cli,
)
from benchmarks.quality.compare_runs import honest


def labelled_ids(results: dict, kind: str, seed: int, strategy: str, size: int) -> list[str]:
    """The ids a strategy's loop had labelled when it reached ``size`` labels."""
    rounds = [
        r
        for r in results["rounds"]
        if (r["kind"], r["point"]["seed"], r["strategy"]) == (kind, seed, strategy)
        and r["point"]["size"] <= size
    ]
    if not any(r["point"]["size"] == size for r in rounds):
        sys.exit(f"error: no {kind} seed {seed} {strategy} round at {size} labels in the results")
    ids = [i for r in rounds for i in r["added"]]
    if len(ids) != size or len(set(ids)) != size:
        sys.exit(f"error: {kind} seed {seed} {strategy}: {len(ids)} ids at {size} labels")
    return ids


def write_subset(ids: Sequence[str], path: Path) -> None:
    """Gold train's own lines for ``ids``, in train's order."""
    wanted = set(ids)
    lines = (GOLD / "train.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    kept = [line for line in lines if line.strip() and json.loads(line)["id"] in wanted]
    if len(kept) != len(wanted):
        sys.exit(f"error: {len(wanted) - len(kept)} ids are not in {GOLD / 'train.jsonl'}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(kept), encoding="utf-8")


def figures(run: Path, base: Path | None) -> str:
    """Honest topics and tone with intervals; with ``base``, the paired differences."""
    _, topic_true, tone_true, topics, tone, _ = honest(run)
    intervals = bootstrap_interval(topics, topic_true, tone, tone_true)
    cells = []
    for true, decided, name in ((topic_true, topics, "topics"), (tone_true, tone, "tone")):
        name += "/macro_f1"
        low, high = intervals[name]
        cells.append(f"{macro_f1(true, decided):.3f} [{low:.3f}, {high:.3f}]")
    if base is not None:
        _, _, _, base_topics, base_tone, _ = honest(base)
        for true, other, mine in ((topic_true, base_topics, topics), (tone_true, base_tone, tone)):
            low, high = paired_interval(true, other, mine)
            delta = macro_f1(true, mine) - macro_f1(true, other)
            cells.append(f"{delta:+.3f} [{low:+.3f}, {high:+.3f}]")
    else:
        cells += ["-", "-"]
    return " | ".join(cells)


def parse_at(text: str) -> list[tuple[str, int]]:
    pairs = [part.split("=") for part in text.split(",") if part.strip()]
    return [(strategy, int(size)) for strategy, size in pairs]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, required=True)
    parser.add_argument("--kind", default="tfidf")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--at", type=parse_at, default=parse_at("random=1500,uncertainty=1500,diverse=1500")
    )
    parser.add_argument("--experiment", default="gold_transformer")
    parser.add_argument("--out", type=Path, default=Path("runs") / "label-loop-transformer")
    parser.add_argument("overrides", nargs="*", help="more overrides for every training run")
    args = parser.parse_args(argv)
    require_gold("train.jsonl", "dev.jsonl", "dev_articles.jsonl", word="error")
    results = json.loads(args.results.read_text(encoding="utf-8"))
    print(cpu_line(), flush=True)
    runs: dict[tuple[str, int], Path] = {}
    for strategy, size in args.at:
        run = args.out / f"{args.kind}-seed{args.seed}-{strategy}-{size}"
        subset = run.with_name(run.name + ".train.jsonl")
        write_subset(labelled_ids(results, args.kind, args.seed, strategy, size), subset)
        if not (run / "predictions" / "dev.jsonl").is_file():
            overrides = [f"experiment={args.experiment}", f"data.train={subset.resolve()}"]
            seconds = train_cli([*overrides, f"hydra.run.dir={run}", *args.overrides], "quiet")
            print(f"{run}: trained in {seconds:.0f} s", flush=True)
        runs[strategy, size] = run
    print(f"\n{args.experiment} on the labels of {args.kind} seed {args.seed}'s loop")
    print("| strategy | labels | topics [95%] | tone [95%] | topics vs random | tone vs random |")
    print("|---|---|---|---|---|---|")
    for (strategy, size), run in runs.items():
        base = runs.get(("random", size)) if strategy != "random" else None
        print(f"| {strategy} | {size:,} | {figures(run, base)} |")


if __name__ == "__main__":
    one_line_errors(main)
