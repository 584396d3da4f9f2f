"""Peak memory of the Parquet writer alone by row-group size, at 10k and 1M rows.

    python -m benchmarks.memory.parquet_row_groups [--sizes 512 4096 8192 16384 65536]

Each cell is a fresh process that writes rows shaped like the batch CLI's output (an id,
a text and the prediction) in batches of 512 through ``topictone.infer.io.outputs.open_writer``,
with the writer's ``ROW_GROUP_ROWS`` set to the size (512: one row group per batch, the
writer before 2026-12-04), and prints its peak RSS. The batch CLI's own figures are
``benchmarks.memory.batch_memory``'s.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

from benchmarks.common import print_cpu, print_header

# The child imports only the writer, so that its peak is the writer's. ROW_GROUP_ROWS is
# set on the writer open_writer hands out (the instance, not the class).
CHILD = """
import os, resource, sys, tempfile
from topictone.infer.io.outputs import open_writer

rows, size = int(sys.argv[1]), int(sys.argv[2])
text = "India tests a new missile off the coast of Odisha, officials say. " * 2
prediction = {
    "topics": ["defence"],
    "topic_scores": {"defence": 0.9, "counterterrorism": 0.1, "technology": 0.2},
    "tone": "neutral",
    "tone_scores": {"positive": 0.2, "neutral": 0.5, "negative": 0.3},
}
with tempfile.TemporaryDirectory() as folder:
    with open_writer(os.path.join(folder, "out.parquet")) as writer:
        writer.ROW_GROUP_ROWS = size
        for start in range(0, rows, 512):
            batch = range(start, min(rows, start + 512))
            writer.write([{"id": i, "text": text, "prediction": prediction} for i in batch])
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""


def peak_mib(rows: int, size: int) -> int:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(rows), str(size)],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(out.stdout.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 4096, 8192, 16384, 65536])
    parser.add_argument("--rows", type=int, nargs=2, default=[10_000, 1_000_000])
    args = parser.parse_args()
    small, large = args.rows
    print_cpu()
    print_header(
        "rows a row group", f"peak RSS MiB at {small:,} rows", f"at {large:,} rows", "ratio"
    )
    for size in args.sizes:
        low, high = peak_mib(small, size), peak_mib(large, size)
        print(f"| {size:,} | {low} | {high} | {high / low:.2f} |", flush=True)


if __name__ == "__main__":
    main()
