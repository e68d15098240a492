"""Operator tasks behind the CLI: import folders of files, check index against blobs, upgrade."""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Coroutine, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from .codecs.part10 import NotPart10, parse_header
from .errors import InstanceRejected, PayloadTooLarge
from .resources import ResourceKey
from .services.ingest import ingest_instance

if TYPE_CHECKING:
    from .kit import DicomWeb

__all__ = ["check", "import_paths", "reindex", "run", "upgrade"]

_READ_CHUNK = 1 << 20


def run(task: Coroutine[Any, Any, int]) -> int:
    return anyio.run(lambda: task)


class _Progress:
    """A one-line progress report on stderr (rewritten in place on a terminal)."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self.bytes = 0
        self.started = time.monotonic()
        self._last = 0.0
        self._tty = sys.stderr.isatty()

    def step(self, size: int) -> None:
        self.done += 1
        self.bytes += size
        now = time.monotonic()
        if self.done == self.total or now - self._last > (0.2 if self._tty else 5.0):
            self._last = now
            elapsed = max(now - self.started, 1e-9)
            width = 30
            filled = width * self.done // max(self.total, 1)
            line = (
                f"[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} files"
                f"  {self.bytes / elapsed / 1e6:.1f} MB/s  {self.done / elapsed:.0f} files/s"
            )
            print(("\r" if self._tty else "") + line, end="" if self._tty else "\n", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._tty:
            print(file=sys.stderr)


def _files(paths: Sequence[str]) -> Iterator[Path]:
    for name in paths:
        path = Path(name)
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.is_file())
        elif path.is_file():
            yield path
        else:
            print(f"dicomweb-kit import: no such file or folder: {name}", file=sys.stderr)


def _is_dicom(path: Path) -> bool:
    with path.open("rb") as f:
        head = f.read(132)
    return head[128:132] == b"DICM"


async def _chunks(path: Path) -> AsyncIterator[bytes]:
    async with await anyio.open_file(path, "rb") as f:
        while chunk := await f.read(_READ_CHUNK):
            yield chunk


async def _of(kit: DicomWeb, tenant: str | None) -> DicomWeb:
    """The kit an operation works on: ``tenant``'s (:meth:`DicomWeb.tenant`), or the root kit."""
    return await kit.tenant(tenant) if tenant is not None else kit


async def import_paths(kit: DicomWeb, paths: Sequence[str], *, jobs: int = 4, tenant: str | None = None) -> int:
    """Store every DICOM Part 10 file under ``paths`` through the STOW-RS ingest path (into
    ``tenant``'s archive, if given).

    Files without the Part 10 preamble are skipped and counted. Returns the exit status: 0 when
    nothing was rejected.
    """
    files = await anyio.to_thread.run_sync(lambda: list(_files(paths)))
    candidates = [f for f in files if await anyio.to_thread.run_sync(_is_dicom, f)]
    outcome: Counter[str] = Counter(skipped_not_dicom=len(files) - len(candidates))
    reasons: Counter[str] = Counter()
    progress = _Progress(len(candidates))
    limiter = anyio.Semaphore(max(jobs, 1))

    async def store(target: DicomWeb, path: Path, size: int) -> None:
        async with limiter:
            try:
                stored = await ingest_instance(target, _chunks(path))
            except (InstanceRejected, PayloadTooLarge) as exc:
                outcome["rejected"] += 1
                reasons[exc.message[:120]] += 1
            else:
                outcome["already_stored" if stored.already_stored else "stored"] += 1
            progress.step(size)

    sizes = await anyio.to_thread.run_sync(lambda: [p.stat().st_size for p in candidates])
    async with kit, anyio.create_task_group() as tasks:
        target = await _of(kit, tenant)
        for path, size in zip(candidates, sizes, strict=True):
            tasks.start_soon(store, target, path, size)
    progress.close()
    elapsed = time.monotonic() - progress.started
    print(
        f"imported {outcome['stored']} instances ({progress.bytes / 1e6:.1f} MB) in {elapsed:.1f} s;"
        f" {outcome['already_stored']} already stored, {outcome['rejected']} rejected,"
        f" {outcome['skipped_not_dicom']} files skipped (not DICOM Part 10)"
    )
    for reason, count in reasons.most_common(10):
        print(f"  rejected {count}x: {reason}")
    return 1 if outcome["rejected"] else 0


async def check(kit: DicomWeb, *, repair: bool = False, deep: bool = False, tenant: str | None = None) -> int:
    """Compare the index with the blob store and report (and with ``repair``, fix) what differs.

    * missing: a record whose blob is gone (the instance cannot be retrieved) — repair drops the record;
    * corrupt: the blob's size differs from the record's, or (``deep``) its header does not read
      back to the same UIDs — repair drops record and blob;
    * unreferenced: a blob no record points at. Harmless: an interrupted STOW-RS (crash between
      blob and index write) leaves these; repair deletes them. Run repair while no STOW-RS is in
      flight, or a blob whose record is being written could be taken for one.

    Returns 0 when the index is consistent (unreferenced blobs alone do not count), else 1.
    With ``tenant``: that tenant's index and blobs.
    """
    async with kit:
        kit = await _of(kit, tenant)
        blob_keys = {key async for key in kit.blobs.iter_keys()}
        referenced: set[str] = set()
        missing: list[ResourceKey] = []
        corrupt: list[ResourceKey] = []
        records = 0
        async for record in kit.index.records(ResourceKey()):
            records += 1
            referenced.add(record.blob_key)
            if record.blob_key not in blob_keys:
                missing.append(record.key)
            elif not await (
                _reads_back(kit, record.blob_key, record.key, record.size)
                if deep
                else _size_matches(kit, record.blob_key, record.size)
            ):
                corrupt.append(record.key)
        unreferenced = sorted(blob_keys - referenced)
        print(
            f"checked {records} instances and {len(blob_keys)} blobs: {len(missing)} missing,"
            f" {len(corrupt)} corrupt, {len(unreferenced)} unreferenced blobs"
        )
        for key in missing[:20]:
            print(f"  missing blob: {key}")
        for key in corrupt[:20]:
            print(f"  corrupt: {key}")
        if repair:
            dropped: list[str] = []
            for key in missing + corrupt:
                dropped += await kit.index.remove(key)
            await kit.blobs.delete(sorted(set(unreferenced) | {k for k in dropped if k in blob_keys}))
            print(f"repaired: dropped {len(missing) + len(corrupt)} records, deleted {len(unreferenced)} blobs")
            return 0
    return 1 if missing or corrupt else 0


async def _size_matches(kit: DicomWeb, blob_key: str, size: int) -> bool:
    # A cheap probe: the last byte exists and nothing follows it.
    if size == 0:
        return True
    tail = b"".join([bytes(c) async for c in kit.blobs.get(blob_key, start=size - 1)])
    return len(tail) == 1


async def _reads_back(kit: DicomWeb, blob_key: str, key: ResourceKey, size: int) -> bool:
    data = bytearray()
    async for chunk in kit.blobs.get(blob_key):
        data += chunk
    if len(data) != size:
        return False
    try:
        header = await anyio.to_thread.run_sync(lambda: parse_header(data, complete=True))
    except NotPart10:
        return False
    ds = header.dataset
    return (ds.get("StudyInstanceUID"), ds.get("SeriesInstanceUID"), ds.get("SOPInstanceUID")) == (
        key.study,
        key.series,
        key.instance,
    )


async def reindex(kit: DicomWeb, *, tenant: str | None = None) -> int:
    """Rebuild the index's matching data from stored metadata (after changing indexed attributes)."""
    async with kit:
        kit = await _of(kit, tenant)
        rebuild = getattr(kit.index, "reindex", None)
        if rebuild is None:
            print(f"{type(kit.index).__name__} keeps no separate matching data: nothing to reindex")
            return 0
        started = time.monotonic()
        count = await rebuild()
    print(f"reindexed {count} instances in {time.monotonic() - started:.1f} s")
    return 0


async def upgrade(kit: DicomWeb, *, tenant: str | None = None) -> int:
    """Create or upgrade the index schema (adapters do it in their ``open()`` hook; a tenant's
    index is also upgraded when the server first opens it)."""
    async with kit:
        kit = await _of(kit, tenant)
        version = getattr(kit.index, "schema_version", None)
    print(f"index schema is up to date{f' (version {version})' if version is not None else ''}")
    return 0
