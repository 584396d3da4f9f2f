"""What a fine-tuning step costs on this machine, per setting, side by side in one run.

    python -m benchmarks.speed.finetune_speed [--steps 24] [--configs NAME ...]

Each row fine-tunes the transformer (``model=transformer`` on ``data=gold`` train, no
dev) for ``--steps`` optimiser steps with one set of overrides and prints seconds per
step, training windows per epoch, and the minutes one epoch over gold/train would take,
so the 15-minute preset can be planned: pick the settings, then measure their honest
quality with ``python -m benchmarks.quality.gold_quality --models transformer``. Steps
sample texts of every length (length-grouped batches), so the per-step figure is an
average over headlines and articles; the first step (warm-up) is excluded. "Setup" is
what comes before the first step: loading and windowing, and with ``model.cache_frozen``
the one pass of the frozen layers over every training window; the minutes for 1, 2 and
3 epochs add it once. Scoring dev after training is not included.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

from benchmarks.common import configured_fitter, configured_splits, print_cpu, require_gold

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


@contextmanager
def step_clock() -> Iterator[list[float]]:
    """When each optimiser step ends, for every ``transformers.Trainer`` made inside: a
    callback added to each (the Trainer's public ``callbacks`` argument)."""
    from transformers import Trainer, TrainerCallback

    times: list[float] = []

    class StepClock(TrainerCallback):
        def on_step_end(self, *args, **kwargs) -> None:
            times.append(time.perf_counter())

    original = Trainer.__init__

    def with_clock(self, *args, **kwargs):
        kwargs["callbacks"] = [*(kwargs.get("callbacks") or []), StepClock()]
        original(self, *args, **kwargs)

    Trainer.__init__ = with_clock
    try:
        yield times
    finally:
        Trainer.__init__ = original


def training_windows(predictor, texts: list[str], max_windows: int) -> int:
    """Windows the training reads: the fitted predictor's windows at ``max_windows``."""
    saved = predictor.max_windows
    predictor.max_windows = max_windows
    try:
        return sum(len(w) for w in predictor.encode(predictor.preprocess(texts)))
    finally:
        predictor.max_windows = saved


def measure(overrides: list[str], steps: int) -> tuple[float, float, int, int]:
    """Setup seconds, seconds a step, steps an epoch and training windows of one setting."""
    extra = ["data.dev=null", "data.test=null", f"model.max_steps={steps + 1}"]
    extra.append("model.progress=false")
    cfg, schema, splits = configured_splits(["data=gold", *overrides, *extra])
    train = splits["train"]
    fitter = configured_fitter(cfg)
    start = time.perf_counter()
    with step_clock() as times, tempfile.TemporaryDirectory() as tmp:
        fitter.fit(train, schema, dev=None, workdir=tmp)
    per_step = (times[-1] - times[0]) / (len(times) - 1)
    # Before the first step: loading, windows, and (cache_frozen) the frozen layers' pass.
    setup = times[0] - per_step - start
    steps_per_epoch = math.ceil(len(train) / cfg.model.batch_size)
    trained = cfg.model.train_max_windows or cfg.model.max_windows
    windows = training_windows(fitter.predictor_, train["text"], trained)
    return setup, per_step, steps_per_epoch, windows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=list(CONFIGS))
    args = parser.parse_args()
    require_gold("train.jsonl")
    print_cpu()
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
