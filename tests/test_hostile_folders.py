"""Model folders built to hang, exhaust or fool the loader: each is refused in one line,
before anything big is read, allocated or run. Built on real saved models."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import signal
import socket
import struct
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from test_artifact_safety import copy_model, edit_manifest, reseal
from test_encoder import encoder_run  # noqa: F401  (the module fixture: a trained encoder folder)

from topictone import infer
from topictone.infer.artifact import MANIFEST, read_manifest
from topictone.infer.errors import TopictoneError
from topictone.infer.predictors.tfidf import WEIGHTS


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Fail (rather than hang the suite) if the block runs longer than ``seconds``."""

    def expire(signum: int, frame: object) -> None:
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def refused(folder: Path, match: str, **options: object) -> str:
    """The one-line refusal ``infer.load`` gives, within 60 s."""
    with deadline(60), pytest.raises(TopictoneError, match=match) as caught:
        infer.load(folder, **options)
    assert "\n" not in str(caught.value)
    return str(caught.value)


# ---- only plain files --------------------------------------------------------------


def test_a_fifo_manifest_is_refused_without_waiting(tfidf_run, tmp_path):
    folder = copy_model(tfidf_run / "model", tmp_path)
    (folder / MANIFEST).unlink()
    os.mkfifo(folder / MANIFEST)
    refused(folder, "not a regular file")


@pytest.mark.parametrize("name", ["vocabulary.json", "extra.bin", "README.md"])
def test_a_fifo_anywhere_in_the_folder_is_refused(tfidf_run, tmp_path, name):
    folder = copy_model(tfidf_run / "model", tmp_path)
    (folder / name).unlink(missing_ok=True)
    os.mkfifo(folder / name)
    refused(folder, "not a regular file")


def test_a_socket_is_refused(tfidf_run, tmp_path):
    folder = copy_model(tfidf_run / "model", tmp_path)
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(folder / "s"))
        refused(folder, "not a regular file")


def test_a_hard_link_is_refused(tfidf_run, tmp_path):
    """A second name may lie outside the folder: whoever writes there edits the model."""
    folder = copy_model(tfidf_run / "model", tmp_path)
    os.link(folder / "vocabulary.json", tmp_path / "outside.json")
    refused(folder, "hard links")


def test_a_fifo_swapped_in_after_the_check_is_refused_by_fstat(tmp_path, monkeypatch):
    """The lstat check passes (a regular file was there); the FIFO opened in its place is
    opened without blocking and refused by fstat."""
    import topictone.infer.paths as paths

    fifo = tmp_path / "swapped"
    os.mkfifo(fifo)
    regular = tmp_path / "regular"
    regular.write_text("{}")
    real_lstat = os.lstat
    monkeypatch.setattr(paths.os, "lstat", lambda p: real_lstat(regular if p == fifo else p))
    with deadline(10), pytest.raises(TopictoneError, match="not a regular file"):
        paths.read_plain(fifo, 100)


# ---- sizes before hashing ------------------------------------------------------------


def no_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    import topictone.infer.artifact as artifact

    def hashed(*args: object) -> None:
        raise AssertionError("a file was hashed before its size was checked")

    monkeypatch.setattr(artifact, "sha256", hashed)
    monkeypatch.setattr(artifact, "file_sha256", hashed, raising=False)


def sparse(path: Path, size: int) -> None:
    path.unlink()
    with path.open("wb") as handle:
        handle.truncate(size)


def test_a_file_of_another_size_is_refused_before_hashing(tfidf_run, tmp_path, monkeypatch):
    folder = copy_model(tfidf_run / "model", tmp_path)
    sparse(folder / "vocabulary.json", 20 << 30)  # 20 GB that take no disk
    no_hashing(monkeypatch)
    refused(folder, r"vocabulary\.json: checksum does not match .* \(it has 21474836480 bytes")


@pytest.mark.parametrize("version", [2, 3])
def test_a_folder_over_its_kinds_cap_is_refused_before_hashing(
    tfidf_run, tmp_path, monkeypatch, version
):
    """A manifest that declares the huge size (or, in version 2, none) meets the cap."""
    folder = copy_model(tfidf_run / "model", tmp_path)
    sparse(folder / "vocabulary.json", 20 << 30)

    def declare(manifest: dict) -> None:
        if version == 2:
            manifest.pop("sizes")
            manifest["format_version"] = 2
        else:
            manifest["sizes"]["vocabulary.json"] = 20 << 30

    edit_manifest(folder, declare)
    no_hashing(monkeypatch)
    refused(folder, r"bytes, over the 1073741824 a 'tfidf' model may take")


def test_save_declares_sizes_and_old_folders_still_load(tfidf_run, tmp_path):
    folder = copy_model(tfidf_run / "model", tmp_path)
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["format_version"] == 3
    assert manifest["sizes"] == {n: (folder / n).stat().st_size for n in manifest["files"]}

    def to_version_2(manifest: dict) -> None:
        manifest.pop("sizes")
        manifest["format_version"] = 2

    edit_manifest(folder, to_version_2)
    assert infer.load(folder).predict(["Army tests a new missile"])[0].tone
    edit_manifest(folder, lambda m: m.update(sizes={"vocabulary.json": 1}))
    refused(folder, "format version 2 declares no sizes")


# ---- skops archives ------------------------------------------------------------------


def rewrite_archive(path: Path, replace: dict[str, bytes], deflate: set[str]) -> None:
    with zipfile.ZipFile(path) as archive:
        members = {info.filename: archive.read(info) for info in archive.infolist()}
    members.update(replace)
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            method = zipfile.ZIP_DEFLATED if name in deflate else zipfile.ZIP_STORED
            archive.writestr(name, data, compress_type=method)


def biggest_array(path: Path) -> str:
    with zipfile.ZipFile(path) as archive:
        arrays = [i for i in archive.infolist() if i.filename.endswith(".npy")]
    return max(arrays, key=lambda i: i.file_size).filename


def test_a_compressed_array_is_refused_before_it_inflates(tfidf_run, tmp_path):
    """64 MB of zeros deflate to 64 KB: the member's ratio gives it away unread."""
    import io

    folder = copy_model(tfidf_run / "model", tmp_path)
    buffer = io.BytesIO()
    np.save(buffer, np.zeros(8 << 20))
    name = biggest_array(folder / WEIGHTS)
    rewrite_archive(folder / WEIGHTS, {name: buffer.getvalue()}, {name})
    reseal(folder)
    refused(folder, rf"member '{name}' inflates \d+ bytes to 67108992; refused")


def test_skops_members_are_bounded_in_all(tfidf_run, tmp_path, monkeypatch):
    import topictone.infer.predictors.tfidf as tfidf

    folder = copy_model(tfidf_run / "model", tmp_path)
    monkeypatch.setattr(tfidf, "MAX_UNPACKED_BYTES", 1000)
    refused(folder, "members inflate to .* bytes, over 1000")
    monkeypatch.setattr(tfidf, "MAX_DIRECTORY_BYTES", 100)
    refused(folder, "zip directory of .* bytes is too large")


def test_a_deeply_nested_object_tree_is_one_line(tfidf_run, tmp_path):
    folder = copy_model(tfidf_run / "model", tmp_path)
    rewrite_archive(folder / WEIGHTS, {"schema.json": b"[" * 100_000 + b"]" * 100_000}, set())
    reseal(folder)
    refused(folder, "nested too deeply")


# ---- safetensors headers and config.json ------------------------------------------


def safetensors_bytes(header: dict, data: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


@pytest.mark.parametrize(
    ("header", "data", "message"),
    [
        ({"w": {"dtype": "F32", "shape": [10**12], "data_offsets": [0, 4]}}, b"0000", "tensor"),
        ({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"0000", "declare 8"),
        ({"w": {"dtype": "X9", "shape": [1], "data_offsets": [0, 4]}}, b"0000", "tensor 'w'"),
        ({"w": {"dtype": "F32", "shape": "1", "data_offsets": [0, 4]}}, b"0000", "tensor 'w'"),
        ({"w": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, b"00000000", "ranges"),
        ({"__metadata__": {"schema": 3}}, b"", "metadata"),
        ([1, 2], b"", "no object"),
    ],
)
def test_safetensors_headers_are_checked_against_the_file(tmp_path, header, data, message):
    from topictone.infer.predictors.tensors import read_header

    path = tmp_path / "w.safetensors"
    path.write_bytes(safetensors_bytes(header, data))
    with pytest.raises(TopictoneError, match=message):
        read_header(path)
    path.write_bytes(struct.pack("<Q", 1 << 40) + b"{}")
    with pytest.raises(TopictoneError, match="header size"):
        read_header(path)


def edit_json(path: Path, edit) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    edit(data)
    path.write_text(json.dumps(data), encoding="utf-8")


def meta_only(monkeypatch: pytest.MonkeyPatch, module: object) -> None:
    """Make ``module``'s AutoModel refuse to build a network anywhere but on torch's
    meta device (where nothing is allocated)."""
    import torch
    import transformers

    class OnlyOnMeta:
        @staticmethod
        def from_config(*args: object, **kwargs: object) -> object:
            if torch.get_default_device().type != "meta":
                raise AssertionError("a network was built before the weights were checked")
            return transformers.AutoModel.from_config(*args, **kwargs)

        from_pretrained = from_config

    monkeypatch.setattr(module, "AutoModel", OnlyOnMeta)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda c: c["encoder"].update(vocab_size=75_000_000), r"word_embeddings\.weight"),
        (lambda c: c["encoder"].update(hidden_size=4096), "config.json gives"),
        (lambda c: c["encoder"].update(num_hidden_layers=3), "tensors missing"),
        (lambda c: c["encoder"].update(num_hidden_layers=10**6), "num_hidden_layers=1000000"),
        (lambda c: c["encoder"].update(num_attention_heads=3), "no network can be built"),
    ],
)
def test_a_config_asking_for_another_network_is_refused_unbuilt(
    transformer_run, tmp_path, monkeypatch, edit, message
):
    """One edited vocab_size made the loader allocate 2.4 GB before refusing."""
    import topictone.infer.predictors.network as network

    folder = copy_model(transformer_run / "model", tmp_path)
    edit_json(folder / "config.json", edit)
    reseal(folder)
    meta_only(monkeypatch, network)
    refused(folder, message, runtime="torch")


def test_an_encoder_config_asking_for_another_network_is_refused_unbuilt(
    encoder_run,  # noqa: F811  (the fixture imported above)
    tmp_path,
    monkeypatch,
):
    import topictone.infer.predictors.encoder as encoder

    folder = copy_model(encoder_run / "model", tmp_path)
    edit_json(folder / "encoder" / "config.json", lambda c: c.update(vocab_size=75_000_000))
    reseal(folder)
    meta_only(monkeypatch, encoder)
    refused(folder, r"encoder/model\.safetensors: weights do not match config\.json")


# ---- tokenizers ----------------------------------------------------------------------

SLOW = r"(\w+\s?)*$"  # backtracks: a panic in the Rust tokenizer, or minutes


def with_split(tokenizer: dict, pattern: str) -> None:
    tokenizer["pre_tokenizer"] = {
        "type": "Sequence",
        "pretokenizers": [
            {
                "type": "Split",
                "pattern": {"Regex": pattern},
                "behavior": "Isolated",
                "invert": False,
            },
            tokenizer["pre_tokenizer"],
        ],
    }


TOKENIZER, TOKENIZER_CONFIG = "tokenizer.json", "tokenizer_config.json"


@pytest.mark.parametrize(
    ("file", "edit", "message"),
    [
        (TOKENIZER, lambda t: with_split(t, SLOW), "regular expression .* is not one"),
        (
            TOKENIZER,
            lambda t: t.update(normalizer={"type": "Replace", "pattern": {"Regex": "a+a+b"}}),
            "regular expression 'a\\+a\\+b'",
        ),
        (TOKENIZER, lambda t: t.update(model=[]), "not a tokenizer"),
        (TOKENIZER, lambda t: t["model"].update(vocab="many"), "not a usable tokenizer"),
        (
            TOKENIZER,
            lambda t: t.update(normalizer={"type": "NoSuchNormalizer"}),
            "not a usable tokenizer",
        ),
        (
            TOKENIZER_CONFIG,
            lambda c: c.update(tokenizer_class="LlamaTokenizer"),
            "tokenizer_class 'LlamaTokenizer'",
        ),
        (
            TOKENIZER_CONFIG,
            lambda c: c.update(tokenizer_file="/etc/hostname"),
            "'tokenizer_file' names files",
        ),
        (
            TOKENIZER_CONFIG,
            lambda c: c.update(auto_map={"AutoTokenizer": "x.Y"}),
            "'auto_map' names files or code",
        ),
    ],
)
def test_tokenizers_outside_what_our_backbones_use_are_one_line(
    transformer_run, tmp_path, file, edit, message
):
    folder = copy_model(transformer_run / "model", tmp_path)
    edit_json(folder / file, edit)
    reseal(folder)
    refused(folder, message)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"{not json", "tokenizer.json: not JSON"),
        (b"[" * 5000 + b"]" * 5000, "not JSON|nested more than"),
    ],
)
def test_a_malformed_tokenizer_file_is_one_line(transformer_run, tmp_path, content, message):
    folder = copy_model(transformer_run / "model", tmp_path)
    (folder / "tokenizer.json").write_bytes(content)
    reseal(folder)
    refused(folder, message)


def test_a_tokenizer_panic_is_one_line(tiny_backbone):
    """A Rust panic is a BaseException: it would pass every ``except Exception``."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    from topictone.infer.predictors.windows import encode_windows

    data = json.loads((tiny_backbone / "tokenizer.json").read_text(encoding="utf-8"))
    with_split(data, SLOW)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(json.dumps(data)), pad_token="<pad>"
    )
    with pytest.raises(TopictoneError, match="the tokenizer failed"):
        encode_windows(tokenizer, ["word" * 1000 + "!"], 32, 8, 4)


# ---- lies that load ------------------------------------------------------------------


@pytest.fixture(scope="module")
def ensemble(tfidf_run, tmp_path_factory) -> Path:
    from topictone.infer.artifact import save_model
    from topictone.infer.predictors.ensemble import EnsemblePredictor

    member = infer.load(tfidf_run / "model")
    members = {"a": member, "b": member}
    return save_model(EnsemblePredictor(member.schema, members), tmp_path_factory.mktemp("e") / "m")


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ({"a": {"weight": math.nan}, "b": {"weight": 1}}, "must be finite numbers >= 0"),
        ({"a": {"weight": math.inf}, "b": {"weight": 1}}, "must be finite numbers >= 0"),
        ({"a": {"weight": 1e308}, "b": {"weight": 1e308}}, "must be finite numbers >= 0"),
        ({"a": {"weight": -1}, "b": {"weight": 2}}, "must be finite numbers >= 0"),
        ({"a": {"weight": 0}, "b": {"weight": 0}}, "not all 0"),
        ({"a": {"weight": "heavy"}, "b": {"weight": 1}}, "must be finite numbers >= 0"),
        ({"a": {"weight": True}, "b": {"weight": 1}}, "must be finite numbers >= 0"),
        ({"a": {}, "b": {"weight": 1}}, "must be finite numbers >= 0"),
        ({"a": "tfidf", "b": {"weight": 1}}, "must be an object with a weight"),
        ({"a": {"weight": 1, "kind": ["tfidf"]}, "b": {"weight": 1}}, "an object with a weight"),
        ({"a": {"weight": 1, "kind": "transformer"}, "b": {"weight": 1}}, "the manifest says"),
    ],
)
def test_ensemble_weights_that_would_predict_nothing_are_refused(
    ensemble, tmp_path, members, message
):
    folder = copy_model(ensemble, tmp_path)
    edit_manifest(folder, lambda m: m["settings"].update(members=members))
    refused(folder, message)


def test_normalised_weights_stay_finite():
    from topictone.infer.predictors.ensemble import normalised_weights

    weights = normalised_weights({"a": 1e308, "b": 0}, {"a": None, "b": None})
    assert weights == {"a": 1.0, "b": 0.0}
    assert normalised_weights({"a": 5e-324}, {"a": None}) == {"a": 1.0}


def manifest_digest(folder: Path) -> str:
    return hashlib.sha256((folder / MANIFEST).read_bytes()).hexdigest()


def test_model_sha256_pins_the_whole_folder(tfidf_run, tmp_path):
    """A permuted vocabulary, resealed, loads and answers wrongly; only a pin tells."""
    folder = copy_model(tfidf_run / "model", tmp_path)
    pin = manifest_digest(folder)
    assert infer.load(folder, model_sha256=pin).predict(["Army tests a new missile"])
    assert infer.load(folder, model_sha256=pin.upper()).kind == "tfidf"
    edit_json(folder / "vocabulary.json", lambda v: next(iter(v.values())).reverse())
    reseal(folder)
    infer.load(folder)  # a consistent lie: nothing in the folder can tell
    message = refused(folder, "is not the expected model_sha256", model_sha256=pin)
    assert pin in message and manifest_digest(folder) in message


@pytest.mark.parametrize("pin", ["abc", "g" * 64, 12, ""])
def test_a_malformed_model_sha256_is_one_line(tfidf_run, pin):
    refused(tfidf_run / "model", "model_sha256 must be 64 hexadecimal digits", model_sha256=pin)


# ---- malformed manifests -------------------------------------------------------------


def nested(depth: int) -> object:
    value: object = 1
    for _ in range(depth):
        value = [value]
    return value


MANIFEST_CASES = [
    ("kind list", lambda m: m.update(kind=["tfidf"]), "field 'kind' must be a string, got a list"),
    ("kind unknown", lambda m: m.update(kind="a\nb"), "unknown model kind 'a\\\\nb'"),
    ("settings string", lambda m: m.update(settings="x"), "field 'settings' must be an object"),
    ("versions list", lambda m: m.update(versions=["1"]), "field 'versions' must be an object"),
    ("versions value", lambda m: m.update(versions={"a": 1}), r"versions\['a'\] must be a string"),
    ("files list", lambda m: m.update(files=["model.skops"]), "field 'files' must be an object"),
    ("files value", lambda m: m["files"].update({"model.skops": 7}), "no SHA-256 checksum"),
    ("files not hex", lambda m: m["files"].update({"model.skops": "z" * 64}), "no SHA-256"),
    ("sizes list", lambda m: m.update(sizes=[1]), "field 'sizes' must be an object"),
    ("sizes value", lambda m: m["sizes"].update({"model.skops": -1}), "must be a byte count"),
    ("sizes short", lambda m: m["sizes"].pop("model.skops"), "'sizes' must name exactly"),
    ("schema string", lambda m: m.update(schema="defence"), "field 'schema' must be an object"),
    ("schema topics", lambda m: m["schema"].update(topics="abc"), "schema.topics must be a list"),
    ("schema tones", lambda m: m["schema"].update(tones=[1, 2]), "schema.tones must be a list"),
    ("schema missing", lambda m: m.pop("schema"), "no 'schema'"),
    ("metrics list", lambda m: m.update(metrics=[]), "field 'metrics' must be an object"),
    ("calibration list", lambda m: m.update(calibration=[]), "'calibration' must be an object"),
    (
        "calibration scale",
        lambda m: m.update(calibration={"method": "platt", "topics": {}}),
        "'tone'",
    ),
    ("norm version", lambda m: m.update(normalization_version="1"), "must be an integer"),
    ("norm bool", lambda m: m.update(normalization_version=True), "must be an integer"),
    ("unknown field", lambda m: m.update(extra=1), "unknown field 'extra'"),
    ("format version", lambda m: m.update(format_version=[3]), r"format version \[3\]"),
    ("deep metrics", lambda m: m.update(metrics={"a": nested(200)}), "nested more than 64 deep"),
    ("top level", lambda m: m.clear(), "not a topictone model manifest"),
]


@pytest.mark.parametrize(
    ("name", "edit", "message"), MANIFEST_CASES, ids=[c[0] for c in MANIFEST_CASES]
)
def test_malformed_manifests_are_one_line(tfidf_run, tmp_path, name, edit, message):
    folder = copy_model(tfidf_run / "model", tmp_path)
    edit_manifest(folder, edit)
    refused(folder, message)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"[" * 100_000, "nested too deeply|unreadable manifest"),
        (b"\xff\xfe", "unreadable manifest"),
        (b'{"format": "topictone-model", "format_version": 1e999}', "format version inf"),
    ],
)
def test_unparseable_manifests_are_one_line(tfidf_run, tmp_path, content, message):
    folder = copy_model(tfidf_run / "model", tmp_path)
    (folder / MANIFEST).write_bytes(content)
    refused(folder, message)


def test_the_service_reads_versions_it_can_show(tfidf_run, tmp_path):
    """``versions`` reaches the service's /metadata: it must map names to strings."""
    folder = copy_model(tfidf_run / "model", tmp_path)
    edit_manifest(folder, lambda m: m.update(versions=[["torch", "2"]]))
    with pytest.raises(TopictoneError, match="field 'versions' must be an object"):
        read_manifest(folder, verify=False)


@pytest.mark.parametrize(
    ("breaks", "message"),
    [
        (lambda o: setattr(o["tone"], "coef_", np.full_like(o["tone"].coef_, np.nan)), "no valid"),
        (lambda o: delattr(o["tone"], "coef_"), "load but cannot predict .AttributeError"),
        (lambda o: setattr(o["topics"], "estimators_", []), "load but cannot predict"),
    ],
)
def test_tfidf_objects_that_cannot_predict_are_refused(tfidf_run, tmp_path, breaks, message):
    """The skops types are checked, their attributes are not: one prediction at load
    refuses a tree that would fail (or predict NaN) on every text."""
    import skops.io as sio

    from topictone.infer.predictors.tfidf import skops_contents

    folder = copy_model(tfidf_run / "model", tmp_path)
    objects = sio.load(folder / WEIGHTS, trusted=sorted(skops_contents(folder / WEIGHTS)[0]))
    breaks(objects)
    sio.dump(objects, folder / WEIGHTS)
    reseal(folder)
    refused(folder, message)


def _add_token(folder: Path, content: str, special: bool) -> None:
    """An added token one id past the embedding's rows, as embeddinggemma's tokenizer has
    (``<image_soft_token>``, id 262144 of 262144 rows)."""
    path = folder / "tokenizer.json"
    tokenizer = json.loads(path.read_text(encoding="utf-8"))
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    rows = config.get("encoder", config).get("vocab_size") or config["vocab_size"]
    tokenizer["added_tokens"].append(
        {
            "id": rows,
            "content": content,
            "single_word": False,
            "lstrip": False,
            "rstrip": False,
            "normalized": False,
            "special": special,
        }
    )
    path.write_text(json.dumps(tokenizer), encoding="utf-8")
    reseal(folder)


def test_a_special_token_past_the_embedding_is_read_as_text(transformer_run, tmp_path):
    folder = copy_model(transformer_run / "model", tmp_path)
    _add_token(folder, "<soft>", special=True)
    predictor = infer.load(folder, runtime="torch")
    [spelled, plain] = predictor.predict(["army <soft> drill", "army drill"])
    assert spelled.tone in predictor.schema.tones and plain.tone in predictor.schema.tones


def test_a_spellable_token_past_the_embedding_is_refused(transformer_run, tmp_path):
    folder = copy_model(transformer_run / "model", tmp_path)
    _add_token(folder, "soft", special=False)
    with pytest.raises(TopictoneError, match=r"can give token id \d+, the encoder embeds"):
        infer.load(folder, runtime="torch")
