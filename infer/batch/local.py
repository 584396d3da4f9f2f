"""Batch prediction over files of any size: stream in, predict per batch, stream out.

Nothing is lost silently: every input row comes out with its fields as read and the
predictions beside them under names that must not collide with the row's own; a row
the output format cannot hold, a text the model refuses, or any other problem stops the
run with file:line, and the output appears only when the whole input was written.

How each field comes out (:class:`Plan`): JSONL to JSONL keeps each input line's own
text and adds the prediction before its closing brace; JSONL to CSV writes numbers and
nested values as written in the input; Parquet output gets its schema from the whole
input (a first pass) and every value is read back before it is written; Parquet to JSONL
or CSV refuses values those formats have no exact form for (binary, dates, decimals).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, cast

from tqdm.auto import tqdm

from topictone.infer.errors import InputError, TextError, TopictoneError
from topictone.infer.io.outputs import check_output, open_writer
from topictone.infer.io.readers import (
    MAX_LINE_BYTES,
    STDOUT,
    Record,
    Row,
    detect_format,
    json_texts,
    parquet_rows,
    parquet_schema,
    plain_problem,
    read_records,
    require_text,
)
from topictone.infer.io.resume import Progress, open_resumable
from topictone.infer.io.writers import JsonText, ParquetSchema, RowValueError, RowWriter, Spliced
from topictone.infer.limits import TextLimits
from topictone.infer.predictors.base import Predictor
from topictone.infer.schema import LabelSchema, Prediction


@dataclass(frozen=True)
class Plan:
    """How the rows of one input file become output records: the checks each row must
    pass and how its prediction joins it. Shared by engine=local and engine=ray."""

    source: Any  # the input, as errors name it
    kind_in: str
    kind_out: str
    text_field: str = "text"
    field: str = "prediction"
    prefix: str = "pred_"
    limits: TextLimits = dataclasses.field(default_factory=TextLimits)
    flat: bool = dataclasses.field(init=False)  # CSV: flat prediction columns
    splice: bool = dataclasses.field(init=False)  # JSONL to JSONL: the input line kept as read
    literals: bool = dataclasses.field(init=False)  # JSONL to CSV: numbers as written
    plain: bool = dataclasses.field(init=False)  # Parquet to JSONL or CSV: only JSON's own types

    def __post_init__(self) -> None:
        read, write = self.kind_in, self.kind_out
        object.__setattr__(self, "flat", write == "csv")
        object.__setattr__(self, "splice", read == write == "jsonl")
        object.__setattr__(self, "literals", read == "jsonl" and write == "csv")
        object.__setattr__(self, "plain", read == "parquet" and write != "parquet")

    @property
    def exact_numbers(self) -> bool:
        """Read JSON numbers only where a 64-bit float holds them as written."""
        return self.kind_out == "parquet"

    def check(self, row: Row, line: int) -> str:
        """The row's text, once the row is fit to predict and to write."""
        text = check_row(
            row,
            self.text_field,
            self.limits,
            self.flat,
            self.field,
            self.prefix,
            self.source,
            line,
        )
        if self.plain:
            for name, value in row.items():
                if problem := plain_problem(value):
                    raise InputError(problem, self.source, line, name)
        return text

    def merge(self, row: Row, text: str | None, prediction: Prediction) -> Row | Spliced:
        """The output record of a row (``text``: its JSONL line, as read)."""
        if self.splice:
            assert text is not None, "JSONL to JSONL: every row comes with its line"
            return Spliced(text, self.field, prediction.to_dict())
        if self.flat:
            return {
                **(with_literals(row, text) if self.literals else row),
                **prediction.to_flat(self.prefix),
            }
        return merge_prediction(row, prediction, False, self.field, self.prefix)


_LITERAL_TYPES = frozenset({float, list, dict})  # bool is its own type: not here


def _as_written(value: Any) -> bool:
    """Whether a JSON value may be written otherwise than Python writes it back: a
    float (``1E2``), a nested value, or 0 (``-0``); any other integer reads as written."""
    kind = type(value)
    return kind in _LITERAL_TYPES or (kind is int and value == 0)


def with_literals(row: Row, text: str | None) -> Row:
    """The row with its floats and nested values as their text in the JSONL line."""
    if text is None or not any(_as_written(v) for v in row.values()):
        return row
    texts = json_texts(text)
    return {k: JsonText(texts[k]) if _as_written(v) else v for k, v in row.items()}


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
    into the same output (:mod:`topictone.infer.io.resume`); ``identity`` names the model, so that a
    continuation with another one is refused."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise TopictoneError(f"batch_size must be a positive integer, got {batch_size!r}")
    source = Path(input)
    kind_in = detect_format(source, input_format)
    if not source.is_file():  # before anything is opened or written
        raise InputError("no such file", source)
    check_output(output, (source,))
    to_stdout = str(output) == STDOUT
    kind_out = (
        (output_format or "jsonl") if to_stdout else detect_format(Path(output), output_format)
    )
    if to_stdout and kind_out not in ("jsonl", "csv"):
        raise TopictoneError(f"output '-' streams JSONL or CSV, not {kind_out}")
    plan = Plan(
        source, kind_in, kind_out, text_field, prediction_field, prediction_prefix, predictor.limits
    )

    def records() -> Iterator[Record]:
        return read_records(source, kind_in, max_line_bytes, exact_numbers=plan.exact_numbers)

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
            "limits": [plan.limits.max_chars, plan.limits.on_long_text],
            "max_line_bytes": max_line_bytes,
        }
        opened = open_resumable(Path(output), kind_out, source, settings)
    else:
        schema = None
        if kind_out == "parquet":
            schema = output_schema(plan, records(), predictor.schema, explain)
        opened = _fresh(open_writer(output, kind_out, schema=schema, own=(prediction_field,)))
    batch = Batch(predictor, plan, thresholds, explain)
    return _stream(plan, records, opened, batch, batch_size, progress)


def _stream(
    plan: Plan,
    records: Callable[[], Iterator[Record]],
    opened: Any,
    batch: Batch,
    batch_size: int,
    progress: bool,
) -> int:
    """Read, predict and write batch after batch into the opened output; return the rows
    it holds (a continued run's included)."""
    with (
        opened as (writer, done, commit),
        _meter(plan.source, plan.kind_in, done.rows, progress) as meter,
    ):
        rows = records()
        consumed = skip(rows, done, plan)
        count = done.rows
        whole = plan.kind_in == "parquet"  # a Parquet input is hashed whole
        for line, row, size, text in rows:
            consumed += size
            batch.add(line, row, text)
            count += 1
            if len(batch) >= batch_size:
                meter.wrote(batch.write(writer), count, consumed)
                commit(meter.size if whole else consumed)
        if len(batch):
            meter.wrote(batch.write(writer), count, consumed)
            commit(meter.size if whole else consumed)
    return count


def _no_commit(input_bytes: int) -> None:
    """Nothing to record: a run that is not resumable."""


@contextlib.contextmanager
def _fresh(writer_context: Any) -> Iterator[tuple[Any, Progress, Any]]:
    """A plain writer, as a run with nothing done yet."""
    with writer_context as writer:
        yield writer, Progress(), _no_commit


def skip(records: Iterator[Record], done: Progress, plan: Plan) -> int:
    """Read past the rows the continued run wrote; return the input bytes they took,
    which must be those it recorded (its input's digest covered them)."""
    consumed = 0
    seen = 0
    for _, _, size, _ in islice(records, done.rows):
        consumed += size
        seen += 1
    if seen < done.rows or (plan.kind_in != "parquet" and consumed != done.input_bytes):
        raise TopictoneError(
            f"{plan.source}: its first {done.rows} rows are not those the interrupted run "
            "read (the input was edited); delete the resume files beside the output to "
            "start over"
        )
    return consumed


class _Meter:
    """The progress bar: rows written (after each batch), rows/s, and an ETA from the
    input's size: the total is the rows a Parquet footer counts, else the rows written
    so far scaled by the input bytes not yet read."""

    def __init__(self, bar: Any, size: int, rows: int | None) -> None:
        self.bar, self.size, self.rows = bar, size, rows

    def wrote(self, rows: int, count: int, consumed: int) -> None:
        if self.rows is None and consumed:
            self.bar.total = max(count, round(count * self.size / consumed))
        self.bar.update(rows)


@contextlib.contextmanager
def _meter(source: Path, kind: str, done: int, progress: bool) -> Iterator[_Meter]:
    size = source.stat().st_size
    rows = parquet_rows(source) if kind == "parquet" else None
    with tqdm(
        total=rows,
        initial=done,
        unit="row",
        unit_scale=True,
        disable=not progress,
        desc=f"predict {source.name}",
    ) as bar:
        yield _Meter(bar, size, rows)


class Batch:
    """Rows read and checked, not yet predicted: predicted, merged and written together."""

    def __init__(
        self,
        predictor: Predictor,
        plan: Plan,
        thresholds: Mapping[str, float] | None,
        explain: bool,
    ) -> None:
        self.predictor, self.plan, self.thresholds, self.explain = (
            predictor,
            plan,
            thresholds,
            explain,
        )
        self.rows: list[Row] = []
        self.lines: list[int] = []
        self.texts: list[str] = []
        self.sources: list[str | None] = []  # JSONL lines as read, where the plan needs them

    def __len__(self) -> int:
        return len(self.rows)

    def add(self, line: int, row: Row, source: str | None) -> None:
        self.texts.append(self.plan.check(row, line))
        self.rows.append(row)
        self.lines.append(line)
        self.sources.append(source)

    def write(self, writer: RowWriter) -> int:
        """Predict, merge and write the rows; return how many."""
        plan = self.plan
        predictions = predict_located(
            self.predictor, self.texts, plan, self.lines, self.thresholds, self.explain
        )
        records = [
            plan.merge(r, s, p)
            for r, s, p in zip(self.rows, self.sources, predictions, strict=True)
        ]
        write_located(writer, records, plan.source, self.lines)
        count = len(self.rows)
        for part in (self.rows, self.lines, self.texts, self.sources):
            part.clear()
        return count


def predict_located(
    predictor: Predictor,
    texts: list[str],
    plan: Plan,
    lines: list[int],
    thresholds: Mapping[str, float] | None,
    explain: bool,
) -> list[Prediction]:
    """The predictions; a text the model refuses is an error at its file, line and field."""
    try:
        return predictor.predict(texts, thresholds=thresholds, explain=explain)
    except TextError as err:
        raise InputError(err.reason, plan.source, lines[err.index], plan.text_field) from None


def output_schema(plan: Plan, records: Iterable[Record], labels: LabelSchema, explain: bool) -> Any:
    """The Parquet output's schema: a Parquet input's own, or every field of every row
    typed to hold all its values (a first pass over the input), then the prediction's
    fixed type. Rows are checked on the way, so a bad one stops the run before any work."""
    import pyarrow as pa

    prediction = pa.field(plan.field, prediction_type(labels, explain))
    if plan.kind_in == "parquet":
        return pa.schema([*parquet_schema(plan.source), prediction])
    inferred = ParquetSchema()
    try:
        for line, row, _, _ in records:
            plan.check(row, line)
            inferred.add(line, row)
        return pa.schema([*inferred.result(), prediction])
    except RowValueError as err:
        raise InputError(err.reason, plan.source, err.index, err.field) from None


def prediction_type(labels: LabelSchema, explain: bool) -> Any:
    """The Arrow type of :meth:`Prediction.to_dict`: fixed by the label schema, so a batch
    where no topic is decided (an empty list) types the column as well as any other."""
    import pyarrow as pa

    term = pa.struct([("term", pa.string()), ("weight", pa.float64())])
    fields = [
        ("topics", pa.list_(pa.string())),
        ("topic_scores", pa.struct([(t, pa.float64()) for t in labels.topics])),
        ("tone", pa.string()),
        ("tone_scores", pa.struct([(t, pa.float64()) for t in labels.tones])),
    ]
    if explain:  # label -> its terms, as many labels as were decided
        fields.append(("explanation", pa.map_(pa.string(), pa.list_(term))))
    return pa.struct(fields)


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


def write_located(
    writer: RowWriter, rows: list[Row | Spliced], source: Any, lines: list[int]
) -> None:
    """Write output records; one the format cannot hold is an error at its input line."""
    try:
        # Spliced records come only from a JSONL-to-JSONL plan (Plan.splice), so only a
        # JSONL writer, which takes them, is given any.
        writer.write(cast(list[Row], rows))
    except RowValueError as err:
        raise InputError(err.reason, source, lines[err.index], err.field) from None
