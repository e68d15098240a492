"""``SqlWorkitemStore``: UPS workitems in the ``dwk_workitems`` table (schema version 5).

One row per workitem: its DICOM JSON, state, Transaction UID and version. ``replace`` is one
``UPDATE ... WHERE workitem_uid = :uid AND version = :read``: the database decides which of
two concurrent writers from one version wins, in every process sharing the database.

Search: the ``state`` column answers a ``ProcedureStepState`` Single Value term and the primary
key a ``SOPInstanceUID`` term in SQL; every term is then evaluated on the stored DICOM JSON by
the core's reference matcher, reading rows in creation order in batches and stopping once the
page is full (a worklist is small next to an archive; the state column keeps the common
"what is SCHEDULED" query to an index range).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar

import msgspec
from sqlalchemy import Select, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from dicomweb_kit import (
    Query,
    SingleValue,
    UidList,
    Workitem,
    WorkitemPage,
    instance_matches,
    sort_entities,
)

from .dialects import Kind, create_engine, guarded
from .migrations import upgrade
from .schema import workitems

__all__ = ["SqlWorkitemStore"]

T = TypeVar("T")

_BATCH: Final = 500
_STATE_TAG: Final = 0x00741000
_UID_TAG: Final = 0x00080018

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(dict[str, Any]).decode


class SqlWorkitemStore:
    """A :class:`~dicomweb_kit.WorkitemStore` in a SQL database (SQLite, PostgreSQL, MariaDB).

    Args:
        url: as for :class:`~dicomweb_kit_adapters.sql.SqlIndex`.
        schema: PostgreSQL schema or MariaDB database.
        echo: log SQL statements.

    ``SqlIndex.ups_workitems()`` gives one on the index's own engine (the kit's default with a
    ``SqlIndex``); one built from a URL creates or upgrades the schema in ``open()``.
    """

    def __init__(self, url: str | None = None, *, schema: str | None = None, echo: bool = False) -> None:
        self._owned = url is not None
        if url is not None:
            self._kind, self._engine = create_engine(url, schema=schema, echo=echo)

    @classmethod
    def on_engine(cls, kind: Kind, engine: AsyncEngine) -> SqlWorkitemStore:
        """A store sharing ``engine`` (and its pool); its owner opens and disposes of it."""
        store = cls()
        store._kind, store._engine = kind, engine
        return store

    async def open(self) -> None:
        if self._owned:
            await self._guard(lambda: upgrade(self._engine, self._kind), "opening")

    async def aclose(self) -> None:
        if self._owned:
            await self._engine.dispose()

    # ----------------------------------------------------------------------------------------

    async def _guard(self, action: Callable[[], Awaitable[T]], doing: str) -> T:
        return await guarded(self._kind, f"{self._kind} workitem store", action, doing)

    async def _run(self, work: Callable[[AsyncConnection], Awaitable[T]], *, write: bool, doing: str) -> T:
        async def once() -> T:
            async with self._engine.connect() as conn:
                if write:  # SQLite: BEGIN IMMEDIATE (dialects._sqlite_events)
                    conn = await conn.execution_options(dwk_write=True)
                async with conn.begin():
                    return await work(conn)

        return await self._guard(once, doing)

    # ----------------------------------------------------------------------------------------

    async def create(self, item: Workitem, /) -> bool:
        async def work(conn: AsyncConnection) -> bool:
            taken = await conn.scalar(select(workitems.c.id).where(workitems.c.workitem_uid == item.uid))
            if taken is not None:
                return False
            await conn.execute(
                insert(workitems).values(
                    workitem_uid=item.uid,
                    version=1,
                    state=item.state,
                    transaction_uid=item.transaction_uid,
                    attributes=_encode(item.attributes),
                )
            )
            return True

        # A concurrent create of the same UID loses on the unique key; the retry then sees it.
        return await self._run(work, write=True, doing="creating a workitem")

    async def get(self, uid: str, /) -> Workitem | None:
        async def work(conn: AsyncConnection) -> Workitem | None:
            row = (await conn.execute(_columns().where(workitems.c.workitem_uid == uid))).first()
            return None if row is None else _workitem(row)

        return await self._run(work, write=False, doing="reading a workitem")

    async def replace(self, item: Workitem, /, *, expected_version: int) -> bool:
        async def work(conn: AsyncConnection) -> bool:
            result = await conn.execute(
                update(workitems)
                .where(workitems.c.workitem_uid == item.uid, workitems.c.version == expected_version)
                .values(
                    version=expected_version + 1,
                    state=item.state,
                    transaction_uid=item.transaction_uid,
                    attributes=_encode(item.attributes),
                    updated_at=func.current_timestamp(),
                )
            )
            return bool(result.rowcount == 1)

        return await self._run(work, write=True, doing="updating a workitem")

    async def search(self, query: Query, /) -> WorkitemPage:
        base = _columns()
        for term in query.terms:
            if term.tag == _STATE_TAG and isinstance(term.matcher, SingleValue):
                base = base.where(workitems.c.state == term.matcher.value.strip())
            elif term.tag == _UID_TAG and isinstance(term.matcher, SingleValue | UidList):
                uids = [term.matcher.value] if isinstance(term.matcher, SingleValue) else list(term.matcher.uids)
                base = base.where(workitems.c.workitem_uid.in_(uids))
        # Without orderby the page is known once offset + limit + 1 matches are found.
        wanted = None if query.orderby or query.limit is None else query.offset + query.limit + 1
        matched: list[Workitem] = []
        last = 0
        while wanted is None or len(matched) < wanted:
            statement = base.where(workitems.c.id > last).order_by(workitems.c.id).limit(_BATCH)

            async def work(conn: AsyncConnection, statement: Select[Any] = statement) -> list[Any]:
                return list((await conn.execute(statement)).all())

            rows = await self._run(work, write=False, doing="searching workitems")
            for row in rows:
                item = _workitem(row)
                if instance_matches(query.terms, item.attributes, fuzzy=query.fuzzy):
                    matched.append(item)
            if len(rows) < _BATCH:
                break
            last = rows[-1].id
        ordered = sort_entities(matched, query.orderby, lambda item: item.attributes)
        stop = None if query.limit is None else query.offset + query.limit
        return WorkitemPage(ordered[query.offset : stop], has_more=stop is not None and len(ordered) > stop)


def _columns() -> Select[Any]:
    w = workitems.c
    return select(w.id, w.workitem_uid, w.version, w.state, w.transaction_uid, w.attributes)


def _workitem(row: Any) -> Workitem:
    return Workitem(
        uid=row.workitem_uid,
        state=row.state,
        attributes=_decode(bytes(row.attributes)),
        transaction_uid=row.transaction_uid,
        version=int(row.version),
    )
