"""Package layout; everything else is in pyproject.toml.

The repository keeps ``infer/``, ``train/``, ``conf/`` and ``data/demo/`` at its root; the
wheel installs them as one import package, ``topictone`` (``topictone.infer``,
``topictone.train``, the Hydra configs as ``topictone/conf`` and the demo corpus as
``topictone/demo``, where ``topictone.infer.resources`` finds them). Nothing else lands at
the top level of site-packages. pyproject.toml cannot map folders into a package while
also discovering the packages, hence this file.
"""

from setuptools import find_packages, setup

CODE = ["infer", "train"]
SHORTCUT = "train.label.shortcut"  # installed as topictone.label alone: python -m topictone.label
PACKAGES = [
    f"topictone.{name}"
    for name in find_packages(include=[f"{c}*" for c in CODE], exclude=[SHORTCUT])
]

setup(
    packages=[*PACKAGES, "topictone.label", "topictone.conf", "topictone.demo"],
    package_dir={
        **{f"topictone.{c}": c for c in CODE},
        "topictone.label": SHORTCUT.replace(".", "/"),
        "topictone.conf": "conf",
        "topictone.demo": "data/demo",
    },
    package_data={
        "topictone.conf": ["*.yaml", "**/*.yaml"],
        "topictone.demo": ["*.jsonl"],
        "topictone.train": ["metrics/*/*.py"],
    },
)
