"""Optuna search: trials are real runs scored by the honest dev figure; a study resumes."""

from __future__ import annotations

import json

import pytest

from topictone.infer.errors import TopictoneError
from topictone.train.search import honest_score

pytest.importorskip("optuna", reason="hparams_search needs topictone[search]")


def test_honest_score_prefers_cross_fitted_figures():
    metrics = {"dev": {"topics/macro_f1": 0.9}, "dev_crossfit": {"topics/macro_f1": 0.7}}
    assert honest_score(metrics, "dev_crossfit/topics/macro_f1") == 0.7
    # Nothing fitted on dev: dev is honest already.
    assert honest_score({"dev": {"topics/macro_f1": 0.8}}, "dev_crossfit/topics/macro_f1") == 0.8
    with pytest.raises(TopictoneError, match="not in the run's metrics"):
        honest_score(metrics, "test/topics/macro_f1")


def test_search_runs_trials_keeps_the_study_and_resumes(tmp_path, cli):
    args = ["hparams_search=tfidf_optuna", "decision.thresholds=f1", f"hydra.run.dir={tmp_path}"]
    result = cli("train", *args, "hparams_search.n_trials=2")
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "search.json").read_text())
    assert [t["number"] for t in summary["trials"]] == [0, 1]
    for trial in summary["trials"]:
        metrics = json.loads((tmp_path / f"trial_{trial['number']}" / "metrics.json").read_text())
        assert trial["value"] == metrics["dev_crossfit"]["topics/macro_f1"]  # the honest one
        config = (tmp_path / f"trial_{trial['number']}" / "config.yaml").read_text()
        assert f"topic_C: {trial['params']['model.topic_C']}" in config
    assert summary["best_value"] == max(t["value"] for t in summary["trials"])
    assert isinstance(summary["best_params"]["model.char_ngram_range"], list)
    # Started again with one more trial: the two done are kept, one is added.
    result = cli("train", *args, "hparams_search.n_trials=3")
    assert result.returncode == 0, result.stderr
    again = json.loads((tmp_path / "search.json").read_text())
    assert [t["number"] for t in again["trials"]] == [0, 1, 2]
    assert again["trials"][:2] == summary["trials"]
