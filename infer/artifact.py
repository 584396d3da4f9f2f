"""The model folder: the only contract between ``train`` and ``infer``.

A folder holds ``topictone.json`` (the manifest: kind, label schema, thresholds,
calibration, normalisation version, settings, metrics, versions, file checksums),
the weights in formats that execute no code when loaded, and a ``README.md`` card.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from infer.errors import TopictoneError
from infer.schema import LabelSchema
from infer.text import NORMALIZATION_VERSION

if TYPE_CHECKING:
    from infer.predictors.base import Predictor

MANIFEST = "topictone.json"
FORMAT = "topictone-model"
FORMAT_VERSION = 1


@dataclass
class Manifest:
    """What a model folder declares about itself; written and read as JSON."""

    kind: str
    schema: LabelSchema
    thresholds: dict[str, float]
    settings: dict[str, Any] = field(default_factory=dict)
    calibration: dict[str, Any] | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    normalization_version: int = NORMALIZATION_VERSION
    versions: dict[str, str] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["schema"] = self.schema.to_dict()
        return {"format": FORMAT, "format_version": FORMAT_VERSION, **data}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Manifest:
        data = {k: v for k, v in data.items() if k not in ("format", "format_version")}
        data["schema"] = LabelSchema.from_dict(data["schema"])
        return cls(**data)


def package_versions(names: Iterable[str]) -> dict[str, str]:
    """Installed versions of the named distributions (those present)."""
    found = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_model(
    predictor: Predictor, path: str | os.PathLike[str], metrics: dict[str, Any] | None = None
) -> Path:
    """Write a complete model folder, atomically: a crash never leaves half a model."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        names = predictor.save_weights(staging)
        manifest = Manifest(
            kind=predictor.kind,
            schema=predictor.schema,
            thresholds=dict(predictor.thresholds),
            settings=predictor.settings(),
            calibration=predictor.calibration,
            metrics=metrics or {},
            versions=package_versions(["topictone", *predictor.requirements]),
            files={name: sha256(staging / name) for name in sorted(names)},
        )
        (staging / MANIFEST).write_text(
            json.dumps(manifest.to_json(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        (staging / "README.md").write_text(model_card(manifest), encoding="utf-8")
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def read_manifest(path: str | os.PathLike[str], verify: bool = True) -> Manifest:
    """Read and check a model folder's manifest; one clear error for anything wrong."""
    folder = Path(path)
    if not folder.is_dir():
        raise TopictoneError(f"{folder}: model folder not found")
    manifest_path = folder / MANIFEST
    try:
        data = json.loads(manifest_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TopictoneError(f"{folder}: not a topictone model (no {MANIFEST})") from None
    except (ValueError, UnicodeDecodeError) as err:
        raise TopictoneError(f"{manifest_path}: unreadable manifest ({err})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise TopictoneError(f"{manifest_path}: not a topictone model manifest")
    if data.get("format_version") != FORMAT_VERSION:
        raise TopictoneError(
            f"{manifest_path}: model format version {data.get('format_version')}, "
            f"this topictone reads version {FORMAT_VERSION}"
        )
    try:
        manifest = Manifest.from_json(data)
    except (KeyError, TypeError) as err:
        raise TopictoneError(f"{manifest_path}: malformed manifest ({err})") from None
    if manifest.normalization_version != NORMALIZATION_VERSION:
        raise TopictoneError(
            f"{manifest_path}: model expects text normalisation v{manifest.normalization_version}, "
            f"this topictone has v{NORMALIZATION_VERSION}; retrain or install the matching version"
        )
    if verify:
        for name, digest in manifest.files.items():
            file = folder / name
            if not file.is_file():
                raise TopictoneError(f"{file}: weights file listed in {MANIFEST} is missing")
            if sha256(file) != digest:
                raise TopictoneError(
                    f"{file}: checksum does not match {MANIFEST}; the weights were changed "
                    "or belong to another model"
                )
    return manifest


def model_card(manifest: Manifest) -> str:
    """A human-readable README for the folder, metrics included."""
    lines = [
        f"# topictone model ({manifest.kind})",
        "",
        "Labels news texts by topic (multi-label) and tone. Load it with",
        "`infer.load(path)` or `python -m infer model=<this folder> input=... output=...`.",
        "",
        f"- topics: {', '.join(manifest.schema.topics)}",
        f"- tones: {', '.join(manifest.schema.tones)}",
        "- decision thresholds: "
        + ", ".join(f"{k} {v:.3f}" for k, v in manifest.thresholds.items()),
        f"- text normalisation: v{manifest.normalization_version}",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in manifest.versions.items()),
        "",
    ]
    for split, values in manifest.metrics.items():
        if isinstance(values, dict):
            lines += [f"## Metrics on {split}", "", "| metric | value |", "|---|---|"]
            lines += [
                f"| {k} | {v:.4f} |" for k, v in values.items() if isinstance(v, (int, float))
            ]
            lines.append("")
    return "\n".join(lines)
