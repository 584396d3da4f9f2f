"""Micro-batching: concurrent requests share one model call.

A model call has a fixed cost (the TF-IDF pipeline's: about 3 ms before its first text,
then about 0.25 ms a headline), so the service queues each request's checked texts and
one worker scores whatever arrived together, off the event loop. Each caller gets its own slice of
the scores back, identical to scoring its texts alone. Plain asyncio: nothing here needs
the web framework.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

Scores = tuple[np.ndarray, np.ndarray]
T = TypeVar("T")
STOPPED = "the batch worker stopped"


@dataclass
class _Job:
    texts: list[str]
    future: asyncio.Future[Scores] = field(repr=False)


class MicroBatcher:
    """Groups texts submitted within ``max_wait_ms`` of each other, up to
    ``max_batch_texts``, into one call of ``score`` in a worker thread.

    Requests that arrive while the model is busy join the next call whatever the wait;
    the wait only lets a batch fill up further, and only once the last batch held more
    than one request (the service is under concurrent load).

    ``score`` is ``predictor.predict_scores_clean``: texts in, (topic, tone) rows out,
    one row per text. A request larger than ``max_batch_texts`` is scored alone, never
    split. ``calls`` counts model calls (the service's tests read it).
    """

    def __init__(
        self,
        score: Callable[[list[str]], Scores],
        max_batch_texts: int = 256,
        max_wait_ms: float = 5.0,
    ) -> None:
        if max_batch_texts < 1:
            raise ValueError(f"max_batch_texts must be at least 1, got {max_batch_texts}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be at least 0, got {max_wait_ms}")
        self.score = score
        self.max_batch_texts = max_batch_texts
        self.max_wait = max_wait_ms / 1000
        self.calls = 0
        self._queue: asyncio.Queue[_Job] | None = None
        self._task: asyncio.Task[None] | None = None
        self._carry: _Job | None = None  # arrived too late for the last batch
        self._last_jobs = 0  # requests in the last batch
        self._forming: list[_Job] = []  # the batch being gathered or scored
        self._alone: asyncio.Semaphore | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        """Start the worker on the running loop (the app's lifespan calls this)."""
        self._queue = asyncio.Queue()
        self._alone = asyncio.Semaphore(1)
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
                job.future.set_exception(RuntimeError(STOPPED))
        self._carry = None

    async def submit(self, texts: list[str]) -> Scores:
        """Scores for ``texts`` (already preprocessed), computed with other callers'."""
        if not self.running or self._queue is None:
            raise RuntimeError("the batch worker is not running")
        job = _Job(texts, asyncio.get_running_loop().create_future())
        self._queue.put_nowait(job)
        return await job.future

    async def run_alone(self, func: Callable[..., T], *args: Any) -> T:
        """``func(*args)`` in a thread, one such call at a time, beside the batches: a huge
        request or an explanation holds up neither the batches nor more than one thread."""
        if not self.running or self._alone is None:
            raise RuntimeError("the batch worker is not running")
        async with self._alone:
            return await asyncio.to_thread(func, *args)

    async def _next_batch(self) -> list[_Job]:
        """The first waiting job, then whatever else arrives within the wait, in order."""
        assert self._queue is not None
        first = self._carry or await self._queue.get()
        self._carry = None
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
            if size + len(job.texts) > self.max_batch_texts:
                self._carry = job
                break
            batch.append(job)
            size += len(job.texts)
        self._last_jobs = len(batch)
        return [job for job in batch if not job.future.done()]  # a caller may have left

    async def _work(self) -> None:
        while True:
            batch = await self._next_batch()
            if not batch:
                continue
            texts = [text for job in batch for text in job.texts]
            self.calls += 1
            try:
                topic, tone = await asyncio.to_thread(self.score, texts)
            except BaseException as err:  # the model failed, or the worker is stopping
                failure = err if isinstance(err, Exception) else RuntimeError(STOPPED)
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(failure)
                if failure is not err:
                    raise
                continue
            start = 0
            for job in batch:
                end = start + len(job.texts)
                if not job.future.done():
                    job.future.set_result((topic[start:end], tone[start:end]))
                start = end
