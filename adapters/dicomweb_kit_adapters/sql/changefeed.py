"""The change feed of ``SqlIndex`` (schema version 7), written in the index's own transactions.

* ``dwk_changefeed``: one row per change, keyed by its sequence number.
* ``dwk_changefeed_head``: one row (id 1) holding the last sequence given out.

Why a head row instead of an autoincrement: an autoincrement value is taken when a row is
inserted, not when it commits, so on PostgreSQL and MariaDB a reader could see sequence 12
committed while 11 is still in flight, move its cursor past 11 and never see it. The writer
locks the head row (``SELECT ... FOR UPDATE``; SQLite serialises writers anyway), numbers its
entries from it and holds the lock until commit: entries become visible in sequence order. The
lock is taken last in the transaction (after the study rows every writer locks first), so it
adds no deadlock cycle and is held only for the commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import BigInteger, Column, ColumnElement, Index, Integer, Table, bindparam, func, insert, select, update
from sqlalchemy.engine import Connection

from dicomweb_kit import ChangeEntry, ChangeFilter, InstanceRecord
from dicomweb_kit.changefeed import from_micros, modality_of, now_utc, state_of

from .schema import _MYSQL, _text, instances, metadata, series, studies
from .sqlite_direct import Statements

if TYPE_CHECKING:
    from .index import SqlIndex

__all__ = ["TABLES", "SqlChangeFeed", "append_removed", "append_stored", "changefeed", "changefeed_head"]

_MODALITY_CHARS: Final = 16

changefeed = Table(
    "dwk_changefeed",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("at_us", BigInteger, nullable=False),  # commit time, microseconds since 1970 UTC
    Column("action", _text(8), nullable=False),
    Column("study_uid", _text(64), nullable=False),
    Column("series_uid", _text(64), nullable=False),
    Column("instance_uid", _text(64), nullable=False),
    Column("modality", _text(_MODALITY_CHARS), nullable=True),
    Column("version", BigInteger, nullable=False),
    Index("dwk_changefeed_instance", "instance_uid", "seq"),
    Index("dwk_changefeed_study", "study_uid", "seq"),
    **_MYSQL,
)

changefeed_head = Table(
    "dwk_changefeed_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, nullable=False),
    **_MYSQL,
)

TABLES: Final = [changefeed, changefeed_head]


def _kept_modality(value: str | None) -> str | None:
    """The entry's Modality if the column holds it: a CS value has at most 16 characters (PS3.5
    Table 6.2-1); a longer or NUL-bearing one (non-conformant, yet stored) is kept as NULL
    rather than fail the whole STOW batch on PostgreSQL/MariaDB."""
    if value is None or len(value) > _MODALITY_CHARS or "\x00" in value:
        return None
    return value


_HEAD: Final = select(changefeed_head.c.seq).where(changefeed_head.c.id == 1).with_for_update()
_SET_HEAD: Final = update(changefeed_head).where(changefeed_head.c.id == 1).values(seq=bindparam("last_seq"))
_INSERT_HEAD: Final = insert(changefeed_head)
_INSERT_ENTRIES: Final = insert(changefeed)
_ENTRY_COLUMNS: Final = ("seq", "at_us", "action", "study_uid", "series_uid", "instance_uid", "modality", "version")


def _reserve(run: Statements, count: int) -> int:
    """Lock the head row and take ``count`` sequence numbers; return the first."""
    found = run.rows(_HEAD, {})
    if not found:  # the migration inserts it; a database emptied by hand gets it back
        run.execute(_INSERT_HEAD, [{"id": 1, "seq": 0}])
    last = int(found[0].seq) if found else 0
    run.execute(_SET_HEAD, [{"last_seq": last + count}])
    return last + 1


def append_stored(run: Statements, stored: Sequence[tuple[InstanceRecord, bool]], /) -> None:
    """Record ``(record, replaced)`` pairs as create/replace entries (inside the add's transaction)."""
    if not stored:
        return
    first = _reserve(run, len(stored))
    at = _micros()
    run.insert(
        _INSERT_ENTRIES,
        _ENTRY_COLUMNS,
        [
            (
                first + n,
                at,
                "replace" if replaced else "create",
                record.study_uid,
                record.series_uid,
                record.instance_uid,
                _kept_modality(modality_of(record)),
                first + n,
            )
            for n, (record, replaced) in enumerate(stored)
        ],
    )


def append_removed(conn: Connection, where: list[ColumnElement[bool]], /) -> None:
    """Record a delete entry for each instance ``where`` selects (before they are deleted)."""
    doomed = conn.execute(
        select(studies.c.study_uid, series.c.series_uid, instances.c.instance_uid, series.c.modality)
        .select_from(
            instances.join(series, series.c.id == instances.c.series_id).join(
                studies, studies.c.id == instances.c.study_id
            )
        )
        .where(*where)
        .order_by(instances.c.id)
    ).all()
    if not doomed:
        return
    versions = _newest(conn, [row.instance_uid for row in doomed])
    first = _reserve(Statements(conn), len(doomed))
    at = _micros()
    rows = []
    for n, row in enumerate(doomed):
        newest = versions.get(row.instance_uid)
        rows.append(
            {
                "seq": first + n,
                "at_us": at,
                "action": "delete",
                "study_uid": row.study_uid,
                "series_uid": row.series_uid,
                "instance_uid": row.instance_uid,
                "modality": _kept_modality(row.modality),
                "version": 0 if newest is None or newest.action == "delete" else int(newest.version),
            }
        )
    conn.execute(insert(changefeed), rows)


def _newest(conn: Connection, uids: list[str]) -> dict[str, Any]:
    """The newest entry of each of ``uids`` (those that have one)."""
    found: dict[str, Any] = {}
    for start in range(0, len(uids), 500):
        chunk = sorted(set(uids[start : start + 500]))
        c = changefeed.c
        newest = select(func.max(c.seq)).where(c.instance_uid.in_(chunk)).group_by(c.instance_uid)
        statement = select(c.instance_uid, c.seq, c.action, c.version).where(c.seq.in_(newest.scalar_subquery()))
        found.update({row.instance_uid: row for row in conn.execute(statement)})
    return found


def _micros() -> int:
    moment = now_utc()
    return int(moment.timestamp()) * 1_000_000 + moment.microsecond


class SqlChangeFeed:
    """A :class:`~dicomweb_kit.ChangeFeed` reading ``dwk_changefeed`` through its index's pool."""

    def __init__(self, index: SqlIndex) -> None:
        self._index = index

    async def read(self, *, after: int = 0, limit: int = 100, filter: ChangeFilter | None = None) -> list[ChangeEntry]:
        conditions: list[ColumnElement[bool]] = [changefeed.c.seq > after]
        if filter is not None:
            if filter.study_uid is not None:
                conditions.append(changefeed.c.study_uid == filter.study_uid)
            if filter.series_uid is not None:
                conditions.append(changefeed.c.series_uid == filter.series_uid)
            if filter.modality is not None:
                conditions.append(changefeed.c.modality == filter.modality)
        statement = select(changefeed).where(*conditions).order_by(changefeed.c.seq).limit(max(limit, 0))
        return await self._index._read(lambda conn: _entries(conn, statement), "reading the change feed")

    async def latest(self) -> ChangeEntry | None:
        statement = select(changefeed).order_by(changefeed.c.seq.desc()).limit(1)
        found = await self._index._read(lambda conn: _entries(conn, statement), "reading the change feed")
        return found[0] if found else None


def _entries(conn: Connection, statement: Any) -> list[ChangeEntry]:
    rows = conn.execute(statement).all()
    newest = _newest(conn, [row.instance_uid for row in rows]) if rows else {}
    entries = []
    for row in rows:
        last = newest.get(row.instance_uid, row)
        entries.append(
            ChangeEntry(
                sequence=int(row.seq),
                timestamp=from_micros(int(row.at_us)),
                action=row.action,
                state=state_of(row.action, int(row.version), last.action, int(last.seq), int(last.version)),
                study_uid=row.study_uid,
                series_uid=row.series_uid,
                instance_uid=row.instance_uid,
                modality=row.modality,
                version=int(row.version),
            )
        )
    return entries
