"""Model kinds, read from the classes that declare them.

A model kind is declared once, as ``kind = "<name>"`` on its predictor class (in
``topictone.infer.predictors``) and on its fitter class (in ``topictone.train.fitters``).
The registries are read from those files' source, not by importing them: listing the kinds
must never import torch. A new kind is a new file in each folder and nothing else.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path


@cache
def declared_kinds(folder: Path, package: str) -> dict[str, str]:
    """``{kind: "package.module:Class"}`` for each class in ``folder/*.py`` that assigns a
    string to ``kind`` in its body."""
    found: dict[str, str] = {}
    for path in sorted(folder.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            if isinstance(node, ast.ClassDef) and (kind := _kind(node)):
                where = f"{package}.{path.stem}:{node.name}"
                if kind in found:
                    raise RuntimeError(f"kind {kind!r} declared twice: {found[kind]}, {where}")
                found[kind] = where
    return found


def _kind(cls: ast.ClassDef) -> str | None:
    for statement in cls.body:
        if isinstance(statement, (ast.Assign, ast.AnnAssign)):
            targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
            named = any(isinstance(t, ast.Name) and t.id == "kind" for t in targets)
            value = statement.value
            if named and isinstance(value, ast.Constant) and isinstance(value.value, str):
                return value.value
    return None
