"""The micro-batcher on its own: concurrent requests merged into few model calls, each request
answered with its own texts' results, in order; options never mixed; errors reach the caller."""

from __future__ import annotations

import asyncio
import threading

import pytest

from cdlm.serve.batcher import BatcherDead, MicroBatcher, QueueFull


class Recorder:
    """A real (blocking) run function that records the calls it gets."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], object]] = []
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, texts: list[str], options: object) -> list[list[dict]]:
        self.gate.wait()
        self.calls.append((list(texts), options))
        if "boom" in texts:
            raise ValueError("model failed")
        return [[{"text": t, "options": options}] for t in texts]


async def _requests(batcher: MicroBatcher, jobs: list[tuple[list[str], object]]):
    await batcher.start()
    try:
        return await asyncio.gather(
            *(batcher.submit(texts, opts) for texts, opts in jobs), return_exceptions=True
        )
    finally:
        await batcher.stop()


def test_concurrent_requests_share_calls_and_get_their_own_results() -> None:
    run = Recorder()
    run.gate.clear()  # the first call blocks until every request is queued

    async def main():
        batcher = MicroBatcher(run, max_batch_texts=8, max_wait_s=0.0)
        await batcher.start()
        tasks = [
            asyncio.create_task(batcher.submit([f"t{k}{s}" for s in "abc"], "x")) for k in range(10)
        ]
        while batcher.stats.requests < 10:
            await asyncio.sleep(0)
        run.gate.set()
        results = await asyncio.gather(*tasks)
        await batcher.stop()
        return results, batcher.stats

    results, stats = asyncio.run(main())
    for k, result in enumerate(results):
        assert [r[0]["text"] for r in result] == [f"t{k}a", f"t{k}b", f"t{k}c"]
    assert stats.requests == stats.answered == 10 and stats.texts == 30
    assert len(run.calls) == stats.calls < 10  # merged, never more than max_batch_texts
    assert all(len(texts) <= 8 for texts, _ in run.calls)  # 3 + 3 fit, a third waits
    assert [t for texts, _ in run.calls for t in texts] == [
        f"t{k}{s}" for k in range(10) for s in "abc"
    ]  # arrival order


def test_one_by_one_mode_runs_each_request_alone() -> None:
    run = Recorder()
    jobs = [([f"t{k}"], "x") for k in range(6)]
    results = asyncio.run(_requests(MicroBatcher(run, enabled=False, max_wait_s=1.0), jobs))
    assert [r[0][0]["text"] for r in results] == [f"t{k}" for k in range(6)]
    assert [texts for texts, _ in run.calls] == [[f"t{k}"] for k in range(6)]


def test_options_are_never_mixed_and_errors_reach_their_requests() -> None:
    run = Recorder()
    jobs = [(["a"], ("politics", None)), (["b"], ("music", 0.5)), (["boom"], ("ai", None))]
    results = asyncio.run(_requests(MicroBatcher(run, max_wait_s=0.05), jobs))
    assert results[0] == [[{"text": "a", "options": ("politics", None)}]]
    assert results[1] == [[{"text": "b", "options": ("music", 0.5)}]]
    assert isinstance(results[2], ValueError)
    owner = {t: o for texts, o in jobs for t in texts}  # each text under its own job's options
    assert all(owner[t] == o for texts, o in run.calls for t in texts)
    assert sorted(o for _, o in run.calls) == sorted(o for _, o in jobs)


def test_full_queue_is_refused() -> None:
    run = Recorder()
    run.gate.clear()

    async def main():
        batcher = MicroBatcher(run, max_queue=2, max_wait_s=0.0)
        await batcher.start()
        first = asyncio.create_task(batcher.submit(["a"], "x"))
        while not run.calls and batcher.waiting:  # the first is taken (and blocks the model)
            await asyncio.sleep(0)
        await asyncio.sleep(0.01)
        queued = [asyncio.create_task(batcher.submit([t], "x")) for t in "bc"]
        await asyncio.sleep(0)
        with pytest.raises(QueueFull):
            await batcher.submit(["d"], "x")
        run.gate.set()
        await asyncio.gather(first, *queued)
        await batcher.stop()
        return batcher.stats

    stats = asyncio.run(main())
    assert stats.requests == stats.answered == 3


def test_a_failing_merged_call_is_rerun_per_request() -> None:
    run = Recorder()
    jobs = [(["a"], "x"), (["boom"], "x"), (["c", "d"], "x")]
    batcher = MicroBatcher(run, max_batch_texts=4, max_wait_s=60.0)  # closes when 4 texts wait
    results = asyncio.run(_requests(batcher, jobs))
    assert results[0] == [[{"text": "a", "options": "x"}]]
    assert isinstance(results[1], ValueError)
    assert [r[0]["text"] for r in results[2]] == ["c", "d"]
    assert [texts for texts, _ in run.calls] == [
        ["a", "boom", "c", "d"],
        ["a"],
        ["boom"],
        ["c", "d"],
    ]


def test_a_dead_loop_fails_waiting_and_new_requests_at_once() -> None:
    run = Recorder()
    run.gate.clear()

    async def main() -> tuple[list, bool, BaseException | None]:
        batcher = MicroBatcher(run, max_wait_s=0.0)
        await batcher.start()
        try:
            running = asyncio.create_task(batcher.submit(["a"], "x"))
            while not batcher._taken:
                await asyncio.sleep(0)
            queued = asyncio.create_task(batcher.submit(["b"], "x"))
            await asyncio.sleep(0)
            assert not batcher.dead
            batcher._task.cancel()  # type: ignore[union-attr]
            waiting = await asyncio.gather(running, queued, return_exceptions=True)
            dead = batcher.dead
            try:
                await batcher.submit(["c"], "x")
                later = None
            except BatcherDead as exc:
                later = exc
        finally:
            run.gate.set()
            await batcher.stop()
        return waiting, dead, later

    waiting, dead, later = asyncio.run(main())
    assert [type(r) for r in waiting] == [BatcherDead, BatcherDead]
    assert dead and isinstance(later, BatcherDead)


def test_a_loop_that_crashes_is_dead_too() -> None:
    async def main() -> tuple[BaseException | None, bool]:
        batcher = MicroBatcher(Recorder(), max_wait_s=0.0)
        await batcher.start()
        try:  # unhashable options crash the loop itself (grouping), not the model call
            error = (await asyncio.gather(batcher.submit(["a"], ["x"]), return_exceptions=True))[0]
            return error, batcher.dead
        finally:
            await batcher.stop()

    error, dead = asyncio.run(main())
    assert isinstance(error, BatcherDead) and dead
