"""MLflow tracking: a sweep's runs side by side in a local store; a real server (slow)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from topictone.train.tracking import flatten, numeric_metrics

mlflow = pytest.importorskip("mlflow", reason="tracking=mlflow needs topictone[track]")


def test_flatten_and_metrics_keys():
    assert flatten({"model": {"topic_C": 4, "ngram": [1, 2]}, "seed": 1}) == {
        "model.topic_C": 4,
        "model.ngram": [1, 2],
        "seed": 1,
    }
    metrics = {"dev": {"topics/macro_f1": 0.5, "n": 60, "note": "x", "bad": float("nan")}}
    assert numeric_metrics(metrics) == {"dev/topics/macro_f1": 0.5, "dev/n": 60.0}


def runs_in(uri: str, experiment: str) -> list:
    client = mlflow.tracking.MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no experiment {experiment} in {uri}"
    return client, client.search_runs([found.experiment_id], order_by=["params.model.topic_C"])


def test_a_sweep_lands_in_the_local_store_side_by_side(tmp_path, cli):
    store = tmp_path / "mlruns"
    result = cli(
        "train",
        "-m",
        "model.topic_C=1,8",
        "model.char_ngram_range=[2,3]",
        "decision.thresholds=f1",
        "tracking=mlflow",
        f"tracking.store={store}",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
    )
    assert result.returncode == 0, result.stderr
    client, runs = runs_in(f"sqlite:///{store / 'mlflow.db'}", "topictone-demo")
    assert [r.data.params["model.topic_C"] for r in runs] == ["1.0", "8.0"]  # typed: floats
    for k, run in enumerate(runs):
        metrics = json.loads((tmp_path / "sweep" / str(k) / "metrics.json").read_text())
        honest = metrics["dev_crossfit"]["topics/macro_f1"]
        assert run.data.metrics["dev_crossfit/topics/macro_f1"] == pytest.approx(honest)
        assert run.data.metrics["test/tone/macro_f1"] == pytest.approx(
            metrics["test"]["tone/macro_f1"]
        )
        assert len(run.data.tags["data.sha256.data/demo/train.jsonl"]) == 64
        assert "git_commit" in run.data.tags
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"config.yaml", "metrics.json", "report", "model"} <= artifacts
        report = {a.path for a in client.list_artifacts(run.info.run_id, "report")}
        assert "report/report.md" in report
    # Artifacts live in the store folder, not in the current directory.
    assert (store / "artifacts").is_dir() and not Path("mlruns").exists()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_a_run_arrives_at_a_real_mlflow_server(tmp_path, cli):
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--backend-store-uri",
            f"sqlite:///{tmp_path / 'server.db'}",
            "--artifacts-destination",
            str(tmp_path / "server-artifacts"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # the server's workers go down with it
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("mlflow server did not start within a minute")
        result = cli(
            "train",
            "model.char_ngram_range=[2,3]",
            "tracking=mlflow",
            f"tracking.uri={uri}",
            f"hydra.run.dir={tmp_path / 'run'}",
        )
        assert result.returncode == 0, result.stderr
        client, [run] = runs_in(uri, "topictone-demo")
        assert run.data.params["model_kind"] == "tfidf"
        assert "test/topics/macro_f1" in run.data.metrics
        assert "report" in {a.path for a in client.list_artifacts(run.info.run_id)}
        assert any((tmp_path / "server-artifacts").rglob("report.md"))
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
