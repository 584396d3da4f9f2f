"""What a fine-tuning step costs on this machine, per setting, side by side in one run.

    python benchmarks/finetune_speed.py [--steps 24] [--configs NAME ...]

Each row fine-tunes the transformer (``model=transformer`` on ``data=gold`` train, no
dev) for ``--steps`` optimiser steps with one set of overrides and prints seconds per
step, training windows per epoch, and the minutes one epoch over gold/train would take,
so the 15-minute preset can be planned: pick the settings, then measure their honest
quality with ``benchmarks/gold_quality.py --models transformer``. Steps sample texts of
every length (length-grouped batches), so the per-step figure is an average over
headlines and articles; the first step (warm-up) is excluded. "Setup" is what comes
before the first step: loading and windowing, and with ``model.cache_frozen`` the one
pass of the frozen layers over every training window; the minutes for 1, 2 and 3
epochs add it once. Scoring dev after training is not included.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GOLD = ROOT.parent / "shared" / "data" / "gold"
sys.path.insert(0, str(ROOT))
from demo import train_config  # noqa: E402

CONFIGS = {
    "hour-long preset (full, 4 windows)": [
        "model=transformer_full",
    ],
    "full, 1 training window": ["model=transformer_full", "model.train_max_windows=1"],
    "full, 1 window, bf16": [
        "model=transformer_full",
        "model.train_max_windows=1",
        "model.bf16=true",
    ],
    "4 of 12 layers frozen, 1 window, bf16": [
        "model=transformer_full",
        "model.train_max_windows=1",
        "model.bf16=true",
        "model.freeze_layers=4",
    ],
    "8 of 12 layers frozen, 1 window, bf16": [
        "model=transformer_full",
        "model.train_max_windows=1",
        "model.bf16=true",
        "model.freeze_layers=8",
    ],
    "embeddinggemma, 20 of 24 layers frozen, run every step": [
        "model=transformer_gemma",
        "model.cache_frozen=false",
    ],
    "embeddinggemma preset, frozen layers run once": ["model=transformer_gemma"],
}


def step_clock():
    """A Trainer callback recording when each optimiser step ends."""
    from transformers import TrainerCallback

    class StepClock(TrainerCallback):
        def __init__(self) -> None:
            self.times: list[float] = []

        def on_step_end(self, *args, **kwargs) -> None:
            self.times.append(time.perf_counter())

    return StepClock()


def measure(overrides: list[str], steps: int) -> tuple[float, float, int, int]:
    from hydra.utils import instantiate
    from omegaconf import OmegaConf
    from transformers import Trainer

    from infer.schema import LabelSchema
    from train.data import load_splits

    cfg = train_config(
        [
            "data=gold",
            *overrides,
            "data.dev=null",
            "data.test=null",
            f"model.max_steps={steps + 1}",
            "model.progress=false",
        ]
    )
    schema = LabelSchema.from_dict(cfg.labels)
    train = load_splits(cfg.data, schema)["train"]
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    fitter = instantiate({k: v for k, v in model_cfg.items() if k != "kind"})
    clock = step_clock()
    original = Trainer.__init__

    def with_clock(self, *args, **kwargs):
        kwargs["callbacks"] = [*(kwargs.get("callbacks") or []), clock]
        original(self, *args, **kwargs)

    Trainer.__init__ = with_clock
    start = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            fitter.fit(train, schema, dev=None, workdir=tmp)
    finally:
        Trainer.__init__ = original
    per_step = (clock.times[-1] - clock.times[0]) / (len(clock.times) - 1)
    # Before the first step: loading, windows, and (cache_frozen) the frozen layers' pass.
    setup = clock.times[0] - per_step - start
    steps_per_epoch = math.ceil(len(train) / cfg.model.batch_size)
    windows = fitter._encode(train, fitter.predictor_.tokenizer, cfg.model.train_max_windows)
    return setup, per_step, steps_per_epoch, sum(len(w) for w in windows["windows"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=list(CONFIGS))
    args = parser.parse_args()
    if not (GOLD / "train.jsonl").is_file():
        sys.exit(f"skipped: {GOLD / 'train.jsonl'} is absent (needs ../shared beside the repo)")
    print(
        "| settings | setup s | s / step | training windows | steps / epoch | minutes / epoch "
        "| minutes for 1 / 2 / 3 epochs |"
    )
    print("|---|---|---|---|---|---|---|")
    for name in args.configs:
        setup, per_step, steps, windows = measure(CONFIGS[name], args.steps)
        epoch = per_step * steps / 60
        totals = " / ".join(f"{setup / 60 + n * epoch:.1f}" for n in (1, 2, 3))
        print(
            f"| {name} | {setup:.0f} | {per_step:.2f} | {windows} | {steps} | {epoch:.1f} "
            f"| {totals} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
