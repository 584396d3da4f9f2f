"""Every preset under conf/experiment/ composes and builds its fitter (no training)."""

from pathlib import Path

import pytest
from conftest import CONF, compose_train
from hydra.utils import instantiate
from omegaconf import OmegaConf

EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_preset_composes_and_instantiates(name):
    cfg = compose_train([f"experiment={name}"])
    model = OmegaConf.to_container(cfg.model, resolve=True)
    fitter = instantiate({k: v for k, v in model.items() if k != "kind"})
    assert fitter.kind == cfg.model.kind
    assert Path(cfg.data.train).suffix == ".jsonl"


def test_gold_presets_train_on_gold_and_tune_honestly():
    for name in (n for n in EXPERIMENTS if n.startswith("gold_")):
        cfg = compose_train([f"experiment={name}"])
        assert cfg.data.name == "gold", name
        assert cfg.decision.calibrate and cfg.decision.thresholds == "f1", name


def test_the_transformer_preset_and_the_ensemble_member_are_one_config():
    """gold_ensemble's transformer is gold_transformer's (conf/model/transformer_gemma.yaml)."""
    alone = compose_train(["experiment=gold_transformer"]).model
    member = compose_train(["experiment=gold_ensemble"]).model.members.transformer
    differing = {k for k in alone if alone[k] != member[k]}
    assert differing == {"progress"}
    assert (alone.backbone, alone.freeze_layers, alone.bf16) == (
        "google/embeddinggemma-300m",
        20,
        True,
    )
