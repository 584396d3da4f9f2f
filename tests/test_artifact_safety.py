"""A model folder is untrusted data: it cannot run code, lie about its labels or read
outside itself. Each attack below is built on a real saved model with valid checksums."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import zipfile
from pathlib import Path

import pytest
import skops.io as sio
from conftest import FAST_TFIDF, train_run

from topictone import infer
from topictone.infer.artifact import MANIFEST, sha256
from topictone.infer.errors import TopictoneError
from topictone.infer.predictors.tfidf import TRUSTED_NODES, TRUSTED_TYPES, WEIGHTS, skops_contents


@pytest.fixture(scope="module")
def calibrated_tfidf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("calibrated-tfidf")
    train_run([*FAST_TFIDF, "decision.calibrate=true", "decision.thresholds=f1"], run_dir)
    return run_dir / "model"


def copy_model(source: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(source, tmp_path / "model"))


def edit_manifest(folder: Path, edit) -> None:
    path = folder / MANIFEST
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest))


def reseal(folder: Path) -> None:
    """Recompute the checksums (and declared sizes), as an attacker who controls the
    whole folder would."""

    def seal(manifest: dict) -> None:
        manifest["files"] = {name: sha256(folder / name) for name in manifest["files"]}
        if "sizes" in manifest:
            manifest["sizes"] = {name: (folder / name).stat().st_size for name in manifest["files"]}

    edit_manifest(folder, seal)


def payload_node(module: str, name: str, argument: str) -> dict:
    """A skops node that calls ``module.name(argument)`` while the file is loaded."""
    return {
        "__class__": name,
        "__module__": module,
        "__loader__": "ConstructorFromReduceNode",
        "content": {
            "__class__": "tuple",
            "__module__": "builtins",
            "__loader__": "TupleNode",
            "content": [
                {
                    "__class__": "str",
                    "__module__": "builtins",
                    "__loader__": "JsonNode",
                    "content": json.dumps(argument),
                    "is_json": True,
                    "__id__": 1,
                }
            ],
            "__id__": 2,
        },
        "__id__": 3,
    }


def plant(skops_file: Path, node: dict) -> None:
    """Replace the stored tone model by ``node`` inside the skops archive."""
    with zipfile.ZipFile(skops_file) as archive:
        members = {info.filename: archive.read(info) for info in archive.infolist()}
    tree = json.loads(members["schema.json"])
    tree["content"]["tone"] = node
    members["schema.json"] = json.dumps(tree).encode()
    with zipfile.ZipFile(skops_file, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


@pytest.mark.parametrize(
    ("module", "name", "code"),
    [
        ("builtins", "eval", "open({marker!r}, 'w').write('ran')"),
        ("builtins", "exec", "open({marker!r}, 'w').write('ran')"),
        ("os", "system", "touch {marker}"),
    ],
)
def test_a_skops_payload_is_refused_and_never_runs(tfidf_run, tmp_path, module, name, code):
    folder = copy_model(tfidf_run / "model", tmp_path)
    marker = tmp_path / "marker"
    plant(folder / WEIGHTS, payload_node(module, name, code.format(marker=str(marker))))
    reseal(folder)
    # The crafted file is a working exploit: skops runs it once its type is trusted.
    probe = tmp_path / "probe.skops"
    shutil.copy(folder / WEIGHTS, probe)
    with contextlib.suppress(Exception):  # what the payload returns is no model
        sio.load(probe, trusted=sorted(skops_contents(probe)[0]))
    assert marker.exists()
    marker.unlink()

    with pytest.raises(TopictoneError, match=f"{module}.{name}"):
        infer.load(folder)
    assert not marker.exists()


def test_trusted_types_are_exactly_what_fresh_models_hold(tfidf_run, calibrated_tfidf):
    types, nodes = set(), set()
    for folder in (tfidf_run / "model", calibrated_tfidf):
        found_types, found_nodes = skops_contents(folder / WEIGHTS)
        types |= found_types
        nodes |= found_nodes
    assert types == TRUSTED_TYPES
    assert nodes == TRUSTED_NODES
    assert infer.load(calibrated_tfidf).predict(["Army tests a new missile"])[0].tone


@pytest.mark.parametrize("field", ["tones", "topics"])
def test_reordered_labels_are_refused(tfidf_run, tmp_path, field):
    folder = copy_model(tfidf_run / "model", tmp_path)
    edit_manifest(folder, lambda m: m["schema"][field].reverse())
    with pytest.raises(TopictoneError, match="labels stored with the weights"):
        infer.load(folder)


def test_reordered_labels_are_refused_for_transformers(transformer_run, tmp_path):
    folder = copy_model(transformer_run / "model", tmp_path)
    edit_manifest(folder, lambda m: m["schema"]["tones"].reverse())
    with pytest.raises(TopictoneError, match="labels stored with the weights"):
        infer.load(folder)


def drop_one(manifest: dict) -> None:
    manifest["files"].pop("vocabulary.json")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m.update(files={}), "lists no files"),
        (drop_one, "not covered by the checksums"),
        (lambda m: m["files"].update({"../outside.json": "0" * 64}), "leaves the model folder"),
        (lambda m: m["files"].update({"/etc/hostname": "0" * 64}), "leaves the model folder"),
        (lambda m: m["files"].update({"model.skops": None}), "no SHA-256"),
        (lambda m: m["thresholds"].pop("defence"), "thresholds must name"),
        (lambda m: m["thresholds"].update(defence="high"), "must be a number"),
        (lambda m: m.update(schema="defence"), "malformed manifest"),
    ],
)
def test_manifests_that_lie_are_refused(tfidf_run, tmp_path, edit, message):
    folder = copy_model(tfidf_run / "model", tmp_path)
    edit_manifest(folder, edit)
    with pytest.raises(TopictoneError, match=message):
        infer.load(folder)


def edit_vocabulary(folder: Path, edit) -> None:
    path = folder / "vocabulary.json"
    terms = json.loads(path.read_text(encoding="utf-8"))
    edit(terms)
    path.write_text(json.dumps(terms, ensure_ascii=False), encoding="utf-8")


def first(terms: dict) -> list:
    return next(iter(terms.values()))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: first(t).pop(), "one distinct term per IDF entry"),
        (lambda t: first(t).__setitem__(1, first(t)[0]), "one distinct term per IDF entry"),
        (lambda t: first(t).__setitem__(0, 7), "one distinct term per IDF entry"),
        (lambda t: t.update(extra=[]), "not the vocabularies of this model"),
    ],
)
def test_vocabularies_out_of_step_with_the_weights_are_refused(tfidf_run, tmp_path, edit, message):
    """A resealed vocabulary.json that no longer matches the weight columns would score
    every text wrongly without a word: refused on load."""
    folder = copy_model(tfidf_run / "model", tmp_path)
    edit_vocabulary(folder, edit)
    reseal(folder)
    with pytest.raises(TopictoneError, match=message):
        infer.load(folder)


def test_crafted_weights_under_the_vocabulary_are_one_line(tfidf_run, tmp_path, monkeypatch):
    """A vectoriser without an IDF, or a tone model whose column count is not an integer,
    gets a one-line refusal rather than a traceback."""
    import topictone.infer.predictors.tfidf as tfidf

    folder = copy_model(tfidf_run / "model", tmp_path)
    real = tfidf.read_vocabularies

    def no_idf(path, vectorizers, columns):
        for vec in vectorizers.values():
            vec.__dict__.pop("_tfidf", None)
        return real(path, vectorizers, columns)

    monkeypatch.setattr(tfidf, "read_vocabularies", no_idf)
    with pytest.raises(TopictoneError, match="has no usable IDF"):
        infer.load(folder)
    monkeypatch.setattr(
        tfidf, "read_vocabularies", lambda path, vecs, columns: real(path, vecs, str(columns))
    )
    with pytest.raises(TopictoneError, match=r"not the .* columns of the weights"):
        infer.load(folder)


def test_an_oversized_vocabulary_is_refused_before_it_is_read(tfidf_run, tmp_path, monkeypatch):
    import topictone.infer.predictors.tfidf as tfidf

    folder = copy_model(tfidf_run / "model", tmp_path)
    monkeypatch.setattr(tfidf, "MAX_VOCABULARY_BYTES", 100)
    with pytest.raises(TopictoneError, match="larger than 100 bytes"):
        infer.load(folder)


def test_unlisted_files_and_links_are_refused(tfidf_run, tmp_path):
    folder = copy_model(tfidf_run / "model", tmp_path)
    (folder / "extra.json").write_text("{}")
    with pytest.raises(TopictoneError, match=r"extra\.json"):
        infer.load(folder)
    (folder / "extra.json").unlink()
    outside = tmp_path / "vocabulary.json"
    shutil.move(folder / "vocabulary.json", outside)
    os.symlink(outside, folder / "vocabulary.json")
    with pytest.raises(TopictoneError, match="is a link"):
        infer.load(folder)


def test_ensemble_members_must_be_subfolders(tfidf_run, tmp_path):
    from topictone.infer.artifact import save_model
    from topictone.infer.predictors.ensemble import EnsemblePredictor

    member = infer.load(tfidf_run / "model")
    folder = save_model(EnsemblePredictor(member.schema, {"a": member}), tmp_path / "ensemble")
    assert infer.load(folder).predict(["Army tests a new missile"])
    for name in ("../../model", "a/../../x"):
        edit_manifest(folder, lambda m, n=name: m["settings"].update(members={n: {"weight": 1}}))
        with pytest.raises(TopictoneError, match="not a plain name"):
            infer.load(folder)


@pytest.mark.parametrize("bad", [[None], ["ok", 3], ["ok", b"bytes"]])
def test_predict_names_the_bad_text(tfidf_run, bad):
    with pytest.raises(TopictoneError, match=rf"texts\[{len(bad) - 1}\]: must be a string"):
        infer.load(tfidf_run / "model").predict(bad)
