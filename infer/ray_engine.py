"""``python -m infer engine=ray``: batch prediction on Ray Data (``topictone[scale]``).

The input is a file, a folder or a glob of JSONL, CSV and Parquet shards
(:func:`infer.io.input_files`). Each file is one read task that parses it with the batch
CLI's own reader and checks every row as the CLI does (:func:`infer.batch.check_row`),
so a bad row is the same one line, naming the file, line and field. Blocks of
``engine.block_rows`` rows go to a pool of ``engine.actors`` actors, each of which loads
the model once and predicts ``engine.batch_size`` rows per call; each block is written as
one shard with the CLI's own writers. Every output row is therefore exactly the record the
single-process CLI writes for that input row (``tests/test_ray.py`` compares them).

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
from dataclasses import dataclass
from functools import partial
from itertools import groupby
from pathlib import Path
from typing import Any

import pyarrow as pa
from omegaconf import DictConfig, OmegaConf

import infer
from infer.artifact import read_manifest
from infer.batch import check_row, merge_prediction, write_located
from infer.errors import InputError, TopictoneError
from infer.io import (
    STDOUT,
    detect_format,
    file_writer,
    input_files,
    parquet_schema,
    prepare_parent,
    read_rows,
)
from infer.limits import TextLimits
from infer.paths import follow_umask

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
    read_manifest(Path(cfg.model))  # a wrong model folder is one line before Ray starts
    check = {
        "text_field": cfg.text_field,
        "limits": TextLimits.of(load_args.get("limits")),
        "flat": False,
        "field": cfg.prediction_field,
        "prefix": cfg.prediction_prefix,
    }
    files = input_files(cfg.input, cfg.input_format)
    sources = [
        Source(i, str(f.resolve()), str(f), detect_format(f, cfg.input_format))
        for i, f in enumerate(files)
    ]
    target = Path(cfg.output)
    check_folder(target, files)
    prepare_parent(target)

    predict_args = {
        "model": str(Path(cfg.model).resolve()),
        "load_args": dict(load_args),
        "text_field": cfg.text_field,
        "thresholds": OmegaConf.to_container(cfg.thresholds) or None,
        "explain": bool(cfg.explain),
        "field": cfg.prediction_field,
        "prefix": cfg.prediction_prefix,
    }
    try:
        tmp = Path(
            tempfile.mkdtemp(
                prefix=f".{target.name}.{os.getpid()}.", suffix=".part", dir=target.parent
            )
        )
    except OSError as err:
        raise TopictoneError(f"{target.parent}: cannot write here ({err.strerror})") from None
    sink = Shards(str(tmp), kind, sources)
    try:  # removed after Ray stops: a local Ray's workers write no more
        with session(engine.address, engine.actors * cpus, bool(cfg.progress)):
            # One read task per file, its blocks unsplit (override_num_blocks); each block
            # whole to one actor call (batch_size=None), which predicts it engine.batch_size
            # rows at a time: one output block, so one shard, per input block.
            dataset = ray.data.read_datasource(
                Files(sources, check, engine.block_rows, cfg.max_line_bytes),
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
        publish(tmp, target, files)
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
        self, sources: list[Source], check: dict[str, Any], block_rows: int, max_line_bytes: int
    ) -> None:
        super().__init__()
        self.sources, self.check = sources, check
        self.block_rows, self.max_line_bytes = block_rows, max_line_bytes

    def estimate_inmemory_data_size(self) -> int | None:
        return sum(os.path.getsize(s.path) for s in self.sources)

    def get_read_tasks(
        self, parallelism: int, per_task_row_limit: int | None = None, data_context: Any = None
    ) -> list[ReadTask]:
        return [
            ReadTask(
                partial(read_blocks, s, self.check, self.block_rows, self.max_line_bytes),
                BlockMetadata(
                    num_rows=None,
                    size_bytes=os.path.getsize(s.path),
                    exec_stats=None,
                    input_files=[s.path],
                ),
                per_task_row_limit=per_task_row_limit,
            )
            for s in self.sources
        ]


def read_blocks(
    source: Source, check: dict[str, Any], block_rows: int, max_line_bytes: int
) -> Iterator[pa.Table]:
    """The file's checked rows, pickled, with their input lines, ``block_rows`` at a time."""
    lines: list[int] = []
    rows: list[bytes] = []
    number = 0
    try:
        for line, row, _ in read_rows(source.path, source.kind, max_line_bytes=max_line_bytes):
            check_row(row, source=source.path, line=line, **check)
            lines.append(line)
            rows.append(pickle.dumps(row, protocol=5))
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
        text_field: str,
        thresholds: dict[str, float] | None,
        explain: bool,
        field: str,
        prefix: str,
        batch_size: int,
    ) -> None:
        self.predictor = infer.load(model, **load_args)
        self.text_field, self.thresholds, self.explain = text_field, thresholds, explain
        self.field, self.prefix, self.batch_size = field, prefix, batch_size

    def __call__(self, block: pa.Table) -> pa.Table:
        records: list[bytes] = []
        for start in range(0, block.num_rows, self.batch_size):
            part = block.column("row").slice(start, self.batch_size).to_pylist()
            rows = [pickle.loads(value) for value in part]
            predictions = self.predictor.predict(
                [row[self.text_field] for row in rows],
                thresholds=self.thresholds,
                explain=self.explain,
            )
            records += [
                pickle.dumps(merge_prediction(r, p, False, self.field, self.prefix), protocol=5)
                for r, p in zip(rows, predictions, strict=True)
            ]
        return block.drop_columns(["row"]).append_column(
            "record", pa.array(records, pa.large_binary())
        )


class Shards(Datasink):
    """One shard per input block, ``part-<file>-<block>-<task>``, its rows in input order,
    written with the CLI's writers (a block Ray split between write tasks is one shard
    per task; one a task met twice, ``.<n>`` for the second part)."""

    def __init__(self, folder: str, kind: str, sources: list[Source]) -> None:
        self.folder, self.kind, self.sources = folder, kind, sources
        self.rows = 0  # on the driver, once every write task is done

    def on_write_complete(self, write_result: Any) -> None:
        self.rows = sum(write_result.write_returns)

    def write(self, blocks: Iterable[Any], ctx: Any) -> int:
        count = 0
        parts: dict[tuple[int, int], int] = {}  # shards begun per (file, block)
        with contextlib.ExitStack() as stack:
            current: tuple[int, int] | None = None
            writer: Any = None
            for block in blocks:
                table = BlockAccessor.for_block(block).to_arrow()
                if table.num_rows == 0:
                    continue
                files, numbers = table.column("file"), table.column("block")
                keys = list(zip(files.to_pylist(), numbers.to_pylist(), strict=True))
                lines = table.column("line").to_pylist()
                records = table.column("record").to_pylist()
                for key, run_ in groupby(range(len(keys)), key=keys.__getitem__):
                    at = list(run_)
                    source = self.sources[key[0]]
                    if key != current:  # one shard open at a time
                        stack.close()
                        part = parts[key] = parts.get(key, -1) + 1
                        name = f"part-{key[0]:05d}-{key[1]:05d}-{ctx.task_idx:05d}"
                        name += f".{part}" if part else ""
                        same = source.kind == self.kind == "parquet"
                        writer = stack.enter_context(
                            file_writer(
                                os.path.join(self.folder, f"{name}.{self.kind}"),
                                self.kind,
                                parquet_schema(source.path) if same else None,
                            )
                        )
                        current = key
                    write_located(
                        writer,
                        [pickle.loads(records[i]) for i in at],
                        source.shown,
                        [lines[i] for i in at],
                    )
                    count += len(at)
        return count
