"""The fine-tuned multilingual transformer: one encoder, a topic head and a tone head.

``infer`` owns the network because loading needs it; ``train`` only fits it. Long
texts are split into overlapping token windows and the windows' logits are pooled
into one prediction per text — the same function in training and at inference.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoConfig, AutoModel, AutoTokenizer, PretrainedConfig

from infer.artifact import Manifest, check_stored_schema
from infer.errors import TopictoneError
from infer.predictors.base import (
    Predictor,
    Scores,
    checked_sizes,
    readable_prefix,
    scores_from_logits,
)
from infer.schema import LabelSchema, Prediction

WEIGHTS = "model.safetensors"
SAFE_LOAD = {"trust_remote_code": False, "local_files_only": True}  # a model folder runs no code
POOLING = ("max", "mean", "first")  # how a text's windows combine, per head
WINDOW_SETTINGS = ("max_length", "stride", "max_windows", "prefix")
LOAD_OPTIONS = ("max_length", "stride", "max_windows", "prefix", "batch_size", "threads", "device")


class TopicToneModel(nn.Module):
    """Encoder → mean pooling over tokens → window pooling per text → two heads.

    ``forward`` takes windows (``input_ids``, ``attention_mask``) and ``doc_index``
    (which text each window belongs to); with labels it also returns the joint loss.
    """

    def __init__(
        self,
        encoder: nn.Module,
        num_topics: int,
        num_tones: int,
        topic_pooling: str = "max",
        tone_pooling: str = "mean",
        dropout: float = 0.1,
        topic_pos_weight: Sequence[float] | None = None,
        tone_class_weight: Sequence[float] | None = None,
        topic_loss_weight: float = 1.0,
        tone_loss_weight: float = 1.0,
    ) -> None:
        super().__init__()
        for rule in (topic_pooling, tone_pooling):
            if rule not in POOLING:
                raise TopictoneError(f"window pooling must be one of {POOLING}, got '{rule}'")
        self.encoder = encoder
        hidden = encoder.config.hidden_size
        self.dropout = nn.Dropout(dropout)
        self.topic_head = nn.Linear(hidden, num_topics)
        self.tone_head = nn.Linear(hidden, num_tones)
        self.topic_pooling, self.tone_pooling = topic_pooling, tone_pooling
        self.topic_loss_weight, self.tone_loss_weight = topic_loss_weight, tone_loss_weight
        # Loss weights are training state, not model weights: kept out of the state dict.
        self._pos_weight = None if topic_pos_weight is None else torch.tensor(topic_pos_weight)
        self._class_weight = None if tone_class_weight is None else torch.tensor(tone_class_weight)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        doc_index: torch.Tensor,
        topic_labels: torch.Tensor | None = None,
        tone_labels: torch.Tensor | None = None,
        topic_weight: torch.Tensor | None = None,
        tone_weight: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """``topic_weight``/``tone_weight`` weigh each text's loss (0: label unknown)."""
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        windows = self.dropout((hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-6))
        n_docs = int(doc_index.max().item()) + 1
        topic_logits = pool(self.topic_head(windows), doc_index, n_docs, self.topic_pooling)
        tone_logits = pool(self.tone_head(windows), doc_index, n_docs, self.tone_pooling)
        out = {"topic_logits": topic_logits, "tone_logits": tone_logits}
        if topic_labels is not None and tone_labels is not None:
            ones = torch.ones(n_docs, dtype=topic_logits.dtype, device=topic_logits.device)
            topic_weight = ones if topic_weight is None else topic_weight.to(topic_logits)
            tone_weight = ones if tone_weight is None else tone_weight.to(tone_logits)
            pos_weight = None if self._pos_weight is None else self._pos_weight.to(topic_logits)
            class_weight = (
                None if self._class_weight is None else self._class_weight.to(tone_logits)
            )
            topic_loss = nn.functional.binary_cross_entropy_with_logits(
                topic_logits, topic_labels.to(topic_logits), pos_weight=pos_weight, reduction="none"
            ).mean(dim=1)
            # Tone targets: class indices, or distributions (a teacher's, in distillation).
            soft = tone_labels.is_floating_point()
            tone_labels = tone_labels.to(tone_logits) if soft else tone_labels
            tone_loss = nn.functional.cross_entropy(
                tone_logits, tone_labels, weight=class_weight, reduction="none"
            )
            # Weighted means; with all weights 1 these equal the usual mean reductions.
            tone_norm = tone_weight
            if class_weight is not None:  # the weight each text's loss carries, as torch's mean
                tone_norm = tone_weight * (
                    tone_labels @ class_weight if soft else class_weight[tone_labels]
                )
            out["loss"] = self.topic_loss_weight * (
                topic_weight * topic_loss
            ).sum() / topic_weight.sum().clamp(min=1e-6) + self.tone_loss_weight * (
                tone_weight * tone_loss
            ).sum() / tone_norm.sum().clamp(min=1e-6)
        return out


def pool(
    window_logits: torch.Tensor, doc_index: torch.Tensor, n_docs: int, rule: str
) -> torch.Tensor:
    """One row per text from its windows' rows: element-wise max or mean, or the first
    window's row (the lead, which carries an article's tone)."""
    if rule == "first":
        positions = torch.arange(len(doc_index), device=doc_index.device)
        first = positions.new_full((n_docs,), len(doc_index)).scatter_reduce(
            0, doc_index, positions, reduce="amin", include_self=True
        )
        return window_logits[first]
    index = doc_index.unsqueeze(-1).expand_as(window_logits)
    out = window_logits.new_zeros((n_docs, window_logits.shape[-1]))
    reduce = "amax" if rule == "max" else "mean"
    return out.scatter_reduce(0, index, window_logits, reduce=reduce, include_self=False)


def encode_windows(
    tokenizer: Any,
    texts: Sequence[str],
    max_length: int,
    stride: int,
    max_windows: int,
    prefix: str = "",
) -> list[list[list[int]]]:
    """Token ids of each text as overlapping windows of at most ``max_length`` tokens.

    ``stride`` is the overlap between consecutive windows; at most ``max_windows``
    windows per text (the first ones) bound the cost of very long articles.
    """
    encoded = tokenizer(
        [prefix + t for t in texts],
        max_length=max_length,
        truncation=True,
        stride=stride,
        return_overflowing_tokens=True,
        return_attention_mask=False,
    )
    windows: list[list[list[int]]] = [[] for _ in texts]
    for ids, doc in zip(encoded["input_ids"], encoded["overflow_to_sample_mapping"], strict=True):
        if len(windows[doc]) < max_windows:
            windows[doc].append(ids)
    return windows


def collate_windows(docs: Sequence[list[list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """Flatten the texts' windows into one padded batch, with the text each belongs to."""
    flat = [w for doc in docs for w in doc]
    width = max(len(w) for w in flat)
    input_ids = torch.full((len(flat), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(flat), width), dtype=torch.long)
    for i, window in enumerate(flat):
        input_ids[i, : len(window)] = torch.tensor(window)
        attention_mask[i, : len(window)] = 1
    doc_index = torch.tensor([d for d, doc in enumerate(docs) for _ in doc], dtype=torch.long)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "doc_index": doc_index}


def without_pooler(factory: Any, *args: Any, **kwargs: Any) -> nn.Module:
    """The encoder without BERT's pooler, which mean pooling never uses."""
    try:
        return factory(*args, add_pooling_layer=False, **kwargs)
    except TypeError:
        return factory(*args, **kwargs)


def backbone_limit(config: PretrainedConfig, tokenizer: Any) -> int:
    """The longest window the backbone accepts (position embeddings, tokenizer limit)."""
    limit = getattr(config, "max_position_embeddings", 512)
    if getattr(config, "model_type", "") in ("roberta", "xlm-roberta", "camembert"):
        limit -= 2  # these models offset positions by the padding index
    tok_limit = getattr(tokenizer, "model_max_length", limit) or limit
    return int(min(limit, tok_limit))


class TransformerPredictor(Predictor):
    """Sorts texts by length, batches their windows, runs without gradients, restores order."""

    kind: ClassVar[str] = "transformer"
    requirements: ClassVar[tuple[str, ...]] = ("torch", "transformers", "tokenizers", "safetensors")

    def __init__(
        self,
        schema: LabelSchema,
        model: TopicToneModel,
        tokenizer: Any,
        max_length: int = 256,
        stride: int = 64,
        max_windows: int = 16,
        prefix: str = "",
        thresholds: dict[str, float] | None = None,
        calibration: dict[str, Any] | None = None,
        batch_size: int = 32,
        threads: int | None = None,
        device: str | None = None,
    ) -> None:
        super().__init__(schema, thresholds, calibration)
        self.model, self.tokenizer = model, tokenizer
        self.max_length, self.stride, self.max_windows, self.prefix = (
            max_length,
            stride,
            max_windows,
            prefix,
        )
        self.batch_size = batch_size
        self._memo: tuple[tuple, tuple[np.ndarray, np.ndarray]] | None = None
        self.reads_chars = readable_prefix(tokenizer, max_length * max_windows)
        if threads:
            torch.set_num_threads(int(threads))
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model.to(self.device).eval()

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
            inputs = collate_windows([docs[i] for i in batch], self.tokenizer.pad_token_id)
            with torch.inference_mode():
                out = self.model(**{k: v.to(self.device) for k, v in inputs.items()})
            topic_out[batch] = out["topic_logits"].float().cpu().numpy()
            tone_out[batch] = out["tone_logits"].float().cpu().numpy()

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
            self.max_length,
            self.stride,
            self.max_windows,
            self.prefix,
            self.model.topic_pooling,
            self.model.tone_pooling,
        )
        if self._memo is None or self._memo[0] != key:
            self._memo = (key, self.logits(self.encode(clean)))
        topic, tone = self._memo[1]
        return topic.copy(), tone.copy()

    def _forward(self, texts: list[str]) -> Scores:
        return scores_from_logits(*self.logits_clean(texts), self.calibration)

    def explain(
        self, text: str, prediction: Prediction, top_k: int = 5, max_units: int = 80
    ) -> dict:
        """Occlusion: drop each word (or run of words, for long texts) and keep those whose
        removal lowers a decided label's score most. Costs one batch of ~``max_units`` texts."""
        words = text.split()
        size = max(1, -(-len(words) // max_units))
        units = [" ".join(words[i : i + size]) for i in range(0, len(words), size)]
        variants = [" ".join(units[:i] + units[i + 1 :]) or "." for i in range(len(units))]
        topic_scores, tone_probs = self._forward(variants)
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
        return {
            "max_length": self.max_length,
            "stride": self.stride,
            "max_windows": self.max_windows,
            "prefix": self.prefix,
            "topic_pooling": self.model.topic_pooling,
            "tone_pooling": self.model.tone_pooling,
        }

    def save_weights(self, folder: Path) -> list[str]:
        state = {k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}
        save_file(state, folder / WEIGHTS, metadata={"schema": json.dumps(self.schema.to_dict())})
        self.model.encoder.config.save_pretrained(folder)
        before = set(os.listdir(folder))
        self.tokenizer.save_pretrained(folder)
        return [WEIGHTS, "config.json", *sorted(set(os.listdir(folder)) - before)]

    @classmethod
    def load(cls, folder: Path, manifest: Manifest, **options: Any) -> TransformerPredictor:
        settings = manifest.settings
        check_stored_schema(folder / WEIGHTS, stored_schema(folder / WEIGHTS), manifest.schema)
        config = AutoConfig.from_pretrained(folder, **SAFE_LOAD)
        if getattr(config, "auto_map", None):
            raise TopictoneError(f"{folder}/config.json: asks for custom code (auto_map), refused")
        model = TopicToneModel(
            without_pooler(AutoModel.from_config, config),
            len(manifest.schema.topics),
            len(manifest.schema.tones),
            topic_pooling=settings.get("topic_pooling", "max"),
            tone_pooling=settings.get("tone_pooling", "mean"),
        )
        try:
            model.load_state_dict(load_file(folder / WEIGHTS))
        except RuntimeError as err:
            first = str(err).splitlines()[1].strip() if "\n" in str(err) else str(err)
            raise TopictoneError(
                f"{folder / WEIGHTS}: weights do not match the manifest's model ({first})"
            ) from None
        tokenizer = AutoTokenizer.from_pretrained(folder, **SAFE_LOAD)
        unknown = sorted(set(options) - set(LOAD_OPTIONS))
        if unknown:
            raise TopictoneError(
                f"unknown option(s) {', '.join(unknown)} (known: {', '.join(LOAD_OPTIONS)})"
            )
        # Options override the saved settings: more windows than in training is fine,
        # since pooling is per element; the window length and prefix should not change.
        merged = {**{k: settings.get(k) for k in WINDOW_SETTINGS}, **options}
        sizes = checked_sizes(folder, merged, ("max_length", "stride", "max_windows"))
        sizes |= checked_sizes(
            "option", merged | {"batch_size": merged.get("batch_size", 32)}, ("batch_size",)
        )
        if merged.get("threads") is not None:
            sizes |= checked_sizes("option", merged, ("threads",))
        if sizes["stride"] >= sizes["max_length"]:
            raise TopictoneError(f"{folder}: stride {sizes['stride']} must be below max_length")
        if sizes["max_length"] > backbone_limit(config, tokenizer):
            raise TopictoneError(
                f"{folder}: max_length {sizes['max_length']} exceeds what the encoder accepts "
                f"({backbone_limit(config, tokenizer)})"
            )
        if not isinstance(merged.get("prefix") or "", str):
            raise TopictoneError(f"{folder}: prefix must be a string")
        device = merged.get("device")
        if device is not None:
            try:
                torch.device(device)
            except (RuntimeError, TypeError) as err:
                raise TopictoneError(f"option device: {err}") from None
        return cls(
            manifest.schema,
            model,
            tokenizer,
            thresholds=manifest.thresholds,
            calibration=manifest.calibration,
            prefix=merged.get("prefix") or "",
            device=device,
            **sizes,
        )


def stored_schema(path: Path) -> Any:
    """The label schema saved in a safetensors file's metadata (None if absent)."""
    try:
        with safe_open(path, "np") as handle:
            return json.loads((handle.metadata() or {}).get("schema", "null"))
    except Exception as err:  # SafetensorError is no OSError: any failure is one line
        raise TopictoneError(
            f"{path}: unreadable safetensors file ({type(err).__name__})"
        ) from None
