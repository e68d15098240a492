"""Timing shared by the benchmarks: best of N runs, after a collection so GC pauses stay out."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable

__all__ = ["best_of"]


def best_of(fn: Callable[[], object], reps: int) -> float:
    """The shortest of ``reps`` timed runs of ``fn``, in seconds."""
    best = float("inf")
    for _ in range(reps):
        gc.collect()
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best
