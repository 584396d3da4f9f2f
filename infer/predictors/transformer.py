"""The fine-tuned multilingual transformer at inference, on torch or on ONNX Runtime.

Long texts are cut into overlapping token windows (:mod:`topictone.infer.predictors.windows`);
a runtime turns windows into per-window logits — the torch network
(:mod:`topictone.infer.predictors.network`) or an ONNX graph written by
``python -m topictone.infer.export`` (:mod:`topictone.infer.predictors.onnx_runner`) —
and the windows pool into one row per text.
This module imports neither torch nor onnxruntime: a folder with a graph predicts
where torch is not installed.
"""

from __future__ import annotations

import copy
import hashlib
import os
from collections.abc import Sequence
from importlib.util import find_spec
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np
from transformers import AutoConfig

from topictone.infer.artifact import Manifest, check_stored_schema
from topictone.infer.decision import Calibration
from topictone.infer.errors import TopictoneError
from topictone.infer.paths import inside
from topictone.infer.predictors.base import (
    Predictor,
    Scores,
    checked_sizes,
    readable_prefix,
    scores_from_logits,
)
from topictone.infer.predictors.hf_config import config_labels, encoder_config  # registers the type
from topictone.infer.predictors.hf_files import check_config_file, check_vocabulary, load_tokenizer
from topictone.infer.predictors.tensors import stored_metadata
from topictone.infer.predictors.windows import (
    backbone_limit,
    check_dtype,
    check_pooling,
    encode_windows,
    pad_windows,
    pool_windows,
)
from topictone.infer.schema import LabelSchema, Prediction

WEIGHTS = "model.safetensors"
SAFE_LOAD = {"trust_remote_code": False, "local_files_only": True}  # a model folder runs no code
WINDOW_SETTINGS = ("max_length", "stride", "max_windows", "prefix")
RUNTIMES = ("auto", "torch", "onnx")
GRAPHS = ("auto", "fp32", "int8")  # which exported graph the onnx runtime runs
LOAD_OPTIONS = (
    *WINDOW_SETTINGS,
    "batch_size",
    "threads",
    "device",
    "runtime",
    "graph",
    "dtype",
)


class WindowRunner(Protocol):
    """Per-window topic and tone logits for one padded batch of windows."""

    runtime: str

    def __call__(
        self, input_ids: np.ndarray, attention_mask: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]: ...


class TransformerPredictor(Predictor):
    """Sorts texts by length, batches their windows, runs them, pools, restores order."""

    kind: ClassVar[str] = "transformer"
    requirements: ClassVar[tuple[str, ...]] = (
        "torch",
        "transformers",
        "tokenizers",
        "safetensors",
        "onnx",
        "onnxruntime",
    )

    def __init__(
        self,
        schema: LabelSchema,
        runner: WindowRunner,
        tokenizer: Any,
        max_length: int = 256,
        stride: int = 64,
        max_windows: int = 16,
        prefix: str = "",
        topic_pooling: str = "max",
        tone_pooling: str = "mean",
        thresholds: dict[str, float] | None = None,
        calibration: Calibration | dict[str, Any] | None = None,
        batch_size: int = 32,
        dtype: str = "float32",
    ) -> None:
        super().__init__(schema, thresholds, calibration)
        check_pooling(topic_pooling, tone_pooling)
        self.runner, self.tokenizer = runner, tokenizer
        self.max_length, self.stride, self.max_windows, self.prefix = (
            max_length,
            stride,
            max_windows,
            prefix,
        )
        self.topic_pooling, self.tone_pooling = topic_pooling, tone_pooling
        self.batch_size, self.dtype = batch_size, dtype
        self._memo: tuple[tuple, tuple[np.ndarray, np.ndarray]] | None = None
        self.reads_chars = readable_prefix(tokenizer, max_length * max_windows)

    @property
    def model(self) -> Any:
        """The torch network (torch runtime only): training continues from it."""
        model = getattr(self.runner, "model", None)
        if model is None:
            raise TopictoneError(
                f"this predictor runs on {self.runner.runtime}; load it with runtime=torch"
            )
        return model

    def encode(self, texts: Sequence[str]) -> list[list[list[int]]]:
        return encode_windows(
            self.tokenizer,
            [t[: self.reads_chars] for t in texts],
            self.max_length,
            self.stride,
            self.max_windows,
            self.prefix,
        )

    def logits(self, docs: Sequence[list[list[int]]]) -> tuple[np.ndarray, np.ndarray]:
        """Raw logits for encoded texts, computed in length-sorted batches of windows."""
        order = sorted(range(len(docs)), key=lambda i: sum(len(w) for w in docs[i]))
        topic_out = np.zeros((len(docs), len(self.schema.topics)), dtype=np.float32)
        tone_out = np.zeros((len(docs), len(self.schema.tones)), dtype=np.float32)
        batch: list[int] = []
        windows = 0

        def run(batch: list[int]) -> None:
            inputs = pad_windows([docs[i] for i in batch], self.tokenizer.pad_token_id)
            topic, tone = self.runner(inputs["input_ids"], inputs["attention_mask"])
            topic_out[batch] = pool_windows(topic, inputs["doc_index"], self.topic_pooling)
            tone_out[batch] = pool_windows(tone, inputs["doc_index"], self.tone_pooling)

        for i in order:
            if batch and windows + len(docs[i]) > self.batch_size:
                run(batch)
                batch, windows = [], 0
            batch.append(i)
            windows += len(docs[i])
        if batch:
            run(batch)
        return topic_out, tone_out

    def logits_clean(self, clean: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Uncalibrated logits for normalised texts (calibration is fitted on these).

        The last list's logits are remembered: after training, calibration, threshold
        tuning and evaluation score the same dev texts in turn (minutes each on a CPU)."""
        digest = hashlib.sha256()
        for text in clean:
            digest.update(text.encode("utf-8", "surrogatepass") + b"\x00")
        key = (
            digest.hexdigest(),
            id(self.runner),
            self.max_length,
            self.stride,
            self.max_windows,
            self.prefix,
            self.topic_pooling,
            self.tone_pooling,
        )
        if self._memo is None or self._memo[0] != key:
            self._memo = (key, self.logits(self.encode(clean)))
        topic, tone = self._memo[1]
        return topic.copy(), tone.copy()

    def _forward(self, texts: list[str]) -> Scores:
        return scores_from_logits(*self.logits_clean(texts))

    def tone_reader(self) -> TransformerPredictor:
        """With the tone pooled from the first window, a copy reading only that window."""
        if self.tone_pooling != "first" or self.max_windows == 1:
            return self
        reader = copy.copy(self)
        reader.max_windows, reader._memo = 1, None
        reader.reads_chars = readable_prefix(self.tokenizer, self.max_length)
        return reader

    def explain(
        self, text: str, prediction: Prediction, top_k: int = 5, max_units: int = 80
    ) -> dict:
        """Occlusion: drop each word (or run of words, for long texts) and keep those whose
        removal lowers a decided label's score most. Costs one batch of ~``max_units`` texts."""
        words = text.split()
        size = max(1, -(-len(words) // max_units))
        units = [" ".join(words[i : i + size]) for i in range(0, len(words), size)]
        variants = [" ".join(units[:i] + units[i + 1 :]) or "." for i in range(len(units))]
        topic_scores, tone_probs = self.predict_scores_clean(variants)
        base = dict(prediction.topic_scores)
        out = {}
        for label in [*prediction.topics, prediction.tone]:
            if label in base:
                drops = base[label] - topic_scores[:, self.schema.topics.index(label)]
            else:
                drops = (
                    prediction.tone_scores[label] - tone_probs[:, self.schema.tones.index(label)]
                )
            order = np.argsort(-drops)[:top_k]
            out[label] = [(units[i], round(float(drops[i]), 4)) for i in order if drops[i] > 0]
        return out

    def settings(self) -> dict[str, Any]:
        """The window settings; exported graphs are added to the manifest by the export."""
        return {
            "max_length": self.max_length,
            "stride": self.stride,
            "max_windows": self.max_windows,
            "prefix": self.prefix,
            "topic_pooling": self.topic_pooling,
            "tone_pooling": self.tone_pooling,
            "dtype": self.dtype,  # what the torch runtime computes in (as trained)
        }

    def save_weights(self, folder: Path) -> list[str]:
        from topictone.infer.predictors.network import save_network

        names = save_network(self.model, self.schema, self.settings(), folder)
        before = set(os.listdir(folder))
        self.tokenizer.save_pretrained(folder)
        return [*names, *sorted(set(os.listdir(folder)) - before)]

    @classmethod
    def load(cls, folder: Path, manifest: Manifest, **options: Any) -> TransformerPredictor:
        settings = manifest.settings
        check_stored_schema(folder / WEIGHTS, stored_schema(folder / WEIGHTS), manifest.schema)
        unknown = sorted(set(options) - set(LOAD_OPTIONS))
        if unknown:
            raise TopictoneError(
                f"unknown option(s) {', '.join(unknown)} (known: {', '.join(LOAD_OPTIONS)})"
            )
        check_config_file(folder)
        try:  # config.json is untrusted: a crafted one is one line, never a traceback
            config = AutoConfig.from_pretrained(folder, **SAFE_LOAD)
            labels = config_labels(config)
        except Exception as err:  # reading config.json runs no code: any failure is its content
            first = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
            raise TopictoneError(
                f"{folder}/config.json: not a usable config ({type(err).__name__}: {first})"
            ) from None
        if getattr(config, "auto_map", None):
            raise TopictoneError(f"{folder}/config.json: asks for custom code (auto_map), refused")
        if labels is not None and labels != [
            list(manifest.schema.topics),
            list(manifest.schema.tones),
        ]:
            raise TopictoneError(
                f"{folder}/config.json: labels {labels} differ from the manifest's "
                f"{[list(manifest.schema.topics), list(manifest.schema.tones)]}"
            )
        tokenizer = load_tokenizer(folder, **SAFE_LOAD)
        check_vocabulary(folder, tokenizer, encoder_config(config))
        # Options override the saved settings: more windows than in training is fine,
        # since pooling is per element; the window length and prefix should not change.
        merged = {**{k: settings.get(k) for k in WINDOW_SETTINGS}, **options}
        sizes = checked_sizes(folder, merged, ("max_length", "stride", "max_windows"))
        sizes |= checked_sizes(
            "option", merged | {"batch_size": merged.get("batch_size", 32)}, ("batch_size",)
        )
        threads = None
        if merged.get("threads") is not None:
            threads = checked_sizes("option", merged, ("threads",))["threads"]
        if sizes["stride"] >= sizes["max_length"]:
            raise TopictoneError(f"{folder}: stride {sizes['stride']} must be below max_length")
        limit = backbone_limit(encoder_config(config), tokenizer)
        if sizes["max_length"] > limit:
            raise TopictoneError(
                f"{folder}: max_length {sizes['max_length']} exceeds what the encoder accepts "
                f"({limit})"
            )
        if not isinstance(merged.get("prefix") or "", str):
            raise TopictoneError(f"{folder}: prefix must be a string")
        dtype = merged.get("dtype") or settings.get("dtype") or "float32"
        check_dtype(dtype)
        graphs = saved_graphs(folder, settings)
        runner = make_runner(
            folder,
            manifest,
            config,
            graphs,
            runtime=merged.get("runtime") or "auto",
            graph=merged.get("graph") or "auto",
            threads=threads,
            device=merged.get("device"),
            dtype=dtype,
            dtype_asked=bool(merged.get("dtype")),
        )
        return cls(
            manifest.schema,
            runner,
            tokenizer,
            thresholds=manifest.thresholds,
            calibration=manifest.calibration,
            prefix=merged.get("prefix") or "",
            topic_pooling=settings.get("topic_pooling", "max"),
            tone_pooling=settings.get("tone_pooling", "mean"),
            dtype=dtype,
            **sizes,
        )


def saved_graphs(folder: Path, settings: dict[str, Any]) -> dict[str, str]:
    """The manifest's exported graphs by precision; names must be files of the folder."""
    graphs = settings.get("graphs") or {}
    if not isinstance(graphs, dict) or not set(graphs) <= set(GRAPHS[1:]):
        raise TopictoneError(f"{folder}: settings.graphs must map {GRAPHS[1:]} to file names")
    for name in graphs.values():
        inside(folder, name, "graph")
    return dict(graphs)


def make_runner(
    folder: Path,
    manifest: Manifest,
    config: Any,
    graphs: dict[str, str],
    runtime: str,
    graph: str,
    threads: int | None,
    device: str | None,
    dtype: str = "float32",
    dtype_asked: bool = False,
) -> WindowRunner:
    """The runtime asked for; ``auto`` runs an exported graph where onnxruntime is there.
    On torch, a saved bfloat16 (not one ``dtype_asked`` as an option) becomes float32
    where this machine has no native bfloat16 (:mod:`topictone.infer.predictors.precision`)."""
    if runtime not in RUNTIMES:
        raise TopictoneError(f"option runtime must be one of {RUNTIMES}, got {runtime!r}")
    if graph not in GRAPHS:
        raise TopictoneError(f"option graph must be one of {GRAPHS}, got {graph!r}")
    if graph != "auto" and runtime == "torch":
        raise TopictoneError("option graph chooses an ONNX graph: it needs runtime=onnx or auto")
    has_ort = find_spec("onnxruntime") is not None
    if runtime == "auto":
        runtime = "onnx" if graphs and has_ort else "torch"
        if runtime == "torch" and find_spec("torch") is None:
            raise TopictoneError(
                f"{folder}: predicting needs torch (topictone[transformer]) or an ONNX graph "
                "(python -m topictone.infer.export model=<folder>) "
                "and onnxruntime (topictone[onnx])"
            )
    if runtime == "onnx":
        if not graphs:
            raise TopictoneError(
                f"{folder}: has no ONNX graph; "
                f"write one with python -m topictone.infer.export model={folder}"
            )
        if not has_ort:
            raise TopictoneError("runtime=onnx needs onnxruntime: install topictone[onnx]")
        if device not in (None, "cpu"):
            raise TopictoneError(f"runtime=onnx runs on the CPU, not on device {device!r}")
        # auto: fp32 where exported. int8 is opt-in: it moves decisions (dynamic: 0.02
        # topic macro-F1 on gold dev) and, blockwise, is no faster than torch in bf16
        # (benchmarks/speed/int8_methods.py, benchmarks/speed/inference_speed.py, BENCHMARKS.md).
        precision = ("fp32" if "fp32" in graphs else "int8") if graph == "auto" else graph
        if precision not in graphs:
            raise TopictoneError(
                f"{folder}: has no {precision} graph (has: {', '.join(sorted(graphs))}); "
                f"write one with python -m topictone.infer.export model={folder}"
                + (" quantize=int8" if precision == "int8" else "")
            )
        from topictone.infer.predictors.onnx_runner import OnnxRunner

        return OnnxRunner(folder / graphs[precision], manifest.schema, precision, threads)
    try:
        from topictone.infer.predictors.network import load_network
        from topictone.infer.predictors.precision import effective_dtype
    except ImportError as err:
        raise TopictoneError(
            f"runtime=torch needs a missing package ({err.name}); install topictone[transformer]"
        ) from None
    if not dtype_asked:
        dtype = effective_dtype(dtype, f"the model {folder}", device)
    return load_network(folder, manifest, config, threads, device, dtype)


def stored_schema(path: Path) -> Any:
    """The label schema saved in a safetensors file's metadata (None if absent), read
    from its checked header (:mod:`topictone.infer.predictors.tensors`)."""
    return stored_metadata(path, "schema")
