"""A fast hop from the event loop to a blocking call in a thread, and back.

The core's ingest and the adapters (ours and third parties') use it for short blocking calls
that run often: a header parse, a blob write, an fsync, a cached file read, an SQLite statement.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable, Sequence
from functools import partial
from typing import TypeVar

import anyio
import anyio.to_thread

__all__ = ["WorkerThreads"]

_T = TypeVar("_T")


class WorkerThreads:
    """Threads for blocking calls (file reads, SQLite statements), handed their work through a ``SimpleQueue``.

    A hop through ``anyio.to_thread.run_sync`` costs 50-300 µs on a busy 2-core box (a capacity
    limiter, a ``Condition``-based queue, a context copy, an asyncio future chained to a
    concurrent one), several times the read of a cached 0.5 MB file it carries; a retrieve that
    streams one instance per hop spent more time hopping than reading. This hop costs 10-20 µs:
    a C-level queue to the thread and ``call_soon_threadsafe`` back. Threads start on demand, up
    to ``max_threads`` (more reads wait in the queue), and end after ``idle_seconds`` without work.

    Used on asyncio only; under another event loop (trio) reads go through anyio's thread pool.
    """

    def __init__(self, max_threads: int, idle_seconds: float = 10.0, *, name: str = "dicomweb-kit worker") -> None:
        self._name = name
        self._jobs: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        self._pending = 0  # jobs submitted and not finished
        self._max = max_threads
        self._idle_seconds = idle_seconds

    async def run(self, func: Callable[[], _T]) -> _T:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not running on asyncio
            return await anyio.to_thread.run_sync(func)
        future: asyncio.Future[_T] = loop.create_future()
        self._submit(partial(_call_and_settle, func, loop, future))
        # As with to_thread.run_sync(abandon_on_cancel=False), a cancellation takes effect once
        # the read is over: the caller must not close a descriptor a thread still reads from.
        with anyio.CancelScope(shield=True):
            result = await future
        return result

    async def run_all(self, funcs: Sequence[Callable[[], _T]]) -> list[_T]:
        """Run ``funcs`` at once (up to ``max_threads`` at a time) and return their results in
        order, once every one has finished; the first failure is raised then. Cheaper than a task
        group of ``run`` calls: one future per call and no task."""
        if not funcs:
            return []
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not running on asyncio
            return [await anyio.to_thread.run_sync(func) for func in funcs]
        futures: list[asyncio.Future[_T]] = []
        for func in funcs:
            future: asyncio.Future[_T] = loop.create_future()
            self._submit(partial(_call_and_settle, func, loop, future))
            futures.append(future)
        # Shielded like ``run``: a caller must not act on files a thread still works on.
        with anyio.CancelScope(shield=True):
            await asyncio.wait(futures)
        return [future.result() for future in futures]

    def _submit(self, job: Callable[[], None]) -> None:
        with self._lock:
            self._pending += 1
            if self._pending > self._threads and self._threads < self._max:
                self._threads += 1
                threading.Thread(target=self._work, name=self._name, daemon=True).start()
            self._jobs.put(job)

    def _work(self) -> None:
        while True:
            try:
                job = self._jobs.get(timeout=self._idle_seconds)
            except queue.Empty:
                with self._lock:
                    # Leave only while the others outnumber the work: no job is ever stranded.
                    if self._pending < self._threads:
                        self._threads -= 1
                        return
                continue
            job()
            del job  # drop the finished job's references before waiting for the next one
            with self._lock:
                self._pending -= 1


def _call_and_settle(func: Callable[[], _T], loop: asyncio.AbstractEventLoop, future: asyncio.Future[_T]) -> None:
    try:
        result = func()
    except BaseException as exc:  # handed to the awaiting task, raised there
        settle = partial(_settle, future, None, exc)
    else:
        settle = partial(_settle, future, result, None)
    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
        loop.call_soon_threadsafe(settle)


def _settle(future: asyncio.Future[_T], result: _T | None, exc: BaseException | None) -> None:
    if future.done():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)  # type: ignore[arg-type]


