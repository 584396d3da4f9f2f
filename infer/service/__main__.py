"""HTTP service: ``python -m topictone.infer.service model=<dir> [port=8000]``
(``topictone-serve``).

The entry point only: it loads the model with the configured text limits, then runs
:mod:`topictone.infer.service.app` (FastAPI + uvicorn). Those come with ``topictone[serve]`` and are
imported here only when the command runs, so ``import infer`` never needs them and a
missing extra is one line, not a traceback.
"""

from __future__ import annotations

from typing import Any, cast

from omegaconf import DictConfig, OmegaConf

from topictone import infer
from topictone.infer.cli import CONF_DIR, command
from topictone.infer.errors import TopictoneError

SERVE_EXTRA = "the HTTP service needs the serve extra: pip install 'topictone[serve]'"
# Distributions of the serve extra (and what they bring): a missing one means the extra.
SERVE_MODULES = frozenset({"fastapi", "fastapi_offline", "uvicorn", "starlette", "pydantic"})


@command(f"{CONF_DIR}/inference", "serve")
def main(cfg: DictConfig) -> None:
    """Load the model folder ``cfg.model`` and serve it until stopped."""
    try:
        from topictone.infer.service import app as service
    except ImportError as err:
        if (err.name or "").partition(".")[0] not in SERVE_MODULES:
            raise
        raise TopictoneError(SERVE_EXTRA) from None

    # mappings (conf/inference/serve.yaml)
    options = cast("dict[str, Any]", OmegaConf.to_container(cfg.options, resolve=True) or {})
    limits = cast("dict[str, Any]", OmegaConf.to_container(cfg.limits, resolve=True) or {})
    batching = cast("dict[str, Any]", OmegaConf.to_container(cfg.batching, resolve=True) or {})
    settings = service.ServiceSettings(
        max_body_bytes=cfg.max_body_bytes,
        max_texts=cfg.max_texts,
        request_timeout_s=cfg.request_timeout_s,
        **batching,
    )
    predictor = infer.load(
        cfg.model,
        limits=limits,
        # A digest of digits alone reaches here as a YAML integer: its digits are the pin.
        model_sha256=None if cfg.model_sha256 is None else str(cfg.model_sha256),
        **{k: v for k, v in options.items() if v is not None},
    )
    service.run(
        predictor,
        cfg.model,
        settings,
        host=cfg.host,
        port=cfg.port,
        log_level=cfg.log_level,
        access_log=cfg.access_log,
    )


if __name__ == "__main__":
    main()
