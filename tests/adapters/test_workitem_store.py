"""Workitem stores (UPS, PS3.4 Annex CC): the SQL schema step and the contract suite on memory,
SQLite, PostgreSQL and MariaDB (servers as in ``test_sql.py``: unreachable skips, ``CI=true`` fails).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from dicomweb_kit_adapters.sql import SqlIndex, SqlWorkitemStore
from dicomweb_kit_adapters.sql.migrations import SCHEMA_VERSION
from sqlalchemy import inspect, select, text, update
from test_sql import ENGINES, Factory, mariadb_index, postgres_index, sqlite_index

from dicomweb_kit import Level, MemoryWorkitemStore, ResourceKey, Workitem
from dicomweb_kit.query.qido_params import parse_qido
from dicomweb_kit.testing.workitem_contracts import WorkitemStoreContract
from dicomweb_kit.testing.workitems import make_workitem

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
