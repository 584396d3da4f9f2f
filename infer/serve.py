"""HTTP service: ``python -m infer.serve model=<dir> [port=8000]``.

One loaded predictor behind FastAPI; responses carry the same Prediction fields as
the Python API and the batch CLI.
"""

from __future__ import annotations

from typing import Annotated

import hydra
from fastapi import FastAPI, HTTPException
from omegaconf import DictConfig, OmegaConf
from pydantic import BaseModel, Field

import infer
from infer.cli import CONF_DIR, user_errors
from infer.errors import TopictoneError
from infer.predictors.base import Predictor


class PredictRequest(BaseModel):
    texts: Annotated[list[str], Field(min_length=1, max_length=1024)]
    thresholds: dict[str, float] | None = None
    explain: bool = False


class PredictionOut(BaseModel):
    topics: list[str]
    topic_scores: dict[str, float]
    tone: str
    tone_scores: dict[str, float]
    explanation: dict[str, list[tuple[str, float]]] | None = None


class PredictResponse(BaseModel):
    predictions: list[PredictionOut]


def create_app(predictor: Predictor) -> FastAPI:
    app = FastAPI(title="topictone", summary="Topic and tone labels for news texts")

    @app.get("/health")
    def health() -> dict:
        return {
            "status": "ok",
            "kind": predictor.kind,
            **predictor.schema.to_dict(),
            "thresholds": predictor.thresholds,
        }

    @app.post("/predict")
    def predict(request: PredictRequest) -> PredictResponse:
        for i, text in enumerate(request.texts):
            if not text.strip():
                raise HTTPException(422, f"texts[{i}]: empty text")
        try:
            predictions = predictor.predict(
                request.texts, thresholds=request.thresholds, explain=request.explain
            )
        except TopictoneError as err:
            raise HTTPException(422, str(err)) from None
        return PredictResponse(predictions=[PredictionOut(**p.to_dict()) for p in predictions])

    return app


@hydra.main(version_base="1.3", config_path=f"{CONF_DIR}/inference", config_name="serve")
@user_errors
def main(cfg: DictConfig) -> None:
    import uvicorn

    options = OmegaConf.to_container(cfg.options, resolve=True) or {}
    predictor = infer.load(cfg.model, **{k: v for k, v in options.items() if v is not None})
    uvicorn.run(create_app(predictor), host=cfg.host, port=cfg.port, log_level=cfg.log_level)


if __name__ == "__main__":
    main()
