"""The HTTP service: one loaded predictor behind FastAPI (needs ``topictone[serve]``).

``create_app(predictor, model_dir)`` builds the app; ``python -m infer.serve`` loads the
model and runs it with uvicorn. Responses carry the same Prediction fields as the Python
API and the batch CLI, and equal them exactly: concurrent ``/predict`` requests share one
model call (:mod:`infer.batching`), and each gets its own rows back.

Bounds: a body over ``max_body_bytes`` is a 413 (refused from Content-Length, or as soon
as a streamed body passes it); more than ``max_texts`` texts, a text over the predictor's
``limits.max_chars`` or an empty one a 422. Every error body is short JSON with the
location of the problem and never repeats the submitted text. A large request (over
``max_batch_texts`` texts or ``ALONE_CHARS`` characters) and an explanation run alone,
in their own thread, so they hold up neither the event loop nor the batches.
"""

import contextlib
import gc
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import uvicorn
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, ConfigDict, Field
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from infer.artifact import MANIFEST, package_versions, read_manifest, sha256
from infer.batching import MicroBatcher
from infer.errors import TextError, TopictoneError
from infer.predictors.base import Predictor, Scores
from infer.schema import Prediction

MAX_ERRORS = 10  # error items per response: 1,024 bad texts need not produce 1,024
MAX_MSG = 200  # characters of one error message
MAX_LOC_PART = 40  # characters of one location part (a dict key comes from the client)
ALONE_CHARS = 50_000  # a request with more characters is scored alone, not batched


@dataclass(frozen=True)
class ServiceSettings:
    """What one request may cost, and how requests are grouped (``conf/inference/serve.yaml``)."""

    max_body_bytes: int = 8 << 20
    max_texts: int = 1024
    max_batch_texts: int = 256
    max_wait_ms: float = 5.0

    def __post_init__(self) -> None:
        for name in ("max_body_bytes", "max_texts", "max_batch_texts"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise TopictoneError(f"{name} must be a positive integer, got {value!r}")
        wait = self.max_wait_ms
        if isinstance(wait, bool) or not isinstance(wait, (int, float)) or not 0 <= wait <= 1000:
            raise TopictoneError(f"max_wait_ms must be a number in [0, 1000], got {wait!r}")


# ---- response and request bodies -------------------------------------------------------

EXAMPLE_PREDICTION = {
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


# ---- the app -------------------------------------------------------------------------


def create_app(
    predictor: Predictor, model_dir: str | Path, settings: ServiceSettings | None = None
) -> FastAPI:
    """The service for one loaded predictor; ``model_dir`` is the folder it came from."""
    settings = settings or ServiceSettings()
    folder = Path(model_dir)
    manifest = read_manifest(folder, verify=False)
    service_version = package_versions(["topictone"]).get("topictone", "unknown")
    metadata = Metadata(
        kind=predictor.kind,
        **predictor.schema.to_dict(),
        thresholds=predictor.thresholds,
        versions=manifest.versions,
        checksum=sha256(folder / MANIFEST),
        service_version=service_version,
        limits=Limits(
            max_chars=predictor.limits.max_chars,
            on_long_text=predictor.limits.on_long_text,
            max_body_bytes=settings.max_body_bytes,
            max_texts=settings.max_texts,
        ),
    )
    # A lambda, not the bound method: the model call is looked up per batch (tests wrap it).
    batcher = MicroBatcher(
        lambda texts: predictor.predict_scores_clean(texts),
        max_batch_texts=settings.max_batch_texts,
        max_wait_ms=settings.max_wait_ms,
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
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.state.predictor, app.state.batcher, app.state.settings = predictor, batcher, settings
    errors: dict[int | str, dict[str, Any]] = {
        413: {"model": ErrorResponse, "description": "request body too large"},
        422: {"model": ErrorResponse, "description": "invalid request (location + message)"},
    }
    PredictRequest = request_model(settings.max_texts)

    @app.get("/health", tags=["service"])
    async def health() -> Health:
        """The process is up (liveness)."""
        return Health()

    @app.get(
        "/ready",
        tags=["service"],
        responses={503: {"model": ErrorResponse, "description": "not ready"}},
    )
    async def ready() -> Ready:
        """The model is loaded and the batch worker runs: send traffic (readiness)."""
        if not batcher.running:
            raise HTTPException(503, "the batch worker is not running")
        return Ready()

    @app.get("/metadata", tags=["model"])
    async def get_metadata() -> Metadata:
        """Which model answers: kind, labels, thresholds, versions, checksum and limits."""
        return metadata

    @app.post("/predict", tags=["model"], responses=errors, response_model_exclude_none=True)
    async def predict(body: PredictRequest) -> PredictResponse:  # type: ignore[valid-type]
        """Topics and tone for each text, equal to ``predictor.predict(texts)``."""
        texts: list[str] = body.texts  # type: ignore[attr-defined]
        overrides: dict[str, float] | None = body.thresholds  # type: ignore[attr-defined]
        for topic in overrides or {}:
            if topic not in predictor.thresholds:
                topics = ", ".join(predictor.schema.topics)
                raise invalid(("body", "thresholds", _short(topic)), f"unknown topic ({topics})")
        decided = predictor.resolve_thresholds(overrides) if overrides else predictor.thresholds
        try:
            if body.explain:  # type: ignore[attr-defined]
                # Never batched: a transformer explains by occlusion, a model call a word.
                predictions = await batcher.run_alone(explain, texts, decided)
            else:
                predictions = predictor.postprocess(await score(texts), decided)
        except TextError as err:
            raise invalid(("body", "texts", err.index), str(err)[:MAX_MSG]) from None
        return PredictResponse(predictions=[PredictionOut(**p.to_dict()) for p in predictions])

    def check(texts: list[str]) -> list[str]:
        """The texts as the model reads them; too long, or nothing left, is a TextError."""
        clean = predictor.preprocess(texts)
        for index, text in enumerate(clean):
            if not text:  # only whitespace, control or invisible characters
                raise TextError(index, "empty text")
        return clean

    async def score(texts: list[str]) -> Scores:
        """Checked per request, so one bad request fails alone; scored with others'.

        A large request is checked and scored in its own thread: it would keep the event
        loop from answering, and hold a batch of small requests up for seconds."""
        if len(texts) > settings.max_batch_texts or sum(map(len, texts)) > ALONE_CHARS:
            return await batcher.run_alone(score_in_parts, texts)
        return await batcher.submit(check(texts))

    def score_in_parts(texts: list[str]) -> Scores:
        """A large request, checked whole, then scored in parts of at most ALONE_CHARS
        characters (or one text): the model's working memory stays that of a small batch."""
        clean = check(texts)
        parts, start, size = [], 0, 0
        for end, text in enumerate(clean):
            if size and size + len(text) > ALONE_CHARS:
                parts.append(predictor.predict_scores_clean(clean[start:end]))
                start, size = end, 0
            size += len(text)
        parts.append(predictor.predict_scores_clean(clean[start:]))
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def explain(texts: list[str], thresholds: dict[str, float]) -> list[Prediction]:
        check(texts)
        return predictor.predict(texts, thresholds, explain=True)

    return app


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
