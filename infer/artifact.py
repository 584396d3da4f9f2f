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

from infer.decision import Calibration
from infer.errors import TopictoneError
from infer.paths import follow_umask, inside
from infer.schema import LabelSchema
from infer.text import NORMALIZATION_VERSION

if TYPE_CHECKING:
    from infer.predictors.base import Predictor

MANIFEST = "topictone.json"
FORMAT = "topictone-model"
FORMAT_VERSION = 2  # 2: label order stored with the weights, every file covered by checksums
CARD = "README.md"  # the model card: written for people, never read by a loader
MAX_MANIFEST_BYTES = 16 << 20
MAX_FILES = 10_000


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
    predictor: Predictor,
    path: str | os.PathLike[str],
    metrics: dict[str, Any] | None = None,
    card: dict[str, Any] | None = None,
) -> Path:
    """Write a complete model folder, atomically: a crash never leaves half a model.

    ``card`` adds what only training knows to the model card (``infer.card``)."""
    from infer.card import model_card  # huggingface_hub: only when saving

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
            calibration=predictor.calibration.to_dict(),
            metrics=metrics or {},
            versions=package_versions(["topictone", *predictor.requirements]),
            files={name: sha256(staging / name) for name in sorted(names)},
        )
        (staging / MANIFEST).write_text(
            json.dumps(manifest.to_json(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        (staging / CARD).write_text(model_card(manifest, card), encoding="utf-8")
        for name in names:  # safetensors writes its files 0600, whatever the umask
            follow_umask(staging / name)
        follow_umask(staging, folder=True)
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
    if manifest_path.is_symlink():
        raise TopictoneError(f"{manifest_path}: is a link; a model folder holds plain files")
    try:
        if manifest_path.stat().st_size > MAX_MANIFEST_BYTES:
            raise TopictoneError(f"{manifest_path}: larger than {MAX_MANIFEST_BYTES} bytes")
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
    except (KeyError, TypeError, AttributeError) as err:
        raise TopictoneError(f"{manifest_path}: malformed manifest ({err})") from None
    check_thresholds(manifest_path, manifest)
    Calibration.from_dict(manifest.calibration, manifest.schema, manifest_path)  # checked early
    if manifest.normalization_version != NORMALIZATION_VERSION:
        raise TopictoneError(
            f"{manifest_path}: model expects text normalisation v{manifest.normalization_version}, "
            f"this topictone has v{NORMALIZATION_VERSION}; retrain or install the matching version"
        )
    if verify:
        check_files(folder, manifest)
        for name, digest in manifest.files.items():
            file = inside(folder, name, "file")
            if not file.is_file():
                raise TopictoneError(f"{file}: weights file listed in {MANIFEST} is missing")
            if sha256(file) != digest:
                raise TopictoneError(
                    f"{file}: checksum does not match {MANIFEST}; the weights were changed "
                    "or belong to another model"
                )
    return manifest


def check_thresholds(path: Path, manifest: Manifest) -> None:
    thresholds = manifest.thresholds
    if not isinstance(thresholds, dict) or set(thresholds) != set(manifest.schema.topics):
        raise TopictoneError(f"{path}: thresholds must name exactly the schema's topics")
    for topic, value in thresholds.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise TopictoneError(f"{path}: threshold for '{topic}' must be a number in [0, 1]")


def folder_files(folder: Path) -> set[str]:
    """Every file below ``folder`` as a relative POSIX name; a link anywhere is refused."""
    found: set[str] = set()
    for root, dirs, files in os.walk(folder, followlinks=False):
        for name in [*dirs, *files]:
            path = Path(root) / name
            if path.is_symlink():
                raise TopictoneError(f"{path}: is a link; a model folder holds plain files only")
        found.update((Path(root) / name).relative_to(folder).as_posix() for name in files)
        if len(found) > MAX_FILES:
            raise TopictoneError(f"{folder}: more than {MAX_FILES} files")
    return found


def check_files(folder: Path, manifest: Manifest) -> None:
    """``files`` must be plain names inside the folder and cover every file in it."""
    if not isinstance(manifest.files, dict) or not manifest.files:
        raise TopictoneError(f"{folder / MANIFEST}: lists no files; checksums cannot be checked")
    for name, digest in manifest.files.items():
        inside(folder, name, "file")
        if not isinstance(digest, str) or len(digest) != 64:
            raise TopictoneError(f"{folder / MANIFEST}: file {name!r} has no SHA-256 checksum")
    unlisted = sorted(folder_files(folder) - set(manifest.files) - {MANIFEST, CARD})
    if unlisted:
        raise TopictoneError(
            f"{folder}: files not covered by the checksums in {MANIFEST}: {', '.join(unlisted[:5])}"
        )


def check_stored_schema(path: Path, stored: Any, schema: LabelSchema) -> None:
    """The label order saved with the weights must be the manifest's: a reordered manifest
    would otherwise swap labels silently."""
    if stored != schema.to_dict():
        raise TopictoneError(
            f"{path}: the labels stored with the weights ({stored}) differ from the "
            f"manifest's schema ({schema.to_dict()})"
        )
