"""Score a saved model on a data set and write its report.

    python -m topictone.train.evaluate model=<folder> data=<data config> [split=dev] [out=<dir>]

Scores any saved model on a configured data set and writes ``report.md`` with figures,
plus ``metrics.json``. Other ``key=value`` arguments are Hydra overrides of the data
config (``data.dev=path/to/file.jsonl``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir

from topictone import infer
from topictone.infer.cli import CONF_DIR, user_errors
from topictone.infer.errors import TopictoneError
from topictone.train.data.labelled import read_split
from topictone.train.metrics.compute import format_table
from topictone.train.metrics.splits import evaluate_split
from topictone.train.report import write_report

_USAGE = (
    "usage: python -m topictone.train.evaluate "
    "model=<dir> data=<config> [split=dev,test] [out=<dir>]"
)


@user_errors
def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    ours = {"model": None, "split": "dev,test", "out": None}
    overrides = []
    for arg in args:
        key, sep, value = arg.partition("=")
        if not sep:
            raise TopictoneError(f"'{arg}' is not key=value; {_USAGE}")
        if key in ours:
            ours[key] = value
        else:
            overrides.append(arg)
    if not ours["model"]:
        raise TopictoneError(_USAGE)
    predictor = infer.load(ours["model"])
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        data_cfg = compose("train", overrides=overrides).data
    evaluations = {}
    for split in (ours["split"] or "").split(","):
        if data_cfg.get(split):
            dataset = read_split(data_cfg[split], data_cfg, predictor.schema)
            evaluations[split] = evaluate_split(predictor, dataset)
    if not evaluations:
        raise TopictoneError(
            f"data config '{data_cfg.name}' has none of the splits {ours['split']}"
        )
    out = Path(ours["out"] or Path(ours["model"]).resolve().parent / f"evaluation-{data_cfg.name}")
    report = write_report(
        out,
        f"{predictor.kind} model {ours['model']} on {data_cfg.name}",
        evaluations,
        predictor.schema,
        predictor.thresholds,
    )
    metrics = {name: e.metrics for name, e in evaluations.items()}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    print(format_table(metrics, predictor.schema))
    print(f"\nreport: {report}")


if __name__ == "__main__":
    main()
