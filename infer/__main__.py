"""``python -m infer model=<dir> input=<file> output=<file>``: batch prediction.

``engine=ray`` runs it on Ray Data instead (:mod:`infer.ray_engine`, imported only then).
"""

from __future__ import annotations

import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

import infer
from infer.artifact import MANIFEST, sha256
from infer.batch import predict_file
from infer.cli import CONF_DIR, command
from infer.io import check_output


@command(f"{CONF_DIR}/inference", "infer")
def main(cfg: DictConfig) -> None:
    options = OmegaConf.to_container(cfg.options, resolve=True) or {}
    load_args = {
        "limits": OmegaConf.to_container(cfg.limits, resolve=True),
        **{k: v for k, v in options.items() if v is not None},
    }
    if OmegaConf.select(cfg, "engine.name", default="local") == "ray":
        from infer import ray_engine  # Ray is imported here and only here

        rows, shards = ray_engine.run(cfg, load_args)
        print(f"wrote {rows} predictions to {cfg.output} ({shards} shards)", file=sys.stderr)
        return
    check_output(cfg.output, (cfg.input,))  # before the model loads: fail fast
    predictor = infer.load(cfg.model, **load_args)
    count = predict_file(
        predictor,
        cfg.input,
        cfg.output,
        text_field=cfg.text_field,
        batch_size=cfg.batch_size,
        input_format=cfg.input_format,
        output_format=cfg.output_format,
        thresholds=OmegaConf.to_container(cfg.thresholds) or None,
        explain=cfg.explain,
        progress=cfg.progress,
        prediction_field=cfg.prediction_field,
        prediction_prefix=cfg.prediction_prefix,
        max_line_bytes=cfg.max_line_bytes,
        resume=cfg.resume,
        identity={"model": sha256(Path(cfg.model) / MANIFEST), "options": options},
    )
    print(f"wrote {count} predictions to {cfg.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
