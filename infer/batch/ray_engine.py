"""``python -m topictone.infer engine=ray``: batch prediction on Ray Data (``topictone[scale]``).

The input is a file, a folder or a glob of JSONL, CSV and Parquet shards
(:func:`topictone.infer.io.readers.input_files`). Each file is one read task that parses it with
the batch CLI's own reader and checks every row as the CLI does
(:class:`topictone.infer.batch.local.Plan`), so a bad row is the same one line, naming the file,
line and field. Blocks of ``engine.block_rows`` rows go to a pool of ``engine.actors`` actors, each
of which loads the model once and predicts ``engine.batch_size`` rows per call; each block is
written as one shard with the CLI's own writers (a Parquet shard's schema from all its rows). Every
output row is therefore exactly the record the single-process CLI writes for that input
row (``tests/test_ray.py`` compares them).

Rows travel between tasks pickled in one binary column rather than as Arrow columns, and
neither ``ray.data.read_json``/``read_csv`` nor ``write_json`` is used: they change rows
(CSV ``"1"`` becomes the number 1, a field one JSON row lacks becomes ``null``, floats are
written with 10 digits), and a JSON field may hold a number in one row and a string in
the next.

The shards go into a temporary folder beside the output, which becomes the output only
when every block is written; any error removes it. An existing output must be empty or
hold only an earlier run's shards (replaced, as the CLI replaces its output file).
This module is imported only for ``engine=ray``: the core install never imports Ray.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import pickle
import re
import shutil
import stat
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from functools import partial
from itertools import groupby
from pathlib import Path
from typing import Any

import pyarrow as pa
from omegaconf import DictConfig, OmegaConf

from topictone import infer
from topictone.infer.artifact import read_manifest
from topictone.infer.batch.local import Plan, predict_located, prediction_type, write_located
from topictone.infer.errors import InputError, TopictoneError
from topictone.infer.io.outputs import check_not_model, file_writer, output_folder
from topictone.infer.io.readers import (
    STDOUT,
    detect_format,
    input_files,
    parquet_schema,
    read_records,
)
from topictone.infer.limits import TextLimits
from topictone.infer.paths import follow_umask
from topictone.infer.schema import LabelSchema

try:
    import ray
    import ray.data
    from ray.data import ActorPoolStrategy, Datasink, Datasource, ReadTask
    from ray.data.block import BlockAccessor, BlockMetadata
except ModuleNotFoundError as err:
    if (err.name or "").partition(".")[0] != "ray":
        raise
    raise TopictoneError("engine=ray needs Ray: pip install 'topictone[scale]'") from None

OUTPUT_FORMATS = ("parquet", "jsonl")
RETRY_NOTE = "\nFailed to "  # what Ray Data appends to a task's error
SHARD = re.compile(r"^part-\d{5,}-\d{5,}-\d{5,}(\.\d+)?\.(jsonl|parquet)$")  # what it writes


@dataclass(frozen=True)
class Source:
    """One input file: its index (in shard names), its absolute path (what workers
    open), its path as the user named it (in errors) and its format."""

    index: int
    path: str
    shown: str
    kind: str


def run(cfg: DictConfig, load_args: Mapping[str, Any]) -> tuple[int, int]:
    """Predict ``cfg.input`` into the folder ``cfg.output``; return (rows, shards).

    ``load_args`` are what the CLI passes to :func:`infer.load` (limits and options)."""
    engine = cfg.engine
    for key in ("actors", "batch_size", "block_rows"):
        value = engine[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise TopictoneError(f"engine.{key} must be a positive integer, got {value!r}")
    cpus = engine.num_cpus
    if isinstance(cpus, bool) or not isinstance(cpus, (int, float)) or not cpus > 0:
        raise TopictoneError(f"engine.num_cpus must be a positive number, got {cpus!r}")
    if str(cfg.output) == STDOUT:
        raise TopictoneError("engine=ray writes a folder of shards, not standard output ('-')")
    if cfg.resume:
        raise TopictoneError(
            "resume=true is for engine=local; engine=ray writes a new output folder each run"
        )
    kind = cfg.output_format or engine.format
    if kind not in OUTPUT_FORMATS:
        raise TopictoneError(f"engine=ray writes {' or '.join(OUTPUT_FORMATS)} shards, not {kind}")
    target = Path(cfg.output)
    check_not_model(target, (cfg.model,))  # never shards into (or over) a model folder
    # A wrong folder, or not the pinned one, is one line before Ray starts.
    pin = {k: v for k, v in load_args.items() if k == "model_sha256"}
    labels = read_manifest(Path(cfg.model), **pin).schema
    files = input_files(cfg.input, cfg.input_format)
    base = Plan(
        None,
        "jsonl",
        kind,
        cfg.text_field,
        cfg.prediction_field,
        cfg.prediction_prefix,
        TextLimits.of(load_args.get("limits")),
    )
    sources = [
        Source(i, str(f.resolve()), str(f), detect_format(f, cfg.input_format))
        for i, f in enumerate(files)
    ]
    plans = [replace(base, source=s.shown, kind_in=s.kind) for s in sources]
    check_folder(target, files)
    explain = bool(cfg.explain)
    predict_args = {
        "model": str(Path(cfg.model).resolve()),
        "load_args": dict(load_args),
        "plans": plans,
        "thresholds": OmegaConf.to_container(cfg.thresholds) or None,
        "explain": explain,
    }
    with output_folder(target):
        return _run(cfg, target, sources, plans, predict_args, (labels, explain))


def _run(
    cfg: DictConfig,
    target: Path,
    sources: list[Source],
    plans: list[Plan],
    predict_args: dict[str, Any],
    prediction: tuple[LabelSchema, bool],
) -> tuple[int, int]:
    """Read, predict and write into a temporary folder that becomes ``target``."""
    engine = cfg.engine
    try:
        tmp = Path(
            tempfile.mkdtemp(
                prefix=f".{target.name}.{os.getpid()}.", suffix=".part", dir=target.parent
            )
        )
    except OSError as err:
        raise TopictoneError(f"{target.parent}: cannot write here ({err.strerror})") from None
    sink = Shards(str(tmp), plans[0].kind_out, sources, plans[0].field, prediction)
    cpus = engine.num_cpus
    try:  # removed after Ray stops: a local Ray's workers write no more
        with session(engine.address, engine.actors * cpus, bool(cfg.progress)):
            # One read task per file, its blocks unsplit (override_num_blocks); each block
            # whole to one actor call (batch_size=None), which predicts it engine.batch_size
            # rows at a time: one output block, so one shard, per input block.
            dataset = ray.data.read_datasource(
                Files(sources, plans, engine.block_rows, cfg.max_line_bytes),
                override_num_blocks=len(sources),
            ).map_batches(
                Predict,
                fn_constructor_kwargs={**predict_args, "batch_size": engine.batch_size},
                compute=ActorPoolStrategy(size=engine.actors),
                batch_size=None,
                num_cpus=cpus,
                batch_format="pyarrow",
            )
            try:
                dataset.write_datasink(sink)
            except Exception as err:
                raise user_error(err) or err  # noqa: B904 (the original, or Ray's own)
        shards = len(list(tmp.iterdir()))
        publish(tmp, target, [Path(s.shown) for s in sources])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return sink.rows, shards


def check_folder(target: Path, inputs: Iterable[Path]) -> None:
    """Refuse an output that is not a new folder, an empty one, or an earlier run's
    output (shards only), and one that holds an input."""
    try:
        info = os.lstat(target)
    except FileNotFoundError:
        return
    except OSError as err:
        raise TopictoneError(f"{target}: cannot use as output ({err.strerror})") from None
    if stat.S_ISLNK(info.st_mode):
        raise TopictoneError(f"{target}: output exists and is a link; refusing to replace it")
    if not stat.S_ISDIR(info.st_mode):
        raise TopictoneError(
            f"{target}: output exists and is not a folder (engine=ray writes a folder of shards)"
        )
    root = target.resolve()
    for source in inputs:
        if root in source.resolve().parents:
            raise TopictoneError(
                f"{target}: the output folder holds the input {source}; choose another output"
            )
    others = sorted(
        p.name
        for p in target.iterdir()
        if not (SHARD.match(p.name) and p.is_file() and not p.is_symlink())
    )
    if others:
        raise TopictoneError(
            f"{target}: the output folder holds files engine=ray did not write ({others[0]}); "
            "choose a new or empty folder"
        )


def publish(tmp: Path, target: Path, inputs: Iterable[Path]) -> None:
    """The finished temporary folder becomes ``target``; an earlier output is removed."""
    follow_umask(tmp, folder=True)
    if not os.path.lexists(target):
        os.rename(tmp, target)
        return
    check_folder(target, inputs)  # again: it may have changed during the run
    old = target.parent / f".{target.name}.{os.getpid()}.old.part"
    os.rename(target, old)
    try:
        os.rename(tmp, target)
    except BaseException:
        os.rename(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def session(address: str | None, cpus: float, progress: bool) -> Iterator[None]:
    """Join ``address`` (or this process's running Ray), else start a local Ray for the
    run: without the dashboard, with a CPU more than the actors reserve (for the read and
    write tasks). Only a Ray started here is shut down. Quiet: Ray Data's console shows
    progress when ``progress``, and never the tracebacks of the errors this run raises."""
    started = not ray.is_initialized()
    if started:
        settings: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": False}
        if address:
            settings["address"] = address
        else:
            settings["address"] = "local"
            settings["include_dashboard"] = False
            settings["num_cpus"] = max(os.cpu_count() or 1, math.ceil(cpus) + 1)
        # A local Ray turns token authentication on and says so; that is no problem.
        notice = logging.getLogger("ray._private.authentication.authentication_token_setup")
        level = notice.level
        notice.setLevel(logging.ERROR)
        try:
            ray.init(**settings)
        except ConnectionError as err:  # the cause's last line says why (authentication, ...)
            why = [line.strip() for line in str(err.__cause__ or "").splitlines() if line.strip()]
            raise TopictoneError(
                f"engine.address={address}: {err}" + (f" ({why[-1]})" if why else "")
            ) from None
        finally:
            notice.setLevel(level)
    context = ray.data.DataContext.get_current()
    knobs = {
        "enable_progress_bars": progress,
        "print_on_execution_start": False,
        "raise_original_map_exception": True,  # the actor's error, not "UDF failed"
    }
    saved = {name: getattr(context, name) for name in knobs}
    for name, value in knobs.items():
        setattr(context, name, value)
    console = [
        h for h in logging.getLogger("ray.data").handlers if isinstance(h, logging.StreamHandler)
    ]
    quiet = _Console(progress)
    for handler in console:
        handler.addFilter(quiet)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(context, name, value)
        for handler in console:
            handler.removeFilter(quiet)
        if started:
            ray.shutdown()


class _Console(logging.Filter):
    """Ray Data's console: progress (INFO, WARNING) when asked for; errors never, as the
    run raises them (a user's error as one line); Ray Data's log file keeps everything."""

    def __init__(self, progress: bool) -> None:
        super().__init__()
        self.progress = progress

    def filter(self, record: logging.LogRecord) -> bool:
        return self.progress and record.levelno < logging.ERROR


def user_error(err: BaseException) -> BaseException | None:
    """The user's error inside Ray's wrappers (a bad row, an unreadable file), as the
    single-process CLI would raise it, or None."""
    seen: set[int] = set()
    todo: list[Any] = [err]
    while todo:
        current = todo.pop(0)
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, (TopictoneError, OSError)) and not isinstance(
            current, ray.exceptions.RayError
        ):
            return _without_retry_note(current)
        todo += [getattr(current, "cause", None), current.__cause__, current.__context__]
    return None


def _without_retry_note(err: BaseException) -> BaseException:
    """Ray Data appends "Failed to ... after 1/1 attempts" and advice to the arguments of
    an error raised in a task; the user's error is the line before it."""
    if isinstance(err, OSError):
        return type(err)(err.errno, err.strerror, err.filename)
    message = str(err)
    if RETRY_NOTE in message:
        err.args = (message.split(RETRY_NOTE, 1)[0],)
    return err


class Files(Datasource):
    """One read task per input file: the CLI's reader and row checks, in blocks."""

    def __init__(
        self, sources: list[Source], plans: list[Plan], block_rows: int, max_line_bytes: int
    ) -> None:
        super().__init__()
        self.sources, self.plans = sources, plans
        self.block_rows, self.max_line_bytes = block_rows, max_line_bytes

    def estimate_inmemory_data_size(self) -> int | None:
        return sum(os.path.getsize(s.path) for s in self.sources)

    def get_read_tasks(
        self, parallelism: int, per_task_row_limit: int | None = None, data_context: Any = None
    ) -> list[ReadTask]:
        return [
            ReadTask(
                partial(read_blocks, s, self.plans[s.index], self.block_rows, self.max_line_bytes),
                BlockMetadata(
                    num_rows=None,
                    size_bytes=os.path.getsize(s.path),
                    exec_stats=None,
                    input_files=(s.path,),  # what BlockMetadata stores a list as
                ),
                per_task_row_limit=per_task_row_limit,
            )
            for s in self.sources
        ]


def read_blocks(
    source: Source, plan: Plan, block_rows: int, max_line_bytes: int
) -> Iterator[pa.Table]:
    """The file's checked rows, pickled with their JSONL line where the plan needs it
    (:meth:`Plan.merge`), with their input lines, ``block_rows`` at a time."""
    lines: list[int] = []
    rows: list[bytes] = []
    number = 0
    keep = plan.splice or plan.literals
    records = read_records(source.path, source.kind, max_line_bytes, plan.exact_numbers)
    try:
        for line, row, _, text in records:
            plan.check(row, line)
            lines.append(line)
            rows.append(pickle.dumps((row, text if keep else None), protocol=5))
            if len(rows) >= block_rows:
                yield _block(source.index, number, lines, rows)
                lines, rows, number = [], [], number + 1
    except InputError as err:
        if err.file is None or str(err.file) != source.path:
            raise
        raise InputError(err.reason, source.shown, err.line, err.field) from None
    if rows:
        yield _block(source.index, number, lines, rows)


def _block(index: int, number: int, lines: list[int], rows: list[bytes]) -> pa.Table:
    """Rows with where they come from: the input file, the block in it, the line."""
    return pa.table(
        {
            "file": pa.array([index] * len(lines), pa.int32()),
            "block": pa.array([number] * len(lines), pa.int32()),
            "line": pa.array(lines, pa.int64()),
            "row": pa.array(rows, pa.large_binary()),
        }
    )


class Predict:
    """An actor: the model loaded once, as the CLI loads it; a block of rows in,
    ``batch_size`` rows per predict call, the block's records out."""

    def __init__(
        self,
        model: str,
        load_args: dict[str, Any],
        plans: list[Plan],
        thresholds: dict[str, float] | None,
        explain: bool,
        batch_size: int,
    ) -> None:
        self.predictor = infer.load(model, **load_args)
        self.plans, self.thresholds, self.explain = plans, thresholds, explain
        self.batch_size = batch_size

    def __call__(self, block: pa.Table) -> pa.Table:
        files, lines = block.column("file").to_pylist(), block.column("line").to_pylist()
        records: list[bytes] = []
        for file, run_ in groupby(range(block.num_rows), key=files.__getitem__):
            at = list(run_)
            for start in range(at[0], at[-1] + 1, self.batch_size):
                stop = min(start + self.batch_size, at[-1] + 1)
                records += self._predict(self.plans[file], block, lines, start, stop)
        return block.drop_columns(["row"]).append_column(
            "record", pa.array(records, pa.large_binary())
        )

    def _predict(
        self, plan: Plan, block: pa.Table, lines: list[int], start: int, stop: int
    ) -> list[bytes]:
        """Rows ``start:stop`` of one file predicted, as pickled output records."""
        part = block.column("row").slice(start, stop - start).to_pylist()
        rows = [pickle.loads(value) for value in part]
        predictions = predict_located(
            self.predictor,
            [row[plan.text_field] for row, _ in rows],
            plan,
            lines[start:stop],
            self.thresholds,
            self.explain,
        )
        return [
            pickle.dumps(plan.merge(row, text, p), protocol=5)
            for (row, text), p in zip(rows, predictions, strict=True)
        ]


class Shards(Datasink):
    """One shard per input block, ``part-<file>-<block>-<task>``, its rows in input order,
    written with the CLI's writers in one write (a Parquet shard's columns typed from all
    its rows; a block Ray split between write tasks is one shard per task; one a task
    met twice, ``.<n>`` for the second part)."""

    def __init__(
        self,
        folder: str,
        kind: str,
        sources: list[Source],
        field: str,
        prediction: tuple[LabelSchema, bool],
    ) -> None:
        self.folder, self.kind, self.sources = folder, kind, sources
        self.field, self.prediction = field, prediction
        self.rows = 0  # on the driver, once every write task is done

    def on_write_complete(self, write_result: Any) -> None:
        self.rows = sum(write_result.write_returns)

    def write(self, blocks: Iterable[Any], ctx: Any) -> int:
        count = 0
        parts: dict[tuple[int, int], int] = {}  # shards begun per (file, block)
        current: tuple[int, int] | None = None
        records: list[Any] = []
        lines: list[int] = []
        for block in blocks:
            table = BlockAccessor.for_block(block).to_arrow()
            if table.num_rows == 0:
                continue
            files, numbers = table.column("file"), table.column("block")
            keys = list(zip(files.to_pylist(), numbers.to_pylist(), strict=True))
            at_lines = table.column("line").to_pylist()
            pickled = table.column("record").to_pylist()
            for key, run_ in groupby(range(len(keys)), key=keys.__getitem__):
                if key != current:  # one shard gathered at a time
                    count += self._shard(current, parts, ctx, records, lines)
                    current, records, lines = key, [], []
                for i in run_:
                    records.append(pickle.loads(pickled[i]))
                    lines.append(at_lines[i])
        return count + self._shard(current, parts, ctx, records, lines)

    def _shard(
        self,
        key: tuple[int, int] | None,
        parts: dict[tuple[int, int], int],
        ctx: Any,
        records: list[Any],
        lines: list[int],
    ) -> int:
        """Write one shard's records; return how many."""
        if key is None or not records:
            return 0
        source = self.sources[key[0]]
        part = parts[key] = parts.get(key, -1) + 1
        name = f"part-{key[0]:05d}-{key[1]:05d}-{ctx.task_idx:05d}" + (f".{part}" if part else "")
        path = os.path.join(self.folder, f"{name}.{self.kind}")
        with file_writer(path, self.kind, self._schema(source), (self.field,)) as writer:
            write_located(writer, records, source.shown, lines)
        return len(records)

    def _schema(self, source: Source) -> Any:
        """A Parquet shard's known types: a Parquet input's own, and the prediction's."""
        if self.kind != "parquet":
            return None
        known = list(parquet_schema(source.path)) if source.kind == "parquet" else []
        return pa.schema([*known, pa.field(self.field, prediction_type(*self.prediction))])
