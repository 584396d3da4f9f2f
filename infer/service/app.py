"""The HTTP service: one loaded predictor behind FastAPI (needs ``topictone[serve]``).

``create_app(predictor, model_dir)`` builds the app; ``python -m topictone.infer.service`` loads the
model and runs it with uvicorn. Responses carry the same Prediction fields as the Python
API and the batch CLI, and equal them exactly: concurrent ``/predict`` requests share one
model call (:mod:`topictone.infer.service.microbatch`), and each gets its own rows back.

Bounds: a body over ``max_body_bytes`` is a 413 (refused from Content-Length, or as soon
as a streamed body passes it); more than ``max_texts`` texts, a text over the predictor's
``limits.max_chars`` or an empty one a 422. Every error body is short JSON with the
location of the problem and never repeats the submitted text. A large request (over
``max_batch_texts`` texts or ``ALONE_CHARS`` characters) and an explanation run alone,
in their own thread, so they hold up neither the event loop nor the batches.

Every text is checked on arrival by ``predictor.preprocess`` (the one text rule of the API,
the CLI and the service), so a bad text is a 422 for its own request only; a model call
that fails anyway is retried request by request (:mod:`topictone.infer.service.microbatch`), so it
fails only the request it belongs to (a 500). A request gets no answer after ``request_timeout_s``
(a 504), and a JSON body that gives a key twice is a 422, as in the batch CLI.
``/health`` fails (503) once the batch worker died, a model call runs past
``wedged_after_s`` or the model fails a known-good text: an orchestrator restarts it.
"""

import asyncio
import contextlib
import gc
import json
import logging
import re
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import numpy as np
import uvicorn
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, ConfigDict, Field
from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from topictone.infer.artifact import MANIFEST, package_versions, read_manifest, sha256
from topictone.infer.errors import TextError, TopictoneError
from topictone.infer.predictors.base import Predictor, Scores
from topictone.infer.schema import Prediction
from topictone.infer.service.microbatch import MicroBatcher, Steps, Unavailable

MAX_ERRORS = 10  # error items per response: 1,024 bad texts need not produce 1,024
MAX_MSG = 200  # characters of one error message
MAX_LOC_PART = 40  # characters of one location part (a dict key comes from the client)
ALONE_CHARS = 50_000  # a request with more characters is scored alone, not batched
MODEL_FAILED = "the model failed on this request"
CLIENT_LEFT = 499  # nginx's code: the client closed the connection before the answer
T = TypeVar("T")
log = logging.getLogger("topictone.service")


@dataclass(frozen=True)
class ServiceSettings:
    """What one request may cost, and how requests are grouped (``conf/inference/serve.yaml``)."""

    max_body_bytes: int = 8 << 20
    max_texts: int = 1024
    max_batch_texts: int = 256
    max_wait_ms: float = 5.0
    request_timeout_s: float = 60.0
    wedged_after_s: float = 120.0

    def __post_init__(self) -> None:
        for name in ("max_body_bytes", "max_texts", "max_batch_texts"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise TopictoneError(f"{name} must be a positive integer, got {value!r}")
        _in_range("max_wait_ms", self.max_wait_ms, 0, 1000)
        _in_range("request_timeout_s", self.request_timeout_s, 0, 86400, open_low=True)
        _in_range("wedged_after_s", self.wedged_after_s, 0, 86400, open_low=True)


def _in_range(name: str, value: object, low: float, high: float, open_low: bool = False) -> None:
    """A setting that must be a number in [low, high], or (low, high] (NaN never is)."""
    inside = False
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        inside = low < value <= high if open_low else low <= value <= high
    if not inside:
        span = f"({low:g}, {high:g}]" if open_low else f"[{low:g}, {high:g}]"
        raise TopictoneError(f"{name} must be a number in {span}, got {value!r}")


# ---- response and request bodies -------------------------------------------------------

EXAMPLE_PREDICTION: dict[str, Any] = {
    "topics": ["defence"],
    "topic_scores": {"defence": 0.91, "counterterrorism": 0.07, "technology": 0.12},
    "tone": "neutral",
    "tone_scores": {"positive": 0.21, "neutral": 0.64, "negative": 0.15},
}


class Health(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"status": "ok"}]})
    status: Literal["ok"] = "ok"


class Ready(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"status": "ready"}]})
    status: Literal["ready"] = "ready"


class Limits(BaseModel):
    max_chars: int = Field(description="characters per text", examples=[100_000])
    on_long_text: Literal["error", "truncate"] = Field(examples=["error"])
    max_body_bytes: int = Field(description="bytes per request body", examples=[8 << 20])
    max_texts: int = Field(description="texts per request", examples=[1024])


class Metadata(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "kind": "tfidf",
                    "topics": ["defence", "counterterrorism", "technology"],
                    "tones": ["positive", "neutral", "negative"],
                    "thresholds": {"defence": 0.5, "counterterrorism": 0.5, "technology": 0.5},
                    "versions": {"topictone": "0.1.0", "scikit-learn": "1.7.2"},
                    "checksum": "9f2c…",
                    "service_version": "0.1.0",
                    "limits": {
                        "max_chars": 100_000,
                        "on_long_text": "error",
                        "max_body_bytes": 8 << 20,
                        "max_texts": 1024,
                    },
                }
            ]
        }
    )
    kind: str
    topics: list[str]
    tones: list[str]
    thresholds: dict[str, float]
    versions: dict[str, str] = Field(description="package versions the model was saved with")
    checksum: str = Field(description=f"SHA-256 of the model folder's {MANIFEST}")
    service_version: str = Field(description="topictone serving this model")
    limits: Limits


class PredictionOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [EXAMPLE_PREDICTION]})
    topics: list[str] = Field(description="decided topics, in schema order; may be empty")
    topic_scores: dict[str, float]
    tone: str
    tone_scores: dict[str, float]
    explanation: dict[str, list[tuple[str, float]]] | None = Field(
        default=None, description="with explain=true: the terms that pushed each decided label"
    )


class PredictResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"predictions": [EXAMPLE_PREDICTION]}]}
    )
    predictions: list[PredictionOut] = Field(description="one per text, in input order")


class ErrorItem(BaseModel):
    loc: list[str | int] = Field(examples=[["body", "texts", 3]])
    msg: str = Field(examples=["texts[3]: empty text"])


class ErrorResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"detail": [{"loc": ["body", "texts", 3], "msg": "texts[3]: empty text"}]},
                {"detail": "request body over 8388608 bytes"},
            ]
        }
    )
    detail: list[ErrorItem] | str


def request_model(max_texts: int) -> type[BaseModel]:
    """The /predict body, its list bound taken from the settings."""

    class PredictRequest(BaseModel):
        model_config = ConfigDict(
            extra="forbid",
            json_schema_extra={
                "examples": [
                    {"texts": ["Army tests new missile", "आतंकी हमले में जवान शहीद"]},
                    {"texts": ["AI chip export rules"], "thresholds": {"technology": 0.3}},
                ]
            },
        )
        texts: list[str] = Field(min_length=1, max_length=max_texts)
        thresholds: dict[str, Annotated[float, Field(ge=0, le=1, strict=True)]] | None = Field(
            default=None, description="per-topic overrides of the model's thresholds"
        )
        explain: bool = Field(default=False, description="add the terms behind each label")

    return PredictRequest


# ---- errors --------------------------------------------------------------------------


def _short(part: Any) -> str | int:
    if isinstance(part, int):
        return part
    text = str(part)
    return text if len(text) <= MAX_LOC_PART else text[:MAX_LOC_PART] + "…"


def error_items(errors: Sequence[Any]) -> list[dict[str, Any]]:
    """Location and message only: pydantic's ``input`` and ``ctx`` repeat the request."""
    items = []
    for error in errors[:MAX_ERRORS]:
        msg = str(error.get("msg", "invalid value"))
        if error.get("type") == "json_invalid":
            msg = f"invalid JSON: {(error.get('ctx') or {}).get('error', 'cannot parse')}"
        items.append({"loc": [_short(p) for p in error.get("loc", ())], "msg": msg[:MAX_MSG]})
    return items


def invalid(loc: tuple[str | int, ...], msg: str) -> RequestValidationError:
    """A 422 for a problem found after parsing, in the same shape as pydantic's."""
    return RequestValidationError([{"type": "value_error", "loc": loc, "msg": msg}])


async def validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return JSONResponse({"detail": error_items(exc.errors())}, status_code=422)


# ---- the request body: JSON whose keys are unique -----------------------------------


class DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(f"duplicate key '{_short(key)}' (only one value could be kept)")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object whose keys are unique: a repeated key would silently keep its last value
    (the batch CLI's JSON reader refuses it the same way)."""
    row = dict(pairs)
    if len(row) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise DuplicateKey(key)
            seen.add(key)
    return row


_DECODER = json.JSONDecoder(object_pairs_hook=_unique_keys)


def decode_json(body: bytes) -> Any:
    """``json.loads(body)`` with unique keys; every failure is a ``JSONDecodeError``, which
    FastAPI answers as a located 422 (``json_invalid``), not a 400 without a place."""
    try:
        text = body.decode(json.detect_encoding(body))
    except UnicodeDecodeError as err:
        raise json.JSONDecodeError(f"not {err.encoding} text", "", err.start) from None
    try:
        return _DECODER.decode(text)
    except json.JSONDecodeError:
        raise
    except DuplicateKey as err:
        raise json.JSONDecodeError(str(err), text, _key_position(text, err.key)) from None
    except RecursionError:
        raise json.JSONDecodeError("nested too deeply", text, 0) from None


def _key_position(text: str, key: str) -> int:
    """Where the repeated key is written last (best effort: the decoder reports no
    place; a key spelled with escapes is not found, and 0 stands in)."""
    spelled = re.escape(json.dumps(key, ensure_ascii=False)) + r"\s*:"
    return max((m.start() for m in re.finditer(spelled, text)), default=0)


class UniqueKeysRequest(Request):
    """A request whose JSON body is decoded by :func:`decode_json`."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = decode_json(await self.body())
        return self._json


class UniqueKeysRoute(APIRoute):
    """FastAPI's custom route pattern: each request of this route is a ``UniqueKeysRequest``."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def unique_keys_handler(request: Request) -> Response:
            return await handler(UniqueKeysRequest(request.scope, request.receive))

        return unique_keys_handler


# ---- bounds on a request: its size, its time, its client ------------------------------


class BodyTooLarge(HTTPException):
    """An HTTPException, so that FastAPI's body reader passes it on as the 413 it is."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body over {limit} bytes")


class BodyLimit:
    """413 for a request body over ``max_bytes``, holding at most that much.

    A declared Content-Length over the limit is refused before anything is read; a
    streamed (chunked) body is refused by the read that passes the limit. FastAPI's own
    ``max_body_size`` (recent versions only) answers the first case in plain text.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = Headers(scope=scope).get("content-length", "")
        if length.isdigit() and int(length) > self.max_bytes:
            detail = BodyTooLarge(self.max_bytes).detail
            # The unread body stays on the connection: close it after this answer.
            response = JSONResponse({"detail": detail}, 413, headers={"connection": "close"})
            return await response(scope, receive, send)
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        await self.app(scope, limited, send)


async def client_left(receive: Receive) -> None:
    """Returns once the client has closed the connection (the body is read by then:
    what the server passes on next is that)."""
    if (await receive())["type"] != "http.disconnect":
        await asyncio.Event().wait()  # nothing more will come: never returns


async def bounded(receive: Receive, work: Coroutine[Any, Any, T], seconds: float) -> T:
    """``work``'s result, or an HTTP error once ``seconds`` pass or the client leaves:
    either way the work is cancelled, so its texts leave the batch forming."""
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(client_left(receive))
    try:
        await asyncio.wait({task, gone}, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:  # also when this handler is cancelled
        gone.cancel()
        task.cancel()  # nothing happens to a finished task
    if task.done() and not task.cancelled():
        return task.result()
    if gone.done() and not gone.cancelled():
        raise HTTPException(CLIENT_LEFT, "the client left before the answer")
    raise HTTPException(504, f"no answer within request_timeout_s={seconds:g}")


# ---- the app -------------------------------------------------------------------------


def create_app(
    predictor: Predictor, model_dir: str | Path, settings: ServiceSettings | None = None
) -> FastAPI:
    """The service for one loaded predictor; ``model_dir`` is the folder it came from."""
    settings = settings or ServiceSettings()
    service_version = package_versions(["topictone"]).get("topictone", "unknown")
    metadata = describe(predictor, Path(model_dir), settings, service_version)
    # A lambda, not the bound method: the model call is looked up per batch (tests wrap it).
    batcher = MicroBatcher(
        lambda texts: predictor.predict_scores_clean(texts),
        max_batch_texts=settings.max_batch_texts,
        max_wait_ms=settings.max_wait_ms,
        wedged_after_s=settings.wedged_after_s,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await batcher.start()
        try:
            yield
        finally:
            await batcher.stop()

    app = FastAPIOffline(
        title="topictone",
        summary="Topic (multi-label) and tone labels for Hindi and English news texts",
        version=service_version,
        lifespan=lifespan,
        swagger_ui_parameters={"validatorUrl": None},  # Swagger UI would call swagger.io
        exception_handlers={RequestValidationError: validation_error},
    )
    app.router.route_class = UniqueKeysRoute
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.state.predictor, app.state.batcher, app.state.settings = predictor, batcher, settings
    add_service_routes(app, batcher, metadata)
    add_predict_route(app, predictor, batcher, settings)
    return app


def describe(
    predictor: Predictor, folder: Path, settings: ServiceSettings, service_version: str
) -> Metadata:
    """/metadata's answer. The manifest is read by the rule ``infer.load`` applies; a
    ``versions`` that is no map of names to versions is refused here too, in one line."""
    manifest = read_manifest(folder, verify=False)
    versions = manifest.versions
    if not isinstance(versions, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in versions.items()
    ):
        raise TopictoneError(
            f"{folder / MANIFEST}: versions must map package names to version strings"
        )
    return Metadata(
        kind=predictor.kind,
        **predictor.schema.to_dict(),
        thresholds=predictor.thresholds,
        versions=dict(versions),
        checksum=sha256(folder / MANIFEST),
        service_version=service_version,
        limits=Limits(
            max_chars=predictor.limits.max_chars,
            on_long_text=predictor.limits.on_long_text,
            max_body_bytes=settings.max_body_bytes,
            max_texts=settings.max_texts,
        ),
    )


UNHEALTHY: dict[int | str, dict[str, Any]] = {
    503: {"model": ErrorResponse, "description": "not alive: restart the service"}
}


def add_service_routes(app: FastAPI, batcher: MicroBatcher, metadata: Metadata) -> None:
    @app.get("/health", tags=["service"], responses=UNHEALTHY)
    async def health() -> Health:
        """The process can answer (liveness): a 503 once the batch worker died, a model
        call runs past ``wedged_after_s`` or the model fails a known-good text."""
        if problem := batcher.problem():
            raise HTTPException(503, problem)
        return Health()

    @app.get(
        "/ready",
        tags=["service"],
        responses={503: {"model": ErrorResponse, "description": "not ready"}},
    )
    async def ready() -> Ready:
        """The model is loaded, the batch worker runs and is healthy: send traffic."""
        problem = batcher.problem() or (
            None if batcher.running else "the batch worker is not running"
        )
        if problem:
            raise HTTPException(503, problem)
        return Ready()

    @app.get("/metadata", tags=["model"])
    async def get_metadata() -> Metadata:
        """Which model answers: kind, labels, thresholds, versions, checksum and limits."""
        return metadata


PREDICT_ERRORS: dict[int | str, dict[str, Any]] = {
    413: {"model": ErrorResponse, "description": "request body too large"},
    422: {"model": ErrorResponse, "description": "invalid request (location + message)"},
    500: {"model": ErrorResponse, "description": "the model failed on this request"},
    503: {"model": ErrorResponse, "description": "the model is broken or not running"},
    504: {"model": ErrorResponse, "description": "no answer within request_timeout_s"},
}


def add_predict_route(
    app: FastAPI, predictor: Predictor, batcher: MicroBatcher, settings: ServiceSettings
) -> None:
    PredictRequest = request_model(settings.max_texts)

    @app.post(
        "/predict", tags=["model"], responses=PREDICT_ERRORS, response_model_exclude_none=True
    )
    async def predict(body: PredictRequest, request: Request) -> PredictResponse:  # type: ignore[valid-type]
        """Topics and tone for each text, equal to ``predictor.predict(texts)``."""
        if batcher.broken:  # answered at once: nothing would come of waiting
            raise HTTPException(503, batcher.broken)
        texts: list[str] = body.texts  # type: ignore[attr-defined]
        explain: bool = body.explain  # type: ignore[attr-defined]
        decided = thresholds(predictor, body.thresholds)  # type: ignore[attr-defined]
        work = answer(texts, decided, explain)
        try:
            predictions = await bounded(request.receive, work, settings.request_timeout_s)
        except HTTPException:
            raise
        except TextError as err:
            raise invalid(("body", "texts", err.index), str(err)[:MAX_MSG]) from None
        except TopictoneError as err:  # a kind that cannot explain
            raise invalid(
                ("body", "explain") if explain else ("body",), str(err)[:MAX_MSG]
            ) from None
        except Unavailable as err:
            raise HTTPException(503, str(err)[:MAX_MSG]) from None
        except Exception as err:
            # The operator's log gets the traceback; the client a line without its texts.
            log.error("%s: %s", MODEL_FAILED, type(err).__name__, exc_info=err)
            raise HTTPException(500, MODEL_FAILED) from None
        return PredictResponse(predictions=[PredictionOut(**p.to_dict()) for p in predictions])

    async def answer(
        texts: list[str], decided: dict[str, float], explain: bool
    ) -> list[Prediction]:
        if explain:  # never batched: a transformer explains by occlusion, a model call a text
            return await batcher.run_alone(explain_alone, texts, decided)
        return predictor.postprocess(await score(texts), decided)

    async def score(texts: list[str]) -> Scores:
        """Checked per request, so one bad request fails alone; scored with others'.

        A large request is checked and scored in its own thread: it would keep the event
        loop from answering, and hold a batch of small requests up for seconds."""
        if len(texts) > settings.max_batch_texts or sum(map(len, texts)) > ALONE_CHARS:
            return await batcher.run_alone(score_in_parts, texts)
        return await batcher.submit(predictor.preprocess(texts))

    def score_in_parts(steps: Steps, texts: list[str]) -> Scores:
        """A large request, checked whole, then scored in parts of at most ALONE_CHARS
        characters (or one text): the model's working memory stays that of a small batch."""
        return scores_in_parts(steps, predictor.preprocess(texts))

    def scores_in_parts(steps: Steps, clean: list[str]) -> Scores:
        parts, start, size = [], 0, 0
        for end, text in enumerate(clean):
            if size and size + len(text) > ALONE_CHARS:
                steps.check()
                parts.append(predictor.predict_scores_clean(clean[start:end]))
                start, size = end, 0
            size += len(text)
        steps.check()
        parts.append(predictor.predict_scores_clean(clean[start:]))
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def explain_alone(
        steps: Steps, texts: list[str], decided: dict[str, float]
    ) -> list[Prediction]:
        """``predictor.predict(texts, decided, explain=True)``, one step a text."""
        clean = predictor.preprocess(texts)
        predictions = predictor.postprocess(scores_in_parts(steps, clean), decided)
        explained = []
        for text, prediction in zip(clean, predictions, strict=True):
            steps.check()
            explained.append(replace(prediction, explanation=predictor.explain(text, prediction)))
        return explained


def thresholds(predictor: Predictor, overrides: dict[str, float] | None) -> dict[str, float]:
    """The predictor's thresholds with a request's overrides; an unknown topic is a 422."""
    for topic in overrides or {}:
        if topic not in predictor.thresholds:
            topics = ", ".join(predictor.schema.topics)
            raise invalid(("body", "thresholds", _short(topic)), f"unknown topic ({topics})")
    return predictor.resolve_thresholds(overrides) if overrides else predictor.thresholds


def run(
    predictor: Predictor,
    model_dir: str | Path,
    settings: ServiceSettings,
    host: str,
    port: int,
    log_level: str = "info",
    access_log: bool = True,
) -> None:
    """Serve until stopped (uvicorn picks uvloop and httptools when installed)."""
    app = create_app(predictor, model_dir, settings)
    # The model and the libraries live as long as the process: frozen, the garbage
    # collector stops walking them, else each full collection is a pause (0.2 s with the
    # TF-IDF model) that every request in flight waits out.
    gc.collect()
    gc.freeze()
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=access_log,
    )
