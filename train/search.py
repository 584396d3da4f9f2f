"""Hyper-parameter search with Optuna: ``python -m topictone.train hparams_search=tfidf_optuna``.

Each trial is a full training run (its own folder under the search folder, tracked like
any run), scored by the honest figure: dev topic macro-F1 with decisions cross-fitted
(``dev_crossfit``), never the dev-fitted one. The study lives in SQLite in the search
folder, so a killed search continues where it stopped when started again with the same
``hydra.run.dir``.

Why not ``hydra-optuna-sweeper``: its last release needs optuna < 3, whose SQLite storage
fails under SQLAlchemy 2 (which MLflow needs). The search space keeps the sweeper's
spirit: ``params`` maps a config key to a distribution.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, cast

from omegaconf import DictConfig, OmegaConf

from topictone.infer.errors import TopictoneError

KINDS = ("float", "int", "categorical")


def honest_score(metrics: Mapping[str, Any], metric: str) -> float:
    """``split/metric`` from a run's metrics; ``dev_crossfit`` falls back to ``dev`` for
    runs that fitted nothing on dev (their dev figures are honest already)."""
    split, _, name = metric.partition("/")
    values = metrics.get(split)
    if values is None and split == "dev_crossfit":
        values = metrics.get("dev")
    if not isinstance(values, Mapping) or name not in values:
        raise TopictoneError(f"hparams_search.metric '{metric}' is not in the run's metrics")
    return float(values[name])


class OptunaSearch:
    """``params``: ``{"model.topic_C": {"type": "float", "low": 0.5, "high": 64, "log":
    true}, "model.char_ngram_range": {"type": "categorical", "choices": [[2, 4], [2, 5]]}}``."""

    def __init__(
        self,
        params: Mapping[str, Mapping[str, Any]],
        n_trials: int = 20,
        metric: str = "dev_crossfit/topics/macro_f1",
        direction: Literal["minimize", "maximize"] = "maximize",
        study_name: str = "topictone",
        storage: str | None = None,
        sampler: Any = None,
    ) -> None:
        self.params = params
        self.n_trials = n_trials
        self.metric = metric
        self.direction = direction
        self.study_name = study_name
        self.storage = storage
        self.sampler = sampler

    def suggest(self, trial: Any) -> dict[str, Any]:
        chosen = {}
        for key, spec in self.params.items():
            kind = spec.get("type")
            if kind == "float":
                chosen[key] = trial.suggest_float(
                    key, spec["low"], spec["high"], log=bool(spec.get("log"))
                )
            elif kind == "int":
                chosen[key] = trial.suggest_int(
                    key, spec["low"], spec["high"], log=bool(spec.get("log"))
                )
            elif kind == "categorical":
                choices = list(spec["choices"])
                # Optuna stores plain values: lists (n-gram ranges) go by their JSON text.
                picked = trial.suggest_categorical(key, [json.dumps(c) for c in choices])
                chosen[key] = json.loads(picked)
            else:
                raise TopictoneError(
                    f"hparams_search.params.{key}: type must be one of {KINDS}, got {kind!r}"
                )
        return chosen

    def run(
        self,
        cfg: DictConfig,
        folder: Path,
        train: Callable[[DictConfig, Path], dict[str, Any]],
    ) -> dict[str, Any]:
        """Run the trials still missing from the study in ``folder``; return the best."""
        try:
            import optuna
        except ImportError:
            raise TopictoneError(
                "hparams_search needs Optuna: pip install 'topictone[search]'"
            ) from None
        folder.mkdir(parents=True, exist_ok=True)
        storage = self.storage or f"sqlite:///{folder.resolve() / 'optuna.db'}"
        study = optuna.create_study(
            study_name=self.study_name,
            storage=storage,
            sampler=self.sampler,
            direction=self.direction,
            load_if_exists=True,
        )
        done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        # OmegaConf's stubs have no overloads: a DictConfig gives a dict, a dict a DictConfig
        base = cast("dict[str, Any]", OmegaConf.to_container(cfg, resolve=True, enum_to_str=True))
        base.pop("hparams_search", None)

        def objective(trial: optuna.Trial) -> float:
            chosen = self.suggest(trial)
            trial_cfg = cast(DictConfig, OmegaConf.create(base))
            for key, value in chosen.items():
                OmegaConf.update(trial_cfg, key, value, force_add=False)
            print(f"trial {trial.number}: {chosen}", file=sys.stderr, flush=True)
            metrics = train(trial_cfg, folder / f"trial_{trial.number}")
            return honest_score(metrics, self.metric)

        remaining = max(0, self.n_trials - len(done))
        if remaining:
            study.optimize(objective, n_trials=remaining)
        best = study.best_trial
        summary = {
            "metric": self.metric,
            "direction": self.direction,
            "best_value": best.value,
            "best_params": {k: _plain(v) for k, v in best.params.items()},
            "best_trial": best.number,
            "trials": [
                {"number": t.number, "value": t.value, "params": t.params, "state": t.state.name}
                for t in study.trials
            ],
        }
        (folder / "search.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        print(
            f"best of {len(study.trials)} trials: {self.metric} {best.value:.4f} "
            f"(trial {best.number}: {summary['best_params']}) — {folder / 'search.json'}"
        )
        return summary


def _plain(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in "[{":
        return json.loads(value)
    return value
