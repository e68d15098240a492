"""Throughput of FileBlobStore against plain synchronous file I/O of the same bytes on the same disk.

Run ``python benchmarks/blob_store_benchmark.py [--dir DIR] [--reps N] [--quick]``.

Cases: one 256 MB blob, and 2000 blobs of 512 KB, each fed to ``put`` as 64 KB chunks (what the
multipart reader hands over). The baseline ("plain") is what the machine can do at best from one
thread: ``open(path, "wb").write(whole_blob)`` (+ ``fsync`` in the durable rows) into one flat
directory, and ``open(path, "rb").read()``. FileBlobStore does more than that on purpose (temp file,
rename, directory fsync, 1 MB thread hops off the event loop), so the ratio is its full cost.

Rows:

* ``put durable`` / ``put no-fsync``: FileBlobStore(fsync=True/False) vs plain write (+fsync/-).
* ``put durable, warm``: the same into a store whose shard directories already exist (a store in
  use); on a fresh store most puts also create and sync two new shard directories.
* ``put hop/chunk``: write_buffer_size=64 KB, i.e. one thread hop per chunk, the unbatched design.
* ``put 8 concurrent``: eight puts in flight at once (2000-blob case), the server's situation.
* ``get warm`` / ``get cold``: the file in the page cache / evicted first with
  ``posix_fadvise(DONTNEED)`` (no root needed; Linux), so reads hit the disk.

Throughput is total bytes / best-of-N seconds. Every blob is read back and checked once.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "adapters"))

import anyio
from dicomweb_kit_adapters.filesystem import FileBlobStore

MB = 1 << 20
KB = 1 << 10
CHUNK = 64 * KB


@dataclass(frozen=True)
class Case:
    id: str
    count: int
    size: int


CASES = (Case("1 x 256 MB", 1, 256 * MB), Case("2000 x 512 KB", 2000, 512 * KB))
QUICK = (Case("1 x 32 MB", 1, 32 * MB), Case("200 x 512 KB", 200, 512 * KB))


def evict(path: str) -> None:
    """Drop the file's (clean, already fsynced) pages from the page cache."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def best(reps: int, setup: Callable[[], None], run: Callable[[], None]) -> float:
    times = []
    for _ in range(reps):
        setup()
        gc.collect()
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return min(times)


class Bench:
    def __init__(self, base: Path, case: Case) -> None:
        self.case = case
        self.base = base
        # One random blob, reused for every key: filesystems do not deduplicate, and generating
        # a gigabyte of random bytes would only slow the run down.
        self.data = os.urandom(case.size)
        self.chunks = [self.data[i : i + CHUNK] for i in range(0, case.size, CHUNK)]
        self.keys = [f"{i:032x}" for i in range(case.count)]
        self.plain_dir = base / "plain"
        self.store_dir = base / "store"

    @property
    def total(self) -> int:
        return self.case.count * self.case.size

    def fresh(self) -> None:
        for d in (self.plain_dir, self.store_dir):
            shutil.rmtree(d, ignore_errors=True)
        self.plain_dir.mkdir()

    def fresh_with_shards(self) -> None:
        """An empty store whose shard directories exist, as in a store that has been in use."""
        self.fresh()
        self.ours_put(fsync=False)
        anyio.run(self.store().delete, self.keys)  # delete keeps the shard directories

    # -- plain ---------------------------------------------------------------------------------

    def plain_put(self, fsync: bool) -> None:
        for key in self.keys:
            with open(self.plain_dir / key, "wb") as f:
                f.write(self.data)
                if fsync:
                    f.flush()
                    os.fsync(f.fileno())

    def plain_get(self) -> None:
        for key in self.keys:
            with open(self.plain_dir / key, "rb") as f:
                assert len(f.read()) == self.case.size

    # -- ours ----------------------------------------------------------------------------------

    def store(self, **kw: Any) -> FileBlobStore:
        return FileBlobStore(self.store_dir, **kw)

    async def _stream(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk

    def ours_put(self, concurrency: int = 1, **kw: Any) -> None:
        store = self.store(**kw)

        async def main() -> None:
            await store.open()
            if concurrency == 1:
                for key in self.keys:
                    await store.put(key, self._stream())
                return
            limiter = anyio.CapacityLimiter(concurrency)

            async def one(key: str) -> None:
                async with limiter:
                    await store.put(key, self._stream())

            async with anyio.create_task_group() as tg:
                for key in self.keys:
                    tg.start_soon(one, key)

        anyio.run(main)

    def ours_get(self) -> None:
        store = self.store()

        async def main() -> None:
            for key in self.keys:
                n = 0
                async for chunk in store.get(key):
                    n += len(chunk)
                assert n == self.case.size

        anyio.run(main)

    def verify(self) -> None:
        store = self.store()

        async def main() -> None:
            for key in self.keys:
                assert b"".join([c async for c in store.get(key)]) == self.data
                assert (self.plain_dir / key).read_bytes() == self.data

        anyio.run(main)

    def evict_all(self) -> None:
        store = self.store()
        for key in self.keys:
            evict(str(self.plain_dir / key))
            evict(store.path_of(key))


Row = tuple[str, str, float, float | None]


def run_case(b: Bench, reps: int) -> list[Row]:
    rows: list[Row] = []
    mb = b.total / MB

    def put_row(
        label: str, ours: Callable[[], None], plain: Callable[[], None] | None, setup: Callable[[], None] = b.fresh
    ) -> None:
        t_ours = best(reps, setup, ours)
        t_plain = best(reps, b.fresh, plain) if plain is not None else None
        rows.append((b.case.id, label, mb / t_ours, mb / t_plain if t_plain else None))
        print(f"  {b.case.id:14} {label:18} done", file=sys.stderr)

    put_row("put durable", lambda: b.ours_put(fsync=True), lambda: b.plain_put(fsync=True))
    put_row(
        "put durable, warm",
        lambda: b.ours_put(fsync=True),
        lambda: b.plain_put(fsync=True),
        setup=b.fresh_with_shards,
    )
    put_row("put no-fsync", lambda: b.ours_put(fsync=False), lambda: b.plain_put(fsync=False))
    put_row("put hop/chunk", lambda: b.ours_put(fsync=False, write_buffer_size=CHUNK), None)
    if b.case.count > 1:
        put_row("put 8 concurrent", lambda: b.ours_put(concurrency=8, fsync=True), None)

    # Leave one durable copy of each in place for the reads, and check both copies once.
    b.fresh()
    b.ours_put(fsync=True)
    b.plain_put(fsync=True)
    b.verify()
    t_ours = best(reps, lambda: None, b.ours_get)
    t_plain = best(reps, lambda: None, b.plain_get)
    rows.append((b.case.id, "get warm", mb / t_ours, mb / t_plain))
    if hasattr(os, "posix_fadvise"):
        t_ours = best(reps, b.evict_all, b.ours_get)
        t_plain = best(reps, b.evict_all, b.plain_get)
        rows.append((b.case.id, "get cold", mb / t_ours, mb / t_plain))
    b.fresh()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", default=None, help="where to write (default: the system temp dir)")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()

    rows: list[Row] = []
    base = Path(tempfile.mkdtemp(prefix="blob-bench-", dir=args.dir))
    try:
        for case in QUICK if args.quick else CASES:
            rows += run_case(Bench(base, case), args.reps)
    finally:
        shutil.rmtree(base, ignore_errors=True)

    print(f"\n{'case':14} | {'operation':18} | {'FileBlobStore MB/s':>18} | {'plain MB/s':>10} | {'ratio':>6}")
    print(f"{'-' * 14}-|-{'-' * 18}-|-{'-' * 18}:|-{'-' * 10}:|-{'-' * 6}:")
    for case_id, label, ours, plain in rows:
        plain_s = f"{plain:10.0f}" if plain else f"{'':>10}"
        ratio_s = f"{ours / plain:6.2f}" if plain else f"{'':>6}"
        print(f"{case_id:14} | {label:18} | {ours:18.0f} | {plain_s} | {ratio_s}")


if __name__ == "__main__":
    main()
