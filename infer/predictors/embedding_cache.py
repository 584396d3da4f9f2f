"""Embeddings kept on disk by the hash of the text embedded (one window), so reruns and
sweeps never embed it twice.

One SQLite file per encoder fingerprint (weights, tokenizer and every setting that
changes a vector): a changed encoder or setting is a new file, never a stale hit.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import numpy as np


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def fingerprint(folder: Path, settings: dict[str, Any]) -> str:
    """Identity of an encoder folder and its settings, cheap to compute: configs by content,
    large files by name, size and modification time."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        stat = path.stat()
        digest.update(str(path.relative_to(folder)).encode())
        if stat.st_size < 1 << 20:
            digest.update(path.read_bytes())
        else:
            digest.update(f"{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:32]


class EmbeddingCache:
    """``get_or_embed(texts, embed)``: cached rows read back, the others embedded and stored.
    ``lookup`` and ``store`` keep any bytes under any key (the frozen layers' output)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("CREATE TABLE IF NOT EXISTS vectors (key TEXT PRIMARY KEY, vec BLOB)")

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """A connection that commits on success and is always closed."""
        with closing(sqlite3.connect(self.path, timeout=60)) as db, db:
            yield db

    def lookup(self, keys: Sequence[str]) -> dict[str, bytes]:
        """The stored bytes of those ``keys`` that are stored."""
        found: dict[str, bytes] = {}
        unique = list(dict.fromkeys(keys))
        with self._connect() as db:
            for start in range(0, len(unique), 500):
                chunk = unique[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows = db.execute(f"SELECT key, vec FROM vectors WHERE key IN ({marks})", chunk)
                found.update(rows)
        return found

    def store(self, items: dict[str, bytes]) -> None:
        with self._connect() as db:
            db.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?)", items.items())

    def get_or_embed(
        self, texts: Sequence[str], embed: Callable[[list[str]], np.ndarray]
    ) -> np.ndarray:
        keys = [text_key(t) for t in texts]
        found = {k: np.frombuffer(b, dtype=np.float32) for k, b in self.lookup(keys).items()}
        missing = {k: t for k, t in zip(keys, texts, strict=True) if k not in found}
        if missing:
            vectors = np.asarray(embed(list(missing.values())), dtype=np.float32)
            new = dict(zip(missing, vectors, strict=True))
            self.store({k: v.tobytes() for k, v in new.items()})
            found.update(new)
        return np.stack([found[k] for k in keys]) if keys else np.zeros((0, 0), np.float32)
