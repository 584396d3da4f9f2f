"""``python -m train [overrides]``: one training run, or a sweep with ``-m``."""

from __future__ import annotations

from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from infer.cli import CONF_DIR, command
from train.run import run


@command(CONF_DIR, "train")
def main(cfg: DictConfig) -> float | None:
    metrics = run(cfg, Path(HydraConfig.get().runtime.output_dir))
    # Returned for Hydra sweepers that optimise: the dev topic macro-F1.
    dev = metrics.get("dev") or {}
    return dev.get("topics/macro_f1")


if __name__ == "__main__":
    main()
