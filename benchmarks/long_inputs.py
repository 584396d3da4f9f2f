"""Huge inputs to the batch CLI: time and peak memory, against a small file, in one run.

    python benchmarks/long_inputs.py [--model runs/.../model]

Runs ``python -m infer`` (TF-IDF model; without --model one is trained on the demo
corpus first) on: the 60-row demo test file (the baseline), a 12.6 MB text (over
``limits.max_chars``: refused with its line), the same text with
``limits.on_long_text=truncate``, and a 50 MB line (over ``max_line_bytes``: refused
before it is parsed). Prints wall seconds, peak RSS of the CLI process (``wait4``) and
its first stderr line, so "bounded" is a measured figure, not a promise.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from demo import demo_model  # noqa: E402


def run(args: list[str]) -> tuple[float, float, int, str]:
    """Seconds, peak RSS in MiB, exit code and first stderr line of one CLI run."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "infer", *args, "progress=false"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    return seconds, usage.ru_maxrss / 1024, proc.returncode, (err.splitlines() or [""])[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = demo_model(args.model, work)
        first = json.dumps({"text": "Army tests missile"}) + "\n"
        big = work / "text-12MB.jsonl"
        big.write_text(
            first + json.dumps({"text": "Army drill near the border. " * 450_000}) + "\n"
        )
        huge = work / "line-50MB.jsonl"
        huge.write_text(
            first + json.dumps({"text": "Army drill near the border. " * 1_800_000}) + "\n"
        )
        cases = [
            ("demo test file, 60 rows (baseline)", [f"input={ROOT / 'data/demo/test.jsonl'}"]),
            ("one 12.6 MB text, max_chars 100k", [f"input={big}"]),
            (
                "one 12.6 MB text, on_long_text=truncate",
                [f"input={big}", "limits.on_long_text=truncate"],
            ),
            ("one 50 MB line, max_line_bytes 16 MiB", [f"input={huge}"]),
        ]
        print("| input | seconds | peak RSS MiB | exit | stderr |")
        print("|---|---|---|---|---|")
        for name, extra in cases:
            out = work / "out.jsonl"
            seconds, rss, code, line = run([f"model={model}", *extra, f"output={out}"])
            shown = line.replace(str(work), "<tmp>")
            shown = shown if len(shown) < 110 else shown[:107] + "..."
            print(f"| {name} | {seconds:.1f} | {rss:.0f} | {code} | `{shown}` |")
            out.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
