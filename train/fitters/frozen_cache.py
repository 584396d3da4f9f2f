"""The frozen lower layers' output, computed once per training window and replayed.

With the lowest ``count`` layers and the embeddings frozen, each epoch recomputes the
same lower-layer output for every window, and on a CPU that forward pass is most of a
step (embeddinggemma with 20 of 24 layers frozen). :class:`FrozenLayers` runs those
layers once, without gradients, keeps each window's output, and lets later forward
passes start from it: the frozen layers are swapped for pass-throughs and the
embedding module for one that returns the stored states. The top layers, their masks
and position embeddings run unchanged, so the loss and its gradients are those of the
full network (lower layers without dropout, as at inference). :meth:`check` compares
the two paths on real windows before training relies on it. :class:`FrozenStore` keeps
that output on disk by window, so a rerun, another seed, a held-out slice or a sweep over
the top layers' settings reads what an earlier run computed.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from topictone.infer.errors import TopictoneError
from topictone.infer.predictors.embedding_cache import EmbeddingCache, fingerprint
from topictone.infer.predictors.network import collate_windows

if TYPE_CHECKING:
    from transformers import PreTrainedModel


class _PassThrough(nn.Module):
    """A layer that returns its input hidden states: the frozen layers' stand-in."""

    def forward(self, hidden_states: torch.Tensor, *_: Any, **__: Any) -> torch.Tensor:
        return hidden_states


class _Replay(nn.Module):
    """The embedding module's stand-in: returns the stored lower-layer states."""

    def __init__(self, states: torch.Tensor) -> None:
        super().__init__()
        self.states = states

    def forward(self, *_: Any, **__: Any) -> torch.Tensor:
        return self.states


def free_memory() -> int | None:
    """Bytes of memory available now without swapping (Linux: MemAvailable, which counts
    the page cache the kernel can drop), else None where the system does not say."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def _embedding_child(encoder: PreTrainedModel) -> str:
    """The name of the encoder's child whose output the first layer reads: BERT's
    ``embeddings`` (words + positions + layer norm), or the word embeddings (Gemma)."""
    words = encoder.get_input_embeddings()
    target = getattr(encoder, "embeddings", None) or words
    for name, child in encoder.named_children():
        if child is target:
            return name
    raise TopictoneError("model.cache_frozen: the backbone's embedding module was not found")


class FrozenLayers:
    """Computes, stores and replays the output of ``layers[:count]`` of ``encoder``."""

    def __init__(self, encoder: PreTrainedModel, layers: nn.ModuleList, count: int) -> None:
        self.encoder, self.layers, self.count = encoder, layers, count
        self.embedding_name = _embedding_child(encoder)
        self.states: list[torch.Tensor] = []  # one (tokens, hidden) tensor per window
        self.from_store = 0  # how many of them were read from a FrozenStore

    @contextmanager
    def _swapped(self, positions: Sequence[int], replay: _Replay | None = None) -> Iterator[None]:
        originals = {i: self.layers[i] for i in positions}
        embedding = getattr(self.encoder, self.embedding_name)
        try:
            for i in positions:
                self.layers[i] = _PassThrough()
            if replay is not None:
                setattr(self.encoder, self.embedding_name, replay)
            yield
        finally:
            for i, layer in originals.items():
                self.layers[i] = layer
            setattr(self.encoder, self.embedding_name, embedding)

    @contextmanager
    def _inference(self, autocast: torch.autocast) -> Iterator[None]:
        """No gradients, eval mode (no dropout), the training run's autocast."""
        training = self.encoder.training
        self.encoder.eval()
        try:
            with torch.no_grad(), autocast:
                yield
        finally:
            self.encoder.train(training)

    def lower(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The frozen layers' output for one padded batch (the upper layers skipped)."""
        captured: list[torch.Tensor] = []

        def keep(_: nn.Module, __: Any, output: Any) -> None:
            captured.append(output[0] if isinstance(output, tuple) else output)

        hook = self.layers[self.count - 1].register_forward_hook(keep)
        try:
            with self._swapped(range(self.count, len(self.layers))):
                self.encoder(input_ids=input_ids, attention_mask=attention_mask)
        finally:
            hook.remove()
        return captured[0]

    @contextmanager
    def replay(self, states: torch.Tensor) -> Iterator[None]:
        """Inside, the encoder starts from ``states`` (lower layers' output, padded as the
        batch's ``input_ids``) and runs only the upper layers."""
        with self._swapped(range(self.count), _Replay(states)):
            yield

    def fill(
        self,
        windows: Sequence[list[int]],
        pad_id: int,
        batch_size: int,
        autocast: torch.autocast,
        progress: bool = True,
        store: FrozenStore | None = None,
    ) -> FrozenLayers:
        """Store the lower-layer output of every window (windows of similar length batched
        together, no gradients, eval mode): read from ``store`` where it has it, computed
        and written to it where not."""
        from tqdm.auto import tqdm

        hidden = self.encoder.config.hidden_size
        needed, free = sum(map(len, windows)) * hidden * 4, free_memory()  # float32 states
        if free is not None and needed > free // 2:
            raise TopictoneError(
                f"model.cache_frozen: the frozen layers' output for {len(windows)} training "
                f"windows would take {needed / 2**30:.1f} GiB, more than half the "
                f"{free / 2**30:.1f} GiB free; set model.cache_frozen=false, or train on "
                "fewer windows (model.train_max_windows)"
            )
        device = next(self.encoder.parameters()).device
        self.states = [torch.empty(0)] * len(windows)
        stored = store.read(windows) if store is not None else {}
        for i, state in stored.items():
            self.states[i] = state
        self.from_store = len(stored)
        todo = [i for i in range(len(windows)) if i not in stored]
        order = sorted(todo, key=lambda i: len(windows[i]))
        batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        with self._inference(autocast):
            for batch in tqdm(batches, desc="frozen layers", unit="batch", disable=not progress):
                padded = collate_windows([[windows[i]] for i in batch], pad_id)
                out = self.lower(
                    padded["input_ids"].to(device), padded["attention_mask"].to(device)
                )
                for row, i in enumerate(batch):  # a copy: not a view of the whole batch
                    self.states[i] = out[row, : len(windows[i])].to("cpu", copy=True)
        if store is not None and todo:
            store.write(windows, {i: self.states[i] for i in todo})
        return self

    @property
    def nbytes(self) -> int:
        return sum(s.numel() * s.element_size() for s in self.states)

    def padded(self, rows: Sequence[int], lengths: Sequence[int]) -> torch.Tensor:
        """The stored states of windows ``rows`` as one batch, zero-padded to the longest;
        ``lengths`` are the batch's windows, which the stored ones must match."""
        stored = [len(self.states[i]) for i in rows]
        if stored != list(lengths):
            raise TopictoneError(
                f"model.cache_frozen: stored windows of {stored} tokens for a batch of {lengths}"
            )
        first = self.states[rows[0]]
        out = first.new_zeros((len(rows), max(lengths), first.shape[-1]))
        for k, i in enumerate(rows):
            out[k, : stored[k]] = self.states[i]
        return out

    def check(
        self, windows: Sequence[list[int]], pad_id: int, autocast: torch.autocast
    ) -> torch.dtype:
        """Replaying must reproduce the full encoder on real windows; a backbone whose
        layers cannot be swapped this way fails here, not silently in training. Returns the
        dtype the frozen layers' output comes in."""
        device = next(self.encoder.parameters()).device
        batch = collate_windows([[w] for w in windows], pad_id)
        ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
        with self._inference(autocast):
            full = self.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
            lower = self.lower(ids, mask)
            with self.replay(lower):
                replayed = self.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        real = mask.bool()
        gap = (full[real].float() - replayed[real].float()).abs().max().item()
        scale = full[real].float().abs().max().item()
        if not gap <= 1e-3 * max(scale, 1.0):
            raise TopictoneError(
                f"model.cache_frozen: replaying the frozen layers of this backbone differs from "
                f"running it (max difference {gap:.3g}); set model.cache_frozen=false"
            )
        return lower.dtype


class FrozenStore:
    """The frozen layers' output on disk, by window (its token ids), in one SQLite file per
    backbone folder and setting that changes it (``path``: see :meth:`at`).

    Only a backbone in a local folder gets one, since a hub name does not pin its weights.
    A stored window whose size does not match is computed again, and a store that cannot
    be read or written leaves training to compute everything, with a warning.
    """

    def __init__(self, path: Path, dtype: torch.dtype, hidden: int) -> None:
        self.path, self.dtype, self.hidden = path, dtype, hidden
        self.cache = EmbeddingCache(path)

    @classmethod
    def at(
        cls, root: Path, backbone: str, count: int, computed: str, dtype: torch.dtype, hidden: int
    ) -> FrozenStore | None:
        """The store under ``root/frozen`` for the lowest ``count`` layers of the backbone
        folder, ``computed`` on a device in a precision (``cpu/bfloat16``: autocast), into
        ``dtype``, by these versions of torch and transformers: each changes the numbers,
        so each has a store of its own."""
        import transformers

        if not Path(backbone).is_dir():
            return None
        settings = {
            "frozen_layers": count,
            "computed": computed,
            "dtype": str(dtype),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
        }
        key = fingerprint(Path(backbone), settings)
        try:
            return cls(root / "frozen" / f"{key}.sqlite", dtype, hidden)
        except (OSError, sqlite3.Error) as err:
            _warn(f"not kept on disk ({err})")
            return None

    @staticmethod
    def key(window: Sequence[int]) -> str:
        return hashlib.sha256(np.asarray(window, dtype=np.int64).tobytes()).hexdigest()

    def read(self, windows: Sequence[list[int]], chunk: int = 256) -> dict[int, torch.Tensor]:
        """The stored output of those ``windows`` that are stored, by their index, read
        ``chunk`` windows at a time (the stored bytes of all of them are never held)."""
        width = self.hidden * torch.empty(0, dtype=self.dtype).element_size()
        states = {}
        for start in range(0, len(windows), chunk):
            part = range(start, min(start + chunk, len(windows)))
            keys = {i: self.key(windows[i]) for i in part}
            try:
                found = self.cache.lookup(list(keys.values()))
            except sqlite3.Error as err:
                _warn(f"{self.path} unreadable, computed again ({err})")
                return {}
            for i, key in keys.items():
                blob = found.get(key)
                if blob is not None and len(blob) == len(windows[i]) * width:
                    state = torch.frombuffer(bytearray(blob), dtype=self.dtype)
                    states[i] = state.view(len(windows[i]), self.hidden)
        return states

    def write(
        self, windows: Sequence[list[int]], states: dict[int, torch.Tensor], chunk: int = 256
    ) -> None:
        """Stores ``states`` (by window index) ``chunk`` windows at a time, so a copy of
        all of them never has to sit in memory beside the states themselves."""
        rows = list(states)
        try:
            for start in range(0, len(rows), chunk):
                part = rows[start : start + chunk]
                self.cache.store({self.key(windows[i]): _raw(states[i]) for i in part})
        except sqlite3.Error as err:  # a full disk, say: training goes on without it
            _warn(f"{self.path} not written ({err})")


def _raw(state: torch.Tensor) -> bytes:
    """A tensor's bytes as they lie in memory (bfloat16 too, which numpy lacks)."""
    return state.contiguous().view(torch.uint8).numpy().tobytes()


def _warn(message: str) -> None:
    print(f"warning: model.cache_frozen_on_disk: {message}", file=sys.stderr, flush=True)
