"""Workitem stores (UPS, PS3.4 Annex CC): the SQL schema step and the contract suite on memory,
SQLite, PostgreSQL and MariaDB (servers as in ``test_sql.py``: unreachable skips, ``CI=true`` fails).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from dicomweb_kit_adapters.sql import SqlIndex
from dicomweb_kit_adapters.sql.migrations import SCHEMA_VERSION
from sqlalchemy import inspect, select, text, update
from test_sql import ENGINES

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
