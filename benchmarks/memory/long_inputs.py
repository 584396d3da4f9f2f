"""Huge inputs to the batch CLI: time and peak memory, against a small file, in one run.

    python -m benchmarks.memory.long_inputs [--model runs/.../model]

Runs ``python -m topictone.infer`` (TF-IDF model; without --model one is trained on the demo
corpus first) on: the 60-row demo test file (the baseline), a 12.6 MB text (over
``limits.max_chars``: refused with its line), the same text with
``limits.on_long_text=truncate``, and a 50 MB line (over ``max_line_bytes``: refused
before it is parsed). Prints wall seconds, peak RSS of the CLI process (``wait4``) and
its first stderr line, so "bounded" is a measured figure, not a promise.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from benchmarks.common import DEMO, demo_model, infer_cli, print_cpu, print_header

SENTENCE = "Army drill near the border. "


def huge_file(path: Path, repeats: int) -> Path:
    """A short first row, then one text of ``repeats`` sentences."""
    first = json.dumps({"text": "Army tests missile"}) + "\n"
    path.write_text(first + json.dumps({"text": SENTENCE * repeats}) + "\n")
    return path


def cases(work: Path) -> list[tuple[str, list[str]]]:
    big = huge_file(work / "text-12MB.jsonl", 450_000)
    huge = huge_file(work / "line-50MB.jsonl", 1_800_000)
    return [
        ("demo test file, 60 rows (baseline)", [f"input={DEMO / 'test.jsonl'}"]),
        ("one 12.6 MB text, max_chars 100k", [f"input={big}"]),
        (
            "one 12.6 MB text, on_long_text=truncate",
            [f"input={big}", "limits.on_long_text=truncate"],
        ),
        ("one 50 MB line, max_line_bytes 16 MiB", [f"input={huge}"]),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path)
    args = parser.parse_args()
    print_cpu()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = demo_model(args.model, work)
        print_header("input", "seconds", "peak RSS MiB", "exit", "stderr")
        for name, extra in cases(work):
            out = work / "out.jsonl"
            run = infer_cli([f"model={model}", *extra, f"output={out}"])
            shown = run.first_error.replace(str(work), "<tmp>")
            shown = shown if len(shown) < 110 else shown[:107] + "..."
            print(f"| {name} | {run.seconds:.1f} | {run.peak_mib:.0f} | {run.code} | `{shown}` |")
            out.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
