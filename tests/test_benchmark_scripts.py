"""The benchmark scripts that read saved runs answer a bad run folder in one line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import FAST_TFIDF, ROOT, train_run

FITTED = ["decision.calibrate=true", "decision.thresholds=f1"]


@pytest.fixture(scope="module")
def fitted_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("fitted")
    train_run([*FAST_TFIDF, *FITTED], run)
    return run


def compare(*runs) -> subprocess.CompletedProcess:
    script = ROOT / "benchmarks" / "compare_runs.py"
    command = [sys.executable, str(script), *map(str, runs)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_compare_runs_prints_each_run_against_the_first(fitted_run, tmp_path):
    other = tmp_path / "other"
    train_run([*FAST_TFIDF, "model.topic_C=0.05", *FITTED], other)
    done = compare(fitted_run, other)
    assert done.returncode == 0, done.stderr
    rows = [line.split(" | ") for line in done.stdout.splitlines()[2:]]
    honest = [
        json.loads((run / "metrics.json").read_text())["dev_crossfit"]["topics/macro_f1"]
        for run in (fitted_run, other)
    ]
    assert [float(row[1]) for row in rows] == [round(h, 3) for h in honest]
    delta = float(rows[1][4].split(" [")[0])
    assert delta == pytest.approx(honest[1] - honest[0], abs=1e-3) and delta != 0


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
    import shutil

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
