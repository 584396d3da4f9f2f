"""Each Hydra command's ``--help`` says what the command does, with examples, before Hydra's
config groups and config (conf/hydra/help/, conf/inference/hydra/help/)."""

from __future__ import annotations

import subprocess
import sys

import pytest

# module -> how its help opens, and an example it shows
COMMANDS = {
    "topictone.train": (
        "topictone-train (python -m topictone.train): train one topic and tone model",
        "python -m topictone.train experiment=gold_tfidf",
    ),
    "topictone.infer": (
        "topictone-infer (python -m topictone.infer): label every row",
        "python -m topictone.infer model=runs/demo/tfidf/model input=",
    ),
    "topictone.infer.service": (
        "topictone-serve (python -m topictone.infer.service): serve a trained model",
        "python -m topictone.infer.service model=runs/demo/tfidf/model port=8000",
    ),
    "topictone.infer.export": (
        "python -m topictone.infer.export: add an ONNX graph",
        "python -m topictone.infer.export model=runs/<run>/model quantize=int8",
    ),
}


@pytest.fixture(scope="module")
def helps(tmp_path_factory: pytest.TempPathFactory) -> dict[str, subprocess.CompletedProcess]:
    """Every command's --help, run side by side from an empty folder (no checkout around)."""
    cwd = tmp_path_factory.mktemp("help")
    running = {
        module: subprocess.Popen(
            [sys.executable, "-m", module, "--help"],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for module in COMMANDS
    }
    done = {}
    for module, process in running.items():
        out, err = process.communicate(timeout=120)
        done[module] = subprocess.CompletedProcess(process.args, process.returncode, out, err)
    return done


@pytest.mark.parametrize("module", COMMANDS)
def test_help_describes_the_command_with_examples(helps, module):
    opening, example = COMMANDS[module]
    result = helps[module]
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(opening), result.stdout[:300]
    assert "Examples:" in result.stdout and example in result.stdout
    assert "powered by Hydra" not in result.stdout
    assert "== Config ==" in result.stdout and "model" in result.stdout.split("== Config ==")[1]
