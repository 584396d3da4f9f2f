"""The HTTP service, in process: FastAPI's test client and httpx's ASGI transport (no port).

The real service under load (uvicorn, a port, concurrent clients) is
``benchmarks/speed/serve_load.py``.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="the HTTP service needs topictone[serve]")
import httpx
import numpy as np
from conftest import ROOT
from fastapi import FastAPI
from fastapi.testclient import TestClient

import topictone.infer.service.app
from topictone import infer
from topictone.infer.artifact import MANIFEST, sha256
from topictone.infer.service.app import ServiceSettings, create_app
from topictone.infer.service.microbatch import MicroBatcher

HEADLINES = [
    "Army tests new missile",
    "आतंकी हमले में जवान शहीद",
    "Startup unveils AI chip for drones",
    "Monsoon session of parliament begins",
    "सेना ने सीमा पर ड्रोन मार गिराया",
    "Cyber attack hits power grid",
]
SECRET = "SECRET-TEXT-do-not-echo"


@pytest.fixture(scope="module")
def model_dir(tfidf_run: Path) -> Path:
    return tfidf_run / "model"


@pytest.fixture(scope="module")
def predictor(model_dir: Path) -> infer.Predictor:
    return infer.load(model_dir)


@pytest.fixture(scope="module")
def app(predictor: infer.Predictor, model_dir: Path) -> FastAPI:
    return create_app(predictor, model_dir)


@pytest.fixture(scope="module")
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as client:  # runs the lifespan: the batch worker starts
        yield client


@pytest.fixture(scope="module")
def small(model_dir: Path) -> Iterator[TestClient]:
    """Tight limits, so that every bound is hit with small requests."""
    bounded = infer.load(model_dir, limits={"max_chars": 60})
    settings = ServiceSettings(max_body_bytes=2000, max_texts=4, max_batch_texts=2)
    with TestClient(create_app(bounded, model_dir, settings)) as client:
        yield client


def expected(predictor: infer.Predictor, texts: list[str], **kwargs: Any) -> list[dict]:
    """What the Python API returns, as JSON carries it (tuples become lists)."""
    return json.loads(json.dumps([p.to_dict() for p in predictor.predict(texts, **kwargs)]))


def run_concurrently(app: FastAPI, bodies: list[Any]) -> list[httpx.Response]:
    """POST every body to /predict at once, in one event loop with the app's lifespan
    (give it an app of its own: the lifespan's end stops that app's batch worker)."""

    async def main() -> list[httpx.Response]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                return await asyncio.gather(*(client.post("/predict", json=b) for b in bodies))

    return asyncio.run(main())


# ---- service endpoints --------------------------------------------------------------


def test_health_and_ready(client: TestClient, predictor: infer.Predictor, model_dir: Path) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/ready").json() == {"status": "ready"}
    # Not started (no lifespan): alive, but the batch worker is not running.
    outside = TestClient(create_app(predictor, model_dir))
    assert outside.get("/health").status_code == 200
    response = outside.get("/ready")
    assert response.status_code == 503 and "batch worker" in response.json()["detail"]


def test_metadata_describes_the_model(client: TestClient, model_dir: Path) -> None:
    body = client.get("/metadata").json()
    manifest = json.loads((model_dir / MANIFEST).read_text(encoding="utf-8"))
    assert body["kind"] == "tfidf"
    assert body["topics"] == ["defence", "counterterrorism", "technology"]
    assert body["tones"] == manifest["schema"]["tones"]
    assert body["thresholds"] == manifest["thresholds"]
    assert body["versions"] == manifest["versions"] and "scikit-learn" in body["versions"]
    assert body["checksum"] == sha256(model_dir / MANIFEST)
    assert body["limits"] == {
        "max_chars": 100_000,
        "on_long_text": "error",
        "max_body_bytes": 8 << 20,
        "max_texts": 1024,
    }


def test_openapi_has_typed_responses_with_examples(app: FastAPI) -> None:
    schema = app.openapi()
    components = schema["components"]["schemas"]
    for name in ("Health", "Ready", "Metadata", "PredictResponse", "PredictionOut"):
        assert components[name].get("examples"), name
    assert components["PredictRequest"]["properties"]["texts"]["maxItems"] == 1024
    for path in ("/health", "/ready", "/metadata", "/predict"):
        method = "post" if path == "/predict" else "get"
        content = schema["paths"][path][method]["responses"]["200"]["content"]
        assert content["application/json"]["schema"]["$ref"].startswith("#/components/")
    errors = schema["paths"]["/predict"]["post"]["responses"]
    assert "503" in schema["paths"]["/health"]["get"]["responses"]
    for status in ("413", "422", "500", "503", "504"):
        ref = errors[status]["content"]["application/json"]["schema"]["$ref"]
        assert ref == "#/components/schemas/ErrorResponse"


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_work_offline(client: TestClient, page: str) -> None:
    response = client.get(page)
    assert response.status_code == 200
    html = response.text
    assert not re.search(r"https?://", html), "the page would load something from outside"
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert any(a.endswith(".js") for a in assets)
    for asset in assets:
        assert client.get(asset).status_code == 200, asset
    assert client.get("/openapi.json").status_code == 200


# ---- predictions --------------------------------------------------------------------


def test_predict_matches_the_python_api(client: TestClient, predictor: infer.Predictor) -> None:
    texts = HEADLINES[:3]
    body = client.post("/predict", json={"texts": texts}).json()
    assert body["predictions"] == expected(predictor, texts)
    overrides = {"defence": 0.1, "technology": 0.9}
    body = client.post("/predict", json={"texts": texts, "thresholds": overrides}).json()
    assert body["predictions"] == expected(predictor, texts, thresholds=overrides)


def test_explain_still_works(client: TestClient, predictor: infer.Predictor) -> None:
    texts = HEADLINES[:2]
    body = client.post("/predict", json={"texts": texts, "explain": True}).json()
    assert body["predictions"] == expected(predictor, texts, explain=True)
    assert all("explanation" in p for p in body["predictions"])
    response = client.post("/predict", json={"texts": [SECRET, " "], "explain": True})
    assert_located(response, 422, ["body", "texts", 1], "texts[1]: empty text")


def test_concurrent_requests_share_model_calls(
    predictor: infer.Predictor, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    score = predictor.predict_scores_clean

    def counted(clean: list[str]) -> Any:
        calls.append(len(clean))
        return score(clean)

    monkeypatch.setattr(predictor, "predict_scores_clean", counted)
    requests = [{"texts": HEADLINES[i % 6 : i % 6 + 1 + i % 3]} for i in range(24)]
    requests[5] = {"texts": ["Army tests new missile", " "]}  # one bad request fails alone
    responses = run_concurrently(create_app(predictor, model_dir), requests)
    assert responses[5].status_code == 422
    good = [(b, r) for b, r in zip(requests, responses, strict=True) if b is not requests[5]]
    assert all(r.status_code == 200 for _, r in good)
    assert 1 <= len(calls) < len(good), calls
    assert sum(calls) == sum(len(b["texts"]) for b, _ in good)
    monkeypatch.undo()
    for body, response in good:
        assert response.json()["predictions"] == expected(predictor, body["texts"])


def test_batches_hold_at_most_max_batch_texts() -> None:
    """A request that would overflow a batch waits for the next; a larger one goes alone."""
    sizes: list[int] = []

    def score(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        sizes.append(len(texts))
        rows = np.array([[float(t)] for t in texts])
        return rows, -rows

    async def main() -> list[tuple[np.ndarray, np.ndarray]]:
        batcher = MicroBatcher(score, max_batch_texts=4, max_wait_ms=0)
        await batcher.start()
        try:
            return await asyncio.gather(*(batcher.submit(job) for job in jobs))
        finally:
            await batcher.stop()

    jobs = [[str(10 * i + j) for j in range(n)] for i, n in enumerate([3, 2, 1, 4, 5, 1])]
    results = asyncio.run(main())
    for job, (topic, tone) in zip(jobs, results, strict=True):
        assert topic[:, 0].tolist() == [float(t) for t in job] == (-tone[:, 0]).tolist()
    assert sum(sizes) == 16 and all(size <= 4 for size in sizes if size != 5), sizes


def test_stopping_fails_waiting_requests() -> None:
    """Shutdown never leaves a caller hanging, whether its batch is forming or scoring."""

    def slow(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        time.sleep(0.2)
        return np.zeros((len(texts), 1)), np.zeros((len(texts), 1))

    async def main(wait_ms: float) -> None:
        batcher = MicroBatcher(slow, max_batch_texts=4, max_wait_ms=wait_ms)
        await batcher.start()
        await asyncio.gather(batcher.submit(["a"]), batcher.submit(["b"]))
        waiting = asyncio.create_task(batcher.submit(["c"]))
        await asyncio.sleep(0.05)
        await batcher.stop()
        with pytest.raises(RuntimeError, match="the batch worker stopped"):
            await waiting
        assert not batcher.running

    asyncio.run(main(500))  # stopped while the batch waits for company
    asyncio.run(main(0))  # stopped while the batch is scored


def test_a_large_request_is_scored_alone(small: TestClient, model_dir: Path) -> None:
    texts = HEADLINES[:3]  # more than max_batch_texts=2
    body = small.post("/predict", json={"texts": texts}).json()
    assert body["predictions"] == expected(infer.load(model_dir), texts)


def test_a_long_request_is_scored_in_parts(
    client: TestClient, predictor: infer.Predictor, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    score = predictor.predict_scores_clean
    monkeypatch.setattr(topictone.infer.service.app, "ALONE_CHARS", 60)
    monkeypatch.setattr(
        predictor, "predict_scores_clean", lambda c: calls.append(len(c)) or score(c)
    )
    body = client.post("/predict", json={"texts": HEADLINES}).json()
    assert len(calls) > 1 and sum(calls) == len(HEADLINES)
    monkeypatch.undo()
    assert body["predictions"] == expected(predictor, HEADLINES)


# ---- limits and errors --------------------------------------------------------------


def assert_located(response: httpx.Response, status: int, loc: list, msg: str = "") -> None:
    """The error is short JSON that names where the problem is and repeats no input."""
    assert response.status_code == status, response.text
    assert SECRET not in response.text and len(response.content) < 500, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, list) and detail[0]["loc"] == loc, detail
    assert set(detail[0]) == {"loc", "msg"} and msg in detail[0]["msg"], detail


def test_body_over_the_limit_is_413(small: TestClient) -> None:
    response = small.post("/predict", json={"texts": [SECRET * 100]})
    assert response.status_code == 413 and response.json() == {
        "detail": "request body over 2000 bytes"
    }


def test_streamed_body_is_refused_once_past_the_limit(
    predictor: infer.Predictor, model_dir: Path
) -> None:
    """No Content-Length (chunked): the service stops reading at the limit."""
    app = create_app(predictor, model_dir, ServiceSettings(max_body_bytes=2000))
    sent: list[int] = []

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"texts": ["'
        for i in range(100):
            sent.append(i)
            yield SECRET.encode() * 30  # 690 bytes a chunk

    async def main() -> httpx.Response:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                return await client.post(
                    "/predict", content=chunks(), headers={"content-type": "application/json"}
                )

    response = asyncio.run(main())
    assert "content-length" not in response.request.headers
    assert response.status_code == 413 and SECRET not in response.text
    assert response.json() == {"detail": "request body over 2000 bytes"}
    assert len(sent) <= 3  # 2,000 bytes are about three chunks: the rest was never read


def test_too_many_texts(small: TestClient) -> None:
    response = small.post("/predict", json={"texts": [SECRET[:3]] * 5})
    assert_located(response, 422, ["body", "texts"], "at most 4")


def test_too_long_text(small: TestClient) -> None:
    response = small.post("/predict", json={"texts": ["ok", SECRET * 3]})
    assert_located(response, 422, ["body", "texts", 1], "texts[1]: 69 characters, over max_chars")


@pytest.mark.parametrize("text", ["", "   ", "\n\t", "\u200b\u00ad"])
def test_empty_text(client: TestClient, text: str) -> None:
    response = client.post("/predict", json={"texts": [SECRET, SECRET, text]})
    assert_located(response, 422, ["body", "texts", 2], "texts[2]: empty text")


def test_invalid_json(client: TestClient) -> None:
    content = '{"texts": ["' + SECRET + '", }'
    response = client.post(
        "/predict", content=content, headers={"content-type": "application/json"}
    )
    assert response.status_code == 422 and SECRET not in response.text
    [item] = response.json()["detail"]
    assert item["loc"][0] == "body" and item["msg"].startswith("invalid JSON")


@pytest.mark.parametrize(
    ("content", "key"),
    [
        ('{"texts": ["SECRET"], "texts": ["x"]}', "texts"),
        ('{"texts": ["texts"], "thresholds": {"defence": 0.1, "defence": 0.9}}', "defence"),
        ('{"texts": ["x"], "explain": true, "explain": false}', "explain"),
    ],
)
def test_a_key_given_twice_is_refused(client: TestClient, content: str, key: str) -> None:
    """Only one of the values could be kept: a 422 naming the key (and where it is given
    again), as the batch CLI refuses such a row."""
    body = content.replace("SECRET", SECRET)
    response = client.post("/predict", content=body, headers={"content-type": "application/json"})
    assert_located(response, 422, ["body", body.rindex(f'"{key}"')])
    assert response.json()["detail"][0]["msg"].startswith(f"invalid JSON: duplicate key '{key}'")


@pytest.mark.parametrize(
    ("content", "msg"),
    [
        (b'{"texts": ["\xff\xfe SECRET"]}', "invalid JSON: not utf-8 text"),
        (b"[" * 100_000 + b"]" * 100_000, "invalid JSON: nested too deeply"),
    ],
)
def test_an_unreadable_body_is_a_located_422(client: TestClient, content: bytes, msg: str) -> None:
    response = client.post(
        "/predict",
        content=content.replace(b"SECRET", SECRET.encode()),
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 422 and SECRET not in response.text
    [item] = response.json()["detail"]
    assert item["loc"][0] == "body" and item["msg"] == msg


THRESHOLD = ["body", "thresholds", "defence"]


@pytest.mark.parametrize(
    ("body", "loc", "msg"),
    [
        ({"texts": []}, ["body", "texts"], "at least 1"),
        ({"texts": [SECRET, 7]}, ["body", "texts", 1], "valid string"),
        ({"texts": SECRET}, ["body", "texts"], "valid list"),
        ({"texts": [SECRET], "thresholds": {"defence": "high"}}, THRESHOLD, "number"),
        ({"texts": [SECRET], "thresholds": {"defence": 1.5}}, THRESHOLD, "less than or equal"),
        ({"texts": [SECRET], "thresholds": {"defence": -0.1}}, THRESHOLD, "greater than"),
        ({"texts": [SECRET], "thresholds": {"sport": 0.3}}, [*THRESHOLD[:2], "sport"], "unknown"),
        ({"texts": [SECRET], "explain": "maybe"}, ["body", "explain"], "boolean"),
        ({"texts": [SECRET], "threshold": {}}, ["body", "threshold"], "Extra inputs"),
        ([SECRET], ["body"], "dictionary"),
    ],
)
def test_bad_requests_are_located_and_never_echoed(
    client: TestClient, body: Any, loc: list, msg: str
) -> None:
    assert_located(client.post("/predict", json=body), 422, loc, msg)


def test_many_errors_stay_short(client: TestClient) -> None:
    response = client.post("/predict", json={"texts": [1] * 1000})
    assert response.status_code == 422 and len(response.json()["detail"]) == 10


def test_a_long_key_is_cut_in_the_location(client: TestClient) -> None:
    response = client.post("/predict", json={"texts": ["x"], "thresholds": {SECRET * 9: 0.5}})
    assert response.status_code == 422 and SECRET * 2 not in response.text


def test_settings_are_checked() -> None:
    with pytest.raises(infer.TopictoneError, match="max_texts"):
        ServiceSettings(max_texts=0)
    with pytest.raises(infer.TopictoneError, match="max_wait_ms"):
        ServiceSettings(max_wait_ms=-1)
    for name in ("request_timeout_s", "wedged_after_s"):
        for value in (0, -1, float("nan"), float("inf"), "60", True):
            with pytest.raises(infer.TopictoneError, match=f"{name} must be a number in"):
                ServiceSettings(**{name: value})


# ---- the command --------------------------------------------------------------------


def test_serve_without_the_extra_is_one_line(
    cli: Callable[..., subprocess.CompletedProcess],
    model_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:

    monkeypatch.setitem(sys.modules, "fastapi", None)  # as if fastapi were not installed
    monkeypatch.delitem(sys.modules, "topictone.infer.service.app")
    import topictone.infer.service as package

    monkeypatch.delattr(package, "app")  # else `from ... import app` finds it imported
    result = cli("infer.service", f"model={model_dir}")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "error: the HTTP service needs the serve extra: pip install 'topictone[serve]'"
    ]


def test_serve_with_a_bad_setting_is_one_line(
    cli: Callable[..., subprocess.CompletedProcess], model_dir: Path
) -> None:
    result = cli("infer.service", f"model={model_dir}", "max_texts=0")
    assert result.returncode == 2
    assert result.stderr.splitlines() == ["error: max_texts must be a positive integer, got 0"]


@pytest.fixture
def never_serve(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    """``topictone.infer.service.app.run`` replaced: a command that would serve records it and
    returns."""
    served: list[tuple] = []
    monkeypatch.setattr(
        topictone.infer.service.app, "run", lambda *args, **kwargs: served.append(args)
    )
    return served


@pytest.mark.parametrize("pin", ["0" * 64, "1" * 64])  # digits alone: a YAML integer
def test_serve_refuses_a_model_other_than_the_pinned_one(
    cli: Callable[..., subprocess.CompletedProcess],
    model_dir: Path,
    never_serve: list,
    pin: str,
) -> None:
    result = cli("infer.service", f"model={model_dir}", f"model_sha256={pin}")
    assert not never_serve
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith("error: ") and "not the expected model_sha256" in result.stderr
    pinned = cli(
        "topictone.infer.service",
        f"model={model_dir}",
        f"model_sha256={sha256(model_dir / MANIFEST)}",
    )
    assert pinned.returncode == 0 and len(never_serve) == 1, pinned.stderr


def test_serve_refuses_a_manifest_whose_versions_is_a_list(
    cli: Callable[..., subprocess.CompletedProcess],
    model_dir: Path,
    tmp_path: Path,
    never_serve: list,
) -> None:
    """One rule for the CLI and the service: one line, never a traceback."""
    folder = tmp_path / "model"
    shutil.copytree(model_dir, folder)
    manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    manifest["versions"] = sorted(manifest["versions"])
    (folder / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    result = cli("infer.service", f"model={folder}")
    assert not never_serve
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1, result.stderr
    assert "versions" in result.stderr
    with pytest.raises(infer.TopictoneError, match="versions"):
        create_app(infer.load(model_dir), folder)  # a predictor loaded elsewhere


def test_importing_infer_never_imports_fastapi() -> None:
    code = "import sys, infer, topictone.infer.service; print('fastapi' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"
