"""Event buses: one contract on the memory bus and the PostgreSQL LISTEN/NOTIFY bus, then what
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


@pytest.fixture(params=["memory", "postgresql"])
async def buses(request: pytest.FixtureRequest) -> AsyncIterator[list[EventBus]]:
    factory = memory_buses if request.param == "memory" else postgres_buses
    async with factory() as made:
        yield made


async def _take(messages: AsyncIterator[bytes], n: int) -> list[bytes]:
    got: list[bytes] = []
    with anyio.fail_after(10):
        while len(got) < n:
            got.append(await anext(messages))
    return got


async def test_implements_the_protocol(buses: list[EventBus]) -> None:
    assert all(isinstance(bus, EventBus) for bus in buses)


async def test_messages_reach_subscribers_of_their_topic_in_order(buses: list[EventBus]) -> None:
    publisher, listener = buses
    async with listener.subscribe("a") as a, listener.subscribe("a") as a2, listener.subscribe("b") as b:
        for i in range(20):
            await publisher.publish("a", f"a{i}".encode())
        await publisher.publish("b", b"b0")
        expected = [f"a{i}".encode() for i in range(20)]
        assert await _take(a, 20) == expected
        assert await _take(a2, 20) == expected  # every subscriber gets every message
        assert await _take(b, 1) == [b"b0"]


async def test_messages_from_before_subscribing_are_not_kept(buses: list[EventBus]) -> None:
    publisher, listener = buses
    await publisher.publish("t", b"before")
    async with listener.subscribe("t") as messages:
        await publisher.publish("t", b"after")
        got = await _take(messages, 1)
        if got == [b"before"]:  # across processes one still in flight may arrive: never a stored one
            assert isinstance(listener, PostgresEventBus)
            got = await _take(messages, 1)
        assert got == [b"after"]


async def test_waiting_can_time_out_without_ending_the_subscription(buses: list[EventBus]) -> None:
    publisher, listener = buses
    async with listener.subscribe("t") as messages:
        with anyio.move_on_after(0.05):
            await anext(messages)
        await publisher.publish("t", b"later")
        assert await _take(messages, 1) == [b"later"]


async def test_binary_empty_and_large_messages(buses: list[EventBus]) -> None:
    publisher, listener = buses
    large = ("é" * 9000).encode()  # 18,000 bytes: past NOTIFY's 8000-byte payload limit
    binary = bytes(range(256)) * 3  # not text: cannot be a NOTIFY payload at all
    async with listener.subscribe("t") as messages:
        for message in (b"", large, binary, b"small"):
            await publisher.publish("t", message)
        assert await _take(messages, 4) == [b"", large, binary, b"small"]


async def test_bad_topics_are_refused(buses: list[EventBus]) -> None:
    publisher, listener = buses
    for topic in ("", "x" * 201, "a\nb", "a\x1fb"):
        with pytest.raises(ValueError, match="topic"):
            await publisher.publish(topic, b"")
        with pytest.raises(ValueError, match="topic"):
            async with listener.subscribe(topic):
                pass


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
