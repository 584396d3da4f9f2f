"""Resumable batch runs: killed (SIGKILL included) and run again, nothing lost or doubled."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import DEMO, ROOT

from topictone import infer
from topictone.infer.batch.local import predict_file
from topictone.infer.errors import TopictoneError
from topictone.infer.io.resume import resume_files

ROWS = 20_000


def write_input(path: Path, rows: int = ROWS) -> Path:
    texts = [json.loads(line)["text"] for line in (DEMO / "test.jsonl").open(encoding="utf-8")]
    with path.open("w", encoding="utf-8") as out:
        for i in range(rows):
            out.write(json.dumps({"id": i, "text": texts[i % len(texts)]}, ensure_ascii=False))
            out.write("\n")
    return path


def cli_args(model: Path, source: Path, output: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "topictone.infer",
        f"model={model}",
        f"input={source}",
        f"output={output}",
        "batch_size=50",
        "progress=false",
        *extra,
    ]


def kill_part_way(args: list[str], output: Path, env: dict, after_rows: int = 2_000) -> None:
    """Start the batch run ``args`` and SIGKILL it once its progress record reaches
    ``after_rows`` rows."""
    _, record = resume_files(output)
    process = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if record.is_file() and json.loads(record.read_text())["rows"] >= after_rows:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run ended before it could be killed"


@pytest.fixture(scope="module")
def killed(tfidf_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real run into out.jsonl killed with SIGKILL part-way, and the same run uninterrupted."""
    folder = tmp_path_factory.mktemp("killed")
    source = write_input(folder / "in.jsonl")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    model = tfidf_run / "model"
    subprocess.run(
        cli_args(model, source, folder / "whole.jsonl"), env=env, check=True, capture_output=True
    )
    kill_part_way(
        cli_args(model, source, folder / "out.jsonl", "resume=true"), folder / "out.jsonl", env
    )
    return folder


def copy(folder: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(folder, tmp_path / "run"))


def test_a_killed_run_resumes_to_the_same_bytes(killed, tfidf_run, tmp_path, cli):
    folder = copy(killed, tmp_path)
    part, record = resume_files(folder / "out.jsonl")
    done = json.loads(record.read_text())["rows"]
    assert not (folder / "out.jsonl").exists() and part.is_file()
    assert 2_000 <= done < ROWS
    args = cli_args(tfidf_run / "model", folder / "in.jsonl", folder / "out.jsonl", "resume=true")
    result = cli("infer", *args[3:])
    assert result.returncode == 0, result.stderr
    assert (folder / "out.jsonl").read_bytes() == (folder / "whole.jsonl").read_bytes()
    assert not part.exists() and not record.exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["+thresholds.defence=0.3"], "had another model or settings"),
        (["batch_size=60"], "had another model or settings"),
    ],
)
def test_a_continuation_with_other_settings_is_refused(
    killed, tfidf_run, tmp_path, cli, extra, message
):
    folder = copy(killed, tmp_path)
    args = cli_args(tfidf_run / "model", folder / "in.jsonl", folder / "out.jsonl", "resume=true")
    result = cli("infer", *args[3:], *extra)
    assert result.returncode == 2 and message in result.stderr
    assert result.stderr.count("\n") == 1 and not (folder / "out.jsonl").exists()
    assert all(p.exists() for p in resume_files(folder / "out.jsonl"))


@pytest.mark.parametrize(
    "edit", [{"rows": -5}, {"bytes": -1}, {"columns": [1, 2]}, {"rows": "many"}]
)
def test_a_crafted_progress_record_is_one_line(killed, tfidf_run, tmp_path, cli, edit):
    folder = copy(killed, tmp_path)
    _, record = resume_files(folder / "out.jsonl")
    record.write_text(json.dumps({**json.loads(record.read_text()), **edit}))
    args = cli_args(tfidf_run / "model", folder / "in.jsonl", folder / "out.jsonl", "resume=true")
    result = cli("infer", *args[3:])
    assert result.returncode == 2 and "unreadable progress record" in result.stderr
    assert result.stderr.count("\n") == 1


def test_a_changed_input_is_refused(killed, tfidf_run, tmp_path, cli):
    folder = copy(killed, tmp_path)
    with (folder / "in.jsonl").open("a", encoding="utf-8") as out:
        out.write('{"id": -1, "text": "one more"}\n')
    args = cli_args(tfidf_run / "model", folder / "in.jsonl", folder / "out.jsonl", "resume=true")
    result = cli("infer", *args[3:])
    assert result.returncode == 2 and "had another input size" in result.stderr


class Interrupting:
    """A predictor that is interrupted (as by Ctrl-C or SIGTERM) at its third batch."""

    def __init__(self, predictor, at: int = 3):
        self.inner, self.calls, self.at = predictor, 0, at

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def predict(self, texts, **kwargs):
        self.calls += 1
        if self.calls == self.at:
            raise KeyboardInterrupt
        return self.inner.predict(texts, **kwargs)


@pytest.mark.parametrize("suffix", ["csv", "jsonl"])
def test_an_interrupted_run_resumes_csv_and_jsonl(tfidf_run, tmp_path, suffix):
    predictor = infer.load(tfidf_run / "model")
    source = write_input(tmp_path / "in.jsonl", rows=500)
    whole, out = tmp_path / f"whole.{suffix}", tmp_path / f"out.{suffix}"
    kwargs = {"batch_size": 100, "progress": False, "identity": {"model": "m"}}
    predict_file(predictor, source, whole, **kwargs)
    with pytest.raises(KeyboardInterrupt):
        predict_file(Interrupting(predictor), source, out, resume=True, **kwargs)
    _, record = resume_files(out)
    assert json.loads(record.read_text())["rows"] == 200 and not out.exists()
    assert predict_file(predictor, source, out, resume=True, **kwargs) == 500
    assert out.read_bytes() == whole.read_bytes()
    assert not record.exists()


def test_planted_links_for_the_resume_files_are_refused(tfidf_run, tmp_path):
    predictor = infer.load(tfidf_run / "model")
    source = write_input(tmp_path / "in.jsonl", rows=10)
    elsewhere = tmp_path / "elsewhere.txt"
    elsewhere.write_text("keep me")
    part, _ = resume_files(tmp_path / "out.jsonl")
    part.symlink_to(elsewhere)
    with pytest.raises(TopictoneError, match="output exists and is a link"):
        predict_file(predictor, source, tmp_path / "out.jsonl", resume=True, progress=False)
    assert elsewhere.read_text() == "keep me" and not (tmp_path / "out.jsonl").exists()


def test_resume_needs_a_text_file_output(tfidf_run, tmp_path):
    predictor = infer.load(tfidf_run / "model")
    source = write_input(tmp_path / "in.jsonl", rows=10)
    with pytest.raises(TopictoneError, match="resume=true writes JSONL or CSV"):
        predict_file(predictor, source, tmp_path / "out.parquet", resume=True, progress=False)
    with pytest.raises(TopictoneError, match="resume=true needs an output file"):
        predict_file(predictor, source, "-", resume=True, progress=False)
    assert not list(tmp_path.glob(".out*"))


def test_an_in_place_edit_of_the_rows_read_is_refused(killed, tfidf_run, tmp_path, cli):
    """Same size, modification time put back: the input's first bytes are hashed."""
    folder = copy(killed, tmp_path)
    source = folder / "in.jsonl"
    info = source.stat()
    data = source.read_bytes()
    assert data.startswith(b'{"id": 0,')
    source.write_bytes(b'{"id": 9,' + data[len(b'{"id": 0,') :])
    os.utime(source, ns=(info.st_atime_ns, info.st_mtime_ns))
    args = cli_args(tfidf_run / "model", source, folder / "out.jsonl", "resume=true")
    result = cli("infer", *args[3:])
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"error: {source}: its first ")
    assert "the input was edited" in result.stderr and not (folder / "out.jsonl").exists()


def write_parquet(path: Path, ids: list[int]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    texts = [json.loads(line)["text"] for line in (DEMO / "test.jsonl").open(encoding="utf-8")]
    table = pa.table({"id": ids, "text": [texts[i % len(texts)] for i in range(len(ids))]})
    # Plain, uncompressed: another id of the same width leaves the size as it was.
    pq.write_table(table, path, compression="none", use_dictionary=False, write_statistics=False)
    return path


def test_a_parquet_input_resumes_and_an_edit_of_it_is_refused(tfidf_run, tmp_path):
    predictor = infer.load(tfidf_run / "model")
    source = write_parquet(tmp_path / "in.parquet", list(range(500)))
    whole, out = tmp_path / "whole.jsonl", tmp_path / "out.jsonl"
    kwargs = {"batch_size": 100, "progress": False, "identity": {"model": "m"}}
    predict_file(predictor, source, whole, **kwargs)
    for _ in range(2):  # interrupted, then resumed once as it was and once edited
        with pytest.raises(KeyboardInterrupt):
            predict_file(Interrupting(predictor), source, out, resume=True, **kwargs)
        info = source.stat()
        if _:
            write_parquet(source, [1, *range(1, 500)])
            assert source.stat().st_size == info.st_size
            os.utime(source, ns=(info.st_atime_ns, info.st_mtime_ns))
            with pytest.raises(TopictoneError, match=r"in\.parquet: its first \d+ bytes are not"):
                predict_file(predictor, source, out, resume=True, **kwargs)
        else:
            assert predict_file(predictor, source, out, resume=True, **kwargs) == 500
            assert out.read_bytes() == whole.read_bytes()


def test_blank_lines_count_in_the_bytes_read(tfidf_run, tmp_path):
    """Rows after blank lines: the recorded input bytes end where the last row read ends."""
    predictor = infer.load(tfidf_run / "model")
    source = tmp_path / "in.jsonl"
    source.write_text('\n{"text": "a"}\n\n\n{"text": "b"}\n{"text": "c"}\n', encoding="utf-8")
    kwargs = {"batch_size": 2, "progress": False, "identity": {"model": "m"}}
    with pytest.raises(KeyboardInterrupt):
        predict_file(
            Interrupting(predictor, 2), source, tmp_path / "out.jsonl", resume=True, **kwargs
        )
    _, record = resume_files(tmp_path / "out.jsonl")
    saved = json.loads(record.read_text())
    assert (saved["rows"], saved["input_bytes"]) == (2, len('\n{"text": "a"}\n\n\n{"text": "b"}\n'))
    predict_file(predictor, source, tmp_path / "whole.jsonl", **kwargs)
    assert predict_file(predictor, source, tmp_path / "out.jsonl", resume=True, **kwargs) == 3
    assert (tmp_path / "out.jsonl").read_bytes() == (tmp_path / "whole.jsonl").read_bytes()
