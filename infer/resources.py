"""Where the Hydra configs and the demo corpus are, in a checkout and in an installed wheel.

The package is ``topictone``: ``topictone.infer`` is this folder. A checkout keeps the
configs and the demo corpus at the repository root, ``conf/`` and ``data/demo/``; the wheel
installs the same files beside this folder, as ``topictone/conf/`` and ``topictone/demo/``
(the mapping is in ``setup.py``). Both are found from here. ``conf/data/demo.yaml`` names
its files with the ``${topictone.demo:<file>}`` resolver (:func:`demo_file`), registered
when this module is imported (``topictone.infer.cli`` and ``topictone.train.data`` import
it).
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

BESIDE = Path(__file__).resolve().parent.parent  # the checkout's root, or site-packages/topictone
CONF = BESIDE / "conf"
DEMO_FOLDERS = (BESIDE / "demo", BESIDE / "data" / "demo")


def conf_dir() -> Path:
    """The Hydra configs: the checkout's ``conf/`` or the installed ``topictone/conf``."""
    return CONF


def demo_file(name: str) -> str:
    """A file of the demo corpus, as the data config names it.

    ``data/demo/<name>`` where the current directory has it (the repository root: the
    path stays relative, as in the run's manifest), else the installed copy or, run from
    elsewhere in a checkout, the checkout's, as an absolute path.
    """
    relative = Path("data", "demo", name)
    if relative.is_file():
        return relative.as_posix()
    for folder in DEMO_FOLDERS:
        if (folder / name).is_file():
            return str(folder / name)
    return relative.as_posix()  # missing everywhere: the error names the usual path


OmegaConf.register_new_resolver("topictone.demo", demo_file, replace=True)
