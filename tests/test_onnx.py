"""ONNX export and the ONNX Runtime path of the transformer, on the tiny random BERT."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import DEMO, ROOT
from test_artifact_safety import edit_manifest, reseal

pytest.importorskip("torch", reason="the export needs topictone[export]")
pytest.importorskip("onnxruntime", reason="the ONNX runtime needs topictone[onnx]")
pytest.importorskip("onnxscript", reason="the export needs topictone[export]")

from topictone import infer
from topictone.infer.artifact import MANIFEST, read_manifest
from topictone.infer.errors import TopictoneError
from topictone.infer.export import export


def demo_texts() -> list[str]:
    texts = [json.loads(line)["text"] for line in (DEMO / "test.jsonl").open(encoding="utf-8")]
    return [*texts, " ".join(texts[:40])]  # and one text of several windows


@pytest.fixture(scope="module")
def exported(transformer_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with both graphs."""
    folder = Path(shutil.copytree(transformer_run / "model", tmp_path_factory.mktemp("o") / "m"))
    assert export(folder)["max_logit_gap"] <= 1e-4
    export(folder, quantize="int8")
    return folder


def copy(folder: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(folder, tmp_path / "model"))


def test_graphs_join_the_manifest_and_its_checksums(exported):
    manifest = read_manifest(exported)
    assert manifest.settings["graphs"] == {"fp32": "model.onnx", "int8": "model.int8.onnx"}
    assert manifest.settings["int8_method"] == "blockwise"
    assert {"model.onnx", "model.int8.onnx", "model.safetensors"} <= set(manifest.files)
    assert "onnxruntime" in manifest.versions
    assert not [p.name for p in exported.parent.iterdir() if p.name.startswith(".")]


def test_fp32_graph_scores_match_torch_and_int8_stays_close(exported):
    texts = demo_texts()
    torch_scores = infer.load(exported, runtime="torch").predict_scores(texts)
    fp32 = infer.load(exported, runtime="onnx", graph="fp32")
    assert fp32.runner.precision == "fp32"
    for ours, theirs in zip(fp32.predict_scores(texts), torch_scores, strict=True):
        assert np.abs(ours - theirs).max() < 1e-4
    auto = infer.load(exported)  # auto: the fp32 graph; int8 only when asked for
    assert (auto.runner.runtime, auto.runner.precision) == ("onnx", "fp32")
    int8 = infer.load(exported, graph="int8")
    assert (int8.runner.runtime, int8.runner.precision) == ("onnx", "int8")
    int8_topics, _ = int8.predict_scores(texts)
    gap = np.abs(int8_topics - torch_scores[0]).max()
    assert 0 < gap < 0.1  # quantised: not the same numbers, but near them


def test_int8_methods_write_different_graphs(exported, tmp_path):
    import onnx

    folder = copy(exported, tmp_path)
    export(folder, quantize="int8", int8_method="dynamic")
    assert read_manifest(folder).settings["int8_method"] == "dynamic"
    ops = {
        graph: {n.op_type for n in onnx.load(str(where / "model.int8.onnx")).graph.node}
        for graph, where in (("blockwise", exported), ("dynamic", folder))
    }
    assert "MatMulNBits" in ops["blockwise"] and "MatMulInteger" not in ops["blockwise"]
    assert "MatMulInteger" in ops["dynamic"] and "MatMulNBits" not in ops["dynamic"]
    scores = infer.load(folder, graph="int8").predict_scores(demo_texts())
    reference = infer.load(exported, graph="fp32").predict_scores(demo_texts())
    assert 0 < np.abs(scores[0] - reference[0]).max() < 0.1
    for bad, message in (
        ({"int8_method": "static"}, "int8_method must be one of"),
        ({"block_size": 24}, "block_size must be a power of 2"),
    ):
        with pytest.raises(TopictoneError, match=message):
            export(folder, quantize="int8", **bad)


def test_predicts_without_torch(exported):
    """A folder with a graph needs neither torch nor the network's module."""
    code = (
        "import sys, json; sys.modules['torch'] = None\n"
        "import infer\n"
        f"p = infer.load({str(exported)!r}, graph='fp32')\n"
        "print(json.dumps(p.predict_scores(['Army tests a new missile'])[0].tolist()))\n"
        "assert 'topictone.infer.predictors.network' not in sys.modules\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300
    )
    assert done.returncode == 0, done.stderr
    expected = infer.load(exported, runtime="torch").predict_scores(["Army tests a new missile"])
    assert np.allclose(json.loads(done.stdout.splitlines()[-1]), expected[0], atol=1e-5)


def test_batch_cli_runs_on_the_graph(exported, tmp_path, cli):
    out = {}
    for runtime in ("torch", "onnx"):
        target = tmp_path / f"{runtime}.jsonl"
        done = cli(
            "infer",
            f"model={exported}",
            f"input={DEMO / 'test.jsonl'}",
            f"output={target}",
            f"options.runtime={runtime}",
            "options.graph=" + ("fp32" if runtime == "onnx" else "auto"),
            "progress=false",
        )
        assert done.returncode == 0, done.stderr
        out[runtime] = [json.loads(line)["prediction"] for line in target.open()]
    assert [p["topics"] for p in out["onnx"]] == [p["topics"] for p in out["torch"]]
    assert [p["tone"] for p in out["onnx"]] == [p["tone"] for p in out["torch"]]


@pytest.mark.parametrize(
    "options, message",
    [
        ({"runtime": "jax"}, "option runtime must be one of"),
        ({"graph": "int4"}, "option graph must be one of"),
        ({"runtime": "torch", "graph": "int8"}, "needs runtime=onnx or auto"),
        ({"runtime": "onnx", "device": "cuda"}, "runs on the CPU"),
    ],
)
def test_runtime_options_are_checked(exported, options, message):
    with pytest.raises(TopictoneError, match=message):
        infer.load(exported, **options)


def test_missing_graphs_are_one_line(transformer_run, exported, tmp_path):
    with pytest.raises(TopictoneError, match="has no ONNX graph; write one with"):
        infer.load(transformer_run / "model", runtime="onnx")
    folder = copy(exported, tmp_path)
    (folder / "model.int8.onnx").unlink()
    edit_manifest(folder, lambda m: m["settings"]["graphs"].pop("int8"))
    edit_manifest(folder, lambda m: m["files"].pop("model.int8.onnx"))
    edit_manifest(folder, lambda m: m["sizes"].pop("model.int8.onnx"))
    with pytest.raises(TopictoneError, match=r"has no int8 graph .* quantize=int8"):
        infer.load(folder, graph="int8")
    assert infer.load(folder).runner.precision == "fp32"


def test_a_graph_with_external_data_is_refused(exported, tmp_path):
    """External data may name any file on disk: refused even with matching checksums."""
    import onnx

    folder = copy(exported, tmp_path)
    graph = onnx.load(str(folder / "model.onnx"))
    onnx.save(graph, str(folder / "model.onnx"), save_as_external_data=True, location="w.bin")
    edit_manifest(folder, lambda m: m["files"].update({"w.bin": "0" * 64}))
    reseal(folder)
    with pytest.raises(TopictoneError, match="refers to external data files"):
        infer.load(folder, graph="fp32")


@pytest.mark.parametrize(
    "graphs, message",
    [
        ({"fp32": "../model.onnx"}, "leaves the model folder"),
        ({"fp16": "model.onnx"}, "settings.graphs must map"),
        ({"fp32": "model.safetensors"}, "unreadable ONNX graph|not a topictone graph"),
    ],
)
def test_graph_settings_that_lie_are_refused(exported, tmp_path, graphs, message):
    folder = copy(exported, tmp_path)
    edit_manifest(folder, lambda m: m["settings"].update(graphs=graphs))
    with pytest.raises(TopictoneError, match=message):
        infer.load(folder, runtime="onnx")


def test_a_changed_graph_fails_its_checksum(exported, tmp_path):
    folder = copy(exported, tmp_path)
    with (folder / "model.int8.onnx").open("ab") as handle:
        handle.write(b"\0")
    with pytest.raises(TopictoneError, match="checksum does not match"):
        infer.load(folder)


def test_a_failed_export_leaves_the_folder_as_it_was(transformer_run, tmp_path):
    folder = copy(transformer_run / "model", tmp_path)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    with pytest.raises(TopictoneError, match="nothing written"):
        export(folder, tolerance=-1.0)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_export_cli_errors_are_one_line(tfidf_run, cli):
    done = cli("infer.export", f"model={tfidf_run / 'model'}")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"error: {tfidf_run / 'model'}: a 'tfidf' model; only transformers export (and the "
        "transformers inside an ensemble or a cascade)"
    ]
    done = cli("infer.export", f"model={tfidf_run / 'model'}", "quantize=int4")
    assert done.returncode == 2 and "quantize must be one of" in done.stderr


def test_an_ensemble_trains_from_an_exported_member(exported, tmp_path):
    """The ensemble saves its members again: from torch weights, graphs dropped."""
    from topictone.train.fitters.ensemble import EnsembleFitter

    fitter = EnsembleFitter(members={"t": str(exported)}, weights={"t": 1.0})
    fitter.fit(None, read_manifest(exported).schema)
    saved = infer.save_model(fitter.predictor_, tmp_path / "ens")
    assert "graphs" not in read_manifest(saved / "members" / "t").settings
    assert MANIFEST in {p.name for p in (saved / "members" / "t").iterdir()}
