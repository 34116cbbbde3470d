"""Micro-batching: concurrent requests merged into one forward pass.

Requests go into a bounded queue; one task takes the first waiting request, then keeps taking
more until the batch holds ``max_batch_texts`` texts or ``max_wait_s`` has passed since the first
was taken, and runs the model once per distinct set of options (domain, threshold, LLM) in the
batch. The model runs in one worker thread (torch releases the GIL, so the event loop keeps
accepting requests; one thread, because concurrent forwards would only fight over the cores).
While a forward runs, new requests queue up and make the next batch, so batches grow with load
and a lone request waits at most ``max_wait_s``.

``enabled=False`` runs every request on its own, in arrival order: the one-by-one baseline of
``evals/bench_serve.py``.

Failures stay with the request that caused them: when a merged model call raises, each request
of it runs again on its own, so only the one with the bad text gets the error. The loop itself
survives any model error. A request not answered within ``timeout_s`` raises
:class:`RequestTimeout` (a queued one is then skipped, never run). If the batching task dies
anyway (an exception, or cancelled outside :meth:`MicroBatcher.stop`), :attr:`MicroBatcher.dead`
turns true and every waiting request, and every new one, fails at once with
:class:`BatcherDead` instead of hanging.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

Entities = list[dict[str, Any]]
# run(texts, options) -> one entity list per text, in order (a blocking model call).
RunFn = Callable[[list[str], Hashable], list[Entities]]

log = logging.getLogger("cdlm.serve")


class QueueFull(RuntimeError):
    """More requests are waiting than the queue holds (the server answers 503)."""


class BatcherDead(RuntimeError):
    """The batching task has died: nothing would ever answer (the server answers 503)."""


class RequestTimeout(RuntimeError):
    """No answer within ``timeout_s`` (the server answers 504)."""


@dataclass
class _Job:
    texts: list[str]
    options: Hashable
    future: asyncio.Future[list[Entities]]


@dataclass
class BatchStats:
    """Counts since start: requests in, requests answered (with a result or an error), model
    calls and texts run. ``requests - answered`` is what is still queued or running."""

    requests: int = 0
    answered: int = 0
    calls: int = 0
    texts: int = 0
    largest_call: int = 0  # most texts in one model call
    sizes: dict[int, int] = field(default_factory=dict)  # texts per call -> how many calls


class MicroBatcher:
    """Queue + batching task in front of a blocking ``run`` function (see the module doc)."""

    def __init__(
        self,
        run: RunFn,
        *,
        max_batch_texts: int = 64,
        max_wait_s: float = 0.005,
        enabled: bool = True,
        max_queue: int = 1024,
        timeout_s: float | None = None,
    ) -> None:
        self.run = run
        self.max_batch_texts = max_batch_texts
        self.max_wait_s = max_wait_s
        self.enabled = enabled
        self.timeout_s = timeout_s  # None = wait as long as it takes
        self.stats = BatchStats()
        self._queue: asyncio.Queue[_Job] = asyncio.Queue(max_queue)
        self._carry: _Job | None = None  # taken, but did not fit into the last batch
        self._taken: list[_Job] = []  # the batch being run (failed too if the task dies)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cdlm-model")
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def waiting(self) -> int:
        return self._queue.qsize() + (self._carry is not None)

    @property
    def dead(self) -> bool:
        """The batching task ended on its own (crashed, or cancelled outside :meth:`stop`)."""
        return self._task is not None and self._task.done() and not self._stopping

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="cdlm-batcher")
        self._task.add_done_callback(self._ended)

    async def stop(self) -> None:
        """Stop taking work; requests still queued get an error (the server is going down)."""
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        self._fail_pending(RuntimeError, "server shutting down")
        self._executor.shutdown(wait=True)

    async def submit(self, texts: list[str], options: Hashable) -> list[Entities]:
        """The entities of ``texts`` under ``options``, once their batch has run."""
        if self.dead:
            raise BatcherDead("the batching task has died")
        future: asyncio.Future[list[Entities]] = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait(_Job(list(texts), options, future))
        except asyncio.QueueFull:
            raise QueueFull(f"{self._queue.maxsize} requests are already waiting") from None
        self.stats.requests += 1
        try:  # a timeout cancels the future: the loop then skips the job, or drops its answer
            return await asyncio.wait_for(future, self.timeout_s)
        except TimeoutError:
            raise RequestTimeout(f"no answer within {self.timeout_s} s") from None
        finally:
            self.stats.answered += 1

    def _ended(self, task: asyncio.Task[None]) -> None:
        """Done callback of the loop: unless stopping, fail whatever waits (nothing would
        answer it) and log why the loop ended."""
        if self._stopping:
            return
        error = None if task.cancelled() else task.exception()
        log.error("cdlm serve: the batching task died (%s)", error or "cancelled", exc_info=error)
        self._fail_pending(BatcherDead, "the batching task has died")

    def _fail_pending(self, error: type[Exception], message: str) -> None:
        pending = [*self._taken, *([self._carry] if self._carry else [])]
        while not self._queue.empty():
            pending.append(self._queue.get_nowait())
        for job in pending:
            if not job.future.done():
                job.future.set_exception(error(message))

    async def _next_batch(self) -> list[_Job]:
        loop = asyncio.get_running_loop()
        first = self._carry or await self._queue.get()
        self._carry = None
        self._taken = jobs = [first]
        size = len(first.texts)
        if not self.enabled:
            return jobs
        deadline = loop.time() + self.max_wait_s
        while size < self.max_batch_texts:
            try:
                job = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    job = await asyncio.wait_for(self._queue.get(), remaining)
                except TimeoutError:
                    break
            if size + len(job.texts) > self.max_batch_texts:
                self._carry = job  # first of the next batch
                break
            jobs.append(job)
            size += len(job.texts)
        return jobs

    async def _loop(self) -> None:
        while True:
            jobs = await self._next_batch()
            groups: dict[Hashable, list[_Job]] = {}
            for job in jobs:
                groups.setdefault(job.options, []).append(job)
            for options, group in groups.items():
                live = [job for job in group if not job.future.done()]  # client still there
                if live:
                    await self._answer(live, options, isolate=len(live) > 1)
            self._taken = []

    async def _answer(self, jobs: list[_Job], options: Hashable, *, isolate: bool) -> None:
        """One model call for ``jobs``. If it raises and ``isolate``, each job runs again on
        its own, so the error reaches only the request whose texts caused it."""
        texts = [t for job in jobs for t in job.texts]
        loop = asyncio.get_running_loop()
        try:
            results = await loop.run_in_executor(self._executor, self._call, texts, options)
        except Exception as exc:
            if isolate:
                for job in jobs:
                    if not job.future.done():
                        await self._answer([job], options, isolate=False)
                return
            for job in jobs:
                if not job.future.done():
                    job.future.set_exception(exc)
            return
        self._count(len(texts))
        k = 0
        for job in jobs:
            part, k = results[k : k + len(job.texts)], k + len(job.texts)
            if not job.future.done():
                job.future.set_result(part)

    def _call(self, texts: list[str], options: Hashable) -> list[Entities]:
        """``run`` in the worker thread. A StopIteration cannot be set on an asyncio future (it
        would leave the request hanging), so it becomes a RuntimeError."""
        try:
            return self.run(texts, options)
        except StopIteration as exc:
            raise RuntimeError("the model call raised StopIteration") from exc

    def _count(self, texts: int) -> None:
        s = self.stats
        s.calls += 1
        s.texts += texts
        s.largest_call = max(s.largest_call, texts)
        s.sizes[texts] = s.sizes.get(texts, 0) + 1
