"""Shared fixtures: configs composed in temporary folders, one tiny trained model per session."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from unittest import mock

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

import topictone.infer.resources  # noqa: F401  (the ${topictone.demo:...} resolver of conf/data/demo.yaml)
from topictone import train  # noqa: F401  (the typed schemas conf/ starts from: train/schema.py)

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach a hub
ROOT = Path(__file__).resolve().parent.parent
CONF = ROOT / "conf"
DEMO = ROOT / "data" / "demo"
SHARED = ROOT.parent / "shared"

# Small TF-IDF settings: the same code path, seconds instead of minutes.
FAST_TFIDF = ["model.char_ngram_range=[2,4]", "model.min_df=2"]


def compose_train(overrides: list[str]) -> DictConfig:
    """The training config as `python -m topictone.train <overrides>` would see it."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("train", overrides=overrides)


def train_run(overrides: list[str], run_dir: Path) -> dict:
    """Compose, then run exactly what `python -m topictone.train` runs, from the repo root."""
    return run_config(compose_train(overrides), run_dir)


def run_config(cfg: DictConfig, run_dir: Path) -> dict:
    """Run a composed (possibly edited) training config from the repo root."""
    from topictone.train.run import run

    cwd = Path.cwd()
    os.chdir(ROOT)
    try:
        return run(cfg, run_dir)
    finally:
        os.chdir(cwd)


def with_toy_weak_source(cfg: DictConfig, source: Path) -> DictConfig:
    """``cfg`` with one weak source: a CSV of ``headline,section`` rows, ``tech`` mapped
    to technology and ``sport`` to no topic."""
    from omegaconf import open_dict

    with open_dict(cfg):
        cfg.weak.sources = [
            {
                "name": "toy",
                "builder": "csv",
                "path": str(source),
                "text": ["headline"],
                "label": "section",
                "map": {"tech": {"topics": ["technology"]}, "sport": {"topics": []}},
                "weight": 0.5,
            }
        ]
    return cfg


@pytest.fixture(scope="session")
def tfidf_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("tfidf-run")
    train_run(FAST_TFIDF, run_dir)
    return run_dir


def entry(module: str) -> str:
    """``infer`` or ``train.label`` as the installed module: ``topictone.infer``, ..."""
    return module if module.startswith("topictone.") else f"topictone.{module}"


def run_cli(module: str, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """Run `python -m topictone.<module> <args>` in a fresh interpreter, as a user would."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", entry(module), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def call_main(
    module: str, *args: str, capsys: pytest.CaptureFixture
) -> subprocess.CompletedProcess:
    """Run a `python -m topictone.<module>` entry point in this process (no start-up
    cost), same argv."""
    module = entry(module)
    target = importlib.import_module(module)
    main = getattr(target, "main", None) or importlib.import_module(f"{module}.__main__").main
    cwd = Path.cwd()
    os.chdir(ROOT)
    code = 0
    try:
        with mock.patch.object(sys, "argv", [module, *args]):
            main()
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    finally:
        os.chdir(cwd)
    out = capsys.readouterr()
    return subprocess.CompletedProcess([module, *args], code, out.out, out.err)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture) -> Callable[..., subprocess.CompletedProcess]:
    """`cli("infer", "model=...")`: the real entry point (``topictone.infer``), its exit code
    and output."""
    return lambda module, *args: call_main(module, *args, capsys=capsys)


# A tiny transformer run: random 2-layer BERT, demo-trained tokenizer, a few steps.
def tiny_transformer_overrides(backbone: Path) -> list[str]:
    return [
        "model=transformer",
        f"model.backbone={backbone}",
        "model.max_length=32",
        "model.stride=8",
        "model.max_windows=4",
        "model.freeze_layers=0",
        "model.epochs=2",
        "model.min_steps=0",
        "model.batch_size=16",
        "model.learning_rate=1e-3",
        "model.progress=false",
        "model.logging_steps=1000",
    ]


@pytest.fixture(scope="session")
def tiny_backbone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("transformers", reason="the transformer model needs topictone[transformer]")
    from tiny_backbone import build_tiny_backbone

    return build_tiny_backbone(tmp_path_factory.mktemp("tiny-backbone"))


@pytest.fixture(scope="session")
def transformer_run(tmp_path_factory: pytest.TempPathFactory, tiny_backbone: Path) -> Path:
    run_dir = tmp_path_factory.mktemp("transformer-run")
    train_run(tiny_transformer_overrides(tiny_backbone), run_dir)
    return run_dir
