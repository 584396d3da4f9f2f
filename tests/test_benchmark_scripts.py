"""The benchmark scripts that read saved runs answer a bad run folder in one line."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from conftest import FAST_TFIDF, ROOT, train_run

FITTED = ["decision.calibrate=true", "decision.thresholds=f1"]


@pytest.fixture(scope="module")
def fitted_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("fitted")
    train_run([*FAST_TFIDF, *FITTED], run)
    return run


def compare(*runs) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "benchmarks.quality.compare_runs", *map(str, runs)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_compare_runs_prints_each_run_against_the_first(fitted_run, tmp_path):
    """A copy of the run whose cross-fitted decisions gain one topic on one text: the
    second row is that copy's own macro-F1, and its delta the difference."""
    from sklearn.metrics import f1_score

    other = tmp_path / "other"
    shutil.copytree(fitted_run, other)
    path = other / "predictions" / "dev_crossfit.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    topics = ["defence", "counterterrorism", "technology"]
    changed = next(r for r in rows if "technology" not in r["prediction"]["topics"])
    changed["prediction"]["topics"].append("technology")
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")

    def macro(run_rows: list[dict]) -> float:
        truth = [[t in r["topics"] for t in topics] for r in run_rows]
        decided = [[t in r["prediction"]["topics"] for t in topics] for r in run_rows]
        return f1_score(truth, decided, average="macro", zero_division=0)

    first = json.loads((fitted_run / "metrics.json").read_text())["dev_crossfit"]
    done = compare(fitted_run, other)
    assert done.returncode == 0, done.stderr
    printed = [line.split(" | ") for line in done.stdout.splitlines()[2:]]
    expected = [round(first["topics/macro_f1"], 3), round(macro(rows), 3)]
    assert [float(row[1]) for row in printed] == expected
    delta = float(printed[1][4].split(" [")[0])
    assert delta == pytest.approx(macro(rows) - first["topics/macro_f1"], abs=1e-3) and delta


def test_compare_runs_reads_a_run_that_fitted_no_decisions(fitted_run, tmp_path):
    """Calibration off and thresholds fixed: no dev_crossfit.jsonl, and dev's saved
    decisions are the honest figure; a fitted run missing the file gets one line."""
    plain = tmp_path / "plain"
    train_run(FAST_TFIDF, plain)
    assert not (plain / "predictions" / "dev_crossfit.jsonl").exists()
    done = compare(plain, fitted_run)
    assert done.returncode == 0, done.stderr
    dev = json.loads((plain / "metrics.json").read_text())["dev"]
    first = done.stdout.splitlines()[2].split(" | ")
    assert float(first[1]) == round(dev["topics/macro_f1"], 3)

    lost = tmp_path / "lost"
    shutil.copytree(fitted_run, lost)
    (lost / "predictions" / "dev_crossfit.jsonl").unlink()
    done = compare(plain, lost)
    assert done.returncode != 0
    assert done.stderr.startswith(f"error: {lost}: no predictions/dev_crossfit.jsonl")
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


@pytest.mark.parametrize(
    ("file", "line", "edit", "message"),
    [
        (
            "dev.jsonl",
            2,
            lambda row: row["prediction"]["tone_scores"].pop("neutral"),
            "field 'prediction.tone_scores': expected a number for each of",
        ),
        (
            "dev_crossfit.jsonl",
            3,
            lambda row: row["prediction"].update(topics="defence"),
            "field 'prediction.topics': expected a list of",
        ),
        ("dev.jsonl", 1, lambda row: row.update(tone="upbeat"), "field 'tone': expected one of"),
    ],
)
def test_a_malformed_predictions_file_gets_one_line(
    fitted_run, tmp_path, file, line, edit, message
):
    run = tmp_path / "run"
    shutil.copytree(fitted_run, run)
    path = run / "predictions" / file
    rows = path.read_text(encoding="utf-8").splitlines()
    row = json.loads(rows[line - 1])
    edit(row)
    rows[line - 1] = json.dumps(row)
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    done = compare(fitted_run, run)
    assert done.returncode != 0
    assert done.stderr.startswith(f"error: {path}:{line}: {message}"), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
