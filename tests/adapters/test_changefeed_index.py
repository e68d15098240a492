"""The change feed each index keeps (memory, SQLite, PostgreSQL, MariaDB): entries for create,
replace and delete, in the index's own transaction; sequence numbers without gaps, visible in
order under concurrent writers.

PostgreSQL and MariaDB as in ``test_sql.py``: skipped without a server, failed under ``CI=true``.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from dicomweb_kit_adapters.memory import MemoryBlobStore, MemoryIndex
from dicomweb_kit_adapters.sql import PostgresEventBus, SqlIndex
from test_sql import ENGINES, POSTGRES_URL, _admin, _check

from dicomweb_kit import ChangeEntry, ChangeFeed, ChangeFilter, DicomWeb, InstanceRecord, ResourceKey, changefeed
from dicomweb_kit.testing import make_dataset, make_record

pytestmark = pytest.mark.anyio

Index = MemoryIndex | SqlIndex


@pytest.fixture(params=["memory", *sorted(ENGINES)])
async def index(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Index]:
    if request.param == "memory":
        yield MemoryIndex()
        return
    async for made in ENGINES[request.param](tmp_path):
        yield made


def feed_of(index: Index) -> ChangeFeed:
    feed = index.change_feed()
    assert isinstance(feed, ChangeFeed)
    return feed


def record(study: str | None = None, series: str | None = None, **kw: Any) -> InstanceRecord:
    ds = make_dataset(study=study, series=series, **kw)
    return make_record(ds, blob_key=f"blob-{ds.SOPInstanceUID}")


def summary(entries: list[ChangeEntry]) -> list[tuple[int, str, str, str, int]]:
    return [(e.sequence, e.action, e.state, e.instance_uid, e.version) for e in entries]


async def test_create_replace_delete(index: Index) -> None:
    feed = feed_of(index)
    assert await feed.read() == []
    assert await feed.latest() is None
    a = record(modality="MR")
    b = record(study=a.study_uid, series=a.series_uid, modality="MR")
    await index.add_many([a, b], on_existing="keep")
    again = InstanceRecord(**{**{f: getattr(a, f) for f in a.__struct_fields__}, "blob_key": "blob-new"})
    await index.add_many([again], on_existing="keep")  # kept: no change, no entry
    assert len(await feed.read()) == 2
    await index.add_many([again], on_existing="replace")
    assert await index.remove(ResourceKey(a.study_uid, a.series_uid, a.instance_uid)) == ["blob-new"]
    entries = await feed.read()
    assert summary(entries) == [
        (1, "create", "replaced", a.instance_uid, 1),
        (2, "create", "current", b.instance_uid, 2),
        (3, "replace", "deleted", a.instance_uid, 3),
        (4, "delete", "deleted", a.instance_uid, 3),  # the version it deleted
    ]
    first = entries[0]
    assert (first.study_uid, first.series_uid, first.modality) == (a.study_uid, a.series_uid, "MR")
    assert first.timestamp.tzinfo is not None
    assert [e.timestamp for e in entries] == sorted(e.timestamp for e in entries)
    latest = await feed.latest()
    assert latest is not None and latest.sequence == 4
    # Paging and filters.
    assert [e.sequence for e in await feed.read(after=1, limit=2)] == [2, 3]
    assert [e.sequence for e in await feed.read(filter=ChangeFilter(modality="CT"))] == []
    assert [e.sequence for e in await feed.read(filter=ChangeFilter(study_uid=a.study_uid, modality="MR"))] == [
        1,
        2,
        3,
        4,
    ]
    only_b = ChangeFilter(series_uid=b.series_uid)
    assert len(await feed.read(filter=only_b)) == 4  # same series
    # Removing a whole study: one delete entry per instance.
    await index.remove(ResourceKey(b.study_uid))
    assert summary(await feed.read(after=4)) == [(5, "delete", "deleted", b.instance_uid, 2)]


async def test_a_batch_replacing_within_itself(index: Index) -> None:
    feed = feed_of(index)
    a = record()
    twin = InstanceRecord(**{**{f: getattr(a, f) for f in a.__struct_fields__}, "blob_key": "twin"})
    await index.add_many([a, twin], on_existing="replace")
    # Never stored before the batch: one create, of the record that stayed.
    assert [(e.action, e.state) for e in await feed.read()] == [("create", "current")]


async def test_concurrent_writers_never_show_a_gap(index: Index) -> None:
    """Readers that resume from their last sequence see every entry exactly once while many
    writers commit at the same time (the head-row lock orders commits)."""
    feed = feed_of(index)
    writers, per_writer = 8, 5
    seen: list[int] = []
    done = anyio.Event()

    async def write(n: int) -> None:
        for _ in range(per_writer):
            study = record().study_uid
            await index.add_many([record(study=study), record(study=study)], on_existing="keep")

    async def read() -> None:
        cursor = 0
        while True:
            batch = await feed.read(after=cursor, limit=7)
            for entry in batch:
                assert entry.sequence == cursor + 1, f"gap after {cursor}: {entry.sequence}"
                cursor = entry.sequence
                seen.append(cursor)
            if not batch:
                if done.is_set() and cursor == writers * per_writer * 2:
                    return
                await anyio.sleep(0.001)

    with anyio.fail_after(60):
        async with anyio.create_task_group() as readers:
            readers.start_soon(read)
            async with anyio.create_task_group() as tasks:
                for n in range(writers):
                    tasks.start_soon(write, n)
            done.set()
    assert seen == list(range(1, writers * per_writer * 2 + 1))


async def test_followers_in_another_worker_on_postgresql() -> None:
    """Two kits on one PostgreSQL database, each with its own pool and LISTEN/NOTIFY bus (two
    workers): a store through one reaches the other's follower at once, after its replay."""
    await _check("PostgreSQL", POSTGRES_URL)
    schema = f"dwk_{uuid.uuid4().hex[:12]}"
    await _admin(POSTGRES_URL, f'CREATE SCHEMA "{schema}"')
    try:
        kits = [
            DicomWeb(
                blobs=MemoryBlobStore(),
                index=SqlIndex(POSTGRES_URL, schema=schema),
                events=PostgresEventBus(POSTGRES_URL, schema=schema),
            )
            for _ in range(2)
        ]
        async with kits[0] as writer, kits[1] as reader:
            before = record()
            await writer.index.add_many([before], on_existing="keep")
            got: list[str] = []
            with anyio.fail_after(10):
                async with anyio.create_task_group() as tasks:

                    async def follow() -> None:
                        # poll_interval far beyond the timeout: only the bus can wake it in time.
                        async for change in reader.changes(after=0, poll_interval=60):
                            got.append(change.instance_uid)
                            if len(got) == 3:
                                return

                    tasks.start_soon(follow)
                    await anyio.sleep(0.3)
                    late = [record(), record()]
                    await writer.index.add_many(late, on_existing="keep")
                    await changefeed.notify(writer)
            assert got == [before.instance_uid, *(r.instance_uid for r in late)]
    finally:
        await _admin(POSTGRES_URL, f'DROP SCHEMA "{schema}" CASCADE')
