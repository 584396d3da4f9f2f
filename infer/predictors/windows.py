"""Token windows of long texts and how their logits pool into one row per text.

Torch-free on purpose: training, the torch runtime and the ONNX runtime all cut texts
and pool windows with these functions, so they cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from topictone.infer.errors import TopictoneError
from topictone.infer.predictors.hf_files import tokenizer_errors

DTYPES = ("float32", "bfloat16")  # what the torch runtime computes in
POOLING = ("max", "mean", "first")  # how a text's windows combine, per head


def check_pooling(*rules: str) -> None:
    """A pooling rule from a config or a model folder: one line if it is not one of ours."""
    for rule in rules:
        if rule not in POOLING:
            raise TopictoneError(f"window pooling must be one of {POOLING}, got '{rule}'")


def check_dtype(dtype: str) -> None:
    if dtype not in DTYPES:
        raise TopictoneError(f"option dtype must be one of {DTYPES}, got {dtype!r}")


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
    with tokenizer_errors("tokenizer"):
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


def pad_windows(docs: Sequence[list[list[int]]], pad_id: int) -> dict[str, np.ndarray]:
    """The texts' windows flattened into one batch padded to its longest window, with the
    text each window belongs to (``doc_index``, ascending)."""
    flat = [w for doc in docs for w in doc]
    width = max(len(w) for w in flat)
    input_ids = np.full((len(flat), width), pad_id, dtype=np.int64)
    attention_mask = np.zeros((len(flat), width), dtype=np.int64)
    for i, window in enumerate(flat):
        input_ids[i, : len(window)] = window
        attention_mask[i, : len(window)] = 1
    doc_index = np.array([d for d, doc in enumerate(docs) for _ in doc], dtype=np.int64)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "doc_index": doc_index}


def pool_windows(window_logits: np.ndarray, doc_index: np.ndarray, rule: str) -> np.ndarray:
    """One row per text from its windows' rows (contiguous, as :func:`pad_windows` lays
    them out): element-wise max or mean, or the first window's row (an article's lead)."""
    if rule not in POOLING:
        raise ValueError(f"window pooling must be one of {POOLING}, got '{rule}'")
    starts = np.flatnonzero(np.r_[True, doc_index[1:] != doc_index[:-1]])
    if rule == "first":
        return window_logits[starts]
    if rule == "max":
        return np.maximum.reduceat(window_logits, starts, axis=0)
    counts = np.diff(np.r_[starts, len(doc_index)])[:, None]
    return np.add.reduceat(window_logits, starts, axis=0) / counts


def backbone_limit(config: Any, tokenizer: Any) -> int:
    """The longest window the backbone accepts (position embeddings, tokenizer limit)."""
    limit = getattr(config, "max_position_embeddings", 512)
    if getattr(config, "model_type", "") in ("roberta", "xlm-roberta", "camembert"):
        limit -= 2  # these models offset positions by the padding index
    tok_limit = getattr(tokenizer, "model_max_length", limit) or limit
    return int(min(limit, tok_limit))
