"""Experiment tracking: every run's config, history, figures and model card in MLflow.

``tracking=mlflow`` (``conf/tracking/mlflow.yaml``) logs the flattened config as params,
the per-step history (the transformer's losses and dev figures; TF-IDF and encoder: the
final ones), every split's metrics — the honest cross-fitted dev figures among them —, the
report, the model card and the run files as artifacts, and the git commit and data hashes
as tags. The default store is a local folder (``mlruns/``: a SQLite file and the
artifacts), so nothing needs a server; ``tracking.uri`` points at one. ``mlflow`` is an
optional extra (``pip install 'topictone[track]'``), imported only here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from topictone.infer.errors import TopictoneError

_MAX_PARAM_CHARS = 6000  # MLflow's limit on a param value


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """``{"model": {"topic_C": 4}}`` → ``{"model.topic_C": 4}``; lists stay values."""
    if not isinstance(tree, Mapping):
        return {prefix: tree}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        out.update(flatten(value, name) if isinstance(value, Mapping) else {name: value})
    return out


def numeric_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Every finite number in a nested metrics dict, keyed ``split/metric``."""
    return {
        key.replace(".", "/"): float(value)
        for key, value in flatten(metrics).items()
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    }


class NullTracker:
    """``tracking=none``: the run folder is the record."""

    def log_run(self, run_dir: Path, **_: Any) -> None:
        return None


class MlflowTracker:
    """One MLflow run per training run (a sweep: one per job, side by side)."""

    def __init__(
        self, uri: str | None = None, experiment: str = "topictone", store: str = "mlruns"
    ) -> None:
        self.uri = uri
        self.experiment = experiment
        self.store = store

    def tracking_uri(self) -> str:
        """``uri`` as given, else a SQLite file in the local ``store`` folder."""
        if self.uri:
            return self.uri
        folder = Path(self.store).resolve()
        folder.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{folder / 'mlflow.db'}"

    def log_run(
        self,
        run_dir: Path,
        config: Mapping[str, Any],
        metrics: Mapping[str, Any],
        history: list[dict[str, Any]] | None,
        tags: Mapping[str, Any],
    ) -> None:
        try:
            import mlflow
        except ImportError:
            raise TopictoneError(
                "tracking=mlflow needs MLflow: pip install 'topictone[track]'"
            ) from None
        uri = self.tracking_uri()
        mlflow.set_tracking_uri(uri)
        if mlflow.get_experiment_by_name(self.experiment) is None and not self.uri:
            # Local store: artifacts beside the SQLite file, not in the current directory.
            location = (Path(self.store).resolve() / "artifacts").as_uri()
            mlflow.create_experiment(self.experiment, artifact_location=location)
        mlflow.set_experiment(self.experiment)
        with mlflow.start_run(run_name=run_dir.name):
            params = {
                k: str(v)[:_MAX_PARAM_CHARS] for k, v in flatten(config).items() if k != "hydra"
            }
            mlflow.log_params(params)
            for entry in history or []:
                step = int(entry.get("step", 0))
                values = {k: v for k, v in numeric_metrics(entry).items() if k != "step"}
                mlflow.log_metrics({f"history/{k}": v for k, v in values.items()}, step=step)
            mlflow.log_metrics(numeric_metrics(metrics))
            mlflow.set_tags({k: str(v)[:_MAX_PARAM_CHARS] for k, v in tags.items()})
            for name in ("config.yaml", "metrics.json", "manifest.json", "history.json"):
                if (run_dir / name).is_file():
                    mlflow.log_artifact(str(run_dir / name))
            if (run_dir / "report").is_dir():
                mlflow.log_artifacts(str(run_dir / "report"), artifact_path="report")
            if (run_dir / "model" / "README.md").is_file():
                mlflow.log_artifact(str(run_dir / "model" / "README.md"), artifact_path="model")
