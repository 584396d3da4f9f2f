"""What a safetensors file and a ``config.json`` declare, checked before either is used.

A safetensors file starts with its header: a JSON object giving each tensor's dtype,
shape and byte range. Read here without torch, it gives the shapes the network must
have, so a ``config.json`` that asks for a bigger network than the weights hold (one
edited ``vocab_size`` made the loader allocate 2.4 GB) is refused before anything is
built; :func:`check_network` compares the two on torch's ``meta`` device, where
building a network allocates nothing.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from topictone.infer.errors import TopictoneError

MAX_HEADER_BYTES = 16 << 20  # a few thousand tensors take well under 1 MiB
DTYPE_BYTES = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
    "I16": 2,
    "U16": 2,
    "F16": 2,
    "BF16": 2,
    "I32": 4,
    "U32": 4,
    "F32": 4,
    "I64": 8,
    "U64": 8,
    "F64": 8,
}
# Config fields that count layers: each layer holds at least one tensor, so none may
# exceed the file's tensor count (checked first: building ten thousand layers even on
# the meta device takes minutes).
LAYER_COUNTS = ("num_hidden_layers", "num_layers", "n_layer", "n_layers")

Shapes = dict[str, tuple[int, ...]]


def read_header(path: Path) -> tuple[Shapes, dict[str, str]]:
    """Each tensor's shape and the file's metadata, as its header declares them; the
    header must be well formed and its byte ranges must tile the data exactly."""
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            prefix = handle.read(8)
            length = struct.unpack("<Q", prefix)[0] if len(prefix) == 8 else -1
            if not 2 <= length <= min(MAX_HEADER_BYTES, size - 8):
                raise TopictoneError(f"{path}: unreadable safetensors file (header size)")
            header = json.loads(handle.read(length).decode("utf-8"))
    except (OSError, ValueError, RecursionError) as err:
        raise TopictoneError(
            f"{path}: unreadable safetensors file ({type(err).__name__})"
        ) from None
    if not isinstance(header, dict):
        raise TopictoneError(f"{path}: unreadable safetensors file (header is no object)")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise TopictoneError(f"{path}: unreadable safetensors file (metadata)")
    shapes, ranges = {}, []
    for name, entry in header.items():
        shapes[name], span = tensor_entry(path, name, entry)
        ranges.append(span)
    end = 0
    for start, stop in sorted(ranges):
        if start != end:
            raise TopictoneError(f"{path}: unreadable safetensors file (tensor byte ranges)")
        end = stop
    if end != size - 8 - length:
        raise TopictoneError(
            f"{path}: tensors declare {end} bytes of data, the file holds {size - 8 - length}"
        )
    return shapes, metadata


def tensor_entry(path: Path, name: str, entry: Any) -> tuple[tuple[int, ...], tuple[int, int]]:
    """One header entry's shape and byte range, checked against its dtype."""
    ok = isinstance(entry, dict) and isinstance(entry.get("dtype"), str)
    ok = ok and entry["dtype"] in DTYPE_BYTES
    shape: Any  # JSON values, checked below
    span: Any
    shape, span = (entry.get("shape"), entry.get("data_offsets")) if ok else (None, None)
    ok = ok and isinstance(shape, list) and isinstance(span, list) and len(span) == 2
    ok = ok and all(type(n) is int and n >= 0 for n in [*shape, *span])
    if not ok or span[1] - span[0] != math.prod(shape) * DTYPE_BYTES[entry["dtype"]]:
        raise TopictoneError(f"{path}: unreadable safetensors file (tensor {name!r:.80})")
    return tuple(shape), (span[0], span[1])


def stored_metadata(path: Path, key: str) -> Any:
    """A JSON value saved under ``key`` in the file's metadata (None if absent)."""
    _, metadata = read_header(path)
    try:
        return json.loads(metadata.get(key, "null"))
    except (ValueError, RecursionError):
        raise TopictoneError(f"{path}: unreadable safetensors metadata {key!r}") from None


def check_layer_counts(where: object, config: Any, shapes: Shapes) -> None:
    """No config field that counts layers may exceed the file's tensor count."""
    for field in LAYER_COUNTS:
        value = getattr(config, field, None)
        if isinstance(value, int) and not 0 <= value <= len(shapes):
            raise TopictoneError(
                f"{where}: config.json asks for {field}={value}; the weights hold "
                f"{len(shapes)} tensors"
            )


def check_network(
    path: Path,
    config: Any,
    build: Callable[[], Any],
    shapes: Shapes,
    prefixes: Iterable[str] = (),
    extra_allowed: bool = False,
) -> None:
    """The network ``build`` makes (on the meta device) must have exactly the file's
    tensor shapes; tensors the network lacks are allowed only with ``extra_allowed``
    (a Hugging Face encoder's unused pooler). No weights are allocated."""
    import torch

    check_layer_counts(path, config, shapes)
    try:
        with torch.device("meta"):
            network = build()
        expected = {name: tuple(t.shape) for name, t in network.state_dict().items()}
        if getattr(network, "base_model_prefix", ""):  # transformers' own checkpoints
            prefixes = (*prefixes, f"{network.base_model_prefix}.")
    except TopictoneError:
        raise
    except Exception as err:  # a config transformers cannot build: one line
        first = str(err).strip().splitlines()[0][:160] if str(err).strip() else ""
        raise TopictoneError(
            f"{path.parent / 'config.json'}: no network can be built from it "
            f"({type(err).__name__}: {first})"
        ) from None
    compare_shapes(path, expected, unprefixed(shapes, prefixes), extra_allowed)


def unprefixed(shapes: Shapes, prefixes: Iterable[str]) -> Shapes:
    """``shapes`` with the first matching prefix taken off each name."""
    out = {}
    for name, shape in shapes.items():
        for prefix in prefixes:
            if name.startswith(prefix):
                name = name[len(prefix) :]
                break
        out[name] = shape
    return out


def compare_shapes(
    path: Path, expected: Mapping[str, tuple], declared: Mapping[str, tuple], extra_allowed: bool
) -> None:
    missing = sorted(set(expected) - set(declared))
    extra = sorted(set(declared) - set(expected)) if not extra_allowed else []
    wrong = sorted(n for n in set(expected) & set(declared) if expected[n] != declared[n])
    if missing or extra:
        names = ", ".join([*missing[:2], *extra[:2]])
        raise TopictoneError(
            f"{path}: weights do not match config.json ({len(missing)} tensors missing, "
            f"{len(extra)} unexpected: {names:.200})"
        )
    if wrong:
        name = wrong[0]
        raise TopictoneError(
            f"{path}: weights do not match config.json ({name:.100}: config.json gives "
            f"{expected[name]}, the file {declared[name]})"
        )
