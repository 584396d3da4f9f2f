"""Batch prediction over files of any size: stream in, predict per batch, stream out."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from infer.io import Row, detect_format, open_writer, read_rows, require_text
from infer.predictors.base import Predictor
from infer.schema import Prediction


def predict_file(
    predictor: Predictor,
    input: str | os.PathLike[str],
    output: str | os.PathLike[str],
    text_field: str = "text",
    batch_size: int = 512,
    input_format: str | None = None,
    output_format: str | None = None,
    thresholds: Mapping[str, float] | None = None,
    explain: bool = False,
    progress: bool = True,
) -> int:
    """Write one output row per input row (its fields kept, predictions added); return the count."""
    source, target = Path(input), Path(output)
    kind_in = detect_format(source, input_format)
    flat = detect_format(target, output_format) == "csv"
    total = source.stat().st_size if source.is_file() and kind_in != "parquet" else None
    count = 0
    rows: list[Row] = []
    texts: list[str] = []

    def flush(writer: Any) -> None:
        predictions = predictor.predict(texts, thresholds=thresholds, explain=explain)
        writer.write([_merge(r, p, flat) for r, p in zip(rows, predictions, strict=True)])
        rows.clear()
        texts.clear()

    with (
        open_writer(target, output_format) as writer,
        tqdm(
            total=total,
            unit="B" if total else "row",
            unit_scale=True,
            disable=not progress,
            desc=f"predict {source.name}",
        ) as bar,
    ):
        for line, row, size in read_rows(source, kind_in):
            texts.append(require_text(row, text_field, source, line))
            rows.append(row)
            count += 1
            bar.update(size)
            if len(rows) >= batch_size:
                flush(writer)
        if rows:
            flush(writer)
    return count


def _merge(row: Row, prediction: Prediction, flat: bool) -> Row:
    if flat:
        return {**row, **prediction.to_flat()}
    return {**row, "prediction": prediction.to_dict()}
