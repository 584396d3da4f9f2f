"""Micro-batching: concurrent requests share one model call, and one bad request fails alone.

A model call has a fixed cost (the TF-IDF pipeline's: about 3 ms before its first text,
then about 0.25 ms a headline), so the service queues each request's checked texts and
one worker scores whatever arrived together, off the event loop. Each caller gets its own slice of
the scores back, identical to scoring its texts alone. Plain asyncio: nothing here needs
the web framework.

When a shared call fails, a known-good text (the canary) tells a broken model from a bad
request: a model that fails the canary too is marked broken and refuses all work, else
each request of the batch is scored on its own, so only those whose own texts fail get
the error. :meth:`MicroBatcher.problem` says what a liveness probe must know: the worker
died, a model call is stuck, or the model is broken.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from time import monotonic
from typing import Any, TypeVar

import numpy as np

from topictone.infer.errors import TopictoneError

Scores = tuple[np.ndarray, np.ndarray]
T = TypeVar("T")
STOPPED = "the batch worker stopped"
NOT_RUNNING = "the batch worker is not running"
CANARY = ["health check"]  # already normalised: what preprocess makes of it


class ModelError(RuntimeError):
    """The model failed on a request (its message never holds the request's texts)."""


class Unavailable(RuntimeError):
    """No request can be answered now: the worker is not running, or the model is broken."""


class ModelBroken(Unavailable):
    """The model fails on a known-good text too: no request can be answered."""


class Abandoned(Exception):
    """Work run alone stopped between two steps: its caller no longer waits for it."""


def _failure(err: BaseException) -> Exception:
    """An exception a future may carry to its caller: a tokenizer's panic is a
    BaseException, which would escape every ``except Exception`` on its way."""
    if isinstance(err, Exception):
        return err
    return ModelError(f"the model failed ({type(err).__name__})")


class Clock:
    """When the current step of one lane began; None while the lane is idle."""

    def __init__(self) -> None:
        self.began: float | None = None

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        self.began = monotonic()
        try:
            yield
        finally:
            self.began = None


class Steps:
    """Handed to work run alone, which calls :meth:`check` before each model call: the
    wedge clock then times one call, not the whole request (an explanation is a call a
    text), and work whose caller left stops at the next step instead of running on."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.cancelled = threading.Event()

    def check(self) -> None:
        if self.cancelled.is_set():
            raise Abandoned
        self.clock.began = monotonic()

    def run(self, func: Callable[..., T], *args: Any) -> T:
        with self.clock.running():
            return func(self, *args)


@dataclass
class _Job:
    texts: list[str]
    future: asyncio.Future[Scores] = field(repr=False)


class MicroBatcher:
    """Groups texts submitted within ``max_wait_ms`` of each other, up to
    ``max_batch_texts``, into one call of ``score`` in a worker thread.

    Requests that arrive while the model is busy join the next call whatever the wait;
    the wait only lets a batch fill up further, and only once the last batch held more
    than one request (the service is under concurrent load). A request whose caller
    stopped waiting (it left, or its deadline passed) is dropped from the batch forming.

    ``score`` is ``predictor.predict_scores_clean``: texts in, (topic, tone) rows out,
    one row per text. A request larger than ``max_batch_texts`` is scored alone, never
    split. ``calls`` counts model calls (the service's tests read it). A model call that
    runs past ``wedged_after_s`` makes :meth:`problem` report the service wedged.
    """

    def __init__(
        self,
        score: Callable[[list[str]], Scores],
        max_batch_texts: int = 256,
        max_wait_ms: float = 5.0,
        wedged_after_s: float = 120.0,
    ) -> None:
        if max_batch_texts < 1:
            raise ValueError(f"max_batch_texts must be at least 1, got {max_batch_texts}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be at least 0, got {max_wait_ms}")
        if not wedged_after_s > 0:
            raise ValueError(f"wedged_after_s must be positive, got {wedged_after_s}")
        self.score = score
        self.max_batch_texts = max_batch_texts
        self.max_wait = max_wait_ms / 1000
        self.wedged_after = wedged_after_s
        self.calls = 0
        self.broken: str | None = None  # why the model is broken, once it is
        self._queue: asyncio.Queue[_Job] | None = None
        self._task: asyncio.Task[None] | None = None
        self._carry: _Job | None = None  # arrived too late for the last batch
        self._last_jobs = 0  # requests in the last batch
        self._forming: list[_Job] = []  # the batch being gathered or scored
        self._alone: asyncio.Semaphore | None = None
        self._canary_lock: asyncio.Lock | None = None
        self._clocks = {"batch": Clock(), "alone": Clock(), "canary": Clock()}

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def problem(self) -> str | None:
        """Why the service cannot answer (a liveness probe's question), or None."""
        if self._task is not None and self._task.done():
            return "the batch worker died"
        if self.broken:
            return self.broken
        now = monotonic()
        for lane, clock in self._clocks.items():
            began = clock.began
            if began is not None and now - began > self.wedged_after:
                return (
                    f"a model call ({lane}) has run {now - began:.0f} s, "
                    f"over wedged_after_s={self.wedged_after:g}"
                )
        return None

    async def start(self) -> None:
        """Start the worker on the running loop (the app's lifespan calls this)."""
        self._queue = asyncio.Queue()
        self._alone = asyncio.Semaphore(1)
        self._canary_lock = asyncio.Lock()
        self._task = asyncio.create_task(self._work(), name="topictone-batcher")

    async def stop(self) -> None:
        """Stop the worker; requests still waiting fail instead of hanging."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._task = None
        pending = [*self._forming, *([self._carry] if self._carry else [])]
        while self._queue is not None and not self._queue.empty():
            pending.append(self._queue.get_nowait())
        for job in pending:
            if not job.future.done():
                job.future.set_exception(Unavailable(STOPPED))
        self._carry = None

    def _check_open(self) -> None:
        if self.broken:
            raise ModelBroken(self.broken)
        if not self.running:
            raise Unavailable(NOT_RUNNING)

    async def submit(self, texts: list[str]) -> Scores:
        """Scores for ``texts`` (already preprocessed), computed with other callers'."""
        self._check_open()
        assert self._queue is not None
        job = _Job(texts, asyncio.get_running_loop().create_future())
        self._queue.put_nowait(job)
        return await job.future

    async def run_alone(self, func: Callable[..., T], *args: Any) -> T:
        """``func(steps, *args)`` in a thread, one such call at a time, beside the batches:
        a huge request or an explanation holds up neither the batches nor more than one
        thread. The lane stays taken until the thread ends, even if the caller left."""
        self._check_open()
        assert self._alone is not None
        await self._alone.acquire()
        steps = Steps(self._clocks["alone"])
        thread = asyncio.ensure_future(asyncio.to_thread(steps.run, func, *args))
        thread.add_done_callback(self._release_alone)
        try:
            return await asyncio.shield(thread)
        except asyncio.CancelledError:
            steps.cancelled.set()
            raise
        except (TopictoneError, Abandoned):
            raise  # the request's own fault (a bad text), not the model's
        except BaseException as err:
            await self._check_model()
            raise (ModelBroken(self.broken) if self.broken else _failure(err)) from None

    def _release_alone(self, thread: asyncio.Future[Any]) -> None:
        assert self._alone is not None
        self._alone.release()
        if not thread.cancelled():
            thread.exception()  # retrieved: a caller that left no longer will

    async def _check_model(self) -> None:
        """After a failed model call: the canary through the model, once at a time. If
        it fails too, the model is broken (it stays so: the probes ask for a restart)."""
        assert self._canary_lock is not None
        async with self._canary_lock:
            if self.broken:
                return
            try:
                with self._clocks["canary"].running():
                    await asyncio.to_thread(self.score, CANARY)
            except asyncio.CancelledError:
                raise
            except BaseException as err:  # a tokenizer's panic is not an Exception
                self.broken = (
                    f"the model is broken: it fails a known-good text too ({type(err).__name__})"
                )

    async def _next_batch(self) -> list[_Job]:
        """The first waiting job, then whatever else arrives within the wait, in order."""
        assert self._queue is not None
        first = self._carry or await self._queue.get()
        self._carry = None
        if first.future.done():  # its caller left
            return []
        batch = self._forming = [first]
        size = len(first.texts)
        # Wait for company only where there is some: after a batch of one request, a
        # request alone is scored at once, so one client at a time never pays the wait.
        wait = self.max_wait if self._last_jobs > 1 else 0.0
        deadline = asyncio.get_running_loop().time() + wait
        while size < self.max_batch_texts:
            if self._queue.empty():
                left = deadline - asyncio.get_running_loop().time()
                if left <= 0:
                    break
                try:
                    job = await asyncio.wait_for(self._queue.get(), left)
                except asyncio.TimeoutError:  # not the builtin before Python 3.11
                    break
            else:
                job = self._queue.get_nowait()
            if job.future.done():  # its caller left: its texts take no room
                continue
            if size + len(job.texts) > self.max_batch_texts:
                self._carry = job
                break
            batch.append(job)
            size += len(job.texts)
        self._last_jobs = len(batch)
        return [job for job in batch if not job.future.done()]  # a caller may have left

    async def _call(self, texts: list[str]) -> Scores:
        self.calls += 1
        with self._clocks["batch"].running():
            return await asyncio.to_thread(self.score, texts)

    async def _work(self) -> None:
        while True:
            batch = await self._next_batch()
            if batch:
                await self._answer(batch)

    async def _answer(self, batch: list[_Job]) -> None:
        """One model call for the batch; each caller gets its own rows."""
        if self.broken:
            _fail(batch, ModelBroken(self.broken))
            return
        try:
            topic, tone = await self._call([text for job in batch for text in job.texts])
        except asyncio.CancelledError:
            raise  # stopping: stop() fails the batch
        except BaseException as err:  # a tokenizer's panic is not an Exception
            await self._isolate(batch, err)
            return
        start = 0
        for job in batch:
            end = start + len(job.texts)
            if not job.future.done():
                job.future.set_result((topic[start:end], tone[start:end]))
            start = end

    async def _isolate(self, batch: list[_Job], err: BaseException) -> None:
        """The shared call failed: a broken model fails every job; else each job is
        scored on its own, so only the jobs whose own texts fail get an error."""
        await self._check_model()
        if self.broken or len(batch) == 1:
            _fail(batch, ModelBroken(self.broken) if self.broken else _failure(err))
            return
        for job in batch:
            if job.future.done():
                continue
            try:
                topic, tone = await self._call(job.texts)
            except asyncio.CancelledError:
                raise
            except BaseException as own:
                _fail([job], _failure(own))
            else:
                if not job.future.done():
                    job.future.set_result((topic, tone))


def _fail(jobs: list[_Job], err: Exception) -> None:
    for job in jobs:
        if not job.future.done():
            job.future.set_exception(err)
