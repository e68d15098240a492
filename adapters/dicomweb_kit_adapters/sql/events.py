"""``PostgresEventBus``: an :class:`~dicomweb_kit.EventBus` across processes on PostgreSQL
``LISTEN``/``NOTIFY``.

Every process keeps one dedicated connection that ``LISTEN``\\s on one channel (asyncpg's
``add_listener``) and hands what arrives to its local subscribers (a
:class:`~dicomweb_kit.MemoryEventBus`). ``publish`` sends ``NOTIFY``; PostgreSQL delivers it to
every listening connection, the publisher's own included, in commit order.

A ``NOTIFY`` payload is at most 8000 bytes (PostgreSQL's ``pg_notify``). A message whose
topic and body fit (as UTF-8 text) travels in the payload; a larger or binary one is written to
``dwk_bus_messages`` and the payload carries its id, which each listener reads back. Rows
older than :data:`MESSAGE_TTL` are deleted as new ones are written.

Delivery is at most once, like any :class:`~dicomweb_kit.EventBus`: a listener that loses its
connection reconnects (with back-off) and misses what was sent meanwhile; consumers that must
not miss anything keep their own log (UPS does) and re-read it on a timer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator
from typing import Any, Final

from sqlalchemy import delete, func, insert, make_url, select, text
from sqlalchemy.exc import SQLAlchemyError

from dicomweb_kit import ConfigurationError, MemoryEventBus, StorageUnavailable
from dicomweb_kit.events import validate_topic

from .dialects import create_engine
from .migrations import upgrade
from .ups_tables import bus_messages

__all__ = ["MESSAGE_TTL", "PostgresEventBus"]

log = logging.getLogger("dicomweb_kit.events")

MESSAGE_TTL: Final = 300  # seconds a large message stays readable by late listeners
_PAYLOAD_LIMIT: Final = 7999  # bytes: pg_notify refuses 8000 and more
_INLINE: Final = "m"  # payload "m<topic>\x1f<text>"
_STORED: Final = "r"  # payload "r<topic>\x1f<id>"
_SEPARATOR: Final = "\x1f"  # never in a topic (validate_topic: printable only)

class PostgresEventBus:
    """An event bus shared by every process connected to one PostgreSQL database (and schema).

    Args:
        url: ``postgresql://user@host/db`` (as for :class:`~dicomweb_kit_adapters.sql.SqlIndex`).
        schema: the PostgreSQL schema of the ``dwk_bus_messages`` table (as the index's).
        channel: the ``LISTEN`` channel; processes that should hear each other use the same one.
            Default: one per schema.
        max_pending: per-subscriber bound of the local fan-out (see ``MemoryEventBus``).

    ``open()`` (the kit calls it) upgrades the schema if needed and starts listening.
    """

    def __init__(
        self, url: str, *, schema: str | None = None, channel: str | None = None, max_pending: int = 10_000
    ) -> None:
        kind, self._engine = create_engine(url, schema=schema, echo=False)
        if kind != "postgresql":
            raise ConfigurationError(f"PostgresEventBus needs a postgresql:// URL, not {url.split(':', 1)[0]}://")
        self._dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        self._schema = schema
        self.channel = (channel or f"dwk_events_{schema or 'public'}")[:63]  # NAMEDATALEN - 1
        self._local = MemoryEventBus(max_pending=max_pending)
        self._incoming: asyncio.Queue[str] = asyncio.Queue()
        self._listener: Any = None
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        self._connected = asyncio.Event()

    async def open(self) -> None:
        try:
            await upgrade(self._engine, "postgresql")
        except (SQLAlchemyError, OSError) as err:
            raise StorageUnavailable(f"PostgreSQL event bus: cannot open the database: {err}") from err
        self._tasks = [
            asyncio.create_task(self._listen_forever(), name="dwk-bus-listen"),
            asyncio.create_task(self._dispatch(), name="dwk-bus-dispatch"),
        ]
        try:
            await asyncio.wait_for(self._connected.wait(), 30)
        except TimeoutError:
            await self.aclose()
            raise StorageUnavailable("PostgreSQL event bus: could not LISTEN within 30 s") from None

    # -- publishing -----------------------------------------------------------------------------

    async def publish(self, topic: str, message: bytes, /) -> None:
        validate_topic(topic)
        payload = None
        with contextlib.suppress(UnicodeDecodeError):
            body = message.decode()
            if "\x00" not in body:
                payload = f"{_INLINE}{topic}{_SEPARATOR}{body}"
        try:
            async with self._engine.begin() as conn:
                if payload is None or len(payload.encode()) > _PAYLOAD_LIMIT:
                    stored = await conn.execute(insert(bus_messages).values(topic=topic, payload=message))
                    key = stored.inserted_primary_key
                    assert key is not None
                    payload = f"{_STORED}{topic}{_SEPARATOR}{key[0]}"
                    stale = func.now() - text(f"interval '{MESSAGE_TTL} seconds'")
                    await conn.execute(delete(bus_messages).where(bus_messages.c.created_at < stale))
                await conn.execute(select(func.pg_notify(self.channel, payload)))
        except (SQLAlchemyError, OSError) as err:
            raise StorageUnavailable(f"PostgreSQL event bus: publish failed: {err}") from err

    # -- subscribing ----------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def subscribe(self, topic: str, /) -> AsyncIterator[AsyncIterator[bytes]]:
        async with self._local.subscribe(topic) as messages:
            yield messages

    # -- the listening connection ---------------------------------------------------------------

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        self._incoming.put_nowait(payload)

    async def _listen_forever(self) -> None:
        import asyncpg  # type: ignore[import-untyped]

        delay = 0.1
        while not self._closing:
            lost = asyncio.Event()
            try:
                settings = {"search_path": self._schema} if self._schema else {}
                conn = await asyncpg.connect(self._dsn, server_settings=settings)
            except (OSError, asyncpg.PostgresError) as err:
                log.warning("event bus: cannot connect to listen (%s); retrying in %.1f s", err, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0) * random.uniform(0.8, 1.2)
                continue
            conn.add_termination_listener(lambda _c, lost=lost: lost.set())
            try:
                await conn.add_listener(self.channel, self._on_notify)
                self._listener = conn
                delay = 0.1
                self._connected.set()
                await lost.wait()
                if not self._closing:
                    log.warning("event bus: the listening connection was lost; reconnecting")
            except (OSError, asyncpg.PostgresError) as err:
                log.warning("event bus: listening failed (%s); reconnecting", err)
            finally:
                self._listener = None
                if not conn.is_closed():
                    conn.terminate()

    async def _dispatch(self) -> None:
        """Hand notifications to local subscribers, in arrival order (reading stored ones back)."""
        while True:
            payload = await self._incoming.get()
            kind, rest = payload[:1], payload[1:]
            topic, _, body = rest.partition(_SEPARATOR)
            if kind == _INLINE:
                self._local.deliver(topic, body.encode())
            elif kind == _STORED and body.isdigit():
                if self._local.subscriber_count(topic) == 0:
                    continue  # nobody here wants it: skip the read
                try:
                    async with self._engine.connect() as conn:
                        found = await conn.scalar(select(bus_messages.c.payload).where(bus_messages.c.id == int(body)))
                except (SQLAlchemyError, OSError) as err:
                    log.warning("event bus: cannot read stored message %s: %s", body, err)
                    continue
                if found is not None:
                    self._local.deliver(topic, bytes(found))

    async def aclose(self) -> None:
        self._closing = True
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.close(timeout=2)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._local.aclose()
        await self._engine.dispose()
