"""The service when things go wrong: a text the model chokes on, a dead or wedged worker,
a broken model, a request past its deadline, a client that left.

Fake failures wrap the tiny TF-IDF model's ``predict_scores_clean`` (the call the batch
worker makes), so the good requests are scored for real and compared with the Python API.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="the HTTP service needs topictone[serve]")
import httpx
from fastapi import FastAPI
from test_serve import HEADLINES

import topictone.infer.service.microbatch
from topictone import infer
from topictone.infer.errors import TopictoneError
from topictone.infer.service.app import MODEL_FAILED, ServiceSettings, create_app
from topictone.infer.service.microbatch import CANARY

POISON = "POISON-headline-do-not-echo"
PATIENCE = 10.0  # seconds a test waits for what must happen; old code would hang instead


class Panic(BaseException):
    """What a Rust tokenizer raises on a panic: not an Exception."""


@pytest.fixture(scope="module")
def model_dir(tfidf_run: Path) -> Path:
    return tfidf_run / "model"


@pytest.fixture(scope="module")
def predictor(model_dir: Path) -> infer.Predictor:
    return infer.load(model_dir)


def expected(predictor: infer.Predictor, texts: list[str]) -> list[dict]:
    return json.loads(json.dumps([p.to_dict() for p in predictor.predict(texts)]))


def wrap_model(
    predictor: infer.Predictor,
    monkeypatch: pytest.MonkeyPatch,
    before: Callable[[list[str]], None],
) -> list[list[str]]:
    """Every model call's texts, recorded; ``before(texts)`` runs first (it may raise)."""
    calls: list[list[str]] = []
    score = predictor.predict_scores_clean

    def wrapped(clean: list[str]) -> Any:
        calls.append(list(clean))
        before(clean)
        return score(clean)

    monkeypatch.setattr(predictor, "predict_scores_clean", wrapped)
    return calls


def run(coroutine: Any) -> Any:
    """Run a test's coroutine, bounded: a service that hangs fails the test."""
    return asyncio.run(asyncio.wait_for(coroutine, PATIENCE * 3))


async def eventually(check: Callable[[], Any]) -> Any:
    """Poll ``check`` (plain or async) until it returns something true, for at most
    PATIENCE seconds."""
    for _ in range(int(PATIENCE / 0.02)):
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        await asyncio.sleep(0.02)
    raise AssertionError("the condition never held")


@contextlib.asynccontextmanager
async def lifespan_client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The app's lifespan (its batch worker) and a client that gets its 500s as responses."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            yield client


def assert_short_error(response: httpx.Response, status: int, detail: str) -> None:
    assert response.status_code == status, response.text
    assert response.json() == {"detail": detail}
    assert POISON not in response.text and len(response.content) < 300


# ---- one bad text fails only its own request --------------------------------------------


@pytest.mark.parametrize("failure", [ValueError("cannot score " + POISON), Panic(POISON)])
def test_a_text_the_model_fails_on_fails_only_its_own_request(
    predictor: infer.Predictor,
    model_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    failure: BaseException,
) -> None:
    """The shared call fails; each request is scored again on its own: the others get
    exactly their own scores, the poisoned one a short 500, and the worker lives on."""

    def poisoned(texts: list[str]) -> None:
        if any(POISON in t for t in texts):
            raise failure

    calls = wrap_model(predictor, monkeypatch, poisoned)
    bodies = [{"texts": HEADLINES[i % 6 : i % 6 + 1 + i % 3]} for i in range(40)]
    for i in (7, 23):
        bodies[i] = {"texts": [HEADLINES[0], POISON]}
    app = create_app(predictor, model_dir)

    async def main() -> tuple[list[httpx.Response], httpx.Response, httpx.Response]:
        async with lifespan_client(app) as client:
            sent = [client.post("/predict", json=b) for b in bodies]
            responses = await asyncio.gather(*sent)
            after = await client.post("/predict", json={"texts": HEADLINES[:2]})
            return responses, after, await client.get("/health")

    responses, after, health = run(main())
    monkeypatch.undo()
    for i, (body, response) in enumerate(zip(bodies, responses, strict=True)):
        if i in (7, 23):
            assert_short_error(response, 500, MODEL_FAILED)
        else:
            assert response.status_code == 200, (i, response.text)
            assert response.json()["predictions"] == expected(predictor, body["texts"])
    assert after.status_code == 200 and health.status_code == 200
    assert any(POISON in "".join(c) and len(c) > 2 for c in calls), "never in a shared call"
    assert CANARY in calls  # the model was checked on a known-good text, and passed


def test_lone_surrogates_fail_only_their_own_requests(
    predictor: infer.Predictor, model_dir: Path
) -> None:
    """A lone surrogate (a raw ``\\ud800`` JSON escape) is refused on arrival, a 422 for
    its own request, while 120 good requests run beside it."""
    good = [{"texts": HEADLINES[i % 6 : i % 6 + 1 + i % 2]} for i in range(120)]
    bad = ['{"texts": ["ok", "\\ud800"]}', '{"texts": ["\\udfff tail"]}']
    app = create_app(predictor, model_dir)

    async def main() -> tuple[list[httpx.Response], list[httpx.Response]]:
        headers = {"content-type": "application/json"}
        async with lifespan_client(app) as client:
            sent = [client.post("/predict", json=b) for b in good]
            poisoned = [client.post("/predict", content=b, headers=headers) for b in bad]
            responses = await asyncio.gather(*sent, *poisoned)
        return responses[: len(good)], responses[len(good) :]

    responses, refused = run(main())
    for body, response in zip(good, responses, strict=True):
        assert response.status_code == 200, response.text
        assert response.json()["predictions"] == expected(predictor, body["texts"])
    for index, response in zip((1, 0), refused, strict=True):
        assert response.status_code == 422, response.text
        [item] = response.json()["detail"]
        assert item["loc"] == ["body", "texts", index] and "surrogate" in item["msg"]


# ---- /health tells an orchestrator to restart ----------------------------------------


def test_health_fails_once_the_worker_died(predictor: infer.Predictor, model_dir: Path) -> None:
    app = create_app(predictor, model_dir)

    async def main() -> list[httpx.Response]:
        async with lifespan_client(app) as client:
            task = app.state.batcher._task
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            return [
                await client.get("/health"),
                await client.get("/ready"),
                await client.post("/predict", json={"texts": HEADLINES[:1]}),
            ]

    health, ready, predict = run(main())
    assert_short_error(health, 503, "the batch worker died")
    assert_short_error(ready, 503, "the batch worker died")
    assert predict.status_code == 503 and "the batch worker" in predict.json()["detail"]


def test_health_fails_while_a_model_call_is_wedged(
    predictor: infer.Predictor, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()
    wrap_model(predictor, monkeypatch, lambda texts: release.wait(PATIENCE))
    app = create_app(predictor, model_dir, ServiceSettings(wedged_after_s=0.1))

    async def main() -> tuple[httpx.Response, httpx.Response, httpx.Response]:
        async with lifespan_client(app) as client:
            stuck = asyncio.ensure_future(client.post("/predict", json={"texts": ["x y"]}))

            async def unhealthy() -> httpx.Response | None:
                response = await client.get("/health")
                return response if response.status_code != 200 else None

            wedged = await eventually(unhealthy)
            release.set()
            answered = await stuck

            async def healthy() -> httpx.Response | None:
                response = await client.get("/health")
                return response if response.status_code == 200 else None

            return wedged, answered, await eventually(healthy)

    wedged, answered, healthy = run(main())
    assert wedged.status_code == 503 and "over wedged_after_s=0.1" in wedged.json()["detail"]
    assert answered.status_code == 200 and healthy.json() == {"status": "ok"}


def test_explanations_are_timed_a_step_a_text(
    predictor: infer.Predictor, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An explanation of many texts may take long; each text's step is what must not."""
    now = [1000.0]
    monkeypatch.setattr(topictone.infer.service.microbatch, "monotonic", lambda: now[0])
    app = create_app(predictor, model_dir, ServiceSettings(wedged_after_s=150))
    seen: list[str | None] = []
    explain = predictor.explain

    def slow_explain(text: str, prediction: Any) -> dict:
        now[0] += 100  # every text takes 100 s: three of them, 300 s in all
        seen.append(app.state.batcher.problem())
        return explain(text, prediction)

    monkeypatch.setattr(predictor, "explain", slow_explain)

    async def main() -> httpx.Response:
        async with lifespan_client(app) as client:
            return await client.post("/predict", json={"texts": HEADLINES[:3], "explain": True})

    response = run(main())
    assert response.status_code == 200 and seen == [None, None, None]


@pytest.mark.parametrize("explain", [False, True])  # batched, or run alone
def test_a_broken_model_fails_health_and_answers_503_at_once(
    predictor: infer.Predictor, model_dir: Path, monkeypatch: pytest.MonkeyPatch, explain: bool
) -> None:
    """The model fails even the known-good canary: /health and /ready fail and /predict
    answers 503 without another model call."""

    def broken(texts: list[str]) -> None:
        raise Panic("tokenizer panicked")

    calls = wrap_model(predictor, monkeypatch, broken)
    app = create_app(predictor, model_dir)

    async def main() -> list[httpx.Response]:
        async with lifespan_client(app) as client:
            body = {"texts": HEADLINES[:2], "explain": explain}
            first = await client.post("/predict", json=body)
            made = len(calls)
            rest = [
                await client.get("/health"),
                await client.get("/ready"),
                await client.post("/predict", json={"texts": HEADLINES[:1]}),
            ]
            assert len(calls) == made  # refused before the model
            return [first, *rest]

    responses = run(main())
    assert calls[-1] == CANARY
    for response in responses:
        assert response.status_code == 503, response.text
        assert response.json()["detail"].startswith("the model is broken")


# ---- every request has a deadline ----------------------------------------------------


def test_a_request_past_its_deadline_is_504_and_leaves_the_batch(
    predictor: infer.Predictor, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker is stuck on the first request; the second waits in the queue until its
    deadline: both get a 504, and the second's texts are never scored."""
    release = threading.Event()
    calls = wrap_model(predictor, monkeypatch, lambda texts: release.wait(PATIENCE))
    settings = ServiceSettings(request_timeout_s=0.5)
    app = create_app(predictor, model_dir, settings)

    async def main() -> list[httpx.Response]:
        async with lifespan_client(app) as client:
            first = asyncio.ensure_future(client.post("/predict", json={"texts": ["first x"]}))
            await eventually(lambda: calls)
            second = await client.post("/predict", json={"texts": ["second y"]})
            release.set()
            later = await client.post("/predict", json={"texts": ["third z"]})
            return [await first, second, later]

    first, second, later = run(main())
    for response in (first, second):
        assert_short_error(response, 504, "no answer within request_timeout_s=0.5")
    assert later.status_code == 200
    assert ["second y"] not in calls and not any("second y" in c for c in calls), calls


def test_a_client_that_left_leaves_the_batch(
    predictor: infer.Predictor, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request whose client closed the connection while it waited is dropped."""
    release = threading.Event()
    calls = wrap_model(predictor, monkeypatch, lambda texts: release.wait(PATIENCE))
    app = create_app(predictor, model_dir)

    async def leaving_client(left: asyncio.Event) -> list[dict]:
        """POST /predict by hand: the body, then the connection closes once ``left``."""
        body = json.dumps({"texts": ["second y"]}).encode()
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/predict",
            "raw_path": b"/predict",
            "query_string": b"",
            "root_path": "",
            "headers": [(b"content-type", b"application/json"), (b"host", b"t")],
            "client": ("127.0.0.1", 1),
            "server": ("t", 80),
        }
        messages = [{"type": "http.request", "body": body, "more_body": False}]
        sent: list[dict] = []

        async def receive() -> dict:
            if messages:
                return messages.pop()
            await left.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict) -> None:
            sent.append(message)

        await app(scope, receive, send)
        return sent

    async def main() -> tuple[list[dict], httpx.Response, httpx.Response]:
        async with lifespan_client(app) as client:
            first = asyncio.ensure_future(client.post("/predict", json={"texts": ["first x"]}))
            await eventually(lambda: calls)
            left = asyncio.Event()
            second = asyncio.ensure_future(leaving_client(left))
            await eventually(lambda: app.state.batcher._queue.qsize())
            left.set()
            sent = await asyncio.wait_for(second, PATIENCE)  # answered without the model
            release.set()
            return sent, await first, await client.post("/predict", json={"texts": ["z"]})

    sent, first, later = run(main())
    assert sent[0]["status"] == 499
    assert first.status_code == 200 and later.status_code == 200
    assert not any("second y" in c for c in calls), calls


def test_work_run_alone_keeps_its_lane_and_stops_once_abandoned(
    predictor: infer.Predictor, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An explanation past its deadline: its thread stops at the next text, and no second
    explanation runs beside it meanwhile (one thread for the lane, as promised)."""
    release = threading.Event()
    running, most, explained = [0], [0], []
    explain = predictor.explain

    def blocking_explain(text: str, prediction: Any) -> dict:
        running[0] += 1
        most[0] = max(most[0], running[0])
        explained.append(text)
        release.wait(PATIENCE)
        running[0] -= 1
        return explain(text, prediction)

    monkeypatch.setattr(predictor, "explain", blocking_explain)
    app = create_app(predictor, model_dir, ServiceSettings(request_timeout_s=0.5))

    async def main() -> list[httpx.Response]:
        async with lifespan_client(app) as client:
            body = {"texts": HEADLINES[:3], "explain": True}
            first = await client.post("/predict", json=body)
            second = await client.post("/predict", json=body)
            release.set()

            await eventually(lambda: not app.state.batcher._alone.locked())
            return [first, second]

    for response in run(main()):
        assert_short_error(response, 504, "no answer within request_timeout_s=0.5")
    assert most[0] == 1 and explained == HEADLINES[:1], explained


def test_an_explanation_a_kind_cannot_give_is_422(
    predictor: infer.Predictor, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unavailable(text: str, prediction: Any) -> dict:
        raise TopictoneError("explanations are not available for 'toy' models")

    monkeypatch.setattr(predictor, "explain", unavailable)
    app = create_app(predictor, model_dir)

    async def main() -> httpx.Response:
        async with lifespan_client(app) as client:
            return await client.post("/predict", json={"texts": [POISON], "explain": True})

    response = run(main())
    assert response.status_code == 422 and POISON not in response.text
    [item] = response.json()["detail"]
    assert item["loc"] == ["body", "explain"] and "not available" in item["msg"]
