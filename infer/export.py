"""``python -m topictone.infer.export model=<dir> [quantize=int8]``: an ONNX graph of the
transformer.

The graph holds the encoder and both heads and maps a batch of token windows (dynamic
batch and sequence axes) to per-window topic and tone logits; cutting texts into
windows and pooling them stay in the predictor, so both runtimes share that code.
``quantize=int8`` stores int8 weights, by one of two ONNX Runtime methods
(``int8_method``): ``blockwise`` (default) quantises the weights in blocks along the
input axis (``MatMulNBits``, 8 bits) and the activations per block of each token as it
multiplies; ``dynamic`` quantises weights per output channel and a whole batch's
activations with one scale — faster, but less exact (BENCHMARKS.md has both on the gold
transformer). The graph joins the folder's checksums and its manifest
(``settings.graphs``, ``settings.int8_method``); the folder is replaced atomically, so a
failed export leaves the model as it was. Needs ``topictone[export]`` (torch, onnx,
onnxscript, onnxruntime).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict, cast

import numpy as np
from omegaconf import DictConfig

from topictone.infer.artifact import (
    CARD,
    MANIFEST,
    Manifest,
    folder_files,
    package_versions,
    read_manifest,
    record_sizes,
    sha256,
)
from topictone.infer.cli import CONF_DIR, command
from topictone.infer.errors import TopictoneError
from topictone.infer.paths import follow_umask
from topictone.infer.predictors.ensemble import MEMBERS
from topictone.infer.predictors.windows import pad_windows

if TYPE_CHECKING:
    from topictone.infer.predictors.network import TopicToneModel
    from topictone.infer.predictors.transformer import TransformerPredictor

GRAPH_NAMES = {"fp32": "model.onnx", "int8": "model.int8.onnx"}
PARENTS = ("ensemble", "cascade")  # kinds whose members are model folders under members/
QUANTIZE = ("none", "int8")
INT8_METHODS = ("blockwise", "dynamic")
# Texts the export checks the graph on: English and Hindi, one window to several.
CHECK_TEXTS = (
    "Army tests a new missile",
    "सेना ने नई मिसाइल का परीक्षण किया",
    "Hackers attacked the bank's servers overnight; police arrested two suspects. " * 12,
    "भारत और इज़राइल ने रक्षा सहयोग पर समझौता किया। " * 30,
)


class ExportResult(TypedDict):
    graph: str  # the graph's file name in the folder
    bytes: int
    max_logit_gap: float


def export(
    folder: str | os.PathLike[str],
    quantize: str = "none",
    tolerance: float = 1e-4,
    int8_method: str = "blockwise",
    block_size: int = 32,
) -> ExportResult:
    """Add the graph to ``folder``; return its name, size and largest logit gap vs torch.

    The fp32 graph must match torch within ``tolerance`` on the check texts, or nothing
    is written; the int8 graph's gap is reported (the benchmark measures its F1)."""
    from topictone import infer

    if quantize not in QUANTIZE:
        raise TopictoneError(f"quantize must be one of {QUANTIZE}, got {quantize!r}")
    if int8_method not in INT8_METHODS:
        raise TopictoneError(f"int8_method must be one of {INT8_METHODS}, got {int8_method!r}")
    if block_size < 16 or block_size & (block_size - 1):
        raise TopictoneError(f"block_size must be a power of 2, at least 16; got {block_size}")
    model = Path(folder)
    manifest = read_manifest(model)
    if manifest.kind in PARENTS:
        settings = (quantize, tolerance, int8_method, block_size)
        return _export_members(model, manifest, settings)
    if manifest.kind != "transformer":
        raise TopictoneError(
            f"{model}: a '{manifest.kind}' model; only transformers export (and the "
            "transformers inside an ensemble or a cascade)"
        )
    predictor = cast(  # a transformer folder (its kind is checked above)
        "TransformerPredictor",
        infer.load(model, runtime="torch", device="cpu", dtype="float32"),  # as the graph
    )
    precision = "int8" if quantize == "int8" else "fp32"
    name = GRAPH_NAMES[precision]
    with tempfile.TemporaryDirectory(dir=model.parent, prefix=f".{model.name}.onnx.") as tmp:
        graph = Path(tmp) / GRAPH_NAMES["fp32"]
        write_graph(predictor.model, predictor.tokenizer.pad_token_id, graph)
        if precision == "int8":
            quantized = Path(tmp) / name
            quantize_int8(graph, quantized, int8_method, block_size)
            graph = quantized
        gap = logit_gap(predictor, graph)
        if precision == "fp32" and gap > tolerance:
            raise TopictoneError(
                f"{model}: the ONNX graph's logits differ from torch's by {gap:.2e} "
                f"(> {tolerance}); nothing written"
            )
        method = int8_method if precision == "int8" else "none"
        add_graph(model, manifest, graph, name, precision, method)
    return {"graph": name, "bytes": (model / name).stat().st_size, "max_logit_gap": gap}


def write_graph(network: TopicToneModel, pad_id: int, path: Path) -> None:
    """Export the network's per-window part with dynamic batch and sequence axes."""
    import torch

    class WindowLogits(torch.nn.Module):
        def __init__(self, network: TopicToneModel) -> None:
            super().__init__()
            self.network = network

        def forward(
            self, input_ids: torch.Tensor, attention_mask: torch.Tensor
        ) -> tuple[torch.Tensor, torch.Tensor]:
            return self.network.window_logits(input_ids, attention_mask)

    # The exporter narrates each pass on stdout and warns about what it skips: quiet
    # unless it fails (its exception says what went wrong).
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    sample = pad_windows([[[pad_id + 2] * 12, [pad_id + 3] * 9], [[pad_id + 4] * 5]], pad_id)
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    args = (torch.from_numpy(sample["input_ids"]), torch.from_numpy(sample["attention_mask"]))
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            WindowLogits(network).eval(),
            args,
            str(path),
            input_names=["input_ids", "attention_mask"],
            output_names=["topic_logits", "tone_logits"],
            dynamic_shapes=({0: batch, 1: sequence}, {0: batch, 1: sequence}),
            dynamo=True,
            external_data=False,  # one self-contained file: no external data to trust
            verbose=False,
        )


def quantize_int8(source: Path, target: Path, method: str, block_size: int) -> None:
    """Write ``source`` with int8 weights to ``target`` (see the module's docstring)."""
    if method == "dynamic":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        logging.disable(logging.WARNING)  # its advice to pre-process, on the root logger
        try:
            quantize_dynamic(
                source,
                target,
                weight_type=QuantType.QInt8,
                per_channel=True,
                op_types_to_quantize=["MatMul"],
            )
        finally:
            logging.disable(logging.NOTSET)
        return
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    # It narrates every node it skips at INFO on a handler of its own.
    logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer").setLevel(logging.ERROR)
    quantizer = MatMulNBitsQuantizer(
        onnx.load(str(source)),
        bits=8,
        block_size=block_size,
        is_symmetric=True,
        accuracy_level=4,  # int8 products, activations quantised per block of each token
        op_types_to_quantize=("MatMul",),
    )
    quantizer.process()
    quantizer.model.save_model_to_file(str(target), use_external_data_format=False)


def logit_gap(predictor: TransformerPredictor, graph: Path) -> float:
    """Largest absolute difference between torch's and the graph's window logits."""
    from topictone.infer.predictors.onnx_runner import OnnxRunner

    runner = OnnxRunner(graph, predictor.schema, "check")
    inputs = pad_windows(predictor.encode(list(CHECK_TEXTS)), predictor.tokenizer.pad_token_id)
    ours = runner(inputs["input_ids"], inputs["attention_mask"])
    torch_out = predictor.runner(inputs["input_ids"], inputs["attention_mask"])
    return float(max(np.abs(a - b).max() for a, b in zip(ours, torch_out, strict=True)))


def add_graph(
    folder: Path, manifest: Manifest, graph: Path, name: str, precision: str, method: str
) -> None:
    """A new folder (hard links to the old files, the graph, the updated manifest and card)
    swapped in for the old one: readers see the old folder or the new, never half."""
    staging = _staged_copy(folder, {MANIFEST, CARD, name})
    try:
        shutil.move(graph, staging / name)
        follow_umask(staging / name)
        graphs = {**(manifest.settings.get("graphs") or {}), precision: name}
        manifest.settings = {**manifest.settings, "graphs": graphs}
        if precision == "int8":  # what the int8 graph's decisions cost depends on it
            manifest.settings["int8_method"] = method
        manifest.files = {**manifest.files, name: sha256(staging / name)}
        how = f", {method} quantisation" if precision == "int8" else ""
        _reseal(folder, staging, manifest, f"ONNX graph added: `{name}` ({precision}{how}).")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _swap(staging, folder)


def _export_members(
    folder: Path, manifest: Manifest, settings: tuple[str, float, str, int]
) -> ExportResult:
    """Every transformer inside an ensemble or a cascade exported, in a staged copy of the
    folder whose manifest is then resealed over the new files and swapped in whole."""
    members = manifest.settings.get("members") or {}
    chosen = [name for name in members if _holds_transformer(folder / MEMBERS / name)]
    if not chosen:
        raise TopictoneError(f"{folder}: a '{manifest.kind}' model with no transformer to export")
    staging = _staged_copy(folder, {MANIFEST, CARD}, link=False)
    try:
        results = [export(staging / MEMBERS / name, *settings) for name in chosen]
        manifest.files = {
            f: sha256(staging / f) for f in sorted(folder_files(staging) - {MANIFEST, CARD})
        }
        what = ", ".join(
            f"`{MEMBERS}/{n}/{r['graph']}`" for n, r in zip(chosen, results, strict=True)
        )
        _reseal(folder, staging, manifest, f"ONNX graphs added: {what}.")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _swap(staging, folder)
    first = results[0]
    return {
        "graph": f"{MEMBERS}/{chosen[0]}/{first['graph']}",
        "bytes": sum(r["bytes"] for r in results),
        "max_logit_gap": max(r["max_logit_gap"] for r in results),
    }


def _holds_transformer(folder: Path) -> bool:
    """Whether a model folder is a transformer, or holds one at any depth."""
    manifest = read_manifest(folder, verify=False)
    if manifest.kind in PARENTS:
        members = manifest.settings.get("members") or {}
        return any(_holds_transformer(folder / MEMBERS / name) for name in members)
    return manifest.kind == "transformer"


def _staged_copy(folder: Path, leave_out: set[str], link: bool = True) -> Path:
    """A hidden sibling folder with ``folder``'s files but ``leave_out``: hard links where
    ``link`` and the file system allow, else copies. A member exported inside the copy is
    read while the original still exists, and a loader refuses a file with two links."""
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        for file in sorted(folder_files(folder) - leave_out):
            target = staging / file
            target.parent.mkdir(parents=True, exist_ok=True)
            if link:
                with contextlib.suppress(OSError):  # a file system without hard links
                    os.link(folder / file, target)
                    continue
            shutil.copy2(folder / file, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return staging


def _reseal(folder: Path, staging: Path, manifest: Manifest, note: str) -> None:
    """The staged folder's manifest (sizes, versions) and card (``note`` appended)."""
    manifest.versions = {**manifest.versions, **package_versions(["torch", "onnx", "onnxruntime"])}
    record_sizes(manifest, staging)
    (staging / MANIFEST).write_text(
        json.dumps(manifest.to_json(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    if (folder / CARD).is_file():  # the card training wrote stays (a copy: appended to)
        shutil.copyfile(folder / CARD, staging / CARD)
    else:
        from topictone.infer.card import model_card

        (staging / CARD).write_text(model_card(manifest), encoding="utf-8")
    with (staging / CARD).open("a", encoding="utf-8") as card:
        card.write(f"\n{note}\n")
    follow_umask(staging, folder=True)


def _swap(staging: Path, folder: Path) -> None:
    """``staging`` renamed to ``folder``, the old folder kept aside until then."""
    backup = folder.with_name(f".{folder.name}.old")
    try:
        shutil.rmtree(backup, ignore_errors=True)
        folder.rename(backup)
        staging.rename(folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if backup.exists() and not folder.exists():
            backup.rename(folder)
        raise
    shutil.rmtree(backup, ignore_errors=True)


@command(f"{CONF_DIR}/inference", "export")
def main(cfg: DictConfig) -> None:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
        import torch  # noqa: F401
    except ImportError as err:
        raise TopictoneError(
            f"the export needs {err.name}: pip install 'topictone[export]'"
        ) from None
    result = export(
        cfg.model,
        quantize=cfg.quantize,
        tolerance=cfg.tolerance,
        int8_method=cfg.int8_method,
        block_size=cfg.block_size,
    )
    print(
        f"wrote {cfg.model}/{result['graph']} ({result['bytes'] / 2**20:.1f} MiB); largest "
        f"logit gap to torch on the check texts: {result['max_logit_gap']:.2e}",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
