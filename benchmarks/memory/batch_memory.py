"""Peak memory of the batch CLI as the input grows: 10k rows against 1M, side by side.

    python -m benchmarks.memory.batch_memory [--model runs/.../model] [--rows 10000 1000000]
                                             [--formats jsonl parquet]

For each format, writes an input of each size (the demo texts cycled, with an id), runs
``python -m topictone.infer`` on it into the same format (TF-IDF model; without --model one is
trained on the demo corpus first) and prints wall seconds and the CLI process's peak RSS
(``wait4``), then the ratio of the largest input's peak to the smallest's (target: ≤ 1.1,
memory that does not grow with the input).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path

from benchmarks.common import demo_model, demo_texts, infer_cli, print_cpu, print_header


def write_parquet(path: Path, records: Iterator[dict]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("id", pa.int64()), ("text", pa.string())])
    with pq.ParquetWriter(path, schema) as writer:
        chunk: list[dict] = []
        for record in records:
            chunk.append(record)
            if len(chunk) == 50_000:
                writer.write_table(pa.Table.from_pylist(chunk, schema=schema))
                chunk = []
        if chunk:
            writer.write_table(pa.Table.from_pylist(chunk, schema=schema))


def write_input(path: Path, rows: int, texts: list[str]) -> Path:
    records = ({"id": i, "text": texts[i % len(texts)]} for i in range(rows))
    if path.suffix == ".parquet":
        write_parquet(path, records)
    else:
        with path.open("w", encoding="utf-8") as out:
            for record in records:
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path)
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 1_000_000])
    parser.add_argument("--formats", nargs="+", default=["jsonl", "parquet"])
    args = parser.parse_args()
    texts = demo_texts()
    print_cpu()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = demo_model(args.model, work)
        print_header("format", "rows", "input MB", "seconds", "peak RSS MiB", "exit")
        peaks: dict[str, list[float]] = {}
        for fmt in args.formats:
            for rows in sorted(args.rows):
                source = write_input(work / f"in-{rows}.{fmt}", rows, texts)
                output = work / f"out-{rows}.{fmt}"
                run = infer_cli([f"model={model}", f"input={source}", f"output={output}"])
                size = source.stat().st_size / 1e6
                print(
                    f"| {fmt} | {rows:,} | {size:.1f} | {run.seconds:.0f} | {run.peak_mib:.0f} "
                    f"| {run.code} |"
                )
                peaks.setdefault(fmt, []).append(run.peak_mib)
                source.unlink()
                output.unlink(missing_ok=True)
    for fmt, values in peaks.items():
        print(
            f"{fmt}: peak RSS at {max(args.rows):,} rows / at {min(args.rows):,} rows = "
            f"{values[-1] / values[0]:.2f} (target <= 1.1)"
        )


if __name__ == "__main__":
    main()
