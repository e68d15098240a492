"""Event buses: the shipped contract (``dicomweb_kit.testing.event_contracts``) on the memory bus
and the PostgreSQL LISTEN/NOTIFY bus, then what
only a shared bus does (two buses = two processes; payloads past NOTIFY's 8000-byte limit; a
lost listening connection). PostgreSQL as in ``test_sql.py``: unreachable skips, ``CI=true`` fails.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import anyio
import pytest
from dicomweb_kit_adapters.sql import PostgresEventBus
from sqlalchemy import func, select, text
from test_sql import POSTGRES_URL, _admin, _check

from dicomweb_kit import ConfigurationError, EventBus, MemoryEventBus
from dicomweb_kit.testing.event_contracts import EventBusContract

pytestmark = pytest.mark.anyio

BusFactory = Callable[[], AbstractAsyncContextManager[list[EventBus]]]


@asynccontextmanager
async def memory_buses() -> AsyncIterator[list[EventBus]]:
    bus = MemoryEventBus()
    yield [bus, bus]  # one process: publisher and subscriber share the bus
    await bus.aclose()


@asynccontextmanager
async def postgres_buses() -> AsyncIterator[list[EventBus]]:
    await _check("PostgreSQL", POSTGRES_URL)
    schema = f"dwk_{uuid.uuid4().hex[:12]}"
    await _admin(POSTGRES_URL, f'CREATE SCHEMA "{schema}"')
    buses = [PostgresEventBus(POSTGRES_URL, schema=schema) for _ in range(2)]  # two "processes"
    try:
        for bus in buses:
            await bus.open()
        yield list(buses)
    finally:
        for bus in buses:
            await bus.aclose()
        await _admin(POSTGRES_URL, f'DROP SCHEMA "{schema}" CASCADE')


class TestMemoryEventBus(EventBusContract):
    @pytest.fixture
    async def event_buses(self) -> AsyncIterator[tuple[EventBus, EventBus]]:
        async with memory_buses() as (publisher, listener):
            yield publisher, listener


class TestPostgresEventBus(EventBusContract):
    @pytest.fixture
    async def event_buses(self) -> AsyncIterator[tuple[EventBus, EventBus]]:
        async with postgres_buses() as (publisher, listener):
            yield publisher, listener


async def _take(messages: AsyncIterator[bytes], n: int) -> list[bytes]:
    got: list[bytes] = []
    with anyio.fail_after(10):
        while len(got) < n:
            got.append(await anext(messages))
    return got


async def test_closing_ends_iterators() -> None:
    bus = MemoryEventBus()
    async with bus.subscribe("t") as messages:
        await bus.publish("t", b"last")
        await bus.aclose()
        assert [m async for m in messages] == [b"last"]


async def test_a_slow_subscriber_loses_the_oldest_beyond_the_bound() -> None:
    bus = MemoryEventBus(max_pending=3)
    async with bus.subscribe("t") as messages:
        for i in range(5):
            await bus.publish("t", bytes([i]))
        assert await _take(messages, 3) == [b"\x02", b"\x03", b"\x04"]
    assert bus.subscriber_count("t") == 0


# --------------------------------------------------------------------------------------------
# PostgreSQL only
# --------------------------------------------------------------------------------------------


async def test_postgres_bus_needs_a_postgresql_url() -> None:
    with pytest.raises(ConfigurationError, match="postgresql"):
        PostgresEventBus("sqlite:////tmp/x.db")


async def test_large_messages_go_through_the_table_and_expire() -> None:
    async with postgres_buses() as (publisher, listener):
        assert isinstance(publisher, PostgresEventBus)
        engine: Any = publisher._engine
        async with listener.subscribe("t") as messages:
            await publisher.publish("t", b"x" * 10_000)
            await publisher.publish("t", b"small")
            assert await _take(messages, 2) == [b"x" * 10_000, b"small"]
        async with engine.begin() as conn:
            assert await conn.scalar(select(func.count()).select_from(text("dwk_bus_messages"))) == 1
            await conn.execute(text("UPDATE dwk_bus_messages SET created_at = now() - interval '1 hour'"))
        await publisher.publish("t", b"y" * 10_000)  # writing a new one deletes expired ones
        async with engine.connect() as conn:
            assert await conn.scalar(select(func.count()).select_from(text("dwk_bus_messages"))) == 1


async def test_the_listener_reconnects_after_losing_its_connection() -> None:
    async with postgres_buses() as (publisher, listener):
        assert isinstance(listener, PostgresEventBus)
        async with listener.subscribe("t") as messages:
            await publisher.publish("t", b"one")
            assert await _take(messages, 1) == [b"one"]
            old = listener._listener
            assert old is not None
            pid = old.get_server_pid()
            await _admin(POSTGRES_URL, f"SELECT pg_terminate_backend({pid})")
            with anyio.fail_after(10):  # a new listening connection
                while listener._listener is None or listener._listener is old:  # noqa: ASYNC110
                    await anyio.sleep(0.02)
            await publisher.publish("t", b"two")
            assert await _take(messages, 1) == [b"two"]


def test_serve_picks_the_bus_from_the_database(tmp_path: Any) -> None:
    from dicomweb_kit.cli import BackendConfig

    postgres = BackendConfig(database_url="postgresql://u@db.example/pacs", storage=str(tmp_path))
    assert isinstance(postgres.event_bus(), PostgresEventBus)
    assert BackendConfig(database_url="postgresql+asyncpg://u@h/d", storage=str(tmp_path)).postgresql
    # SQLite, MariaDB, memory: the kit's in-memory bus (None), channels poll the shared log.
    for url in (f"sqlite:///{tmp_path / 'x.db'}", "mysql://u@h/d", "memory"):
        assert BackendConfig(database_url=url, storage=str(tmp_path)).event_bus() is None
