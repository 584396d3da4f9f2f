"""Hostile model folders by the hundred: a real tiny TF-IDF or transformer folder, mutated
(manifest values replaced by random JSON, files truncated, extended, overwritten or
added), then resealed so the mutation reaches the loaders.

Whatever the folder, ``infer.load`` either succeeds, and then predicts valid labels, or
raises a one-line ``TopictoneError``: never another exception, never a hang, never
unbounded memory. Each folder loads in a worker process with an address-space limit and
a deadline, so a hang or a crash fails the example instead of the suite.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import math
import os
import re
import resource
import select
import shutil
import subprocess
import sys
import tempfile
import traceback
import zipfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from topictone.infer.artifact import MANIFEST, sha256

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
LOAD_SECONDS = 60  # per folder; a good one loads in well under a second
MEMORY_HEADROOM = 3 << 30  # address space a load may add to the worker's
SAMPLE = ["Army tests a new missile near the border", "सेना ने नई मिसाइल का परीक्षण किया"]


# ---- the worker: loads one folder a line, answers one JSON line ------------------------


def worker() -> None:
    """Read folder paths from stdin; answer each with what loading and predicting did."""
    # Imported before the memory limit: their cost is not the folder's.
    modules = ["topictone.infer", "topictone.infer.predictors.tfidf"]
    if os.environ.get("FUZZ_TORCH"):
        modules += ["topictone.infer.predictors.transformer", "topictone.infer.predictors.network"]
    for module in modules:
        importlib.import_module(module)
    limit = address_space() + MEMORY_HEADROOM
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    # Answers go to the original stdout; anything a library prints goes to stderr, so
    # it can never be taken for the answer (and the folder deleted while still read).
    answers = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    for line in sys.stdin:
        number, folder = line.rstrip("\n").split(" ", 1)
        answers.write(json.dumps({"number": int(number), **outcome(Path(folder))}) + "\n")
        answers.flush()


def address_space() -> int:
    """This process's virtual size now (bytes)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    return 0


def outcome(folder: Path) -> dict[str, Any]:
    from topictone import infer

    try:
        predictor = infer.load(folder)
        predictions = predictor.predict(SAMPLE)
        problem = invalid(predictor, predictions)
        return {"result": "bad", "detail": problem} if problem else {"result": "ok"}
    except infer.TopictoneError as err:
        return {"result": "refused", "detail": str(err)}
    except BaseException as err:  # what the fuzzer looks for: any other exception
        text = "".join(traceback.format_exception(type(err), err, err.__traceback__))
        return {"result": "crash", "detail": f"{type(err).__name__}: {text[-3000:]}"}


def invalid(predictor: Any, predictions: list) -> str | None:
    """Why the predictions are not labels of the model's schema, or None."""
    topics, tones = predictor.schema.topics, predictor.schema.tones
    if len(predictions) != len(SAMPLE):
        return f"{len(predictions)} predictions for {len(SAMPLE)} texts"
    for p in predictions:
        scores = [*p.topic_scores.values(), *p.tone_scores.values()]
        if not set(p.topics) <= set(topics) or p.tone not in tones:
            return f"labels outside the schema: {p}"
        if not all(isinstance(s, float) and math.isfinite(s) and 0 <= s <= 1 for s in scores):
            return f"scores not in [0, 1]: {p}"
        if abs(sum(p.tone_scores.values()) - 1) > 1e-6:
            return f"tone scores do not sum to 1: {p}"
    return None


class Worker:
    """One worker process; restarted after a hang or a death."""

    def __init__(self, torch: bool) -> None:
        self.torch = torch
        self.process: subprocess.Popen | None = None
        self.requests = 0

    def start(self) -> subprocess.Popen:
        env = {
            **os.environ,
            "PYTHONPATH": str(TESTS),
            "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "FUZZ_TORCH": "1" if self.torch else "",
        }
        return subprocess.Popen(
            [sys.executable, "-c", "import test_fuzz_folders as t; t.worker()"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,  # a Rust panic prints there; its exception is ours
            text=True,
        )

    def load(self, folder: Path) -> dict[str, Any]:
        if self.process is None or self.process.poll() is not None:
            self.process = self.start()
        assert self.process.stdin and self.process.stdout
        self.requests += 1
        self.process.stdin.write(f"{self.requests} {folder}\n")
        self.process.stdin.flush()
        ready, _, _ = select.select([self.process.stdout], [], [], LOAD_SECONDS + 30)
        line = self.process.stdout.readline() if ready else ""
        if not line:
            self.stop()
            return {"result": "hang or death", "detail": f"no answer within {LOAD_SECONDS} s"}
        answer = json.loads(line)
        assert answer.pop("number") == self.requests, "the worker answered another request"
        return answer

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


@pytest.fixture(scope="module")
def tfidf_worker():
    worker = Worker(torch=False)
    yield worker
    worker.stop()


@pytest.fixture(scope="module")
def torch_worker():
    worker = Worker(torch=True)
    yield worker
    worker.stop()


# ---- mutations ---------------------------------------------------------------------


def deep(depth: int) -> str:
    """A stand-in for ``depth`` nested lists, written out by :func:`dumps`: nesting
    deeper than Python's recursion limit cannot be built as a value here."""
    return f"<deep {depth}>"


def dumps(value: Any) -> str:
    text = json.dumps(value)
    return re.sub(r'"<deep (\d+)>"', lambda m: "[" * int(m[1]) + "1" + "]" * int(m[1]), text)


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from([0, -1, 10**30, 2**63, 1e308, -1e308, 5e-324])
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | st.sampled_from(["", "x" * 10_000, "../../etc/passwd", "a\nb", "model.skops"])
    | st.sampled_from([deep(70), deep(3000)]),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=8,
)


def folder_files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def json_paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path into ``value`` (objects and lists), the empty path included."""
    paths = [prefix]
    if isinstance(value, dict):
        for key, child in list(value.items())[:50]:
            paths += json_paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in list(enumerate(value))[:5]:
            paths += json_paths(child, (*prefix, index))
    return paths


def replace_at(value: Any, path: tuple, new: Any) -> Any:
    if not path:
        return new
    value[path[0]] = replace_at(value[path[0]], path[1:], new)
    return value


def mutate_json(data: st.DataObject, value: Any) -> Any:
    """``value`` with one node replaced by random JSON, or a key added or removed."""
    path = data.draw(st.sampled_from(json_paths(value)), label="path")
    action = data.draw(st.sampled_from(["replace", "add", "drop"]), label="action")
    parent = value
    for key in path[:-1]:
        parent = parent[key]
    if action == "drop" and path and isinstance(parent, dict):
        del parent[path[-1]]
        return value
    if action == "add":
        target = parent if not path else parent[path[-1]]
        if isinstance(target, dict):
            target[data.draw(st.text(max_size=12), label="key")] = data.draw(JSON, label="new")
            return value
    return replace_at(value, path, data.draw(JSON, label="value"))


def mutate_file(data: st.DataObject, path: Path) -> None:
    raw = path.read_bytes()
    choices = ["truncate", "extend", "overwrite", "replace"]
    if path.suffix == ".json" and path.stat().st_size < 20 << 20:
        choices.append("json")
    if path.suffix == ".skops":
        choices += ["skops"] * 3  # the object tree inside the archive
    if path.suffix == ".safetensors":
        choices += ["header"] * 2  # the JSON header before the tensors
    action = data.draw(st.sampled_from(choices), label=f"{path.name}")
    if action == "truncate":
        raw = raw[: data.draw(st.integers(0, max(len(raw) - 1, 0)), label="keep")]
    elif action == "extend":
        raw += data.draw(st.binary(min_size=1, max_size=64), label="tail")
    elif action == "overwrite" and raw:
        at = data.draw(st.integers(0, len(raw) - 1), label="at")
        patch = data.draw(st.binary(min_size=1, max_size=16), label="bytes")
        raw = raw[:at] + patch + raw[at + len(patch) :]
    elif action == "replace":
        raw = data.draw(st.binary(max_size=256), label="content")
    elif action == "json":
        try:
            value = json.loads(raw)
        except (ValueError, RecursionError):  # an earlier mutation may have nested it deep
            return
        raw = dumps(mutate_json(data, value)).encode()
    elif action in ("skops", "header"):
        try:  # an earlier mutation may have left no archive or header to edit
            raw = (mutate_skops if action == "skops" else mutate_header)(data, raw)
        except (zipfile.BadZipFile, KeyError, ValueError, RecursionError):
            return
    path.write_bytes(raw)


def mutate_header(data: st.DataObject, raw: bytes) -> bytes:
    """A safetensors file whose JSON header has one node replaced."""
    length = int.from_bytes(raw[:8], "little")
    encoded = dumps(mutate_json(data, json.loads(raw[8 : 8 + length]))).encode()
    return len(encoded).to_bytes(8, "little") + encoded + raw[8 + length :]


def mutate_skops(data: st.DataObject, raw: bytes) -> bytes:
    """A skops archive whose object tree (schema.json) has one node replaced."""
    with zipfile.ZipFile(io.BytesIO(raw)) as archive:
        members = {info.filename: archive.read(info) for info in archive.infolist()}
    members["schema.json"] = dumps(mutate_json(data, json.loads(members["schema.json"]))).encode()
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return out.getvalue()


def reseal(folder: Path) -> None:
    """Recompute checksums and sizes of the files the manifest still lists."""
    path = folder / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError):
        return
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        return
    names = [n for n in manifest["files"] if is_file(folder, n)]
    manifest["files"] = {n: sha256(folder / n) for n in names}
    if isinstance(manifest.get("sizes"), dict):
        manifest["sizes"] = {n: (folder / n).stat().st_size for n in names}
    path.write_text(json.dumps(manifest), encoding="utf-8")


def is_file(folder: Path, name: str) -> bool:
    with contextlib.suppress(ValueError, OSError):
        return (folder / name).is_file()
    return False


def hostile_folder(data: st.DataObject, source: Path, into: Path) -> Path:
    """A copy of ``source`` with a few mutations, resealed (mostly) afterwards."""
    folder = Path(shutil.copytree(source, into / "model"))
    files = [n for n in folder_files(folder) if n != MANIFEST]
    for _ in range(data.draw(st.integers(0, 2), label="file mutations")):
        mutate_file(data, folder / data.draw(st.sampled_from(files), label="file"))
    manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    if data.draw(st.booleans(), label="add a file"):
        name = data.draw(st.sampled_from(["extra.bin", "sub/x.json", "special_tokens_map.json"]))
        (folder / name).parent.mkdir(exist_ok=True)
        (folder / name).write_bytes(data.draw(st.binary(max_size=64), label="added"))
        manifest["files"][name] = "0" * 64  # listed: the reseal gives it its checksum
    for _ in range(data.draw(st.integers(0, 2), label="manifest mutations")):
        manifest = mutate_json(data, manifest)
    (folder / MANIFEST).write_text(dumps(manifest), encoding="utf-8")
    # Mostly resealed, so the mutation reaches the loaders.
    if data.draw(st.sampled_from(["reseal"] * 9 + ["leave"]), label="checksums") == "reseal":
        reseal(folder)
    return folder


def check(worker: Worker, data: st.DataObject, source: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = hostile_folder(data, source, Path(tmp))
        result = worker.load(folder)
    assert result["result"] in ("ok", "refused"), result
    if result["result"] == "refused":
        assert "\n" not in result["detail"], result["detail"]


FUZZ = settings(
    deadline=None,
    derandomize=True,  # the default run is the same run everywhere
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)


@settings(FUZZ, max_examples=25)
@given(data=st.data())
def test_hostile_tfidf_folders_load_or_refuse_in_one_line(tfidf_run, tfidf_worker, data):
    check(tfidf_worker, data, tfidf_run / "model")


@settings(FUZZ, max_examples=10)
@given(data=st.data())
def test_hostile_transformer_folders_load_or_refuse_in_one_line(
    transformer_run, torch_worker, data
):
    check(torch_worker, data, transformer_run / "model")


@pytest.mark.slow
@settings(FUZZ, derandomize=False, max_examples=400)
@given(data=st.data())
def test_many_hostile_tfidf_folders(tfidf_run, tfidf_worker, data):
    check(tfidf_worker, data, tfidf_run / "model")


@pytest.mark.slow
@settings(FUZZ, derandomize=False, max_examples=200)
@given(data=st.data())
def test_many_hostile_transformer_folders(transformer_run, torch_worker, data):
    check(torch_worker, data, transformer_run / "model")
