"""engine=ray (Ray Data): exactly the single-process CLI's rows and predictions, one-line
errors, no partial output; the core install never imports Ray; a sweep on a launcher.

One local Ray (2 actors) serves the whole module; the engine joins it instead of starting
its own, as it joins any Ray its process already runs.
"""

from __future__ import annotations

import csv
import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import DEMO, FAST_TFIDF, ROOT, run_cli

ENGINE = ["engine=ray", "engine.actors=2", "progress=false"]


@pytest.fixture(scope="module")
def ray_session():
    ray = pytest.importorskip("ray", reason="engine=ray needs Ray: pip install 'topictone[scale]'")
    pytest.importorskip("ray.data", reason="engine=ray needs Ray Data: topictone[scale]")
    # Three CPUs: one per actor, one for the read and write tasks.
    ray.init(
        address="local",
        num_cpus=3,
        include_dashboard=False,
        log_to_driver=False,
        logging_level=logging.WARNING,
    )
    yield ray
    ray.shutdown()


def demo_rows(name: str) -> list[dict]:
    return [json.loads(line) for line in (DEMO / name).open(encoding="utf-8")]


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    """Three JSONL shards (uneven, one with a blank line), a CSV and a Parquet file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = tmp_path_factory.mktemp("shards")
    test, dev = demo_rows("test.jsonl"), demo_rows("dev.jsonl")
    for name, rows in (("a.jsonl", test[:25]), ("b.jsonl", test[25:33]), ("c.jsonl", test[33:])):
        lines = [json.dumps(r, ensure_ascii=False) + "\n" for r in rows]
        lines.insert(3, "\n")
        (folder / name).write_text("".join(lines), encoding="utf-8")
    with (folder / "d.csv").open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["id", "text", "lang"])  # CSV: all strings
        writer.writeheader()
        writer.writerows({k: r[k] for k in ("id", "text", "lang")} for r in dev[:20])
    table = pa.table(  # Parquet: its own types (an integer column), kept in Parquet output
        {
            "id": [r["id"] for r in dev[20:35]],
            "text": [r["text"] for r in dev[20:35]],
            "rank": pa.array(range(15), pa.int16()),
        }
    )
    pq.write_table(table, folder / "e.parquet")
    return folder


def cli_lines(cli, model: Path, folder: Path, out: Path) -> list[str]:
    """The single-process CLI's JSONL output lines for each input file in turn."""
    lines = []
    for source in sorted(folder.iterdir()):
        target = out / f"{source.stem}.jsonl"
        result = cli(
            "infer", "progress=false", f"model={model}", f"input={source}", f"output={target}"
        )
        assert result.returncode == 0, result.stderr
        lines += target.read_text(encoding="utf-8").splitlines()
    return lines


def test_ray_output_is_exactly_the_cli_output(ray_session, tfidf_run, shards, tmp_path, cli):
    import pyarrow.parquet as pq

    model = tfidf_run / "model"
    out = tmp_path / "ray"
    out.mkdir()
    (out / "part-00099-00099-00000.jsonl").write_text("an earlier run's shard\n")  # replaced
    # Small blocks and batches: files in several blocks, each block in several predict calls.
    result = cli(
        "infer",
        *ENGINE,
        f"model={model}",
        f"input={shards}",
        f"output={out}",
        "engine.format=jsonl",
        "engine.block_rows=10",
        "engine.batch_size=7",
    )
    assert result.returncode == 0, result.stderr
    assert "wrote 95 predictions" in result.stderr
    # One shard per input block: part-<file>-<block>-<write task>.jsonl
    written = sorted(out.iterdir())
    blocks = [(0, 3), (1, 1), (2, 3), (3, 2), (4, 2)]  # 25, 8, 27, 20, 15 rows in 10s
    assert [p.name[:16] for p in written] == [
        f"part-{f:05d}-{b:05d}" for f, n in blocks for b in range(n)
    ]
    assert all(p.suffix == ".jsonl" for p in written)
    # In name order, the shards hold the CLI's output for the files in turn, byte for byte.
    lines = [line for p in written for line in p.read_text(encoding="utf-8").splitlines()]
    expected = cli_lines(cli, model, shards, tmp_path / "cli")
    assert lines == expected and len({json.loads(line)["id"] for line in lines}) == 95

    parquet = tmp_path / "ray-parquet"  # the default: Parquet shards
    result = cli("infer", *ENGINE, f"model={model}", f"input={shards}/*.*", f"output={parquet}")
    assert result.returncode == 0, result.stderr
    rows = [row for p in sorted(parquet.iterdir()) for row in pq.read_table(p).to_pylist()]
    by_id = {row["id"]: row for row in map(json.loads, expected)}
    assert len(rows) == 95 and all(row == by_id[row["id"]] for row in rows)
    # Parquet input to Parquet output keeps the column types, as in the CLI.
    ranked = [p for p in parquet.iterdir() if "rank" in pq.read_schema(p).names]
    assert [str(pq.read_schema(p).field("rank").type) for p in ranked] == ["int16"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "no temporary left"


def test_ray_errors_are_one_line_and_leave_nothing(ray_session, tfidf_run, shards, tmp_path, cli):
    model = tfidf_run / "model"
    bad = tmp_path / "in"
    bad.mkdir()
    (bad / "a.jsonl").write_text((shards / "a.jsonl").read_text(encoding="utf-8"))
    (bad / "notext.jsonl").write_text('{"text": "ok"}\n{"body": "x"}\n')
    out = tmp_path / "out"

    def one_error(*args: str) -> str:
        result = cli("infer", *ENGINE, f"model={model}", f"output={out}", *args)
        assert result.returncode == 2
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
        assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["in"]
        return errors[0]

    # The CLI's own message for the row, file as named, line and field.
    assert one_error(f"input={bad}") == f"error: {bad / 'notext.jsonl'}:2: field 'text': missing"
    single = cli(
        "infer",
        "progress=false",
        f"model={model}",
        f"input={bad / 'notext.jsonl'}",
        f"output={out}.jsonl",
    )
    assert single.stderr.strip() == f"error: {bad / 'notext.jsonl'}:2: field 'text': missing"
    # An actor's error (the model refuses the threshold) is its one line too.
    assert "threshold for unknown topic 'sport'" in one_error(
        f"input={bad / 'a.jsonl'}", "+thresholds.sport=0.5"
    )
    # Before Ray does anything: a missing input, a folder of other files as output.
    assert one_error(f"input={tmp_path / 'missing.jsonl'}").endswith("missing.jsonl: no such file")
    assert one_error(f"input={tmp_path}/*.csv").endswith("no files match the pattern")
    assert (
        "engine=ray writes a folder of shards, not standard output"
        in cli("infer", *ENGINE, f"model={model}", f"input={bad}", "output=-").stderr
    )
    result = cli("infer", *ENGINE, f"model={model}", f"input={bad / 'a.jsonl'}", f"output={bad}")
    assert result.returncode == 2 and "holds the input" in result.stderr
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    result = cli("infer", *ENGINE, f"model={model}", f"input={bad}", f"output={other}")
    assert result.returncode == 2 and "holds files engine=ray did not write" in result.stderr
    assert (other / "notes.txt").read_text() == "keep me"


@pytest.mark.slow  # 35 s; the rules themselves are the CLI's, tested there in seconds
def test_ray_reads_and_writes_as_the_cli_does(ray_session, tfidf_run, tmp_path, cli):
    """Duplicate keys and a lone surrogate text are the CLI's one line; a JSONL line is
    kept as written; a nested key appearing late in a shard is kept in Parquet; nothing
    is written into a model folder."""
    import pyarrow.parquet as pq

    model = tfidf_run / "model"
    folder = tmp_path / "in"
    folder.mkdir()
    out = tmp_path / "out"
    good = folder / "good.jsonl"
    rows = [
        {"text": f"army {i}", "m": {"a": i, **({"b": 1.5} if i > 40 else {})}} for i in range(50)
    ]
    good.write_text(
        '{"text": "missile", "x": 1E2, "m": {"a": -1}}\n'
        + "".join(json.dumps(r) + "\n" for r in rows),
        encoding="utf-8",
    )

    def ray(*args: str) -> subprocess.CompletedProcess:
        return cli("infer", *ENGINE, f"model={model}", *args)

    result = ray(f"input={good}", f"output={out}", "engine.format=jsonl")
    assert result.returncode == 0, result.stderr
    (shard,) = out.iterdir()
    first = shard.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith('{"text": "missile", "x": 1E2, "m": {"a": -1},"prediction":{')
    result = ray(f"input={good}", f"output={tmp_path / 'pq'}")
    assert result.returncode == 0, result.stderr
    (shard,) = (tmp_path / "pq").iterdir()
    back = [r["m"] for r in pq.read_table(shard).to_pylist()]
    assert [back[0], *back[-10:-8]] == [
        {"a": -1, "b": None},
        {"a": 40, "b": None},
        {"a": 41, "b": 1.5},
    ]

    cases = [
        ('{"text": "a", "m": {"k": 1, "k": 2}}', "1: invalid JSON (duplicate key 'k'"),
        ('{"text": "ok"}\n{"text": "abc \\ud800"}', "2: field 'text': not valid Unicode"),
    ]
    for content, message in cases:
        bad = folder / "bad.jsonl"
        bad.write_text(content + "\n", encoding="utf-8")
        result = ray(f"input={bad}", f"output={tmp_path / 'failed'}")
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert f"error: {bad}:{message}" in result.stderr
        assert not (tmp_path / "failed").exists()
    result = ray(f"input={good}", f"output={model / 'shards'}")
    assert result.returncode == 2 and "output is inside the model folder" in result.stderr
    assert not (model / "shards").exists()
    result = ray(f"input={good}", f"output={tmp_path / 'pinned'}", f"model_sha256={'0' * 64}")
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert not (tmp_path / "pinned").exists()


def test_without_ray_the_engine_is_one_line_and_the_core_never_imports_it(
    tmp_path, cli, monkeypatch
):

    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
    monkeypatch.setitem(sys.modules, "ray.data", None)
    monkeypatch.delitem(sys.modules, "topictone.infer.batch.ray_engine", raising=False)
    import topictone.infer.batch as batch  # else `from ... import ray_engine` finds it imported

    monkeypatch.delattr(batch, "ray_engine", raising=False)
    result = cli(
        "infer", "engine=ray", f"model={tmp_path}", f"input={tmp_path}", f"output={tmp_path}/o"
    )
    assert result.returncode == 2
    assert result.stderr.strip() == "error: engine=ray needs Ray: pip install 'topictone[scale]'"
    code = (
        "import sys, topictone.infer, topictone.infer.__main__, topictone.infer.batch.local, "
        "topictone.infer.io.readers, topictone.infer.io.writers, topictone.infer.io.outputs, "
        "topictone.infer.cli; "
        "assert not [m for m in sys.modules if m == 'ray' or m.startswith('ray.')]"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.slow  # 19 s: a whole sweep through the joblib launcher (the scale extra)
def test_a_sweep_fans_out_through_the_joblib_launcher(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher", reason="needs topictone[scale]")
    sweep = tmp_path / "sweep"
    result = run_cli(
        "topictone.train",
        "-m",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "model.topic_C=1,2",
        "data=demo",
        *FAST_TFIDF,
        "model.char_ngram_range=[2,3]",
        "data.test=null",
        "report=false",
        f"hydra.sweep.dir={sweep}",
    )
    assert result.returncode == 0, result.stderr
    for run in ("0", "1"):
        assert (sweep / run / "model" / "topictone.json").is_file()
    summary = json.loads((sweep / "summary.json").read_text())  # the callback still runs
    swept = [[o for o in row["overrides"] if o.startswith("model.topic_C=")] for row in summary]
    assert swept == [["model.topic_C=1"], ["model.topic_C=2"]]
