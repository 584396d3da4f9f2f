"""The model folder: the only contract between ``train`` and ``infer``.

A folder holds ``topictone.json`` (the manifest: kind, label schema, thresholds,
calibration, normalisation version, settings, metrics, versions, file checksums),
the weights in formats that execute no code when loaded, and a ``README.md`` card.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from topictone.infer.decision import Calibration
from topictone.infer.errors import TopictoneError
from topictone.infer.paths import check_plain, follow_umask, inside, open_plain, read_plain
from topictone.infer.schema import LabelSchema
from topictone.infer.text import NORMALIZATION_VERSION

if TYPE_CHECKING:
    from topictone.infer.predictors.base import Predictor

MANIFEST = "topictone.json"
FORMAT = "topictone-model"
# 2: label order stored with the weights, every file covered by checksums;
# 3: every file's size declared too, checked before a byte is hashed.
FORMAT_VERSION = 3
READS_VERSIONS = (2, 3)
CARD = "README.md"  # the model card: written for people, never read by a loader
MAX_MANIFEST_BYTES = 16 << 20
MAX_MANIFEST_DEPTH = 64  # nesting of the manifest's JSON: ours is 4 deep
MAX_FILES = 10_000  # entries (files and folders) in a model folder
# A whole folder's bytes by kind, summed from lstat before anything is hashed or read: a
# sparse file of 20 GB costs nothing to make and minutes to hash. Each cap is several
# times the largest folder the kind saves: TF-IDF (the gold preset, about 100 MB),
# transformer and encoder (embeddinggemma-300m in float32 with both ONNX graphs, under
# 3 GB), an ensemble (its members side by side). An unknown kind gets the smallest.
GiB = 1 << 30
MAX_FOLDER_BYTES = {
    "tfidf": 1 * GiB,
    "transformer": 8 * GiB,
    "encoder": 8 * GiB,
    "ensemble": 16 * GiB,
    "cascade": 16 * GiB,  # two model folders, each within its own kind's cap
    "static": 2 * GiB,  # a table of at most 1 GiB (predictors/static.py) and its tokenizer
}
HEX = frozenset("0123456789abcdef")


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
    sizes: dict[str, int] = field(default_factory=dict)  # bytes per file; empty in version 2
    # Read from a version-3 manifest, where ``sizes`` must cover ``files`` (not written).
    sizes_declared: bool = field(default=False, repr=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        """Version 3 where ``sizes`` covers exactly ``files``, else version 2 (no sizes):
        a writer that adds a file without its size still writes a readable folder."""
        data = asdict(self)
        del data["sizes_declared"]
        data["schema"] = self.schema.to_dict()
        version = FORMAT_VERSION
        if not self.sizes or set(self.sizes) != set(self.files):
            del data["sizes"]
            version = 2
        return {"format": FORMAT, "format_version": version, **data}

    @classmethod
    def from_json(cls, data: Any, where: object = "manifest") -> Manifest:
        """A manifest from parsed JSON; every field's type checked, one line naming it."""
        return manifest_from_json(where, data)


# Each field's JSON type; nested values are checked by the functions after.
FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "kind": (str,),
    "schema": (dict,),
    "thresholds": (dict,),
    "settings": (dict,),
    "calibration": (dict, type(None)),
    "metrics": (dict,),
    "normalization_version": (int,),
    "versions": (dict,),
    "files": (dict,),
    "sizes": (dict,),
}
REQUIRED = ("kind", "schema", "thresholds")


def manifest_from_json(where: object, data: Any) -> Manifest:
    if not isinstance(data, dict):
        raise TopictoneError(f"{where}: not a topictone model manifest")
    fields = {k: v for k, v in data.items() if k not in ("format", "format_version")}
    unknown = sorted(set(fields) - set(FIELD_TYPES), key=str)
    if unknown:
        raise TopictoneError(
            f"{where}: malformed manifest (unknown field {', '.join(map(repr, unknown[:5])):.200})"
        )
    for name in REQUIRED:
        if name not in fields:
            raise TopictoneError(f"{where}: malformed manifest (no '{name}')")
    for name, value in fields.items():
        types = FIELD_TYPES[name]
        if isinstance(value, bool) or not isinstance(value, types):
            wanted = " or ".join("null" if t is type(None) else JSON_NAMES[t] for t in types)
            raise TopictoneError(
                f"{where}: malformed manifest (field '{name}' must be {wanted}, "
                f"got {json_type(value)})"
            )
    for key, value in fields.get("versions", {}).items():
        if not isinstance(value, str):
            raise TopictoneError(
                f"{where}: malformed manifest (versions[{key!r:.60}] must be a string, "
                f"got {json_type(value)})"
            )
    for key, value in fields.get("files", {}).items():
        if not isinstance(value, str) or len(value) != 64 or not set(value) <= HEX:
            raise TopictoneError(f"{where}: file {key!r:.100} has no SHA-256 checksum")
    for key, value in fields.get("sizes", {}).items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise TopictoneError(
                f"{where}: malformed manifest (sizes[{key!r:.100}] must be a byte count)"
            )
    fields["schema"] = schema_from_json(where, fields["schema"])
    return Manifest(**fields)


JSON_NAMES = {str: "a string", dict: "an object", int: "an integer", list: "a list"}


def json_type(value: Any) -> str:
    names: dict[type, str] = {
        bool: "a boolean",
        float: "a number",
        type(None): "null",
        **JSON_NAMES,
    }
    return names.get(type(value), type(value).__name__)


def schema_from_json(where: object, data: dict) -> LabelSchema:
    for name in ("topics", "tones"):
        names = data.get(name)
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise TopictoneError(
                f"{where}: malformed manifest (schema.{name} must be a list of names)"
            )
    return LabelSchema.from_dict(data)


def nests_deeper(value: Any, limit: int) -> bool:
    """Whether ``value`` nests lists and objects more than ``limit`` deep (no recursion:
    code that later walks a manifest recursively must not meet a RecursionError)."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, (dict, list)):
            if depth > limit:
                return True
            children = node.values() if isinstance(node, dict) else node
            stack.extend((child, depth + 1) for child in children)
    return False


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


def file_sha256(path: Path, seen: os.stat_result) -> str:
    """The SHA-256 of a folder's file, reading no more than the size lstat saw."""
    digest = hashlib.sha256()
    left = seen.st_size
    try:
        with open_plain(path, seen.st_size, expected=seen) as handle:
            while left > 0 and (block := handle.read(min(left, 1 << 20))):
                digest.update(block)
                left -= len(block)
    except FileNotFoundError:
        raise TopictoneError(f"{path}: removed while the folder was being checked") from None
    return digest.hexdigest()


def save_model(
    predictor: Predictor,
    path: str | os.PathLike[str],
    metrics: dict[str, Any] | None = None,
    card: dict[str, Any] | None = None,
) -> Path:
    """Write a complete model folder, atomically: a crash never leaves half a model.

    ``card`` adds what only training knows to the model card (``topictone.infer.card``)."""
    from topictone.infer.card import model_card  # huggingface_hub: only when saving

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        names = sorted(predictor.save_weights(staging))
        manifest = Manifest(
            kind=predictor.kind,
            schema=predictor.schema,
            thresholds=dict(predictor.thresholds),
            settings=predictor.settings(),
            calibration=predictor.calibration.to_dict(),
            metrics=metrics or {},
            versions=package_versions(["topictone", *predictor.requirements]),
            files={name: sha256(staging / name) for name in names},
        )
        record_sizes(manifest, staging)
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


def record_sizes(manifest: Manifest, folder: Path) -> None:
    """Declare the byte size of every file the manifest lists (written as version 3)."""
    manifest.sizes = {name: (folder / name).stat().st_size for name in manifest.files}


def read_manifest(
    path: str | os.PathLike[str], verify: bool = True, model_sha256: str | None = None
) -> Manifest:
    """Read and check a model folder's manifest; one clear error for anything wrong.

    ``verify`` checks the folder's files: plain files only, exactly those listed, within
    the kind's size cap and their declared sizes, then their checksums. ``model_sha256``
    pins the manifest's own bytes (which pin every file through the checksums)."""
    folder = Path(path)
    if not folder.is_dir():
        raise TopictoneError(f"{folder}: model folder not found")
    manifest_path = folder / MANIFEST
    try:
        raw = read_plain(manifest_path, MAX_MANIFEST_BYTES)
    except FileNotFoundError:
        raise TopictoneError(f"{folder}: not a topictone model (no {MANIFEST})") from None
    if model_sha256 is not None:
        check_pin(manifest_path, raw, model_sha256)
    manifest = parse_manifest(manifest_path, raw)
    check_thresholds(manifest_path, manifest)
    Calibration.from_dict(manifest.calibration, manifest.schema, manifest_path)  # checked early
    if manifest.normalization_version != NORMALIZATION_VERSION:
        raise TopictoneError(
            f"{manifest_path}: model expects text normalisation v{manifest.normalization_version}, "
            f"this topictone has v{NORMALIZATION_VERSION}; retrain or install the matching version"
        )
    if verify:
        seen = check_files(folder, manifest)
        for name, digest in manifest.files.items():
            if file_sha256(folder / name, seen[name]) != digest:
                raise TopictoneError(
                    f"{folder / name}: checksum does not match {MANIFEST}; the weights were "
                    "changed or belong to another model"
                )
    return manifest


def check_pin(path: Path, raw: bytes, expected: object) -> None:
    """The manifest's bytes must hash to ``expected`` (``model_sha256``)."""
    if not isinstance(expected, str) or len(expected) != 64 or not set(expected.lower()) <= HEX:
        raise TopictoneError(f"model_sha256 must be 64 hexadecimal digits, got {expected!r:.80}")
    found = hashlib.sha256(raw).hexdigest()
    if found != expected.lower():
        raise TopictoneError(
            f"{path}: SHA-256 {found} is not the expected model_sha256 {expected.lower()}; "
            "this is not the model that was pinned"
        )


def parse_manifest(path: Path, raw: bytes) -> Manifest:
    """The manifest's JSON, its format and version, and each field's type."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise TopictoneError(f"{path}: unreadable manifest ({str(err)[:120]})") from None
    except RecursionError:
        raise TopictoneError(f"{path}: unreadable manifest (nested too deeply)") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise TopictoneError(f"{path}: not a topictone model manifest")
    version = data.get("format_version")
    if isinstance(version, bool) or version not in READS_VERSIONS:
        raise TopictoneError(
            f"{path}: model format version {version!r:.40}, this topictone reads versions "
            f"{', '.join(map(str, READS_VERSIONS))}"
        )
    if nests_deeper(data, MAX_MANIFEST_DEPTH):
        raise TopictoneError(f"{path}: nested more than {MAX_MANIFEST_DEPTH} deep")
    if version < 3 and "sizes" in data:
        raise TopictoneError(f"{path}: format version {version} declares no sizes")
    manifest = manifest_from_json(path, data)
    manifest.sizes_declared = version >= 3
    return manifest


def check_thresholds(path: Path, manifest: Manifest) -> None:
    thresholds = manifest.thresholds
    if not isinstance(thresholds, dict) or set(thresholds) != set(manifest.schema.topics):
        raise TopictoneError(f"{path}: thresholds must name exactly the schema's topics")
    for topic, value in thresholds.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise TopictoneError(f"{path}: threshold for '{topic}' must be a number in [0, 1]")


def folder_entries(folder: Path) -> dict[str, os.stat_result]:
    """Every file below ``folder`` by relative POSIX name, with its lstat; anything but
    folders and plain files (links, FIFOs, devices, sockets, hard links) is refused,
    and so are more than ``MAX_FILES`` entries. Nothing is opened."""
    found: dict[str, os.stat_result] = {}
    stack, count = [folder], 0
    while stack:
        current = stack.pop()
        try:
            with os.scandir(current) as entries:
                listed = list(itertools.islice(entries, MAX_FILES + 1 - count))
        except OSError as err:
            raise TopictoneError(f"{current}: cannot be listed ({err.strerror})") from None
        count += len(listed)
        if count > MAX_FILES:
            raise TopictoneError(f"{folder}: more than {MAX_FILES} files and folders")
        for entry in listed:
            path = Path(entry.path)
            status = entry.stat(follow_symlinks=False)
            if stat.S_ISDIR(status.st_mode):
                stack.append(path)
                continue
            check_plain(path, status)
            found[path.relative_to(folder).as_posix()] = status
    return found


def folder_files(folder: Path) -> set[str]:
    """Every file below ``folder`` as a relative POSIX name (see :func:`folder_entries`)."""
    return set(folder_entries(folder))


def check_files(folder: Path, manifest: Manifest) -> dict[str, os.stat_result]:
    """``files`` must be plain names inside the folder and cover every file in it; the
    folder must fit its kind's cap and each file its declared size. Returns the files'
    lstat results, for hashing exactly what was checked."""
    if not manifest.files:
        raise TopictoneError(f"{folder / MANIFEST}: lists no files; checksums cannot be checked")
    for name in manifest.files:
        inside(folder, name, "file")
    seen = folder_entries(folder)
    unlisted = sorted(set(seen) - set(manifest.files) - {MANIFEST, CARD})
    if unlisted:
        raise TopictoneError(
            f"{folder}: files not covered by the checksums in {MANIFEST}: {', '.join(unlisted[:5])}"
        )
    for name in manifest.files:
        if name not in seen:
            raise TopictoneError(f"{folder / name}: weights file listed in {MANIFEST} is missing")
    if manifest.sizes_declared and set(manifest.sizes) != set(manifest.files):
        raise TopictoneError(f"{folder / MANIFEST}: 'sizes' must name exactly the files listed")
    for name, size in manifest.sizes.items():
        if seen[name].st_size != size:
            raise TopictoneError(
                f"{folder / name}: checksum does not match {MANIFEST} (it has "
                f"{seen[name].st_size} bytes, {size} declared); the weights were changed or "
                "belong to another model"
            )
    cap = MAX_FOLDER_BYTES.get(manifest.kind, min(MAX_FOLDER_BYTES.values()))
    total = sum(status.st_size for status in seen.values())
    if total > cap:
        raise TopictoneError(
            f"{folder}: {total} bytes, over the {cap} a {manifest.kind!r:.40} model may take"
        )
    return seen


def check_stored_schema(path: Path, stored: Any, schema: LabelSchema) -> None:
    """The label order saved with the weights must be the manifest's: a reordered manifest
    would otherwise swap labels silently."""
    if stored != schema.to_dict():
        raise TopictoneError(
            f"{path}: the labels stored with the weights ({stored}) differ from the "
            f"manifest's schema ({schema.to_dict()})"
        )
