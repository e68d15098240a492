"""``WorkerThreads``: the fast hop to a blocking call in a thread, used by ingest and the adapters."""

from __future__ import annotations

import threading
import time

import anyio
import pytest

from dicomweb_kit import WorkerThreads

pytestmark = pytest.mark.anyio


async def test_threads_end_when_idle_and_come_back() -> None:
    readers = WorkerThreads(max_threads=3, idle_seconds=0.05)
    results = []

    async def one(i: int) -> None:
        results.append(await readers.run(lambda: i * 2))

    async with anyio.create_task_group() as tasks:
        for i in range(10):
            tasks.start_soon(one, i)
    assert sorted(results) == [i * 2 for i in range(10)]
    assert 1 <= readers._threads <= 3
    for _ in range(100):
        if readers._threads == 0:
            break
        await anyio.sleep(0.02)
    assert readers._threads == 0 and readers._pending == 0
    assert await readers.run(lambda: "again") == "again"  # a new thread starts on demand
    with pytest.raises(ZeroDivisionError):
        await readers.run(lambda: 1 // 0)  # errors reach the caller


async def test_run_all_runs_at_once_and_answers_in_order() -> None:
    pool = WorkerThreads(max_threads=8, name="run_all test")
    started = threading.Barrier(4, timeout=5)  # all four must be running together to pass it

    def job(i: int) -> int:
        started.wait()
        time.sleep(0.01 * (4 - i))  # the first finishes last
        return i * i

    assert await pool.run_all([lambda i=i: job(i) for i in range(4)]) == [0, 1, 4, 9]
    assert await pool.run_all([]) == []


async def test_run_all_raises_the_first_failure_after_every_call_finished() -> None:
    pool = WorkerThreads(max_threads=4)
    finished: list[int] = []

    def slow(i: int) -> int:
        time.sleep(0.05)
        finished.append(i)
        return i

    def broken() -> int:
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        await pool.run_all([lambda: slow(1), broken, lambda: slow(2)])
    # Callers (fsync, rename) must not act on files a thread still works on: nothing is abandoned.
    assert sorted(finished) == [1, 2]


async def test_run_all_is_not_abandoned_on_cancel() -> None:
    pool = WorkerThreads(max_threads=2)
    finished: list[str] = []

    def slow() -> None:
        time.sleep(0.1)
        finished.append("done")

    with anyio.move_on_after(0.01):
        await pool.run_all([slow, slow])
    assert finished == ["done", "done"]
