"""Workitem stores (UPS, PS3.4 Annex CC): the SQL schema step and the contract suite on memory,
SQLite, PostgreSQL and MariaDB (servers as in ``test_sql.py``: unreachable skips, ``CI=true`` fails).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from dicomweb_kit_adapters.memory import MemoryBlobStore, MemoryIndex
from dicomweb_kit_adapters.sql import SqlIndex, SqlWorkitemStore
from dicomweb_kit_adapters.sql.migrations import SCHEMA_VERSION
from sqlalchemy import inspect, select, text, update
from test_sql import (
    ENGINES,
    MARIADB_URL,
    POSTGRES_URL,
    Factory,
    _admin,
    _check,
    mariadb_index,
    postgres_index,
    sqlite_index,
)

from dicomweb_kit import DicomWeb, Level, MemoryWorkitemStore, ResourceKey, Workitem, WorkitemRefused
from dicomweb_kit.query.qido_params import parse_qido
from dicomweb_kit.testing.workitem_contracts import WorkitemStoreContract
from dicomweb_kit.testing.workitems import make_workitem
from dicomweb_kit.ups import service

pytestmark = pytest.mark.anyio


@pytest.fixture(params=sorted(ENGINES))
async def index(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SqlIndex]:
    async for made in ENGINES[str(request.param)](tmp_path):
        yield made


async def test_version_5_creates_the_workitems_table(index: SqlIndex) -> None:
    from dicomweb_kit_adapters.sql.schema import schema_version, workitems

    engine = index._engine

    def tables(sync: Any) -> set[str]:
        return set(inspect(sync).get_table_names())

    def indexes(sync: Any) -> set[str]:
        return {str(i["name"]) for i in inspect(sync).get_indexes(workitems.name)}

    async with engine.connect() as conn:
        assert workitems.name in await conn.run_sync(tables)
    async with engine.begin() as conn:  # back to the version 4 schema
        await conn.execute(text(f"DROP TABLE {workitems.name}"))
        await conn.execute(update(schema_version).values(version=4))
    await index.open()  # upgrades to version 5
    async with engine.connect() as conn:
        assert await conn.scalar(select(schema_version.c.version)) == SCHEMA_VERSION
        assert workitems.name in await conn.run_sync(tables)
        assert "dwk_workitems_state" in await conn.run_sync(indexes)
    async with engine.begin() as conn:  # a step that finds the table already there is a no-op
        await conn.execute(update(schema_version).values(version=4))
    await index.open()


class TestMemoryWorkitemStore(WorkitemStoreContract):
    @pytest.fixture
    async def workitem_store(self) -> AsyncIterator[MemoryWorkitemStore]:
        store = MemoryWorkitemStore()
        yield store
        await store.aclose()


async def _sql_store(factory: Factory, tmp_path: Path) -> AsyncIterator[SqlWorkitemStore]:
    async for index in factory(tmp_path):
        store = index.ups_workitems()
        await store.open()
        yield store
        await store.aclose()


class TestSqliteWorkitemStore(WorkitemStoreContract):
    @pytest.fixture
    async def workitem_store(self, tmp_path: Path) -> AsyncIterator[SqlWorkitemStore]:
        async for store in _sql_store(sqlite_index, tmp_path):
            yield store


class TestPostgresWorkitemStore(WorkitemStoreContract):
    @pytest.fixture
    async def workitem_store(self, tmp_path: Path) -> AsyncIterator[SqlWorkitemStore]:
        async for store in _sql_store(postgres_index, tmp_path):
            yield store


class TestMariadbWorkitemStore(WorkitemStoreContract):
    @pytest.fixture
    async def workitem_store(self, tmp_path: Path) -> AsyncIterator[SqlWorkitemStore]:
        async for store in _sql_store(mariadb_index, tmp_path):
            yield store


async def test_a_store_of_its_own_creates_the_schema(tmp_path: Path) -> None:
    store = SqlWorkitemStore(f"sqlite:///{tmp_path / 'ups.db'}")
    await store.open()
    try:
        assert await store.get("1.2.3") is None
    finally:
        await store.aclose()


async def test_sql_search_prefilters_by_state_and_uid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The SQL shortcuts must give what the reference gives, also past one batch of rows.
    from dicomweb_kit_adapters.sql import workitems as module

    monkeypatch.setattr(module, "_BATCH", 3)
    async for store in _sql_store(sqlite_index, tmp_path):
        for n in range(10):
            attrs = make_workitem(label=f"item {n}")
            uid = f"1.2.826.0.1.3680043.11.{n}"
            attrs["00080018"] = {"vr": "UI", "Value": [uid]}
            await store.create(Workitem(uid=uid, state="SCHEDULED", attributes=attrs))
        query = parse_qido(
            [("ProcedureStepState", "SCHEDULED"), ("limit", "4"), ("offset", "3")],
            Level.INSTANCE,
            ResourceKey(),
        )
        page = await store.search(query)
        assert [i.attributes["00741204"]["Value"][0] for i in page.items] == [f"item {n}" for n in range(3, 7)]
        assert page.has_more
        none = parse_qido([("ProcedureStepState", "COMPLETED")], Level.INSTANCE, ResourceKey())
        assert (await store.search(none)).items == []


async def _two_stores(engine: str, tmp_path: Path) -> AsyncIterator[tuple[SqlWorkitemStore, SqlWorkitemStore]]:
    """Two stores on one database, each with its own engine and pool: two workers."""
    name = f"dwk_{uuid.uuid4().hex[:12]}"
    if engine == "sqlite":
        url, schema, drop = f"sqlite:///{tmp_path / 'shared.db'}", None, None
    elif engine == "postgresql":
        await _check("PostgreSQL", POSTGRES_URL)
        await _admin(POSTGRES_URL, f'CREATE SCHEMA "{name}"')
        url, schema, drop = POSTGRES_URL, name, f'DROP SCHEMA "{name}" CASCADE'
    else:
        await _check("MariaDB", MARIADB_URL)
        await _admin(MARIADB_URL, f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin")
        url, schema, drop = MARIADB_URL, name, f"DROP DATABASE `{name}`"
    stores = (SqlWorkitemStore(url, schema=schema), SqlWorkitemStore(url, schema=schema))
    try:
        for store in stores:
            await store.open()
        yield stores
    finally:
        for store in stores:
            await store.aclose()
        if drop is not None:
            await _admin(url, drop)


async def _race(first: SqlWorkitemStore, second: SqlWorkitemStore) -> None:
    kits = [DicomWeb(blobs=MemoryBlobStore(), index=MemoryIndex(), workitems=store) for store in (first, second)]
    uid = (await service.create(kits[0], make_workitem())).workitem.uid
    won: list[str] = []
    refused: list[int] = []

    async def claim(kit: DicomWeb, transaction: str) -> None:
        try:
            await service.change_state(kit, uid, "IN PROGRESS", transaction_uid=transaction)
            won.append(transaction)
        except WorkitemRefused as refusal:
            refused.append(refusal.status)

    async with anyio.create_task_group() as tg:
        for n in range(6):
            tg.start_soon(claim, kits[n % 2], f"1.2.3.{n}")
    assert len(won) == 1 and refused == [0xC302] * 5
    seen_by_other = await service.retrieve(kits[1], uid)
    assert (seen_by_other.state, seen_by_other.transaction_uid) == ("IN PROGRESS", won[0])


@pytest.mark.parametrize("engine", sorted(ENGINES))
async def test_two_workers_claim_one_workitem_exactly_one_wins(engine: str, tmp_path: Path) -> None:
    async for first, second in _two_stores(engine, tmp_path):
        await _race(first, second)


def test_serve_keeps_workitems_in_the_index_database(tmp_path: Path) -> None:
    from dicomweb_kit.cli import BackendConfig, build_kit

    url = f"sqlite:///{tmp_path / 'index.sqlite3'}"
    kit = build_kit(BackendConfig(data_dir=str(tmp_path), database_url=url, storage=str(tmp_path / "blobs")))
    assert isinstance(kit.workitems, SqlWorkitemStore)
    memory = build_kit(BackendConfig(data_dir=str(tmp_path), database_url="memory"))
    assert isinstance(memory.workitems, MemoryWorkitemStore)
