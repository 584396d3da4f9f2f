"""Batch prediction over files of any size: stream in, predict per batch, stream out.

Nothing is lost silently: every input row comes out with its fields as read and the
predictions beside them under names that must not collide with the row's own; a row
the output format cannot hold, a text over the limits, or any other problem stops the
run with file:line, and the output appears only when the whole input was written.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from infer.errors import InputError, TopictoneError
from infer.io import (
    MAX_LINE_BYTES,
    STDOUT,
    Row,
    RowValueError,
    RowWriter,
    check_output,
    detect_format,
    open_writer,
    parquet_schema,
    read_rows,
    require_text,
)
from infer.limits import TextLimits
from infer.predictors.base import Predictor
from infer.resume import Progress, open_resumable
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
    prediction_field: str = "prediction",
    prediction_prefix: str = "pred_",
    max_line_bytes: int = MAX_LINE_BYTES,
    resume: bool = False,
    identity: Mapping[str, Any] | None = None,
) -> int:
    """Write one output row per input row (its fields kept, predictions added); return the count.

    JSONL and Parquet nest the prediction under ``prediction_field``; CSV flattens it
    into columns starting with ``prediction_prefix``. ``resume`` continues a killed run
    into the same output (:mod:`infer.resume`); ``identity`` names the model, so that a
    continuation with another one is refused."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise TopictoneError(f"batch_size must be a positive integer, got {batch_size!r}")
    source = Path(input)
    kind_in = detect_format(source, input_format)
    check_output(output, (source,))
    to_stdout = str(output) == STDOUT
    kind_out = (
        (output_format or "jsonl") if to_stdout else detect_format(Path(output), output_format)
    )
    flat = kind_out == "csv"
    schema = parquet_schema(source) if kind_in == kind_out == "parquet" else None
    total = source.stat().st_size if source.is_file() and kind_in != "parquet" else None
    limits = predictor.limits
    count = 0
    if resume:
        if to_stdout:
            raise TopictoneError("resume=true needs an output file, not '-'")
        settings = {
            **(identity or {}),
            "kind": predictor.kind,
            "formats": [kind_in, kind_out],
            "text_field": text_field,
            "batch_size": batch_size,
            "thresholds": dict(thresholds or {}),
            "explain": explain,
            "names": [prediction_field, prediction_prefix],
            "limits": [limits.max_chars, limits.on_long_text],
            "max_line_bytes": max_line_bytes,
        }
        opened = open_resumable(Path(output), kind_out, source, settings)
    else:
        opened = _fresh(open_writer(output, kind_out, schema=schema))
    rows: list[Row] = []
    lines: list[int] = []
    texts: list[str] = []

    def flush(writer: Any) -> None:
        predictions = predictor.predict(texts, thresholds=thresholds, explain=explain)
        merged = [
            merge_prediction(r, p, flat, prediction_field, prediction_prefix)
            for r, p in zip(rows, predictions, strict=True)
        ]
        write_located(writer, merged, source, lines)
        rows.clear()
        lines.clear()
        texts.clear()

    with (
        opened as (writer, done),
        tqdm(
            total=total,
            unit="B" if total else "row",
            unit_scale=True,
            disable=not progress,
            desc=f"predict {source.name}",
        ) as bar,
    ):
        for line, row, size in read_rows(source, kind_in, max_line_bytes=max_line_bytes):
            if count < done.rows:  # written by the run this one continues
                count += 1
                bar.update(size)
                continue
            text = check_row(
                row, text_field, limits, flat, prediction_field, prediction_prefix, source, line
            )
            texts.append(text)
            rows.append(row)
            lines.append(line)
            count += 1
            bar.update(size)
            if len(rows) >= batch_size:
                flush(writer)
        if rows:
            flush(writer)
    return count


@contextlib.contextmanager
def _fresh(writer_context: Any) -> Iterator[tuple[Any, Progress]]:
    """A plain writer, as a run with nothing done yet."""
    with writer_context as writer:
        yield writer, Progress()


def check_row(
    row: Row,
    text_field: str,
    limits: TextLimits,
    flat: bool,
    field: str,
    prefix: str,
    source: Any,
    line: int,
) -> str:
    """The row's text, once the row is fit to predict: a text within the limits, and no
    input field named like the predictions. Every engine checks rows with this."""
    text = require_text(row, text_field, source, line)
    if problem := limits.problem(text):
        raise InputError(problem, source, line, text_field)
    _check_names(row, flat, field, prefix, source, line)
    return text


def _check_names(row: Row, flat: bool, field: str, prefix: str, source: Any, line: int) -> None:
    """Prediction names must not replace an input field (checked on every row)."""
    clash = (
        sorted(k for k in row if isinstance(k, str) and k.startswith(prefix))
        if flat
        else ([field] if field in row else [])
    )
    if clash:
        knob = (
            f"prediction_prefix (now '{prefix}')" if flat else f"prediction_field (now '{field}')"
        )
        raise InputError(
            f"the input already has a field named like the predictions; set {knob} to another name",
            source,
            line,
            clash[0],
        )


def merge_prediction(row: Row, prediction: Prediction, flat: bool, field: str, prefix: str) -> Row:
    """The output record: the row's fields as read, then the prediction (JSONL and Parquet:
    nested under ``field``; CSV: flat columns starting with ``prefix``)."""
    if flat:
        return {**row, **prediction.to_flat(prefix)}
    return {**row, field: prediction.to_dict()}


def write_located(writer: RowWriter, rows: list[Row], source: Any, lines: list[int]) -> None:
    """Write output records; one the format cannot hold is an error at its input line."""
    try:
        writer.write(rows)
    except RowValueError as err:
        raise InputError(err.reason, source, lines[err.index], err.field) from None
