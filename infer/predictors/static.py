"""Static embeddings (model2vec) with linear heads: fast on any CPU, numpy only.

A static model is a token-embedding table and a tokenizer: a text's vector is the mean of
its tokens' rows (model2vec's ``StaticModel.encode``), read by the encoder's heads (a
sigmoid per topic, a softmax over tones). No network runs: the Rust ``tokenizers`` library
splits the text, numpy gathers and averages rows. Neither torch nor transformers is
imported, and AVX2 is all the speed needs.

Long texts: every token counts, up to ``max_tokens`` (default 2048, about 1,500 words),
and the average is taken over all of them, not over windows: a static vector costs one
row per token, so an article is read whole where an encoder reads its first windows.

The folder is read as data, never through ``StaticModel.from_pretrained``: that one
follows links, reads files of any size, hands a tokenizer's regular expressions to the
Rust engine unchecked and, for a path that is not a folder, downloads from the hub.
Here the manifest has checked every file (plain, listed, within its size and checksum),
``model.safetensors``'s header is checked before a byte of data is read, and the
tokenizer goes through the same allow-list as the transformer kinds'
(:mod:`topictone.infer.predictors.hf_files`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from itertools import chain
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file
from tokenizers import Tokenizer

from topictone.infer.artifact import Manifest, check_stored_schema
from topictone.infer.decision import Calibration
from topictone.infer.errors import TopictoneError
from topictone.infer.paths import read_plain
from topictone.infer.predictors.base import (
    Predictor,
    Scores,
    checked_sizes,
    readable_prefix,
    scores_from_logits,
)
from topictone.infer.predictors.hf_files import (
    MAX_TOKENIZER_BYTES,
    TOKENIZER,
    check_tokenizer_files,
    first_line,
    tokenizer_errors,
)
from topictone.infer.predictors.tensors import read_header, stored_metadata
from topictone.infer.schema import LabelSchema, Prediction

STATIC = "static"  # the static model's own folder inside the model folder (a model2vec folder)
TABLE = "model.safetensors"  # model2vec's name: ``StaticModel.from_pretrained`` reads it too
CONFIG = "config.json"  # model2vec's config, written for that interoperability; never read here
HEADS = "heads.safetensors"
# The largest table read: potion-multilingual-128M (500k tokens x 256, float32) takes 512 MB.
MAX_TABLE_BYTES = 1 << 30
MAX_DIMENSION = 8192
TABLE_DTYPES = {"F32": np.float32, "F16": np.float16, "I8": np.int8}
MAPPING_DTYPES = {"I64", "I32"}
WEIGHT_DTYPES = {"F32", "F16", "F64"}
TENSORS = {"embeddings", "weights", "mapping"}  # what model2vec saves; only these are read
MAX_TOKENS = (1, 1 << 20)  # a text's tokens averaged: 2048 by default
CHUNK_TOKENS = 1 << 16  # rows gathered at once (16 MB at 256 dimensions): memory stays flat


class StaticEmbedder:
    """Tokenise (no special tokens), drop the unknown token, average the tokens' rows.

    Exactly model2vec's ``StaticModel.encode`` (vocabulary quantisation included: rows
    through ``mapping``, scaled by ``weights``), with its own token cap and in bounded
    memory. Used by training and inference alike, so the heads see the same vectors."""

    def __init__(
        self,
        table: np.ndarray,
        tokenizer: Tokenizer,
        tokenizer_json: str,
        normalize: bool = True,
        max_tokens: int = 2048,
        batch_size: int = 1024,
        unk_id: int | None = None,
        weights: np.ndarray | None = None,
        mapping: np.ndarray | None = None,
    ) -> None:
        self.table, self.weights, self.mapping = table, weights, mapping
        self.tokenizer, self.tokenizer_json = tokenizer, tokenizer_json
        self.normalize, self.unk_id = bool(normalize), unk_id
        self.max_tokens, self.batch_size = int(max_tokens), int(batch_size)
        low, high = MAX_TOKENS
        if not low <= self.max_tokens <= high:
            raise TopictoneError(f"static max_tokens must be in [{low}, {high}], got {max_tokens}")
        tokenizer.no_padding()
        tokenizer.enable_truncation(self.max_tokens)
        if hasattr(tokenizer, "encode_special_tokens"):
            tokenizer.encode_special_tokens = True  # "<pad>" spelled in a text is read as text
        self.reads_chars = readable_prefix(tokenizer, self.max_tokens)

    @property
    def dimension(self) -> int:
        return int(self.table.shape[1])

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Each text's token ids, at most ``max_tokens`` (the unknown token still in)."""
        cut = [t[: self.reads_chars] for t in texts]
        with tokenizer_errors("static tokenizer"):
            encoded = self.tokenizer.encode_batch_fast(cut, add_special_tokens=False)
        return [e.ids for e in encoded]

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Each text's token ids that count: at most ``max_tokens``, the unknown token out."""
        return [[i for i in row if i != self.unk_id] for row in self.encode(texts)]

    def rows(self, ids: np.ndarray) -> np.ndarray:
        """The float32 rows of these token ids (through the mapping and weights if any)."""
        rows = self.table[self.mapping[ids] if self.mapping is not None else ids]
        rows = rows.astype(np.float32, copy=False)
        if self.weights is not None:
            rows = rows * self.weights[ids, None]
        return rows

    def embed(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        """One float32 vector per text: its tokens' rows averaged (zero for a text made only
        of unknown characters), then scaled to unit length if the model normalises."""
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        batches = range(0, len(texts), self.batch_size)
        if progress and len(batches) > 1:
            from tqdm.auto import tqdm

            batches = tqdm(batches, desc="embedding", unit="batch")
        for start in batches:
            ids = self.encode(texts[start : start + self.batch_size])
            out[start : start + len(ids)] = self.average(ids)
        if self.normalize:
            out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out

    def average(self, ids: list[list[int]]) -> np.ndarray:
        """Mean rows per text (the unknown token left out), gathered in chunks of about
        ``CHUNK_TOKENS`` tokens: memory stays flat whatever the batch."""
        out = np.zeros((len(ids), self.dimension), dtype=np.float32)
        begin = 0
        while begin < len(ids):
            end, tokens = begin, 0
            while end < len(ids) and (end == begin or tokens + len(ids[end]) <= CHUNK_TOKENS):
                tokens += len(ids[end])
                end += 1
            chunk = ids[begin:end]
            flat = np.fromiter(chain.from_iterable(chunk), dtype=np.int64, count=tokens)
            owner = np.repeat(np.arange(len(chunk)), [len(row) for row in chunk])
            if self.unk_id is not None:
                keep = flat != self.unk_id
                flat, owner = flat[keep], owner[keep]
            counts = np.bincount(owner, minlength=len(chunk))
            filled = np.flatnonzero(counts)
            if len(filled):
                starts = np.searchsorted(owner, filled)  # owner ascends: each text's first row
                sums = np.add.reduceat(self.rows(flat), starts, axis=0)
                out[begin + filled] = sums / counts[filled, None]
            begin = end
        return out

    def contributions(self, text: str) -> tuple[list[str], np.ndarray]:
        """The text's distinct tokens and each one's share of the (unnormalised) average."""
        [ids] = self.token_ids([text])
        if not ids:
            return [], np.zeros((0, self.dimension))
        unique, counts = np.unique(np.asarray(ids, dtype=np.int64), return_counts=True)
        shares = self.rows(unique) * (counts / len(ids))[:, None]
        return [self.tokenizer.id_to_token(int(i)) or "" for i in unique], shares

    def model2vec_config(self) -> dict[str, Any]:
        """model2vec's ``config.json`` for this table: the saved folder also loads with
        ``StaticModel.from_pretrained`` (topictone itself reads the manifest instead)."""
        config = {
            "model_type": "model2vec",
            "architectures": ["StaticModel"],
            "hidden_dim": self.dimension,
            "normalize": self.normalize,
            "max_length": self.max_tokens,
            "embedding_dtype": np.dtype(self.table.dtype).name,
        }
        if self.mapping is not None:
            config["vocabulary_quantization"] = int(self.table.shape[0])
        return config

    def save(self, folder: Path) -> list[str]:
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {"embeddings": np.ascontiguousarray(self.table)}
        if self.weights is not None:
            tensors["weights"] = np.ascontiguousarray(self.weights)
        if self.mapping is not None:
            tensors["mapping"] = np.ascontiguousarray(self.mapping)
        save_file(tensors, folder / TABLE)
        (folder / TOKENIZER).write_text(self.tokenizer_json, encoding="utf-8")
        config = json.dumps(self.model2vec_config(), indent=2) + "\n"
        (folder / CONFIG).write_text(config, encoding="utf-8")
        return [TABLE, TOKENIZER, CONFIG]


def tensor_dtype(handle: Any, name: str) -> str:
    return str(handle.get_slice(name).get_dtype())


def read_table(
    path: Path, names: Mapping[str, str] | None = None
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """The embedding table, and the weights and mapping of a vocabulary-quantised model.

    ``names`` maps our names to the file's (a sentence-transformers folder calls the table
    ``embedding.weight``). The file's size is bounded and its header checked (every
    tensor's dtype, shape and byte range) before any data is read."""
    names = {
        "embeddings": "embeddings",
        "weights": "weights",
        "mapping": "mapping",
        **(names or {}),
    }
    if not path.is_file():
        raise TopictoneError(f"{path}: missing; a static model needs its embedding table")
    size = path.stat().st_size
    if size > MAX_TABLE_BYTES:
        raise TopictoneError(
            f"{path}: {size} bytes, over the {MAX_TABLE_BYTES} a static embedding table may take"
        )
    shapes, _ = read_header(path)
    unknown = sorted(set(shapes) - set(names.values()))
    if unknown or names["embeddings"] not in shapes:
        raise TopictoneError(
            f"{path}: a static table holds {', '.join(sorted(TENSORS))} only (found: "
            f"{', '.join(sorted(shapes))[:200]})"
        )
    rows_dim = shapes[names["embeddings"]]
    if len(rows_dim) != 2 or not rows_dim[0] or not 1 <= rows_dim[1] <= MAX_DIMENSION:
        raise TopictoneError(
            f"{path}: the embedding table must be rows x dimensions (1 to {MAX_DIMENSION}), "
            f"got shape {rows_dim}"
        )
    try:
        with safe_open(path, "numpy") as handle:
            dtypes = {
                ours: tensor_dtype(handle, theirs)
                for ours, theirs in names.items()
                if theirs in shapes
            }
            checks = {
                "embeddings": set(TABLE_DTYPES),
                "weights": WEIGHT_DTYPES,
                "mapping": MAPPING_DTYPES,
            }
            for ours, dtype in dtypes.items():
                if dtype not in checks[ours]:
                    raise TopictoneError(
                        f"{path}: tensor '{names[ours]}' is {dtype}; a static model reads "
                        f"{', '.join(sorted(checks[ours]))}"
                    )
            read = {ours: handle.get_tensor(names[ours]) for ours in dtypes}
    except SafetensorError as err:
        raise TopictoneError(f"{path}: unreadable safetensors file ({first_line(err)})") from None
    table, weights, mapping = read["embeddings"], read.get("weights"), read.get("mapping")
    for name, vector in (("weights", weights), ("mapping", mapping)):
        if vector is not None and vector.ndim != 1:
            raise TopictoneError(
                f"{path}: '{name}' must be one value per token, got {vector.shape}"
            )
    if mapping is not None:
        if len(mapping) and not 0 <= int(mapping.min()) <= int(mapping.max()) < len(table):
            raise TopictoneError(f"{path}: 'mapping' points past the table's {len(table)} rows")
        mapping = mapping.astype(np.int64)
        if weights is not None and len(weights) != len(mapping):
            raise TopictoneError(f"{path}: 'weights' and 'mapping' differ in length")
    if weights is not None:
        if mapping is None and len(weights) != len(table):
            raise TopictoneError(f"{path}: 'weights' and the table differ in length")
        weights = weights.astype(np.float32)
        if not np.isfinite(weights).all():
            raise TopictoneError(f"{path}: 'weights' holds values that are not finite")
    if not all_finite(table):
        raise TopictoneError(f"{path}: the embedding table holds values that are not finite")
    return table, weights, mapping


def all_finite(table: np.ndarray, rows: int = 1 << 16) -> bool:
    """No NaN or infinity in the table (checked in slices: no table-sized mask)."""
    if table.dtype.kind != "f":
        return True
    return all(np.isfinite(table[i : i + rows]).all() for i in range(0, len(table), rows))


def read_tokenizer(folder: Path, links: bool = False) -> tuple[Tokenizer, str, int | None]:
    """``tokenizer.json`` checked (size, allowed expressions, config), then built by the
    Rust library from its text (never from a file name); the unknown token's id too.

    ``links``: the file may be a link (a training source in a hub cache); a model folder's
    never is."""
    check_tokenizer_files(folder)
    path = folder / TOKENIZER
    try:
        text = read_plain(path.resolve() if links else path, MAX_TOKENIZER_BYTES).decode("utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise TopictoneError(f"{path}: unreadable ({type(err).__name__})") from None
    with tokenizer_errors(path):
        try:
            tokenizer = Tokenizer.from_str(text)
        except Exception as err:
            raise TopictoneError(
                f"{path}: not a usable tokenizer ({type(err).__name__}: {first_line(err)})"
            ) from None
    model = json.loads(text)["model"]
    if model.get("type") == "Unigram" or "unk_id" in model:
        unk = model.get("unk_id")
    else:
        token = model.get("unk_token")
        unk = tokenizer.token_to_id(token) if isinstance(token, str) else None
    if isinstance(unk, bool) or not isinstance(unk, int):
        unk = None
    return tokenizer, text, unk


def check_ids(folder: Path, tokenizer: Tokenizer, rows: int) -> None:
    """No id the tokenizer can give (its vocabulary and added tokens) may be past the
    table's rows (or the mapping's)."""
    highest = max(tokenizer.get_vocab(with_added_tokens=True).values(), default=-1)
    if highest >= rows:
        raise TopictoneError(
            f"{folder}: the tokenizer can give token id {highest}, the embedding table has "
            f"{rows} rows"
        )


def load_static(
    folder: Path,
    normalize: bool,
    table_names: Mapping[str, str] | None = None,
    links: bool = False,
    **settings: Any,
) -> StaticEmbedder:
    """A static model from a folder holding ``model.safetensors`` and ``tokenizer.json``,
    both checked; ``settings`` are ``StaticEmbedder`` options."""
    if not folder.is_dir():
        raise TopictoneError(f"{folder}: static model folder not found")
    table, weights, mapping = read_table(folder / TABLE, table_names)
    tokenizer, text, unk = read_tokenizer(folder, links)
    check_ids(folder, tokenizer, len(mapping) if mapping is not None else len(table))
    return StaticEmbedder(
        table, tokenizer, text, normalize, unk_id=unk, weights=weights, mapping=mapping, **settings
    )


class StaticPredictor(Predictor):
    """A static model's text vectors read by a topic head (sigmoid) and a tone head (softmax)."""

    kind: ClassVar[str] = "static"
    requirements: ClassVar[tuple[str, ...]] = ("tokenizers", "safetensors", "numpy")

    def __init__(
        self,
        schema: LabelSchema,
        embedder: StaticEmbedder,
        heads: dict[str, np.ndarray],
        thresholds: dict[str, float] | None = None,
        calibration: Calibration | dict[str, Any] | None = None,
    ) -> None:
        super().__init__(schema, thresholds, calibration)
        self.embedder = embedder
        self.heads = {k: np.asarray(v, dtype=np.float64) for k, v in heads.items()}
        expected = {
            "topic_weight": (len(schema.topics), embedder.dimension),
            "topic_bias": (len(schema.topics),),
            "tone_weight": (len(schema.tones), embedder.dimension),
            "tone_bias": (len(schema.tones),),
        }
        if set(self.heads) != set(expected):
            raise TopictoneError(
                f"static heads must be {', '.join(sorted(expected))}, got "
                f"{', '.join(sorted(self.heads))[:200]}"
            )
        for name, shape in expected.items():
            if self.heads[name].shape != shape:
                raise TopictoneError(
                    f"static head '{name}' must have shape {shape}, got {self.heads[name].shape}"
                )
            if not np.isfinite(self.heads[name]).all():
                raise TopictoneError(f"static head '{name}' holds values that are not finite")

    def head_logits(self, embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = np.asarray(embeddings, dtype=np.float64)
        h = self.heads
        return x @ h["topic_weight"].T + h["topic_bias"], x @ h["tone_weight"].T + h["tone_bias"]

    def _forward(self, texts: list[str]) -> Scores:
        return scores_from_logits(*self.head_logits(self.embedder.embed(texts)))

    def explain(self, text: str, prediction: Prediction, top_k: int = 5) -> dict:
        """For each decided label, the tokens that pushed its logit most: a logit is linear
        in the average of the tokens' rows, so each token's part is its row's share of the
        average times the head's weights (normalisation scales them all alike)."""
        tokens, shares = self.embedder.contributions(text)
        weights = {
            topic: self.heads["topic_weight"][self.schema.topics.index(topic)]
            for topic in prediction.topics
        }
        weights[prediction.tone] = self.heads["tone_weight"][
            self.schema.tones.index(prediction.tone)
        ]
        out = {}
        for label, weight in weights.items():
            terms: dict[str, float] = {}
            for token, value in zip(tokens, shares @ weight, strict=True):
                term = token.replace("\u2581", " ").strip() or token
                terms[term] = terms.get(term, 0.0) + float(value)
            ranked = sorted(terms.items(), key=lambda item: -item[1])[:top_k]
            out[label] = [(term, round(value, 4)) for term, value in ranked if value > 0]
        return out

    def settings(self) -> dict[str, Any]:
        e = self.embedder
        return {"max_tokens": e.max_tokens, "batch_size": e.batch_size, "normalize": e.normalize}

    def save_weights(self, folder: Path) -> list[str]:
        names = [f"{STATIC}/{name}" for name in self.embedder.save(folder / STATIC)]
        save_file(
            {k: v.astype(np.float32) for k, v in self.heads.items()},
            folder / HEADS,
            metadata={"schema": json.dumps(self.schema.to_dict())},
        )
        return [HEADS, *names]

    @classmethod
    def load(cls, folder: Path, manifest: Manifest, **options: Any) -> StaticPredictor:
        heads_file = folder / HEADS
        check_stored_schema(heads_file, stored_metadata(heads_file, "schema"), manifest.schema)
        try:
            with safe_open(heads_file, "numpy") as handle:
                heads = {k: handle.get_tensor(k) for k in handle.keys()}
        except SafetensorError as err:
            raise TopictoneError(
                f"{heads_file}: unreadable safetensors file ({first_line(err)})"
            ) from None
        settings = {**manifest.settings, **options}
        sizes = checked_sizes(folder, settings, ("batch_size",))
        max_tokens = settings.get("max_tokens")
        low, high = MAX_TOKENS
        if (
            isinstance(max_tokens, bool)
            or not isinstance(max_tokens, int)
            or not (low <= max_tokens <= high)
        ):
            raise TopictoneError(
                f"{folder}: max_tokens must be an integer in [{low}, {high}], got {max_tokens!r}"
            )
        normalize = settings.get("normalize")
        if not isinstance(normalize, bool):
            raise TopictoneError(f"{folder}: normalize must be true or false, got {normalize!r}")
        embedder = load_static(folder / STATIC, normalize, max_tokens=max_tokens, **sizes)
        return cls(manifest.schema, embedder, heads, manifest.thresholds, manifest.calibration)
