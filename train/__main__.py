"""``python -m topictone.train [overrides]``: one training run, a sweep with ``-m``, or an Optuna
search with ``hparams_search=<preset>``."""

from __future__ import annotations

from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig

from topictone.infer.cli import CONF_DIR, command
from topictone.train.run import run
from topictone.train.search import honest_score


@command(CONF_DIR, "train")
def main(cfg: DictConfig) -> float | None:
    folder = Path(HydraConfig.get().runtime.output_dir)
    if cfg.get("hparams_search"):
        search = instantiate(cfg.hparams_search, _convert_="all")
        return search.run(cfg, folder, run)["best_value"]
    metrics = run(cfg, folder)
    # Returned for Hydra sweepers that optimise: the honest dev topic macro-F1.
    return honest_score(metrics, "dev_crossfit/topics/macro_f1") if "dev" in metrics else None


if __name__ == "__main__":
    main()
