"""``python -m topictone.infer model=<dir> input=<file> output=<file>``: batch prediction.

``engine=ray`` runs it on Ray Data instead (:mod:`topictone.infer.batch.ray_engine`, imported only
then).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, cast

from omegaconf import DictConfig, OmegaConf

from topictone import infer
from topictone.infer.artifact import MANIFEST, sha256
from topictone.infer.batch.local import predict_file
from topictone.infer.cli import CONF_DIR, command
from topictone.infer.io.outputs import check_output


@command(f"{CONF_DIR}/inference", "infer")
def main(cfg: DictConfig) -> None:
    start = time.perf_counter()
    # options, limits and thresholds are mappings (conf/inference/infer.yaml)
    options = cast("dict[str, Any]", OmegaConf.to_container(cfg.options, resolve=True) or {})
    load_args: dict[str, Any] = {
        "limits": OmegaConf.to_container(cfg.limits, resolve=True),
        **{k: v for k, v in options.items() if v is not None},
    }
    pinned = OmegaConf.select(cfg, "model_sha256", default=None)
    if pinned is not None:  # the folder must be the one whose topictone.json has this digest
        load_args["model_sha256"] = pinned
    if OmegaConf.select(cfg, "engine.name", default="local") == "ray":
        from topictone.infer.batch import ray_engine  # Ray is imported here and only here

        rows, shards = ray_engine.run(cfg, load_args)
        print(summary(rows, f"{cfg.output} ({shards} shards)", start), file=sys.stderr)
        return
    # Before the model loads: fail fast, and never write over the model being read.
    check_output(cfg.output, (cfg.input,), protected=(cfg.model,))
    predictor = infer.load(cfg.model, **load_args)
    count = predict_file(
        predictor,
        cfg.input,
        cfg.output,
        text_field=cfg.text_field,
        batch_size=cfg.batch_size,
        input_format=cfg.input_format,
        output_format=cfg.output_format,
        thresholds=cast("dict[str, float] | None", OmegaConf.to_container(cfg.thresholds) or None),
        explain=cfg.explain,
        progress=cfg.progress,
        prediction_field=cfg.prediction_field,
        prediction_prefix=cfg.prediction_prefix,
        max_line_bytes=cfg.max_line_bytes,
        resume=cfg.resume,
        identity={"model": sha256(Path(cfg.model) / MANIFEST), "options": options},
    )
    print(summary(count, cfg.output, start), file=sys.stderr)


def summary(rows: int, where: object, start: float) -> str:
    """The run's last line: what was written, where, and how fast (model load included)."""
    seconds = time.perf_counter() - start
    return (
        f"wrote {rows} predictions to {where} in {seconds:.1f} s "
        f"({rows / max(seconds, 1e-9):.1f} rows/s)"
    )


if __name__ == "__main__":
    main()
