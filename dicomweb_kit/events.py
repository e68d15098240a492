"""The event bus: messages published on a topic reach every current subscriber of that topic.

The core uses it to wake the UPS-RS notification channels (PS3.18 §8.10) when a subscriber has
new events, and it is meant to carry other change feeds later. A bus is a *notification*
transport, not a queue: delivery is at most once, to the subscribers present when the message
arrives, with no history. A consumer that must not miss anything keeps its own log (UPS keeps a
per-subscriber event log in the subscription store) and uses the bus only to learn that the log
grew, re-reading the log on a timer as well.

:class:`MemoryEventBus` serves one process. Several worker processes need a bus that crosses
processes: the SQL adapter ships one on PostgreSQL ``LISTEN``/``NOTIFY``
(``dicomweb_kit_adapters.sql.PostgresEventBus``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator
from typing import Final, Protocol, runtime_checkable

__all__ = ["EventBus", "MemoryEventBus", "validate_topic"]

MAX_TOPIC_LENGTH: Final = 200


def validate_topic(topic: str, /) -> str:
    """``topic`` if it is a usable topic name: 1-200 printable characters (no control characters,
    so that a bus can frame it in a text payload). Raises ``ValueError`` otherwise."""
    if not topic or len(topic) > MAX_TOPIC_LENGTH or not topic.isprintable():
        raise ValueError(f"an event topic is 1-{MAX_TOPIC_LENGTH} printable characters, not {topic!r}")
    return topic


@runtime_checkable
class EventBus(Protocol):
    """Publish/subscribe of byte messages by topic.

    Implementations may add ``async def open()`` (the kit calls it at start-up, before any
    publish or subscribe) and must provide ``aclose()``.
    """

    async def publish(self, topic: str, message: bytes, /) -> None:
        """Send ``message`` to every subscriber of ``topic`` (in this process or, for a shared
        bus, in every process). Returns once the message is handed to the transport; messages
        published by one task arrive in publication order."""
        ...

    def subscribe(self, topic: str, /) -> contextlib.AbstractAsyncContextManager[AsyncIterator[bytes]]:
        """A subscription to ``topic``: messages published after entering the context are
        yielded by the iterator, in order, until the context exits (across processes, one
        published just before may arrive too: it was still in flight). A subscriber that falls
        far behind may lose the oldest messages it has not read (the bus says how far)."""
        ...

    async def aclose(self) -> None:
        """Release connections and end every open subscription's iterator."""
        ...


class _Inbox:
    """One subscriber's pending messages: a bounded deque and a wake-up event. Its ``__anext__``
    may be cancelled (a timeout around a wait) without losing anything or ending the iteration."""

    def __init__(self, limit: int) -> None:
        self.messages: deque[bytes] = deque(maxlen=limit)
        self.ready = asyncio.Event()
        self.closed = False

    def put(self, message: bytes) -> None:
        self.messages.append(message)  # beyond the bound the oldest message is dropped
        self.ready.set()

    def close(self) -> None:
        self.closed = True
        self.ready.set()

    def __aiter__(self) -> _Inbox:
        return self

    async def __anext__(self) -> bytes:
        while not self.messages:
            if self.closed:
                raise StopAsyncIteration
            self.ready.clear()
            await self.ready.wait()
        return self.messages.popleft()


class MemoryEventBus:
    """An :class:`EventBus` within one process (one event loop).

    Args:
        max_pending: messages kept per subscriber that has not read them yet; beyond it the
            oldest are dropped (a notification bus: the consumer's own log is the record).

    Also the local fan-out of buses that cross processes: they receive a message once per
    process and hand it to :meth:`deliver`.
    """

    def __init__(self, *, max_pending: int = 10_000) -> None:
        self.max_pending = max_pending
        self._topics: dict[str, set[_Inbox]] = {}
        self._closed = False

    async def publish(self, topic: str, message: bytes, /) -> None:
        self.deliver(validate_topic(topic), message)

    def deliver(self, topic: str, message: bytes, /) -> None:
        """Hand ``message`` to this process's subscribers of ``topic`` (synchronous, never blocks)."""
        for inbox in self._topics.get(topic, ()):
            inbox.put(message)

    @contextlib.asynccontextmanager
    async def subscribe(self, topic: str, /) -> AsyncIterator[AsyncIterator[bytes]]:
        validate_topic(topic)
        inbox = _Inbox(self.max_pending)
        if self._closed:
            inbox.close()
        subscribers = self._topics.setdefault(topic, set())
        subscribers.add(inbox)
        try:
            yield inbox
        finally:
            subscribers.discard(inbox)
            if not subscribers:
                self._topics.pop(topic, None)

    def subscriber_count(self, topic: str, /) -> int:
        """How many subscriptions to ``topic`` are open in this process."""
        return len(self._topics.get(topic, ()))

    async def aclose(self) -> None:
        self._closed = True
        for subscribers in self._topics.values():
            for inbox in subscribers:
                inbox.close()
