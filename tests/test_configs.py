"""Every preset under conf/experiment/ composes and builds its fitter (no training)."""

import importlib
from pathlib import Path

import pytest
from conftest import CONF, compose_train
from hydra.utils import instantiate
from omegaconf import OmegaConf
from sklearn.base import clone

EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_preset_composes_and_instantiates(name):
    cfg = compose_train([f"experiment={name}"])
    fitter = instantiate(OmegaConf.to_container(cfg.model, resolve=True))
    assert fitter.kind == cfg.model_kind
    assert Path(cfg.data.train).suffix == ".jsonl"
    copy = clone(fitter)  # what out-of-fold scoring fits, once per fold
    assert type(copy) is type(fitter) and copy is not fitter
    assert copy.get_params(deep=False).keys() == fitter.get_params(deep=False).keys()


def test_every_fitter_kind_has_the_predictor_that_loads_it():
    """A kind is declared once per side, on the fitter and on the predictor class."""
    from topictone.infer.predictors import REGISTRY
    from topictone.train.schema import fitters

    assert set(fitters()) == set(REGISTRY)
    for kind, (module, name) in fitters().items():
        assert getattr(importlib.import_module(module), name).kind == kind


def test_gold_presets_train_on_gold_and_tune_honestly():
    for name in (n for n in EXPERIMENTS if n.startswith("gold_")):
        cfg = compose_train([f"experiment={name}"])
        assert cfg.data.name == "gold", name
        assert cfg.decision.calibrate and cfg.decision.thresholds == "f1", name
        if cfg.decision.oof_folds:  # run() refuses out-of-fold scores beside extra train data
            assert not cfg.weak.sources and not cfg.distill.teacher, name
        assert cfg.decision.use_dev or cfg.decision.oof_folds, name


def test_the_ensemble_member_is_the_transformer_preset():
    """gold_ensemble's transformer is gold_transformer's, quiet inside the ensemble: a
    change to the preset reaches the ensemble, whose figures are measured with it."""
    alone = compose_train(["experiment=gold_transformer"]).model
    member = compose_train(["experiment=gold_ensemble"]).model.members.transformer
    differing = {k for k in alone if alone[k] != member[k]}
    assert differing == {"progress"}


GROUPS = {
    group: sorted(p.stem for p in (CONF / group).glob("*.yaml"))
    for group in ("model", "data", "weak", "distill", "tracking", "hparams_search", "labels")
}


@pytest.mark.parametrize(("group", "name"), [(g, n) for g, names in GROUPS.items() for n in names])
def test_every_config_file_composes_and_instantiates(group, name):
    """Every file of every training group, on top of the defaults; what has a _target_
    is built (no training)."""
    cfg = compose_train([f"{group}={name}"])
    node = OmegaConf.to_container(cfg[group], resolve=True, enum_to_str=True)
    if isinstance(node, dict) and "_target_" in node:
        built = instantiate(node)
        assert type(built).__name__ == node["_target_"].rsplit(".", 1)[1]


@pytest.mark.parametrize("name", ["infer", "serve", "export"])
def test_the_inference_configs_compose(name):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF / "inference"), version_base="1.3"):
        cfg = compose(name, overrides=["model=some/folder"] if name != "infer" else [])
    assert "model" in cfg.keys()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.topic_C=abc", "could not be converted to Float"),
        ("model.topic_cc=3", "Key 'topic_cc' not in 'TfidfFitterSchema'"),
        ("decision.calibrate=maybe", "is not a valid bool"),
        ("decision.thresholds=magic", "expected one of \\[fixed, f1, precision\\]"),
        ("seed=1.5", "could not be converted to Integer"),
        ("model=transformer model.freeze_layers=some", "could not be converted to Integer"),
        ("checks.typo=1", "Key 'typo' not in 'ChecksConfig'"),
    ],
)
def test_a_wrong_type_or_unknown_key_fails_at_compose_time(override, message):
    import re

    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException) as caught:
        compose_train(override.split())
    # What `python -m topictone.train` prints in its one line: the error and its cause.
    assert re.search(message, f"{caught.value} {caught.value.__cause__}")
