"""What several benchmarks share: the demo corpus's texts and a TF-IDF model trained on it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def demo_texts() -> list[str]:
    """Every text of the demo corpus (train, dev, test), in file order."""
    texts = []
    for split in ("train", "dev", "test"):
        with (ROOT / "data" / "demo" / f"{split}.jsonl").open(encoding="utf-8") as handle:
            texts += [json.loads(line)["text"] for line in handle]
    return texts


def demo_model(model: Path | None, work: Path) -> Path:
    """``model`` if given, else the default TF-IDF trained on the demo corpus into ``work``."""
    if model is not None:
        return model
    subprocess.run(
        [sys.executable, "-m", "train", "report=false", f"hydra.run.dir={work / 'run'}"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    return work / "run" / "model"


def train_config(overrides: list[str]) -> Any:
    """The composed ``conf/train.yaml`` with ``overrides``, as ``python -m train`` sees it."""
    from hydra import compose, initialize_config_dir

    from train.schema import register

    register()  # the typed schemas the configs' defaults name
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("train", overrides=overrides)
