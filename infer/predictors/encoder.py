"""A frozen sentence encoder with linear heads: strong features for little training.

Any Hugging Face encoder, or a sentence-transformers folder (Transformer → Pooling →
Dense… → Normalize, e.g. ``google/embeddinggemma-300m``), embeds each text once; a
logistic topic head (sigmoid per topic) and a multinomial tone head read the embedding.
Long texts become windows (the prompt on each), whose embeddings are averaged.

The sentence-transformers layout is read as data: only the module types below are
accepted, their files must lie inside the folder, and no class is imported by name.
"""

from __future__ import annotations

import copy
import json
from collections import OrderedDict
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from transformers import AutoConfig, AutoModel

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
from topictone.infer.predictors.embedding_cache import EmbeddingCache, text_key
from topictone.infer.predictors.hf_files import (
    check_config_file,
    check_vocabulary,
    first_line,
    load_tokenizer,
    read_json,
    tokenizer_errors,
)
from topictone.infer.predictors.network import without_pooler
from topictone.infer.predictors.precision import effective_dtype
from topictone.infer.predictors.tensors import check_network, read_header
from topictone.infer.predictors.transformer import SAFE_LOAD, stored_schema
from topictone.infer.predictors.windows import check_dtype, check_pooling, pool_windows
from topictone.infer.schema import LabelSchema

ENCODER = "encoder"  # the encoder's own Hugging Face folder, inside the model folder
HEADS = "heads.safetensors"
LAYOUT = "topictone_encoder.json"  # pooling, dense layers, normalisation, prompt
DENSE = "dense.safetensors"
ST_MODULES = {
    "sentence_transformers.models.Transformer",
    "sentence_transformers.models.Pooling",
    "sentence_transformers.models.Dense",
    "sentence_transformers.models.Normalize",
}
ACTIVATIONS = {"torch.nn.modules.linear.Identity": None, "torch.nn.modules.activation.Tanh": "tanh"}


class SentenceEncoder:
    """Tokenise into prompted windows, encode, mean-pool, apply dense layers, normalise."""

    def __init__(
        self,
        model: Any,  # a Hugging Face model: its config and save_pretrained are used
        tokenizer: Any,
        dense: Sequence[tuple[torch.Tensor, torch.Tensor | None, str | None]] = (),
        normalize: bool = False,
        prompt: str = "",
        max_length: int = 256,
        stride: int = 32,
        max_windows: int = 1,
        batch_size: int = 16,
        dtype: str = "float32",
    ) -> None:
        check_dtype(dtype)
        self.model = model.to(getattr(torch, dtype)).eval()
        self.tokenizer, self.dense, self.normalize = tokenizer, list(dense), normalize
        self.prompt, self.max_length, self.stride = prompt, int(max_length), int(stride)
        self.max_windows, self.batch_size, self.dtype = int(max_windows), int(batch_size), dtype
        self.cache: EmbeddingCache | None = None  # on disk; set by training
        # The last texts embedded, in memory: evaluation, calibration and threshold tuning
        # score the same dev texts several times in one run.
        self.recent: OrderedDict[str, np.ndarray] = OrderedDict()
        self.recent_size = 20_000
        if self.max_windows < 1:
            raise TopictoneError("encoder max_windows must be at least 1")
        with tokenizer_errors("encoder tokenizer"):
            specials = len(tokenizer("")["input_ids"])  # special tokens around every window
            prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"] if prompt else []
        prompt_len = len(prompt_ids)
        self.budget = self.max_length - specials - prompt_len  # text tokens per window
        self.reads_chars = readable_prefix(tokenizer, self.max_length * self.max_windows)
        if self.budget <= self.stride:
            raise TopictoneError(
                f"encoder max_length {max_length} leaves {self.budget} text tokens after the "
                f"prompt, not more than the stride {stride}"
            )

    @property
    def dimension(self) -> int:
        if self.dense:
            return int(self.dense[-1][0].shape[0])
        return int(self.model.config.hidden_size)

    def windows(self, texts: Sequence[str]) -> list[list[str]]:
        """Each text as up to ``max_windows`` prompted pieces of at most ``budget`` tokens;
        a text that fits is one piece, exactly prompt + text."""
        texts = [t[: self.reads_chars] for t in texts]
        with tokenizer_errors("encoder tokenizer"):
            encoded = self.tokenizer(
                list(texts), add_special_tokens=False, return_offsets_mapping=True, verbose=False
            )["offset_mapping"]
        step = self.budget - self.stride
        out = []
        for text, offsets in zip(texts, encoded, strict=True):
            if len(offsets) <= self.budget:
                out.append([self.prompt + text])
                continue
            pieces = []
            for start in range(0, len(offsets), step)[: self.max_windows]:
                end = min(start + self.budget, len(offsets)) - 1
                pieces.append(self.prompt + text[offsets[start][0] : offsets[end][1]].lstrip())
                if end == len(offsets) - 1:
                    break
            out.append(pieces)
        return out

    def embed(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        """One float32 vector per text (windows averaged, then normalised if configured)."""
        return self.average(*self.embed_windows(texts, progress))

    def embed_windows(
        self, texts: Sequence[str], progress: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """Every window's vector, and the index of the text each belongs to (ascending)."""
        docs = self.windows(texts)
        vectors = self.piece_vectors([piece for pieces in docs for piece in pieces], progress)
        return vectors, np.repeat(np.arange(len(docs)), [len(pieces) for pieces in docs])

    def average(self, vectors: np.ndarray, owner: np.ndarray) -> np.ndarray:
        """Each text's windows averaged (and normalised if the encoder normalises)."""
        docs = int(owner.max()) + 1 if len(owner) else 0
        pooled = np.zeros((docs, self.dimension), dtype=np.float32)
        np.add.at(pooled, owner, vectors)
        pooled /= np.maximum(np.bincount(owner, minlength=docs), 1)[:, None]
        if self.normalize:
            pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return pooled

    def piece_vectors(self, pieces: list[str], progress: bool = False) -> np.ndarray:
        """Each prompted window's vector: from memory, the disk cache, or the network.

        Keyed by the window's own text, so a window is embedded once whatever the text,
        stride or window count it came from (more windows later embed only the new ones)."""
        keys = [text_key(p) for p in pieces]
        todo = list(
            dict.fromkeys(p for k, p in zip(keys, pieces, strict=True) if k not in self.recent)
        )
        if todo:
            if self.cache is not None:
                fresh = self.cache.get_or_embed(
                    todo, lambda rest: self._embed_pieces(rest, progress)
                )
            else:
                fresh = self._embed_pieces(todo, progress)
            for piece, vector in zip(todo, fresh, strict=True):
                self.recent[text_key(piece)] = vector
        out = np.stack([self.recent[k] for k in keys]) if keys else np.zeros((0, self.dimension))
        for key in keys:
            self.recent.move_to_end(key)
        while len(self.recent) > self.recent_size:
            self.recent.popitem(last=False)
        return out.astype(np.float32)

    def _embed_pieces(self, pieces: list[str], progress: bool = False) -> np.ndarray:
        """The network on windows, in length-sorted batches (little padding)."""
        order = sorted(range(len(pieces)), key=lambda i: len(pieces[i]))
        vectors = np.zeros((len(pieces), self.dimension), dtype=np.float32)
        batches = range(0, len(order), self.batch_size)
        if progress:
            from tqdm.auto import tqdm

            batches = tqdm(batches, desc="embedding", unit="batch")
        for start in batches:
            rows = order[start : start + self.batch_size]
            vectors[rows] = self._encode([pieces[i] for i in rows])
        return vectors

    def _encode(self, pieces: list[str]) -> np.ndarray:
        with tokenizer_errors("encoder tokenizer"):
            batch = self.tokenizer(
                pieces,
                truncation=True,
                max_length=self.max_length,
                padding=True,
                return_tensors="pt",
            )
        with torch.inference_mode():
            hidden = self.model(
                input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
            ).last_hidden_state.float()
            mask = batch["attention_mask"].unsqueeze(-1).float()
            out = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-6)
            for weight, bias, activation in self.dense:
                out = torch.nn.functional.linear(out, weight, bias)
                if activation == "tanh":
                    out = torch.tanh(out)
            if self.normalize:
                out = torch.nn.functional.normalize(out, dim=-1)
        return out.numpy()

    def layout(self) -> dict[str, Any]:
        """What ``load_encoder`` needs besides the Hugging Face folder and ``dense.safetensors``."""
        return {
            "dense": [{"bias": b is not None, "activation": a} for _, b, a in self.dense],
            "normalize": self.normalize,
            "prompt": self.prompt,
        }

    def save(self, folder: Path) -> list[str]:
        """The encoder as a plain folder: Hugging Face weights and tokenizer, our layout file."""
        folder.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)
        tensors = {}
        for i, (weight, bias, _) in enumerate(self.dense):
            tensors[f"{i}.weight"] = weight.contiguous()
            if bias is not None:
                tensors[f"{i}.bias"] = bias.contiguous()
        save_file(tensors, folder / DENSE)
        (folder / LAYOUT).write_text(json.dumps(self.layout(), indent=2) + "\n", encoding="utf-8")
        return sorted(p.name for p in folder.iterdir() if p.is_file())


def _hf_model(folder: Path, dtype: str) -> tuple[torch.nn.Module, Any]:
    """A Hugging Face encoder folder's network and tokenizer, each checked first: the
    network ``config.json`` describes must be the one ``model.safetensors`` holds, shape
    for shape, before transformers allocates it."""
    check_config_file(folder)
    try:
        config = AutoConfig.from_pretrained(folder, **SAFE_LOAD)
    except Exception as err:  # reading config.json runs no code: any failure is its content
        raise TopictoneError(
            f"{folder}/config.json: not a usable config ({type(err).__name__}: {first_line(err)})"
        ) from None
    if getattr(config, "auto_map", None):
        raise TopictoneError(f"{folder}: the encoder config asks for custom code (auto_map)")
    weights = folder / "model.safetensors"
    if not weights.is_file():  # never pytorch_model.bin: unpickling runs code
        raise TopictoneError(f"{folder}: has no model.safetensors (the only weights read)")
    shapes, _ = read_header(weights)
    build = partial(without_pooler, AutoModel.from_config, config)
    check_network(weights, config, build, shapes, extra_allowed=True)  # e.g. an unused pooler
    try:
        model = without_pooler(
            AutoModel.from_pretrained, folder, config=config, use_safetensors=True, **SAFE_LOAD
        )
    except Exception as err:  # weights transformers refuses after all: one line
        raise TopictoneError(
            f"{weights}: not usable weights ({type(err).__name__}: {first_line(err)})"
        ) from None
    tokenizer = load_tokenizer(folder, **SAFE_LOAD)
    check_vocabulary(folder, tokenizer, config)
    return model, tokenizer


def load_encoder(folder: str | Path, dtype: str = "float32", **settings: Any) -> SentenceEncoder:
    """An encoder from a folder we saved, a sentence-transformers folder or a plain
    Hugging Face encoder (mean pooling). ``settings`` are ``SentenceEncoder`` options."""
    folder = Path(folder)
    if not folder.is_dir():
        raise TopictoneError(f"{folder}: encoder folder not found")
    if (folder / LAYOUT).is_file():
        try:
            layout = read_json(folder / LAYOUT)
            tensors = load_file(folder / DENSE)
            dense: list[tuple[Any, Any, Any]] = [
                (
                    tensors[f"{i}.weight"],
                    tensors.get(f"{i}.bias") if d["bias"] else None,
                    d["activation"] if d["activation"] in ACTIVATIONS.values() else 0,
                )
                for i, d in enumerate(layout["dense"])
            ]
            prompt, normalize = str(layout["prompt"]), bool(layout["normalize"])
        except (KeyError, TypeError, ValueError, OSError, AttributeError, SafetensorError) as err:
            raise TopictoneError(
                f"{folder / LAYOUT}: malformed encoder layout ({type(err).__name__}: "
                f"{first_line(err)})"
            ) from None
        if any(activation == 0 for *_, activation in dense):
            raise TopictoneError(f"{folder / LAYOUT}: unsupported dense activation")
        model, tokenizer = _hf_model(folder, dtype)
        settings.setdefault("prompt", prompt)
    elif (folder / "modules.json").is_file():
        try:
            model, tokenizer, dense, normalize, prompts = _sentence_transformers(folder, dtype)
        except (KeyError, TypeError, ValueError, AttributeError, OSError, SafetensorError) as err:
            raise TopictoneError(
                f"{folder}: malformed sentence-transformers modules ({type(err).__name__}: "
                f"{first_line(err)})"
            ) from None
        prompt_name = settings.pop("prompt_name", None)
        if prompt_name is not None:
            if prompt_name not in prompts:
                raise TopictoneError(
                    f"{folder}: no prompt named '{prompt_name}' (has: {', '.join(prompts)})"
                )
            settings.setdefault("prompt", prompts[prompt_name])
    else:
        model, tokenizer = _hf_model(folder, dtype)
        dense, normalize = [], False
    settings.pop("prompt_name", None)
    return SentenceEncoder(model, tokenizer, dense, normalize, dtype=dtype, **settings)


def _sentence_transformers(folder: Path, dtype: str) -> tuple:
    """Read a sentence-transformers folder's modules as data (no imports by name)."""
    modules = read_json(folder / "modules.json")
    dense: list[tuple[torch.Tensor, torch.Tensor | None, str | None]] = []
    normalize, model, tokenizer = False, None, None
    for module in modules:
        kind = module.get("type")
        if kind not in ST_MODULES:
            raise TopictoneError(f"{folder}/modules.json: unsupported module type {kind!r}")
        path = inside(folder, module["path"], "module path") if module.get("path") else folder
        if kind.endswith("Transformer"):
            model, tokenizer = _hf_model(path, dtype)
        elif kind.endswith("Pooling"):
            config = read_json(path / "config.json")
            if not config.get("pooling_mode_mean_tokens") or any(
                config.get(k) for k in config if k.startswith("pooling_mode_") and "mean" not in k
            ):
                raise TopictoneError(f"{path}: only mean pooling is supported")
        elif kind.endswith("Dense"):
            config = read_json(path / "config.json")
            activation = config.get("activation_function", "torch.nn.modules.linear.Identity")
            if activation not in ACTIVATIONS:
                raise TopictoneError(f"{path}: unsupported dense activation {activation!r}")
            with safe_open(inside(path, "model.safetensors"), "pt") as handle:
                weight = handle.get_tensor("linear.weight").float()
                bias = handle.get_tensor("linear.bias").float() if config.get("bias") else None
            dense.append((weight, bias, ACTIVATIONS[activation]))
        else:
            normalize = True
    if model is None:
        raise TopictoneError(f"{folder}/modules.json: no Transformer module")
    st_config = folder / "config_sentence_transformers.json"
    prompts = read_json(st_config).get("prompts", {}) if st_config.is_file() else {}
    return model, tokenizer, dense, normalize, prompts


class EncoderPredictor(Predictor):
    """A frozen encoder's embeddings read by a topic head (sigmoid) and a tone head (softmax)."""

    kind: ClassVar[str] = "encoder"
    requirements: ClassVar[tuple[str, ...]] = ("torch", "transformers", "safetensors", "numpy")

    def __init__(
        self,
        schema: LabelSchema,
        encoder: SentenceEncoder,
        heads: dict[str, np.ndarray],
        thresholds: dict[str, float] | None = None,
        calibration: Calibration | dict[str, Any] | None = None,
        topic_pooling: str = "mean",
        tone_pooling: str = "mean",
    ) -> None:
        super().__init__(schema, thresholds, calibration)
        check_pooling(topic_pooling, tone_pooling)
        self.topic_pooling, self.tone_pooling = topic_pooling, tone_pooling
        self.encoder = encoder
        self.heads = {k: np.asarray(v, dtype=np.float64) for k, v in heads.items()}
        expected = {
            "topic_weight": (len(schema.topics), encoder.dimension),
            "topic_bias": (len(schema.topics),),
            "tone_weight": (len(schema.tones), encoder.dimension),
            "tone_bias": (len(schema.tones),),
        }
        for name, shape in expected.items():
            if name not in self.heads or self.heads[name].shape != shape:
                got = self.heads[name].shape if name in self.heads else "missing"
                raise TopictoneError(f"encoder head '{name}' must have shape {shape}, got {got}")

    def head_logits(self, embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = np.asarray(embeddings, dtype=np.float64)
        h = self.heads
        return x @ h["topic_weight"].T + h["topic_bias"], x @ h["tone_weight"].T + h["tone_bias"]

    def logits_clean(self, clean: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Uncalibrated logits for normalised texts (calibration is fitted on these).

        ``mean`` reads the text's averaged embedding (what the heads were fitted on);
        ``max`` takes each label's highest logit over the windows (a topic named only late
        in an article still counts); ``first`` reads the first window (the lead)."""
        vectors, owner = self.encoder.embed_windows(clean)
        if not len(owner):
            return self.head_logits(np.zeros((0, self.encoder.dimension)))
        mean = self.head_logits(self.encoder.average(vectors, owner))
        if {self.topic_pooling, self.tone_pooling} == {"mean"}:
            return mean
        windows = self.head_logits(vectors)
        rules = (self.topic_pooling, self.tone_pooling)
        topic, tone = (
            mean[head] if rule == "mean" else pool_windows(windows[head], owner, rule)
            for head, rule in enumerate(rules)
        )
        return topic, tone

    def _forward(self, texts: list[str]) -> Scores:
        return scores_from_logits(*self.logits_clean(texts))

    def tone_reader(self) -> EncoderPredictor:
        """With the tone read from the first window, a copy embedding only that window
        (it shares the encoder's network and caches: the window's vector is the same)."""
        if self.tone_pooling != "first" or self.encoder.max_windows == 1:
            return self
        encoder = copy.copy(self.encoder)
        encoder.max_windows = 1
        encoder.reads_chars = readable_prefix(encoder.tokenizer, encoder.max_length)
        reader = copy.copy(self)
        reader.encoder = encoder
        return reader

    def settings(self) -> dict[str, Any]:
        e = self.encoder
        return {
            "max_length": e.max_length,
            "stride": e.stride,
            "max_windows": e.max_windows,
            "batch_size": e.batch_size,
            "dtype": e.dtype,
            "topic_pooling": self.topic_pooling,
            "tone_pooling": self.tone_pooling,
        }

    def save_weights(self, folder: Path) -> list[str]:
        names = [f"{ENCODER}/{name}" for name in self.encoder.save(folder / ENCODER)]
        metadata = {"schema": json.dumps(self.schema.to_dict())}
        save_file(
            {k: torch.from_numpy(v.astype(np.float32)) for k, v in self.heads.items()},
            folder / HEADS,
            metadata=metadata,
        )
        return [HEADS, *names]

    @classmethod
    def load(cls, folder: Path, manifest: Manifest, **options: Any) -> EncoderPredictor:
        heads_file = folder / HEADS
        check_stored_schema(heads_file, stored_schema(heads_file), manifest.schema)
        with safe_open(heads_file, "np") as handle:
            heads = {k: handle.get_tensor(k) for k in handle.keys()}
        settings = {**manifest.settings, **options}
        sizes = checked_sizes(
            folder, settings, ("max_length", "stride", "max_windows", "batch_size")
        )
        dtype = settings.pop("dtype", "float32")
        if "dtype" not in options:  # as saved: bfloat16 only where it pays
            dtype = effective_dtype(dtype, f"the model {folder}")
        encoder = load_encoder(folder / ENCODER, dtype=dtype, **sizes)
        pooling = {k: settings.get(k, "mean") for k in ("topic_pooling", "tone_pooling")}
        return cls(
            manifest.schema, encoder, heads, manifest.thresholds, manifest.calibration, **pooling
        )
