"""``SqlIndex``: the instance index on SQLite, PostgreSQL or MariaDB (SQLAlchemy Core, asyncio).

Writes are one transaction each, retried on deadlocks, serialization failures and lost
unique-key races. Concurrent adds of one study serialise on the study row (``SELECT ... FOR
UPDATE``; SQLite serialises all writers with ``BEGIN IMMEDIATE``), which keeps the counters
exact and lets the newest instance write the representative columns.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from functools import partial
from typing import Any, Final, Literal, TypeVar

import anyio
import msgspec
from sqlalchemy import ColumnElement, Row, delete, func, insert, select, true, tuple_, update
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection

from dicomweb_kit import (
    AddOutcome,
    ConfigurationError,
    IndexCapabilities,
    InstanceRecord,
    Page,
    Query,
    ResourceKey,
    ScopeSummary,
    StorageUnavailable,
)

from . import search as _search
from .dialects import create_engine, insert_ignore, is_retryable
from .extract import indexed_attributes, representative, value_rows
from .migrations import SCHEMA_VERSION, upgrade
from .schema import SERIES_COLUMNS, STUDY_COLUMNS, instance_values, instances, series, studies

__all__ = ["SqlIndex"]

T = TypeVar("T")

_ATTEMPTS: Final = 12
_BATCH: Final = 500


def _decode(data: bytes) -> dict[str, Any]:
    decoded = msgspec.json.decode(data)
    return decoded if isinstance(decoded, dict) else {}


class SqlIndex:
    """An :class:`~dicomweb_kit.InstanceIndex` in a SQL database.

    Args:
        url: ``sqlite:///path``, ``postgresql://user@host/db`` or ``mysql://user@host/db``
            (``mariadb://`` too); mapped to the aiosqlite / asyncpg / asyncmy drivers.
        extra_indexed: further attributes (keywords or tags) matched in SQL; any other
            attribute is still a valid match key, answered from the stored metadata.
        echo: log SQL statements.
        schema: PostgreSQL schema (set as ``search_path``) or MariaDB database to use.

    Call ``await open()`` before use (the kit does at start-up): it creates or upgrades the
    tables. ``aclose()`` disposes of the connection pool.
    """

    capabilities = IndexCapabilities(fuzzy_matching=True, sequence_matching=True)

    def __init__(
        self,
        url: str,
        *,
        extra_indexed: Sequence[str | int] = (),
        echo: bool = False,
        schema: str | None = None,
    ) -> None:
        self._kind, self._engine = create_engine(url, schema=schema, echo=echo)
        self._indexed = indexed_attributes(extra_indexed)
        self._where = f"{self._kind} index"
        self._schema_version: int | None = None

    @property
    def schema_version(self) -> int | None:
        """The schema version after :meth:`open` (``None`` before)."""
        return self._schema_version

    # ----------------------------------------------------------------------------------------
    # Lifecycle
    # ----------------------------------------------------------------------------------------

    async def open(self) -> None:
        """Create or upgrade the schema (idempotent; safe from several workers at once)."""
        await self._guard(lambda: upgrade(self._engine, self._kind), "opening")
        self._schema_version = SCHEMA_VERSION

    async def aclose(self) -> None:
        await self._engine.dispose()

    async def reindex(self) -> int:
        """Rebuild every instance's match values from its stored metadata (after changing
        ``extra_indexed``); return the number of instances reindexed."""
        done = 0
        last = 0
        while True:
            page = select(instances.c.id).where(instances.c.id > last).order_by(instances.c.id).limit(_BATCH)
            ids: list[int] = await self._read(partial(_scalars, statement=page))
            if not ids:
                return done
            await self._write(partial(self._reindex_batch, ids=ids))
            done += len(ids)
            last = ids[-1]

    async def _reindex_batch(self, conn: AsyncConnection, *, ids: list[int]) -> None:
        rows = (await conn.execute(select(instances.c.id, instances.c.metadata).where(instances.c.id.in_(ids)))).all()
        await conn.execute(delete(instance_values).where(instance_values.c.instance_id.in_(ids)))
        values = [
            {**value, "instance_id": row.id}
            for row in rows
            for value in value_rows(_decode(row.metadata), self._indexed)
        ]
        if values:
            await conn.execute(insert(instance_values), values)

    # ----------------------------------------------------------------------------------------
    # Transactions and errors
    # ----------------------------------------------------------------------------------------

    async def _guard(self, action: Callable[[], Awaitable[T]], doing: str) -> T:
        for attempt in range(_ATTEMPTS):
            try:
                return await action()
            except DBAPIError as err:
                if attempt + 1 < _ATTEMPTS and is_retryable(self._kind, err):
                    await anyio.sleep(random.uniform(0.005, 0.02) * (attempt + 1))
                    continue
                raise StorageUnavailable(f"The {self._where} failed while {doing}: {_reason(err)}") from err
            except (SQLAlchemyError, OSError, TimeoutError) as err:
                raise StorageUnavailable(f"The {self._where} is unavailable while {doing}: {_reason(err)}") from err
        raise AssertionError("unreachable")

    async def _write(self, work: Callable[[AsyncConnection], Awaitable[T]], doing: str = "writing") -> T:
        async def once() -> T:
            async with self._engine.connect() as conn:
                conn = await conn.execution_options(dwk_write=True)
                async with conn.begin():
                    return await work(conn)

        return await self._guard(once, doing)

    async def _read(self, work: Callable[[AsyncConnection], Awaitable[T]], doing: str = "reading") -> T:
        async def once() -> T:
            async with self._engine.connect() as conn, conn.begin():
                return await work(conn)

        return await self._guard(once, doing)

    # ----------------------------------------------------------------------------------------
    # Reads
    # ----------------------------------------------------------------------------------------

    async def get(self, key: ResourceKey, /) -> InstanceRecord | None:
        if key.instance is None:
            return None

        async def work(conn: AsyncConnection) -> InstanceRecord | None:
            row = (await conn.execute(_record_select().where(*_scope_filter(key)))).first()
            return None if row is None else _record(row)

        return await self._read(work)

    async def records(self, scope: ResourceKey, /) -> AsyncIterator[InstanceRecord]:
        """Keyset pages of :data:`_BATCH` rows in (study, series, instance) insertion order."""
        last: tuple[int, int, int] | None = None
        while True:
            statement = _record_select().where(*_scope_filter(scope))
            if last is not None:
                statement = statement.where(
                    tuple_(instances.c.study_id, instances.c.series_id, instances.c.id) > tuple_(*last)
                )
            statement = statement.order_by(instances.c.study_id, instances.c.series_id, instances.c.id).limit(_BATCH)
            rows = await self._read(partial(_rows, statement=statement))
            for row in rows:
                yield _record(row)
            if len(rows) < _BATCH:
                return
            last = (rows[-1].study_id, rows[-1].series_id, rows[-1].id)

    async def summary(self, scope: ResourceKey, /) -> ScopeSummary | None:
        """Count, transfer syntaxes and a version (count and highest insertion id) of ``scope``."""

        async def work(conn: AsyncConnection) -> ScopeSummary | None:
            where = _scope_filter(scope)
            count, newest = (await conn.execute(select(func.count(), func.max(instances.c.id)).where(*where))).one()
            if not count:
                return None
            syntaxes = await _scalars(conn, statement=select(instances.c.transfer_syntax_uid).distinct().where(*where))
            return ScopeSummary(
                instances=int(count), transfer_syntaxes=tuple(sorted(syntaxes)), version=f"{count}-{newest}"
            )

        return await self._read(work)

    async def search(self, query: Query, /) -> Page:
        return await self._read(
            lambda conn: _search.search(conn, query, kind=self._kind, indexed=self._indexed), "searching"
        )

    # ----------------------------------------------------------------------------------------
    # Writes
    # ----------------------------------------------------------------------------------------

    async def add_many(
        self, records: Sequence[InstanceRecord], /, *, on_existing: Literal["keep", "replace"]
    ) -> list[AddOutcome]:
        # TODO(group commit): one transaction for the batch.
        return [await self.add(record, on_existing=on_existing) for record in records]

    async def add(self, record: InstanceRecord, /, *, on_existing: Literal["keep", "replace"]) -> AddOutcome:
        if on_existing not in ("keep", "replace"):
            raise ConfigurationError(f"on_existing must be 'keep' or 'replace', not {on_existing!r}")
        rows = value_rows(record.attributes, self._indexed)
        return await self._write(lambda conn: self._add(conn, record, on_existing, rows), "adding an instance")

    async def _add(
        self,
        conn: AsyncConnection,
        record: InstanceRecord,
        on_existing: Literal["keep", "replace"],
        values: list[dict[str, Any]],
    ) -> AddOutcome:
        # Lock only the instance row: the join's study/series rows are locked in study-first
        # order below, like every other writer does (no lock-order deadlocks).
        lock = select(instances.c.id).where(instances.c.instance_uid == record.instance_uid).with_for_update()
        locked = await conn.scalar(lock)
        existing = None
        if locked is not None:
            existing = (await conn.execute(_record_select().where(instances.c.id == locked))).first()
        previous = None if existing is None else _record(existing)
        if existing is not None:
            if on_existing == "keep":
                return AddOutcome(stored=False, previous=previous)
            await self._delete(conn, [instances.c.id == existing.id])  # replace: one transaction

        study_id = await self._lock_study(conn, record.study_uid)
        series_id = await conn.scalar(
            select(series.c.id).where(series.c.study_id == study_id, series.c.series_uid == record.series_uid)
        )
        new_series = series_id is None
        if series_id is None:  # the study row lock makes this select-then-insert race free
            result = await conn.execute(
                insert(series).values(study_id=study_id, series_uid=record.series_uid, num_instances=0)
            )
            series_id = _new_id(result)
        result = await conn.execute(
            insert(instances).values(
                study_id=study_id,
                series_id=series_id,
                instance_uid=record.instance_uid,
                sop_class_uid=record.sop_class_uid,
                transfer_syntax_uid=record.transfer_syntax_uid,
                blob_key=record.blob_key,
                size=record.size,
                metadata=bytes(record.metadata),
            )
        )
        instance_id = _new_id(result)
        if values:
            await conn.execute(insert(instance_values), [{**value, "instance_id": instance_id} for value in values])
        # The newest instance is the representative: its values become the summary columns.
        await conn.execute(
            update(series)
            .where(series.c.id == series_id)
            .values(num_instances=series.c.num_instances + 1, **representative(record.attributes, SERIES_COLUMNS))
        )
        await conn.execute(
            update(studies)
            .where(studies.c.id == study_id)
            .values(
                num_instances=studies.c.num_instances + 1,
                num_series=studies.c.num_series + (1 if new_series else 0),
                **representative(record.attributes, STUDY_COLUMNS),
            )
        )
        return AddOutcome(stored=True, previous=previous)

    async def _lock_study(self, conn: AsyncConnection, study_uid: str) -> int:
        """The study's id, its row created if missing and locked until commit."""
        statement = select(studies.c.id).where(studies.c.study_uid == study_uid).with_for_update()
        study_id = await conn.scalar(statement)
        if study_id is None:
            await conn.execute(
                insert_ignore(self._kind, studies, ["study_uid"]),
                {"study_uid": study_uid, "num_series": 0, "num_instances": 0},
            )
            study_id = await conn.scalar(statement)
        if study_id is None:
            raise AssertionError(f"study {study_uid} vanished during insert")
        return int(study_id)

    async def remove(self, scope: ResourceKey, /) -> list[str]:
        return await self._write(lambda conn: self._delete(conn, _scope_filter(scope)), "removing")

    async def _delete(self, conn: AsyncConnection, where: list[ColumnElement[bool]]) -> list[str]:
        """Delete the instances ``where`` selects; fix counters; drop empty series and studies."""
        study_ids = await _scalars(conn, statement=select(instances.c.study_id).distinct().where(*where))
        if not study_ids:
            return []
        # Lock the studies first (the order adds use), then read what is really there.
        await _scalars(
            conn,
            statement=select(studies.c.id).where(studies.c.id.in_(study_ids)).order_by(studies.c.id).with_for_update(),
        )
        where = [*where, instances.c.study_id.in_(study_ids)]
        rows = (await conn.execute(select(instances.c.series_id, instances.c.blob_key).where(*where))).all()
        if not rows:
            return []
        series_ids = sorted({row.series_id for row in rows})
        doomed = select(instances.c.id).where(*where)
        await conn.execute(delete(instance_values).where(instance_values.c.instance_id.in_(doomed.scalar_subquery())))
        await conn.execute(delete(instances).where(*where))
        for series_id in series_ids:
            await self._refresh(conn, series, series_id, instances.c.series_id, SERIES_COLUMNS)
        for study_id in study_ids:
            await self._refresh(conn, studies, study_id, instances.c.study_id, STUDY_COLUMNS)
        return [row.blob_key for row in rows]

    async def _refresh(
        self, conn: AsyncConnection, table: Any, entity_id: int, link: Any, columns: dict[str, int]
    ) -> None:
        """Recount one series/study from its rows; delete it if empty, else re-pick its representative."""
        count = await conn.scalar(select(func.count()).select_from(instances).where(link == entity_id))
        if not count:
            await conn.execute(delete(table).where(table.c.id == entity_id))
            return
        values: dict[str, Any] = {"num_instances": count}
        if table is studies:
            values["num_series"] = await conn.scalar(
                select(func.count()).select_from(series).where(series.c.study_id == entity_id)
            )
        newest = await conn.scalar(
            select(instances.c.metadata).where(link == entity_id).order_by(instances.c.id.desc()).limit(1)
        )
        values.update(representative(_decode(newest or b"{}"), columns))
        await conn.execute(update(table).where(table.c.id == entity_id).values(**values))


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _new_id(result: Any) -> int:
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


def _reason(err: BaseException) -> str:
    orig = getattr(err, "orig", None) or err.__cause__ or err
    text = f"{type(orig).__name__}: {orig}".strip()
    return text.splitlines()[0][:300] if text else type(err).__name__


async def _scalars(conn: AsyncConnection, *, statement: Any) -> list[Any]:
    return list((await conn.execute(statement)).scalars().all())


async def _rows(conn: AsyncConnection, *, statement: Any) -> Sequence[Row[Any]]:
    return (await conn.execute(statement)).all()


def _record_select() -> Any:
    return select(
        instances.c.id,
        instances.c.study_id,
        instances.c.series_id,
        studies.c.study_uid,
        series.c.series_uid,
        instances.c.instance_uid,
        instances.c.sop_class_uid,
        instances.c.transfer_syntax_uid,
        instances.c.blob_key,
        instances.c.size,
        instances.c.metadata,
    ).select_from(
        instances.join(series, series.c.id == instances.c.series_id).join(studies, studies.c.id == instances.c.study_id)
    )


def _scope_filter(scope: ResourceKey) -> list[ColumnElement[bool]]:
    """Conditions on ``instances`` selecting the records under ``scope``."""
    conditions: list[ColumnElement[bool]] = []
    study = select(studies.c.id).where(studies.c.study_uid == scope.study)
    if scope.study is not None:
        conditions.append(instances.c.study_id.in_(study.scalar_subquery()))
    if scope.series is not None:
        in_series = select(series.c.id).where(series.c.series_uid == scope.series)
        if scope.study is not None:
            in_series = in_series.where(series.c.study_id.in_(study.scalar_subquery()))
        conditions.append(instances.c.series_id.in_(in_series.scalar_subquery()))
    if scope.instance is not None:
        conditions.append(instances.c.instance_uid == scope.instance)
    return conditions or [true()]


def _record(row: Any) -> InstanceRecord:
    data = bytes(row.metadata)
    return InstanceRecord(
        study_uid=row.study_uid,
        series_uid=row.series_uid,
        instance_uid=row.instance_uid,
        sop_class_uid=row.sop_class_uid,
        transfer_syntax_uid=row.transfer_syntax_uid,
        blob_key=row.blob_key,
        size=int(row.size),
        metadata=msgspec.Raw(data),
        attributes=_decode(data),
    )
