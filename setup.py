"""Package layout; everything else is in pyproject.toml.

An installed wheel has no repository root, so the root's ``conf/`` (Hydra configs) and
``data/demo/`` (the demo corpus) install inside the ``infer`` package, as ``infer/conf``
and ``infer/demo``, where ``infer.resources`` finds them. pyproject.toml cannot map a
folder into a package while also discovering the packages, hence this file.
"""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["infer*", "train*"]), "infer.conf", "infer.demo"],
    package_dir={"infer.conf": "conf", "infer.demo": "data/demo"},
    package_data={
        "infer.conf": ["*.yaml", "**/*.yaml"],
        "infer.demo": ["*.jsonl"],
        "train": ["metrics/*/*.py"],
    },
)
