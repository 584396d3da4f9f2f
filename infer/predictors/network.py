"""The transformer's network in torch: one encoder, a topic head and a tone head.

Training fits it; the torch runtime of :class:`topictone.infer.predictors.transformer.
TransformerPredictor` runs it; ``python -m topictone.infer.export`` turns its per-window part
into an ONNX graph that predicts without torch.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoModel, AutoModelForSequenceClassification, PreTrainedModel

from topictone.infer.artifact import Manifest
from topictone.infer.errors import TopictoneError
from topictone.infer.predictors.hf_config import (
    PREFIX,
    TopicToneConfig,
    encoder_config,
    topictone_config,
)
from topictone.infer.predictors.tensors import check_network, read_header
from topictone.infer.predictors.windows import DTYPES, POOLING, pad_windows


class TopicToneModel(nn.Module):
    """Encoder → mean pooling over tokens → window pooling per text → two heads.

    ``forward`` takes windows (``input_ids``, ``attention_mask``) and ``doc_index``
    (which text each window belongs to); with labels it also returns the joint loss.
    """

    def __init__(
        self,
        encoder: PreTrainedModel,
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

    def window_logits(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Each window's topic and tone logits: the part inference runs (and ONNX exports)."""
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        windows = self.dropout((hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-6))
        return self.topic_head(windows), self.tone_head(windows)

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
        topic_windows, tone_windows = self.window_logits(input_ids, attention_mask)
        n_docs = int(doc_index.max().item()) + 1
        topic_logits = pool(topic_windows, doc_index, n_docs, self.topic_pooling)
        tone_logits = pool(tone_windows, doc_index, n_docs, self.tone_pooling)
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


def collate_windows(docs: Sequence[list[list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """Flatten the texts' windows into one padded batch, with the text each belongs to."""
    return {k: torch.from_numpy(v) for k, v in pad_windows(docs, pad_id).items()}


def without_pooler(factory: Any, *args: Any, **kwargs: Any) -> PreTrainedModel:
    """The encoder without BERT's pooler, which mean pooling never uses."""
    try:
        return factory(*args, add_pooling_layer=False, **kwargs)
    except TypeError:
        return factory(*args, **kwargs)


class TorchRunner:
    """Window logits from the torch network, without gradients, on one device.

    ``dtype="bfloat16"`` runs under bf16 autocast, as bf16 training did: on CPUs with
    AVX512-BF16/AMX several times faster than float32; the weights stay float32."""

    runtime = "torch"

    def __init__(
        self, model: TopicToneModel, device: str | None = None, dtype: str = "float32"
    ) -> None:
        if dtype not in DTYPES:
            raise TopictoneError(f"option dtype must be one of {DTYPES}, got {dtype!r}")
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.to(self.device).eval()
        self.dtype = dtype

    def __call__(
        self, input_ids: np.ndarray, attention_mask: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        autocast = torch.autocast(
            self.device.type, dtype=torch.bfloat16, enabled=self.dtype == "bfloat16"
        )
        with torch.inference_mode(), autocast:
            topic, tone = self.model.window_logits(
                torch.from_numpy(input_ids).to(self.device),
                torch.from_numpy(attention_mask).to(self.device),
            )
        return topic.float().cpu().numpy(), tone.float().cpu().numpy()


def set_threads(threads: int | None) -> None:
    if threads:
        torch.set_num_threads(int(threads))


def save_network(
    model: TopicToneModel, schema: Any, settings: dict[str, Any], folder: Path
) -> list[str]:
    """A Hugging Face folder: ``config.json`` (a ``TopicToneConfig``) and the weights under
    ``TopicTonePreTrainedModel``'s names (label order also in their metadata)."""
    from topictone.infer.predictors.transformer import WEIGHTS

    topictone_config(model.encoder.config, schema, settings).save_pretrained(folder)
    state = {PREFIX + k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    metadata = {"format": "pt", "schema": json.dumps(schema.to_dict())}
    save_file(state, folder / WEIGHTS, metadata=metadata)
    return [WEIGHTS, "config.json"]


def load_network(
    folder: Path,
    manifest: Manifest,
    config: Any,
    threads: int | None,
    device: str | None,
    dtype: str = "float32",
) -> TorchRunner:
    """The network of a checked model folder, built from its config (no code runs)."""
    from topictone.infer.predictors.transformer import WEIGHTS

    if device is not None:
        try:
            torch.device(device)
        except (RuntimeError, TypeError) as err:
            raise TopictoneError(f"option device: {err}") from None
    settings = manifest.settings

    def build() -> TopicToneModel:
        return TopicToneModel(
            without_pooler(AutoModel.from_config, encoder_config(config)),
            len(manifest.schema.topics),
            len(manifest.schema.tones),
            topic_pooling=settings.get("topic_pooling", "max"),
            tone_pooling=settings.get("tone_pooling", "mean"),
        )

    # The network config.json describes must be the one the weights hold, shape for
    # shape, before a byte of it is allocated (older folders name weights unprefixed).
    shapes, _ = read_header(folder / WEIGHTS)
    check_network(folder / WEIGHTS, encoder_config(config), build, shapes, prefixes=(PREFIX,))
    model = build()
    state = {k.removeprefix(PREFIX): v for k, v in load_file(folder / WEIGHTS).items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        first = str(err).splitlines()[1].strip() if "\n" in str(err) else str(err)
        raise TopictoneError(
            f"{folder / WEIGHTS}: weights do not match the manifest's model ({first})"
        ) from None
    set_threads(threads)
    return TorchRunner(model, device, dtype)


class TopicTonePreTrainedModel(PreTrainedModel):
    """The folder as a Hugging Face model: ``AutoModel.from_pretrained(<model folder>)``
    (after ``import infer``) gives the encoder and both heads with their trained weights.
    ``forward`` takes windows and returns window-pooled topic and tone logits."""

    config_class = TopicToneConfig
    base_model_prefix = "topictone"

    def __init__(self, config: TopicToneConfig) -> None:
        super().__init__(config)
        self.network = TopicToneModel(
            without_pooler(AutoModel.from_config, config.encoder),
            len(cast("dict[int, str]", config.id2label)),  # PreTrainedConfig always sets it
            len(config.tone_id2label or {}),
            topic_pooling=config.topic_pooling,
            tone_pooling=config.tone_pooling,
        )
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        doc_index: torch.Tensor | None = None,
        **labels: Any,
    ) -> dict[str, torch.Tensor]:
        if doc_index is None:  # every window a text of its own
            doc_index = torch.arange(len(input_ids), device=input_ids.device)
        return self.network(input_ids, attention_mask, doc_index, **labels)


class NoGenericHead:
    """Registered for ``AutoModelForSequenceClassification``: a generic text-classification
    pipeline must not invent a single-label head for a multi-label topic + tone model."""

    config_class = TopicToneConfig

    @classmethod
    def from_pretrained(cls, *args: Any, **kwargs: Any) -> None:
        raise TopictoneError(
            "a topictone model folder has a multi-label topic head and a tone head, which a "
            "generic text-classification pipeline cannot run; load it with infer.load(<folder>)"
        )

    from_config = from_pretrained


AutoModel.register(TopicToneConfig, TopicTonePreTrainedModel, exist_ok=True)
AutoModelForSequenceClassification.register(TopicToneConfig, NoGenericHead, exist_ok=True)
