"""`python -m topictone.train.label push` / `pull`: the loop against a running Label Studio.

The fast tests run the real commands and the real ``label-studio-sdk`` against a small fake
Label Studio (the few endpoints push and pull use, in memory, on 127.0.0.1). The slow test
starts a real Label Studio (``label-studio`` in its own virtualenv under
``~/.cache/topictone/label-studio-venv``, made once) and runs select → push → annotate →
pull → push again.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from conftest import run_cli

from topictone.infer.schema import LabelSchema
from topictone.train.data.labelled import read_labelled
from topictone.train.label import studio

pytest.importorskip("label_studio_sdk", reason="push and pull need topictone[label]")

SCHEMA = LabelSchema(
    ("defence", "counterterrorism", "technology"), ("positive", "neutral", "negative")
)
DATA_CFG = {"fields": {"id": "id", "text": "text", "topics": "topics", "tone": "tone"}, "keep": []}
TOKEN = "tok-0123456789abcdef-secret"
TEXTS = [
    ("n1", "Army test-fires a new anti-tank missile in Rajasthan", ["defence"], "neutral"),
    ("n2", "Startup launches an AI chip for phones", ["technology"], "positive"),
    ("n3", "Police foil terror plot, three held with explosives", ["counterterrorism"], "negative"),
    ("n4", "Monsoon arrives early in Kerala", [], "neutral"),
]


# --- a fake Label Studio ---------------------------------------------------------------


class FakeStudio:
    """The endpoints push and pull call, answering as Label Studio 1.23 does."""

    def __init__(self) -> None:
        self.projects: dict[int, dict] = {}
        self.tasks: dict[int, list[dict]] = {}
        self.requests: list[tuple[str, str, dict]] = []  # method, path, headers
        self.delay = 0.0  # seconds before each answer (timeouts)
        self.html = False  # answer every request with a web page (not the API)
        self.broken_export: bytes | None = None  # the export's body, if not the tasks
        self.next_id = 1

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id

    def annotate(self, project: int, row_id: str, topics: list[str], tone: str) -> None:
        """What an annotator's Submit leaves on the task."""
        task = next(t for t in self.tasks[project] if t["data"]["topictone_id"] == row_id)
        result = studio.choices_result(topics, tone)
        task["annotations"].append({"id": self.new_id(), "result": result, "was_cancelled": False})

    def export(self, project: int, all_tasks: bool) -> list[dict]:
        return [t for t in self.tasks[project] if all_tasks or t["annotations"]]

    def answer(self, method: str, path: str, query: dict, body: Any, auth: str) -> tuple:
        """(status, JSON value or bytes) for one request."""
        if path == "/api/token/refresh/":
            return 401, {"detail": "Token is invalid", "code": "token_not_valid"}
        if auth != f"Token {TOKEN}":
            return 401, {"detail": "Invalid token."}
        if path == "/api/projects/" and method == "GET":
            if int(query.get("page", ["1"])[0]) > 1:
                return 404, {"detail": "Invalid page."}
            title = query.get("title", [""])[0].lower()
            found = [p for p in self.projects.values() if title in p["title"].lower()]
            return 200, {"count": len(found), "next": None, "previous": None, "results": found}
        if path == "/api/projects/" and method == "POST":
            ident = self.new_id()
            self.projects[ident] = {"id": ident, "model_version": "", **body}
            self.tasks[ident] = []
            return 201, self.projects[ident]
        if match := re.fullmatch(r"/api/projects/(\d+)/?(import|export)?", path):
            ident, action = int(match[1]), match[2]
            if ident not in self.projects:
                return 404, {"detail": "No Project matches the given query."}
            if action == "import":
                for task in body:
                    stored = {"id": self.new_id(), "annotations": [], **task}
                    self.tasks[ident].append(stored)
                    if task.get("predictions") and not self.projects[ident]["model_version"]:
                        self.projects[ident]["model_version"] = task["predictions"][0][
                            "model_version"
                        ]
                return 201, {"task_count": len(body), "annotation_count": 0}
            if action == "export":
                if self.broken_export is not None:
                    return 200, self.broken_export
                all_tasks = query.get("download_all_tasks", ["false"])[0] == "true"
                return 200, json.dumps(self.export(ident, all_tasks)).encode()
            if method == "PATCH":
                self.projects[ident].update(body)
            return 200, self.projects[ident]
        if path == "/api/tasks/":
            project, page = int(query["project"][0]), int(query.get("page", ["1"])[0])
            if page > 1:
                return 404, {"detail": "Invalid page."}
            tasks = [{"id": t["id"], "data": t["data"]} for t in self.tasks[project]]
            return 200, {"tasks": tasks, "total": len(tasks)}
        return 404, {"detail": "Not found."}


@pytest.fixture
def fake() -> Iterator[tuple[FakeStudio, str]]:
    state = FakeStudio()

    class Handler(BaseHTTPRequestHandler):
        def handle_one(self, method: str) -> None:
            url = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            state.requests.append((method, url.path, dict(self.headers)))
            time.sleep(state.delay)
            if state.html:
                self.reply(200, b"<!DOCTYPE html><html><body>Welcome</body></html>", "text/html")
                return
            body = json.loads(raw) if raw else None
            auth = self.headers.get("Authorization", "")
            status, value = state.answer(method, url.path, parse_qs(url.query), body, auth)
            data = value if isinstance(value, bytes) else json.dumps(value).encode()
            self.reply(status, data, "application/json")

        def reply(self, status: int, data: bytes, kind: str) -> None:
            try:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
                pass

        def do_GET(self) -> None:
            self.handle_one("GET")

        def do_POST(self) -> None:
            self.handle_one("POST")

        def do_PATCH(self) -> None:
            self.handle_one("PATCH")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(autouse=True)
def token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", TOKEN)
    monkeypatch.delenv("LABEL_STUDIO_URL", raising=False)


def write_tasks(path: Path, rows: list[tuple] = TEXTS, config: bool = True) -> Path:
    """A tasks file as select writes it (the model's guess: the right labels, or neutral)."""
    tasks = [
        studio.task(
            text, ident, "pool.jsonl", {"lang": "en"},
            [studio.prediction("tfidf-0123456789ab", rank / 10, topics, tone)],
        )
        for rank, (ident, text, topics, tone) in enumerate(rows)
    ]  # fmt: skip
    contents = {path: studio.tasks_json(tasks)}
    if config:
        contents[studio.config_path(path)] = studio.labelling_config(SCHEMA)
    studio.write_texts(contents)
    return path


def label(cli, command: str, url: str, *args: str):
    return cli("train.label", command, f"url={url}", "retries=0", *args)


def one_line_error(result, message: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and message in lines[-1], result.stderr
    assert "Traceback" not in result.stderr
    assert TOKEN not in result.stderr + result.stdout


# --- push ------------------------------------------------------------------------------


def test_push_creates_the_project_and_imports_each_task_once(fake, tmp_path, cli):
    state, url = fake
    tasks = write_tasks(tmp_path / "tasks.json", TEXTS[:3])
    first = label(cli, "push", url, "project=News batch 1", f"tasks={tasks}")
    assert first.returncode == 0, first.stderr
    assert "created project 'News batch 1'" in first.stderr
    assert "3 tasks imported into project 'News batch 1'" in first.stderr
    (project,) = state.projects.values()
    assert project["title"] == "News batch 1"
    assert project["label_config"] == studio.labelling_config(SCHEMA)
    assert project["model_version"] == "tfidf-0123456789ab"
    imported = state.tasks[project["id"]]
    assert [t["data"]["topictone_id"] for t in imported] == ["n1", "n2", "n3"]  # select's order
    assert imported[0]["predictions"] == json.loads(tasks.read_text())[0]["predictions"]

    imports = sum(p.endswith("/import") for _, p, _ in state.requests)
    again = label(cli, "push", url, "project=News batch 1", f"tasks={tasks}")
    assert again.returncode == 0, again.stderr
    assert "0 tasks imported" in again.stderr and "3 there already" in again.stderr
    assert sum(p.endswith("/import") for _, p, _ in state.requests) == imports

    more = write_tasks(tmp_path / "more.json", TEXTS)  # by id now; one task is new
    grown = label(cli, "push", url, f"project={project['id']}", f"tasks={more}")
    assert grown.returncode == 0, grown.stderr
    assert "1 tasks imported" in grown.stderr and "3 there already" in grown.stderr
    assert [t["data"]["topictone_id"] for t in state.tasks[project["id"]]] == [
        "n1", "n2", "n3", "n4"
    ]  # fmt: skip
    sent = {h.get("Authorization") for _, _, h in state.requests}
    assert sent == {f"Token {TOKEN}"}  # the token travels only in the header
    for result in (first, again, grown):
        assert TOKEN not in result.stderr + result.stdout


def test_push_in_batches_and_a_missing_config_comes_from_labels(fake, tmp_path, cli):
    state, url = fake
    tasks = write_tasks(tmp_path / "review.json", config=False)  # audit writes no config
    result = label(cli, "push", url, "project=review", f"tasks={tasks}", "batch_size=3")
    assert result.returncode == 0, result.stderr
    assert "with the labelling config of labels=default" in result.stderr
    assert sum(p.endswith("/import") for _, p, _ in state.requests) == 2
    (project,) = state.projects.values()
    assert len(state.tasks[project["id"]]) == 4


def test_push_refuses_another_labelling_config_unless_told(fake, tmp_path, cli):
    state, url = fake
    tasks = write_tasks(tmp_path / "tasks.json")
    assert label(cli, "push", url, "project=p", f"tasks={tasks}").returncode == 0
    (project,) = state.projects.values()
    project["label_config"] = project["label_config"].replace("technology", "sports")
    refused = label(cli, "push", url, "project=p", f"tasks={tasks}")
    one_line_error(refused, "has another labelling config than")
    assert "update_config=true" in refused.stderr
    replaced = label(cli, "push", url, "project=p", f"tasks={tasks}", "update_config=true")
    assert replaced.returncode == 0, replaced.stderr
    assert project["label_config"] == studio.labelling_config(SCHEMA)
    # Only whitespace apart is the same config.
    project["label_config"] = "\n\n" + project["label_config"].replace("\n", "\n   ")
    assert label(cli, "push", url, "project=p", f"tasks={tasks}").returncode == 0


@pytest.mark.parametrize(
    "tasks,args,message",
    [
        (None, [], "tasks.json: no such file"),
        ("[", [], "tasks.json:1: not valid JSON"),
        ('{"data": {}}', [], "tasks.json: not a list of Label Studio tasks"),
        ("[]", [], "tasks.json: no task to push"),
        ('[{"text": "a"}]', [], "tasks.json: task #1: not a Label Studio task"),
        ('[{"data": {"text": "a"}}]', [], "task #1: data.topictone_id is missing"),
        ('[{"data": {"text": " ", "topictone_id": "a"}}]', [], "task #1: data.text: empty text"),
        (
            '[{"data": {"text": "a", "topictone_id": "x"}},'
            ' {"data": {"text": "b", "topictone_id": "x"}}]',
            [], "task #2: topictone_id 'x' repeats task #1",
        ),
        ('[{"data": {"text": "a", "topictone_id": 1}}]', ["config=none.xml"], "none.xml: no such"),
        ('[{"data": {"text": "a", "topictone_id": 1}}]', ["url=ftp://host"], "not an http(s) URL"),
        ('[{"data": {"text": "a", "topictone_id": 1}}]', ["batch_size=0"], "batch_size must be"),
        ('[{"data": {"text": "a", "topictone_id": 1}}]', ["timeout=0"], "timeout must be"),
    ],
)  # fmt: skip
def test_push_input_errors_are_one_line_before_any_request(
    fake, tmp_path, cli, tasks, args, message
):
    state, url = fake
    path = tmp_path / "tasks.json"
    if tasks is not None:
        path.write_text(tasks, "utf-8")
    result = label(cli, "push", url, "project=p", f"tasks={path}", *args)
    one_line_error(result, message)
    assert state.requests == [] and state.projects == {}


def test_push_to_an_unknown_project_id_or_an_ambiguous_title(fake, tmp_path, cli):
    state, url = fake
    tasks = write_tasks(tmp_path / "tasks.json")
    one_line_error(
        label(cli, "push", url, "project=42", f"tasks={tasks}"), f"{url}: no project with id 42"
    )
    for ident in (7, 8):
        state.projects[ident] = {
            "id": ident,
            "title": "twin",
            "label_config": "",
            "model_version": "",
        }
        state.tasks[ident] = []
    one_line_error(
        label(cli, "push", url, "project=twin", f"tasks={tasks}"),
        f"{url}: 2 projects are titled 'twin' (ids 7, 8); name one by its id, e.g. project=7",
    )


# --- the server's failures: one line, the URL, never the token ----------------------------


@pytest.mark.parametrize("command", ["push", "pull"])
def test_a_wrong_token_is_one_line_without_the_token(fake, tmp_path, cli, monkeypatch, command):
    url = fake[1]
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "wrong-" + TOKEN[::-1])
    if command == "push":  # push writes nothing here; pull writes output
        args = [f"tasks={write_tasks(tmp_path / 'tasks.json')}"]
    else:
        args = [f"output={tmp_path / 'out.jsonl'}"]
    result = label(cli, command, url, "project=p", *args)
    one_line_error(result, f"{url}: the token was refused (401: Invalid token.)")
    assert "LABEL_STUDIO_API_KEY" in result.stderr and TOKEN[::-1] not in result.stderr
    assert not (tmp_path / "out.jsonl").exists()


def test_a_refused_personal_access_token_is_one_line_without_it(fake, tmp_path, cli, monkeypatch):
    """A personal access token is a JWT refresh token: the SDK first trades it for an
    access token, and that refusal too is one line."""
    import jwt

    refresh = jwt.encode({"token_type": "refresh", "exp": time.time() + 3600}, "k" * 32)
    monkeypatch.setenv("MY_LS_TOKEN", refresh)
    result = label(
        cli, "pull", fake[1], "project=p", "token_env=MY_LS_TOKEN", f"output={tmp_path / 'o.jsonl'}"
    )
    one_line_error(result, "the token was refused (401: Token is invalid); set MY_LS_TOKEN")
    assert refresh not in result.stderr and refresh.split(".")[1] not in result.stderr


def test_no_token_is_one_line(fake, tmp_path, cli, monkeypatch):
    monkeypatch.delenv("LABEL_STUDIO_API_KEY")
    result = label(cli, "pull", fake[1], "project=p", f"output={tmp_path / 'o.jsonl'}")
    one_line_error(
        result, "no Label Studio token: set the environment variable LABEL_STUDIO_API_KEY"
    )
    assert fake[0].requests == []


def test_no_server_is_one_line(tmp_path, cli):
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    result = label(cli, "pull", url, "project=p", f"output={tmp_path / 'o.jsonl'}")
    one_line_error(result, f"{url}: cannot connect")


def test_a_timeout_is_one_line(fake, tmp_path, cli):
    state, url = fake
    state.delay = 1.0
    result = label(cli, "pull", url, "project=p", f"output={tmp_path / 'o.jsonl'}", "timeout=0.2")
    one_line_error(result, f"{url}: no answer within 0.2 s while trying to list the projects")


def test_a_server_that_is_not_label_studio_is_one_line(fake, tmp_path, cli):
    state, url = fake
    state.html = True
    result = label(cli, "push", url, "project=p", f"tasks={write_tasks(tmp_path / 't.json')}")
    one_line_error(
        result, f"{url}: the answer to list the projects titled 'p' is not Label Studio's API"
    )


def test_a_url_with_a_password_is_refused_without_showing_it(fake, tmp_path, cli):
    url = fake[1].replace("http://", "http://me:hunter2pass@")
    result = label(cli, "pull", url, "project=nope", f"output={tmp_path / 'o.jsonl'}")
    one_line_error(result, f"url='{fake[1]}': leave out the user:password part")
    assert "hunter2pass" not in result.stderr and fake[0].requests == []


def test_without_the_sdk_the_commands_say_what_to_install(tmp_path, cli, monkeypatch):
    monkeypatch.setitem(sys.modules, "label_studio_sdk", None)  # import fails
    result = label(cli, "pull", "http://127.0.0.1:9", "project=p", f"output={tmp_path / 'o.jsonl'}")
    one_line_error(result, "needs label-studio-sdk: pip install 'topictone[label]'")


def test_the_core_never_imports_the_sdk():
    code = (
        "import sys, topictone.infer, topictone.infer.cli, topictone.train.label.push, "
        "topictone.train.label.pull; print('label_studio_sdk' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --- pull ------------------------------------------------------------------------------


def pushed(state: FakeStudio, url: str, tmp_path: Path, cli) -> int:
    tasks = write_tasks(tmp_path / "tasks.json")
    assert label(cli, "push", url, "project=News", f"tasks={tasks}").returncode == 0
    return next(iter(state.projects))


def test_pull_writes_what_was_annotated_as_import_would(fake, tmp_path, cli):
    state, url = fake
    project = pushed(state, url, tmp_path, cli)
    for ident, _, topics, tone in TEXTS[:3]:
        state.annotate(project, ident, topics, tone)
    out = tmp_path / "labelled.jsonl"
    result = label(cli, "pull", url, "project=News", f"output={out}", "exclude=[]")
    assert result.returncode == 0, result.stderr
    assert "3 rows -> " in result.stderr
    rows = [json.loads(line) for line in out.read_text("utf-8").splitlines()]
    assert rows == [
        {"id": i, "text": text, "topics": topics, "tone": tone, "lang": "en"}
        for i, text, topics, tone in TEXTS[:3]
    ]
    assert read_labelled(out, DATA_CFG, SCHEMA).num_rows == 3

    # The same export through `import` gives the same file.
    export = tmp_path / "export.json"
    export.write_text(json.dumps(state.export(project, False)), "utf-8")
    by_hand = tmp_path / "by_hand.jsonl"
    imported = cli("train.label", "import", f"input={export}", f"output={by_hand}", "exclude=[]")
    assert imported.returncode == 0, imported.stderr
    assert by_hand.read_bytes() == out.read_bytes()

    # import's append rule: an existing output is refused, its texts are never added twice.
    one_line_error(
        label(cli, "pull", url, f"project={project}", f"output={out}", "exclude=[]"),
        f"{out}: exists; set append=true",
    )
    state.annotate(project, "n4", [], "neutral")
    twice = label(cli, "pull", url, "project=News", f"output={out}", "append=true", "exclude=[]")
    one_line_error(twice, f"{url} project {project}: task ")
    assert "its text is labelled already" in twice.stderr and "topictone-pull" not in twice.stderr
    fresh = tmp_path / "batch2.jsonl"
    rest = label(cli, "pull", url, "project=News", f"output={fresh}", f"exclude=[{out}]")
    one_line_error(rest, "its text is labelled already")  # the excluded file holds n1-n3


def test_pull_names_the_project_in_import_errors_and_writes_nothing(fake, tmp_path, cli):
    state, url = fake
    project = pushed(state, url, tmp_path, cli)
    state.annotate(project, "n1", ["sports"], "neutral")
    out = tmp_path / "labelled.jsonl"
    result = label(cli, "pull", url, "project=News", f"output={out}", "exclude=[]")
    one_line_error(
        result,
        f"error: {url} project {project}: task {state.tasks[project][0]['id']} (n1): annotation ",
    )
    assert "unknown topic 'sports'" in result.stderr and not out.exists()


def test_pull_all_tasks_and_skip_unlabelled(fake, tmp_path, cli):
    state, url = fake
    project = pushed(state, url, tmp_path, cli)
    state.annotate(project, "n2", ["technology"], "positive")
    out = tmp_path / "labelled.jsonl"
    unlabelled = label(cli, "pull", url, "project=News", f"output={out}", "all_tasks=true")
    one_line_error(unlabelled, "(n1): no annotation (label it, or set skip_unlabelled=true)")
    result = label(
        cli, "pull", url, "project=News", f"output={out}", "all_tasks=true", "skip_unlabelled=true"
    )
    assert result.returncode == 0, result.stderr
    assert "1 rows -> " in result.stderr and "3 unlabelled tasks skipped" in result.stderr


def test_pull_bounds_the_export(fake, tmp_path, cli, monkeypatch):
    from topictone.train.label import ingest

    state, url = fake
    project = pushed(state, url, tmp_path, cli)
    for ident, _, topics, tone in TEXTS:
        state.annotate(project, ident, topics, tone)
    monkeypatch.setattr(ingest, "MAX_EXPORT_BYTES", 1000)
    result = label(cli, "pull", url, "project=News", f"output={tmp_path / 'o.jsonl'}")
    one_line_error(
        result, f"{url}: the export of project 'News' (id {project}) is larger than 1000"
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'[{"id": 1, "data": {', "not valid JSON"),
        (b'{"detail": "busy"}', "not a Label Studio JSON export (expected a list of tasks)"),
        (b"[1, 2]", "task #1: not a Label Studio task (no 'data' object)"),
    ],
)
def test_a_malformed_export_is_one_line_naming_the_project(fake, tmp_path, cli, body, message):
    state, url = fake
    project = pushed(state, url, tmp_path, cli)
    state.broken_export = body
    out = tmp_path / "o.jsonl"
    result = label(cli, "pull", url, "project=News", f"output={out}")
    one_line_error(result, f"{url} project {project}")
    assert message in result.stderr and "topictone-pull" not in result.stderr
    assert not out.exists()


def test_pull_of_an_unknown_project(fake, tmp_path, cli):
    url = fake[1]
    out = f"output={tmp_path / 'o.jsonl'}"
    one_line_error(label(cli, "pull", url, "project=Nope", out), f"{url}: no project titled 'Nope'")
    one_line_error(label(cli, "pull", url, "project=5", out), f"{url}: no project with id 5")


def test_help_lists_push_and_pull(cli):
    result = cli("train.label", "--help")
    assert result.returncode == 0
    for name in ("push", "pull"):
        assert f"python -m topictone.train.label {name} " in result.stdout
    settings = cli("train.label", "pull", "--help")
    assert "skip_unlabelled" in settings.stdout and "token_env" in settings.stdout


# --- a real Label Studio ---------------------------------------------------------------

LABEL_STUDIO = "label-studio==1.23.2"
LS_VENV = Path(
    os.environ.get("TOPICTONE_LABEL_STUDIO_VENV", "~/.cache/topictone/label-studio-venv")
).expanduser()


def label_studio_venv() -> Path:
    """``label-studio`` in its own virtualenv (made once, reused); skip if it cannot be."""
    exe, done = LS_VENV / "bin" / "label-studio", LS_VENV / ".installed"
    if exe.exists() and done.exists():
        return exe
    shutil.rmtree(LS_VENV, ignore_errors=True)  # none, or a half-made one
    LS_VENV.parent.mkdir(parents=True, exist_ok=True)
    for step in (
        [sys.executable, "-m", "venv", str(LS_VENV)],
        [str(LS_VENV / "bin" / "pip"), "install", "-q", LABEL_STUDIO],
    ):
        made = subprocess.run(step, capture_output=True, text=True, timeout=1800)
        if made.returncode != 0:
            tail = (made.stderr or made.stdout).strip().splitlines()[-3:]
            pytest.skip(f"cannot install {LABEL_STUDIO} into {LS_VENV}: {' | '.join(tail)}")
    done.write_text(LABEL_STUDIO + "\n")
    return exe


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_ready(url: str, process: subprocess.Popen, log: Path, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-5:]
            raise AssertionError(f"label-studio exited ({process.returncode}): {tail}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(1)
    raise AssertionError(f"label-studio not ready after {seconds} s; {log}")


def api(url: str, path: str, auth: str, method: str = "GET", body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{url}{path}", data=data, method=method)
    request.add_header("Authorization", auth)
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.loads(answer.read())


@pytest.fixture(scope="module")
def real_studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, str]]:
    """A fresh Label Studio on a free port with a SQLite database in a temporary folder:
    (url, personal access token, legacy token)."""
    exe = label_studio_venv()
    data = tmp_path_factory.mktemp("label-studio")
    port, legacy = free_port(), "legacy-" + os.urandom(12).hex()
    env = {
        **os.environ,
        "LABEL_STUDIO_USERNAME": "annotator@example.com",
        "LABEL_STUDIO_PASSWORD": os.urandom(12).hex(),
        "LABEL_STUDIO_USER_TOKEN": legacy,
        "SENTRY_DSN": "",  # no error reports (and sentry-sdk 3 refuses label-studio's options)
        "FRONTEND_SENTRY_DSN": "",
        "COLLECT_ANALYTICS": "false",
        "LATEST_VERSION_CHECK": "false",
    }
    log = data / "label-studio.log"
    with open(log, "wb") as sink:
        process = subprocess.Popen(
            [str(exe), "start", "--no-browser", "--internal-host", "127.0.0.1", "--port",
             str(port), "--data-dir", str(data), "--enable-legacy-api-token"],
            cwd=data, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(url, process, log, seconds=300)
        # A personal access token (a JWT refresh token), made with the legacy token as a
        # user would in Account & Settings.
        pat = api(url, "/api/token/", f"Token {legacy}", "POST")["token"]
        yield url, pat, legacy
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.mark.slow
def test_the_loop_against_a_real_label_studio(real_studio, tfidf_run, tmp_path, monkeypatch):
    from label_studio_sdk import LabelStudio

    url, pat, legacy = real_studio
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", pat)
    pool = tmp_path / "pool.jsonl"
    pool.write_text(
        "".join(
            json.dumps({"id": i, "text": text, "lang": "en", "unit": "headline"}) + "\n"
            for i, text, _, _ in TEXTS
        ),
        "utf-8",
    )
    tasks, out = tmp_path / "tasks.json", tmp_path / "labelled.jsonl"

    def run(*args: str) -> subprocess.CompletedProcess:
        result = run_cli("train.label", *args)
        assert (
            TOKEN not in result.stderr and pat not in result.stderr and legacy not in result.stderr
        )
        return result

    selected = run("select", f"model={tfidf_run / 'model'}", f"pool={pool}", "n=3",
                   f"output={tasks}", "progress=false")  # fmt: skip
    assert selected.returncode == 0, selected.stderr
    chosen = [t["data"]["topictone_id"] for t in json.loads(tasks.read_text("utf-8"))]

    push = run("push", f"url={url}", "project=News batch 1", f"tasks={tasks}")
    assert push.returncode == 0, push.stderr
    assert "3 tasks imported into project 'News batch 1'" in push.stderr

    # An annotator labels two tasks (and skips none) through the API, as the UI does.
    client = LabelStudio(base_url=url, api_key=pat)
    (project,) = [p for p in client.projects.list() if p.title == "News batch 1"]
    remote = list(client.tasks.list(project=project.id))
    assert [t.data["topictone_id"] for t in remote] == chosen
    assert all(len(t.predictions) == 1 for t in remote)  # pre-filled
    truth = {i: (topics, tone) for i, _, topics, tone in TEXTS}
    for task in remote[:2]:
        topics, tone = truth[task.data["topictone_id"]]
        client.annotations.create(
            id=task.id, result=studio.choices_result(topics, tone), was_cancelled=False
        )

    pull = run("pull", f"url={url}", "project=News batch 1", f"output={out}", "exclude=[]")
    assert pull.returncode == 0, pull.stderr
    rows = [json.loads(line) for line in out.read_text("utf-8").splitlines()]
    by_id = {i: text for i, text, _, _ in TEXTS}
    assert rows == [
        {"id": i, "text": by_id[i], "topics": truth[i][0], "tone": truth[i][1], "lang": "en",
         "unit": "headline"}
        for i in chosen[:2]
    ]  # fmt: skip

    again = run("push", f"url={url}", f"project={project.id}", f"tasks={tasks}")
    assert again.returncode == 0, again.stderr
    assert "0 tasks imported" in again.stderr and "3 there already" in again.stderr
    assert len(list(client.tasks.list(project=project.id))) == 3

    # A legacy token works too; a wrong one, or an unknown project, is one line.
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", legacy)
    second = tmp_path / "second.jsonl"
    assert run("pull", f"url={url}", "project=News batch 1", f"output={second}",
               "exclude=[]").returncode == 0  # fmt: skip
    assert second.read_bytes() == out.read_bytes()
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", TOKEN)
    wrong = run("pull", f"url={url}", "project=News batch 1", f"output={tmp_path / 'x.jsonl'}")
    assert wrong.returncode == 2 and wrong.stderr.strip().splitlines() == [
        f"error: {url}: the token was refused (401: Invalid token.); set LABEL_STUDIO_API_KEY "
        "to a valid access token (Account & Settings -> Personal Access Token)"
    ]
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", pat)
    unknown = run("pull", f"url={url}", "project=999", f"output={tmp_path / 'x.jsonl'}")
    assert unknown.stderr.strip().splitlines()[-1] == (
        f"error: {url}: no project with id 999 (name a new one by its title)"
    )
