"""Static embeddings (model2vec) against TF-IDF: predictor throughput side by side.

    python -m benchmarks.speed.static_speed --static <model folder> --tfidf <model folder>
        [--repeats 3] [--no-memory]

Both saved folders are loaded with ``topictone.infer.load`` and predict the same texts in
the same process: gold dev (headlines, title + lead) and, where present, gold
dev_articles (full articles). Each bucket is predicted once to warm up, then ``--repeats``
times per model, alternating, and the fastest pass counts. Prints the CPU line, texts/s of
each model and their ratio per bucket, then each folder's size on disk and the peak RSS of
a fresh process that loads that model alone and predicts every text (``wait4``).
Skips with one line where ../shared/data/gold/dev.jsonl is absent.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from benchmarks.common import (
    GOLD,
    gold_rows,
    one_line_errors,
    print_cpu,
    print_header,
    require_gold,
    row,
    timed,
)

KINDS = ("static", "tfidf")
BUCKETS = {"dev": "dev (headlines, title+lead)", "dev_articles": "dev_articles (full articles)"}


def buckets() -> dict[str, list[str]]:
    """The texts of each gold bucket present: dev always, dev_articles where it exists."""
    found = {"dev": [r["text"] for r in gold_rows("dev")]}
    if (GOLD / "dev_articles.jsonl").is_file():
        found["dev_articles"] = [r["text"] for r in gold_rows("dev_articles")]
    return found


def folder_mib(folder: Path) -> float:
    """Size on disk of a model folder's files (recursively), MiB."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20


def best_rates(models: dict, texts: list[str], repeats: int) -> dict[str, float]:
    """Texts/s of each model on ``texts``: one warm-up pass, then the fastest of
    ``repeats`` passes, the models alternating so that both see the same machine."""
    for predictor in models.values():
        predictor.predict(texts[:32])
    best = dict.fromkeys(models, float("inf"))
    for _ in range(repeats):
        for kind, predictor in models.items():
            seconds, _ = timed(predictor.predict, texts)
            best[kind] = min(best[kind], seconds)
    return {kind: len(texts) / seconds for kind, seconds in best.items()}


def peak_rss_mib(folder: Path) -> float | None:
    """Peak RSS of a fresh process that loads ``folder`` alone and predicts every text
    (``--child``), MiB, as that process reads it (VmHWM: ``wait4``'s figure would carry
    this process's peak over the fork); None where it failed."""
    command = [sys.executable, "-m", "benchmarks.speed.static_speed", "--child", str(folder)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        print(f"{folder}: memory run failed ({lines[-1] if lines else done.returncode})")
        return None
    return float(done.stdout.split()[-1])


def own_peak_mib() -> float:
    """This process's peak RSS in MiB: VmHWM from /proc (Linux), else ``ru_maxrss``."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def child(folder: Path) -> None:
    """The memory run: load one model, predict every bucket's texts, print the peak RSS."""
    from topictone.infer import load

    predictor = load(folder)
    for texts in buckets().values():
        predictor.predict(texts)
    print(f"{own_peak_mib():.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--static", type=Path, help="a saved static model folder")
    parser.add_argument("--tfidf", type=Path, help="a saved TF-IDF model folder")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per model")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-RSS runs")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    require_gold("dev.jsonl")
    if args.child:
        child(args.child)
        return
    if args.static is None or args.tfidf is None:
        parser.error("--static and --tfidf are both required")
    from topictone.infer import load

    print_cpu()
    folders = {"static": args.static, "tfidf": args.tfidf}
    load_seconds, models = {}, {}
    for kind, folder in folders.items():
        load_seconds[kind], models[kind] = timed(load, folder)
        if models[kind].kind != kind:
            sys.exit(f"error: {folder} holds a {models[kind].kind} model, not {kind}")
    print()
    print_header("texts", "n", "static texts/s", "tfidf texts/s", "static / tfidf")
    for name, texts in buckets().items():
        rate = best_rates(models, texts, args.repeats)
        ratio = rate["static"] / rate["tfidf"]
        print(
            row(
                BUCKETS[name],
                len(texts),
                f"{rate['static']:.0f}",
                f"{rate['tfidf']:.0f}",
                f"{ratio:.2f}x",
            ),
            flush=True,
        )
    print()
    print_header("model", "folder", "folder MiB", "load s", "peak RSS MiB (load + predict all)")
    for kind, folder in folders.items():
        peak = None if args.no_memory else peak_rss_mib(folder)
        print(
            row(
                kind,
                folder,
                f"{folder_mib(folder):.1f}",
                f"{load_seconds[kind]:.2f}",
                "-" if peak is None else f"{peak:.0f}",
            ),
            flush=True,
        )


if __name__ == "__main__":
    one_line_errors(main)
