"""UPS subscriptions and per-AE event logs in the SQL index's database (schema version 6, tables
in ``ups_tables.py``).

Appends lock the AE's ``dwk_ups_subscribers`` row (``SELECT ... FOR UPDATE``; SQLite writers are
serialised by ``BEGIN IMMEDIATE``), so sequence numbers follow commit order and an AE's log has
no gaps for its reader. The store shares the :class:`~dicomweb_kit_adapters.sql.SqlIndex`'s
engine, transactions and retries; ``SqlIndex.ups_subscriptions()`` builds it, and the kit uses
that by default.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final

import msgspec
from sqlalchemy import Row, delete, insert, or_, select, update
from sqlalchemy.engine import Connection

from dicomweb_kit import FILTERED_WORKLIST_UID, WORKLIST_UID, LoggedEvent, Subscription
from dicomweb_kit.ups.subscriptions import Origin

from .dialects import insert_ignore
from .ups_tables import event_log, subscribers, subscriptions

if TYPE_CHECKING:
    from .index import SqlIndex

__all__ = ["SqlSubscriptionStore"]

_WORKLISTS: Final = (WORKLIST_UID, FILTERED_WORKLIST_UID)
_encode_keys = msgspec.json.Encoder().encode
_decode_keys = msgspec.json.Decoder(list[tuple[str, str]]).decode

def _subscription(row: Row[Any]) -> Subscription:
    keys = tuple(_decode_keys(row.match_keys)) if row.match_keys else ()
    return Subscription(
        ae_title=row.ae_title, target=row.target, deletion_lock=bool(row.deletion_lock), filter=keys, origin=row.origin
    )


def _values(subscription: Subscription) -> dict[str, Any]:
    return {
        "ae_title": subscription.ae_title,
        "target": subscription.target,
        "deletion_lock": subscription.deletion_lock,
        "origin": subscription.origin,
        "match_keys": _encode_keys(list(subscription.filter)) if subscription.filter else None,
    }


class SqlSubscriptionStore:
    """A :class:`~dicomweb_kit.ups.subscriptions.SubscriptionStore` in ``index``'s database.

    Args:
        index: the SQL index whose engine (and schema, version 6 or later) it uses; opening
            and closing the index is the kit's business.
    """

    def __init__(self, index: SqlIndex) -> None:
        self._index = index
        self._kind = index._kind

    async def subscribe(self, subscription: Subscription, /, *, workitems: Sequence[str] = ()) -> None:
        def work(conn: Connection) -> None:
            table = subscriptions
            conn.execute(
                delete(table).where(table.c.ae_title == subscription.ae_title, table.c.target == subscription.target)
            )
            conn.execute(insert(table), _values(subscription))
            if subscription.is_worklist and workitems:
                origin: Origin = "worklist" if subscription.target == WORKLIST_UID else "filtered"
                rows = [
                    _values(
                        Subscription(
                            ae_title=subscription.ae_title,
                            target=uid,
                            deletion_lock=subscription.deletion_lock,
                            origin=origin,
                        )
                    )
                    for uid in workitems
                ]
                conn.execute(insert_ignore(self._kind, table, ["ae_title", "target"]), rows)

        await self._index._write(work, "subscribing")

    async def unsubscribe(self, ae_title: str, target: str, /) -> bool:
        table = subscriptions
        condition: Any
        if target == WORKLIST_UID:
            condition = table.c.ae_title == ae_title
        elif target == FILTERED_WORKLIST_UID:
            condition = (table.c.ae_title == ae_title) & or_(table.c.target == target, table.c.origin == "filtered")
        else:
            condition = (table.c.ae_title == ae_title) & (table.c.target == target)

        def work(conn: Connection) -> bool:
            return bool(conn.execute(delete(table).where(condition)).rowcount)

        return await self._index._write(work, "unsubscribing")

    async def suspend(self, ae_title: str, target: str, /) -> bool:
        table = subscriptions

        def work(conn: Connection) -> bool:
            statement = delete(table).where(table.c.ae_title == ae_title, table.c.target == target)
            return bool(conn.execute(statement).rowcount)

        return await self._index._write(work, "suspending a subscription")

    async def subscriptions(self, ae_title: str | None = None, /) -> list[Subscription]:
        statement = select(subscriptions).order_by(subscriptions.c.ae_title, subscriptions.c.target)
        if ae_title is not None:
            statement = statement.where(subscriptions.c.ae_title == ae_title)

        def work(conn: Connection) -> list[Subscription]:
            return [_subscription(row) for row in conn.execute(statement)]

        return await self._index._read(work)

    async def deletion_locked(self, workitem_uid: str, /) -> bool:
        statement = (
            select(subscriptions.c.id)
            .where(subscriptions.c.target == workitem_uid, subscriptions.c.deletion_lock.is_(True))
            .limit(1)
        )
        return await self._index._read(lambda conn: conn.execute(statement).first() is not None)

    async def release(self, workitem_uid: str, /) -> None:
        table = subscriptions
        statement = delete(table).where(table.c.target == workitem_uid, table.c.deletion_lock.is_(False))
        await self._index._write(lambda conn: conn.execute(statement), "releasing subscriptions")

    async def record(
        self, workitem_uid: str, message: bytes, /, *, matches: Callable[[Subscription], bool], keep: int
    ) -> list[str]:
        table = subscriptions
        candidates = select(table).where(or_(table.c.target == workitem_uid, table.c.target.in_(_WORKLISTS)))

        def work(conn: Connection) -> list[str]:
            rows = [_subscription(row) for row in conn.execute(candidates)]
            direct = {sub.ae_title for sub in rows if sub.target == workitem_uid}
            recipients = set(direct)
            new_rows = []
            for sub in rows:
                if sub.target == workitem_uid or sub.ae_title in recipients:
                    continue
                if sub.target == WORKLIST_UID or matches(sub):
                    origin: Origin = "worklist" if sub.target == WORKLIST_UID else "filtered"
                    new_rows.append(
                        _values(
                            Subscription(
                                ae_title=sub.ae_title,
                                target=workitem_uid,
                                deletion_lock=sub.deletion_lock,
                                origin=origin,
                            )
                        )
                    )
                    recipients.add(sub.ae_title)
            if new_rows:
                conn.execute(insert_ignore(self._kind, table, ["ae_title", "target"]), new_rows)
            for ae_title in sorted(recipients):
                self._append(conn, ae_title, [message], keep)
            return sorted(recipients)

        return await self._index._write(work, "recording a UPS event")

    async def append(self, ae_title: str, messages: Sequence[bytes], /, *, keep: int) -> None:
        if messages:
            await self._index._write(lambda conn: self._append(conn, ae_title, messages, keep), "queueing UPS events")

    def _append(self, conn: Connection, ae_title: str, messages: Sequence[bytes], keep: int) -> None:
        new = {"ae_title": ae_title, "last_seq": 0, "sent_seq": 0}
        conn.execute(insert_ignore(self._kind, subscribers, ["ae_title"]), new)
        mine = subscribers.c.ae_title == ae_title
        last = int(conn.execute(select(subscribers.c.last_seq).where(mine).with_for_update()).scalar_one())
        conn.execute(
            insert(event_log),
            [{"ae_title": ae_title, "seq": last + i, "message": message} for i, message in enumerate(messages, 1)],
        )
        last += len(messages)
        conn.execute(update(subscribers).where(mine).values(last_seq=last))
        if last > keep:
            conn.execute(delete(event_log).where(event_log.c.ae_title == ae_title, event_log.c.seq <= last - keep))

    async def read(self, ae_title: str, /, *, after: int, limit: int) -> list[LoggedEvent]:
        statement = (
            select(event_log.c.seq, event_log.c.message)
            .where(event_log.c.ae_title == ae_title, event_log.c.seq > after)
            .order_by(event_log.c.seq)
            .limit(limit)
        )

        def work(conn: Connection) -> list[LoggedEvent]:
            return [LoggedEvent(int(row.seq), bytes(row.message)) for row in conn.execute(statement)]

        return await self._index._read(work)

    async def cursor(self, ae_title: str, /) -> int:
        statement = select(subscribers.c.sent_seq).where(subscribers.c.ae_title == ae_title)
        found = await self._index._read(lambda conn: conn.execute(statement).scalar())
        return int(found or 0)

    async def acknowledge(self, ae_title: str, seq: int, /) -> None:
        def work(conn: Connection) -> None:
            conn.execute(
                update(subscribers)
                .where(subscribers.c.ae_title == ae_title, subscribers.c.sent_seq < seq)
                .values(sent_seq=seq)
            )
            conn.execute(delete(event_log).where(event_log.c.ae_title == ae_title, event_log.c.seq <= seq))

        await self._index._write(work, "acknowledging UPS events")

    async def aclose(self) -> None:
        pass  # the index owns the engine
