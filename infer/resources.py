"""Where the Hydra configs and the demo corpus are, in a checkout and in an installed wheel.

A checkout keeps them at the repository root: ``conf/`` and ``data/demo/``. A wheel has no
repository root, so it ships the same files inside this package, as ``infer/conf/`` and
``infer/demo/`` (the mapping is in ``setup.py``). Every command asks :func:`conf_dir` for
its configs; ``conf/data/demo.yaml`` names its files with the ``${topictone.demo:<file>}``
resolver (:func:`demo_file`), registered when this module is imported (``infer.cli`` and
``train.data`` import it).
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

PACKAGE = Path(__file__).resolve().parent
CHECKOUT = PACKAGE.parent


def conf_dir() -> Path:
    """The configs installed with the package, else the checkout's ``conf/``."""
    packaged = PACKAGE / "conf"
    return packaged if (packaged / "train.yaml").is_file() else CHECKOUT / "conf"


def demo_file(name: str) -> str:
    """A file of the demo corpus, as the data config names it.

    ``data/demo/<name>`` where the current directory has it (the repository root: the
    path stays relative, as in the run's manifest), else the copy installed with the
    package or, run from elsewhere in a checkout, the checkout's, as an absolute path.
    """
    relative = Path("data", "demo", name)
    if relative.is_file():
        return relative.as_posix()
    for folder in (PACKAGE / "demo", CHECKOUT / "data" / "demo"):
        if (folder / name).is_file():
            return str(folder / name)
    return relative.as_posix()  # missing everywhere: the error names the usual path


OmegaConf.register_new_resolver("topictone.demo", demo_file, replace=True)
