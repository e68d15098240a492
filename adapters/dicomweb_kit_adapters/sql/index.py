"""``SqlIndex``: the instance index on SQLite, PostgreSQL or MariaDB (SQLAlchemy Core, asyncio).

Writes are one transaction each, retried on deadlocks, serialization failures and lost
unique-key races. Concurrent adds of one study serialise on the study row (``SELECT ... FOR
UPDATE``; SQLite serialises all writers with ``BEGIN IMMEDIATE``), which keeps the counters
exact and lets the newest instance write the representative columns. ``add_many`` runs its
statements through :class:`~.sqlite_direct.Statements`: on SQLite the ``sqlite3`` driver directly
(compiled once, bulk inserts as ``executemany``), elsewhere SQLAlchemy's ``Connection.execute``.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, Final, Literal, NamedTuple, TypeVar

import anyio
import msgspec
from sqlalchemy import ColumnElement, Row, bindparam, delete, func, insert, select, true, tuple_, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.dml import Insert

from dicomweb_kit import (
    AddOutcome,
    ConfigurationError,
    IndexCapabilities,
    InstanceRecord,
    Page,
    PixelLayout,
    Query,
    ResourceKey,
    ScopeSummary,
    WorkerThreads,
    validate_tenant,
)

from . import changefeed as _changefeed
from . import search as _search
from .dialects import SQLITE_POOL, Kind, create_engine, create_sync_engine, guarded, insert_ignore
from .extract import VALUE_COLUMNS, ValueRow, indexed_attributes, representative, value_rows
from .migrations import SCHEMA_VERSION, upgrade
from .schema import SERIES_COLUMNS, STUDY_COLUMNS, instance_values, instances, series, studies
from .sqlite_direct import SqliteStatements, Statements
from .study_summary import decode_values, encode_values, instance_modalities, study_values
from .tenants import create_namespace, tenant_location
from .workitems import SqlWorkitemStore

if TYPE_CHECKING:
    from .subscriptions import SqlSubscriptionStore

__all__ = ["SqlIndex"]

T = TypeVar("T")

_BATCH: Final = 500
# SQLite searches tried on the event loop first (``_search_inline``): pages of at most this many
# rows, interrupted after _INLINE_SEARCH_TICKS x _INLINE_SEARCH_TICK virtual machine steps (a few
# ms here; a study list on 1000 instances takes ~20 ticks).
_INLINE_SEARCH_ROWS: Final = 100
_INLINE_SEARCH_TICK: Final = 1000
_INLINE_SEARCH_TICKS: Final = 100
_RECORDS_PAGE: Final = 1000  # a 500-instance series in one page, and no empty second one


_encode_layout = msgspec.msgpack.Encoder().encode
_decode_layout = msgspec.msgpack.Decoder(PixelLayout).decode


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
        self._url, self._schema, self._extra_indexed, self._echo = url, schema, tuple(extra_indexed), echo
        self._tenants: dict[str, SqlIndex] = {}
        self._parent_engine: AsyncEngine | None = None  # a tenant's: creates its namespace in open()
        # SQLite: reads and writes run on a synchronous pysqlite engine in a worker thread
        # (the aiosqlite engine above only runs the migrations in open()).
        self._sync: Engine | None = create_sync_engine(url, echo=echo) if self._kind == "sqlite" else None
        # SQLite: a connection of the event loop's own for one-row lookups (see ``get``).
        self._inline: Connection | None = None
        # SQLite has one writer at a time; writers of this process queue here instead of in
        # SQLite's busy handler, which sleeps in steps of up to 100 ms and wakes late (other
        # processes still meet on busy_timeout).
        self._sqlite_writer = anyio.Lock()
        # SQLite: the threads operations run in (anyio's pool hops 5-10x slower, which was more
        # than a whole QIDO search once its statements ran on the driver directly).
        self._threads = WorkerThreads(SQLITE_POOL, name="SqlIndex SQLite")
        # SQLite: add_many's statements run on the sqlite3 driver directly (``_statements``);
        # not with echo, which logs what SQLAlchemy runs.
        self._driver_writes = self._kind == "sqlite" and not echo
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

    def ups_workitems(self) -> SqlWorkitemStore:
        """A UPS workitem store on this index's database and pool (the kit's default workitems)."""
        return SqlWorkitemStore.on_engine(self._kind, self._engine)

    def change_feed(self) -> _changefeed.SqlChangeFeed:
        """The feed of this index's changes, written in the same transactions (the kit's ``changefeed``)."""
        return _changefeed.SqlChangeFeed(self)

    def ups_subscriptions(self) -> SqlSubscriptionStore:
        """The UPS subscription store on this index's database (the kit's default subscriptions)."""
        from .subscriptions import SqlSubscriptionStore

        return SqlSubscriptionStore(self)

    def for_tenant(self, tenant: str, /) -> SqlIndex:
        """The index of ``tenant``, in a namespace of its own on the same server: a file beside
        this one on SQLite, a schema on PostgreSQL, a database on MariaDB (``sql/tenants.py``),
        with the same settings (:class:`dicomweb_kit.tenancy.TenantScoped`). Its workitems,
        subscriptions and change feed live there too. ``open()`` creates the namespace and
        tables; closing this index closes it."""
        found = self._tenants.get(tenant)
        if found is None:
            url, schema = tenant_location(self._kind, self._url, self._schema, validate_tenant(tenant))
            found = SqlIndex(url, extra_indexed=self._extra_indexed, echo=self._echo, schema=schema)
            found._parent_engine = self._engine
            self._tenants[tenant] = found
        return found

    async def open(self) -> None:
        """Create or upgrade the schema (idempotent; safe from several workers at once)."""
        if self._parent_engine is not None:
            parent = self._parent_engine
            await self._guard(
                lambda: create_namespace(self._kind, parent, self._url, self._schema), "creating the tenant's tables"
            )
        await self._guard(lambda: upgrade(self._engine, self._kind), "opening")
        self._schema_version = SCHEMA_VERSION
        if self._sync is not None and self._inline is None:
            self._inline = await self._guard(partial(anyio.to_thread.run_sync, self._sync.connect), "opening")

    async def aclose(self) -> None:
        tenants, self._tenants = list(self._tenants.values()), {}
        for tenant in tenants:
            await tenant.aclose()
        inline, self._inline = self._inline, None
        if inline is not None:
            await anyio.to_thread.run_sync(inline.close)
        if self._sync is not None:
            await anyio.to_thread.run_sync(self._sync.dispose)
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

    def _reindex_batch(self, conn: Connection, *, ids: list[int]) -> None:
        statement = select(instances.c.id, instances.c.study_id, instances.c.series_id, instances.c.metadata)
        rows = (conn.execute(statement.where(instances.c.id.in_(ids)))).all()
        conn.execute(delete(instance_values).where(instance_values.c.instance_id.in_(ids)))
        values = [
            (row.id, *value, row.study_id, row.series_id)
            for row in rows
            for value in value_rows(_decode(row.metadata), self._indexed)
        ]
        self._statements(conn).insert(_INSERT_VALUES, _VALUE_INSERT_COLUMNS, values)

    # ----------------------------------------------------------------------------------------
    # Transactions and errors
    # ----------------------------------------------------------------------------------------

    async def _guard(self, action: Callable[[], Awaitable[T]], doing: str) -> T:
        return await guarded(self._kind, self._where, action, doing)

    async def _write(self, work: Callable[[Connection], T], doing: str = "writing") -> T:
        if self._sync is None:
            return await self._guard(partial(self._run, work, write=True), doing)
        async with self._sqlite_writer:
            return await self._guard(partial(self._run, work, write=True), doing)

    async def _read(self, work: Callable[[Connection], T], doing: str = "reading") -> T:
        return await self._guard(partial(self._run, work, write=False), doing)

    async def _run(self, work: Callable[[Connection], T], *, write: bool) -> T:
        """One transaction running ``work`` (synchronous SQLAlchemy) in ONE hop: on SQLite a
        worker thread with a pooled ``sqlite3`` connection (every statement of the operation
        runs there, no per-statement thread hand-off); on PostgreSQL/MariaDB a greenlet over
        the asyncio driver (``AsyncConnection.run_sync``)."""
        if self._sync is not None:
            return await self._threads.run(partial(_transaction, self._sync, work, write))
        async with self._engine.connect() as conn:
            return await conn.run_sync(partial(_in_transaction, work, write))

    # ----------------------------------------------------------------------------------------
    # Reads
    # ----------------------------------------------------------------------------------------

    async def get(self, key: ResourceKey, /) -> InstanceRecord | None:
        if key.instance is None:
            return None

        params = {"study": key.study, "series": key.series, "instance": key.instance}
        if self._inline is not None:
            # SQLite, WAL: a lookup of one row by unique keys takes less time on the event loop
            # than the hop to a worker thread (~0.13 ms here) and never waits for a writer.
            # Viewers ask for it per frame. Any error takes the ordinary path.
            try:
                with self._inline.begin():
                    row = self._inline.execute(_get_statement(), params).first()
                return None if row is None else _record(row)
            except SQLAlchemyError:
                pass

        def work(conn: Connection) -> InstanceRecord | None:
            row = (conn.execute(_get_statement(), params)).first()
            return None if row is None else _record(row)

        return await self._read(work)

    async def records(self, scope: ResourceKey, /) -> AsyncIterator[InstanceRecord]:
        """Keyset pages of :data:`_RECORDS_PAGE` rows in (study, series, instance) insertion order
        (one worker-thread/greenlet hop per page)."""
        async for row in self._pages(scope, _record_select()):
            yield _record(row)

    async def stored_metadata(self, scope: ResourceKey, /) -> AsyncIterator[bytes]:
        """The stored DICOM JSON of each record under ``scope``, in :meth:`records` order, as
        stored: the core splices these into metadata responses. Decoding every record's
        metadata into ``attributes`` was most of a 50-instance series' metadata time."""
        async for row in self._pages(scope, _metadata_select()):
            yield bytes(row.metadata)

    async def _pages(self, scope: ResourceKey, columns: Any) -> AsyncIterator[Row[Any]]:
        last: tuple[int, int, int] | None = None
        while True:
            statement = columns.where(*_scope_filter(scope))
            if last is not None:
                statement = statement.where(
                    tuple_(instances.c.study_id, instances.c.series_id, instances.c.id) > tuple_(*last)
                )
            statement = statement.order_by(instances.c.study_id, instances.c.series_id, instances.c.id).limit(
                _RECORDS_PAGE
            )
            rows = await self._read(partial(_rows, statement=statement))
            for row in rows:
                yield row
            if len(rows) < _RECORDS_PAGE:
                return
            last = (rows[-1].study_id, rows[-1].series_id, rows[-1].id)

    async def summary(self, scope: ResourceKey, /) -> ScopeSummary | None:
        """Count, transfer syntaxes and a version (count and highest insertion id) of ``scope``."""

        def work(conn: Connection) -> ScopeSummary | None:
            where = _scope_filter(scope)
            count, newest = (conn.execute(select(func.count(), func.max(instances.c.id)).where(*where))).one()
            if not count:
                return None
            syntaxes = _scalars(conn, statement=select(instances.c.transfer_syntax_uid).distinct().where(*where))
            return ScopeSummary(
                instances=int(count), transfer_syntaxes=tuple(sorted(syntaxes)), version=f"{count}-{newest}"
            )

        return await self._read(work)

    async def search(self, query: Query, /) -> Page:
        if self._inline is not None:
            found = self._search_inline(query)
            if found is not None:
                return found
        return await self._read(
            lambda conn: _search.search(conn, query, kind=self._kind, indexed=self._indexed), "searching"
        )

    def _search_inline(self, query: Query) -> Page | None:
        """SQLite: a search tried on the event loop's own connection within a budget: SQLite's
        work is interrupted past it (a progress handler), and a page of more than
        :data:`_INLINE_SEARCH_ROWS` rows is not built here (one metadata decode per row). Past
        either, ``None``: the caller runs the search in a worker thread, where SQLite's own work
        leaves the GIL to the event loop. Most searches end well within the budget and skip the
        hop and the pooled transaction, ~0.15 ms of a ~0.35 ms search."""
        assert self._inline is not None
        driver = self._inline.connection.driver_connection
        assert driver is not None
        ticks = 0

        def over_budget() -> bool:
            nonlocal ticks
            ticks += 1
            return ticks > _INLINE_SEARCH_TICKS

        driver.set_progress_handler(over_budget, _INLINE_SEARCH_TICK)
        try:
            with self._inline.begin():
                return _search.search(
                    self._inline, query, kind=self._kind, indexed=self._indexed, max_rows=_INLINE_SEARCH_ROWS
                )
        except (SQLAlchemyError, sqlite3.Error, _search.TooManyRows):
            return None  # interrupted (or busy, or broken): the ordinary path answers or reports it
        finally:
            driver.set_progress_handler(None, _INLINE_SEARCH_TICK)

    # ----------------------------------------------------------------------------------------
    # Writes
    # ----------------------------------------------------------------------------------------

    async def add_many(
        self, records: Sequence[InstanceRecord], /, *, on_existing: Literal["keep", "replace"]
    ) -> list[AddOutcome]:
        """Group commit: the whole batch in one transaction, with bulk inserts (module docstring)."""
        if on_existing not in ("keep", "replace"):
            raise ConfigurationError(f"on_existing must be 'keep' or 'replace', not {on_existing!r}")
        if not records:
            return []
        values = [value_rows(record.attributes, self._indexed) for record in records]
        return await self._write(
            lambda conn: self._add_many(self._statements(conn), records, on_existing, values),
            "adding instances" if len(records) > 1 else "adding an instance",
        )

    async def add(self, record: InstanceRecord, /, *, on_existing: Literal["keep", "replace"]) -> AddOutcome:
        return (await self.add_many([record], on_existing=on_existing))[0]

    def _statements(self, conn: Connection) -> Statements:
        """How ``conn``'s transaction runs the add's statements: on SQLite the ``sqlite3`` driver
        directly (SQLAlchemy's per-execution Python was most of a STOW batch's index time)."""
        return SqliteStatements(conn) if self._driver_writes else Statements(conn)

    def _add_many(
        self,
        run: Statements,
        records: Sequence[InstanceRecord],
        on_existing: Literal["keep", "replace"],
        values: list[list[ValueRow]],
    ) -> list[AddOutcome]:
        # 1. What is stored already; each record in order, as sequential adds would do.
        stored = self._stored(run, records)
        was_stored = set(stored)  # for the change feed: these become "replace" entries
        outcomes, pending, doomed = _plan(records, stored, on_existing)
        if doomed:  # replace: delete then insert, in one transaction
            self._delete(run.conn, [instances.c.id.in_(doomed)])
        if not pending:
            return outcomes
        batch = [records[position] for position in pending]
        # 2. Studies: created if missing, then locked (in id order) until commit.
        # (first-appearance order: new rows get ids in insertion order, the stable order)
        study_ids, summaries = self._lock_studies(run, list(dict.fromkeys(record.study_uid for record in batch)))
        # 3. Series: the study locks make this select-then-insert race free.
        wanted = list(dict.fromkeys((study_ids[record.study_uid], record.series_uid) for record in batch))
        series_ids = self._series_ids(run, set(wanted))
        new_series = [key for key in wanted if key not in series_ids]
        if new_series:
            run.insert(_INSERT_SERIES, ("study_id", "series_uid", "num_instances"), [(*key, 0) for key in new_series])
            series_ids.update(self._series_ids(run, set(new_series)))
        # 4. Instances (ids in batch order, the stable order), then their values.
        rows = [_instance_row(record, study_ids, series_ids) for record in batch]
        instance_ids = _insert_instances(run, rows)
        run.insert(
            _INSERT_VALUES,
            _VALUE_INSERT_COLUMNS,
            [
                (instance_id, *value, row.study_id, row.series_id)
                for instance_id, row, position in zip(instance_ids, rows, pending, strict=True)
                for value in values[position]
            ],
        )
        # 5. Counters once per series/study; the newest instance is the representative.
        for position, row in zip(pending, rows, strict=True):
            summary = summaries[row.study_id]
            if summary is not None:
                summary[0].update(instance_modalities(values[position], records[position].attributes))
                summary[1].add(records[position].sop_class_uid)
        _count(run, batch, rows, instance_ids, new_series, summaries)
        _changefeed.append_stored(run, [(record, record.instance_uid in was_stored) for record in batch])
        return outcomes

    def _stored(self, run: Statements, records: Sequence[InstanceRecord]) -> dict[str, tuple[int, InstanceRecord]]:
        """The records' stored instances by UID, with their ids. Locks only the instance rows:
        the study/series rows are locked in study-id order later, like every other writer does."""
        uids = sorted({record.instance_uid for record in records})
        locked = [row.id for row in run.rows(_LOCK_INSTANCES, {"uids": uids})]
        if not locked:
            return {}
        return {row.instance_uid: (int(row.id), _record(row)) for row in run.rows(_STORED, {"ids": locked})}

    def _series_ids(self, run: Statements, keys: set[tuple[int, str]]) -> dict[tuple[int, str], int]:
        found = run.rows(_SERIES_IDS, {"uids": sorted({uid for _study, uid in keys})})
        return {
            (int(row.study_id), row.series_uid): int(row.id)
            for row in found
            if (int(row.study_id), row.series_uid) in keys
        }

    def _lock_studies(self, run: Statements, study_uids: list[str]) -> tuple[dict[str, int], dict[int, _Summary]]:
        """The studies' ids, their rows created if missing and locked until commit, and the
        ModalitiesInStudy / SOPClassesInStudy they keep (``None``: not known)."""
        params = {"uids": study_uids}
        locked = run.rows(_LOCK_STUDIES, params)
        if len(locked) < len(study_uids):
            present = {row.study_uid for row in locked}
            new = [(uid, 0, 0) for uid in study_uids if uid not in present]
            run.insert(_insert_studies(self._kind), ("study_uid", "num_series", "num_instances"), new)
            locked = run.rows(_LOCK_STUDIES, params)
        found = {row.study_uid: int(row.id) for row in locked}
        for uid in study_uids:
            if uid not in found:
                raise AssertionError(f"study {uid} vanished during insert")
        return found, {int(row.id): _kept_summary(row) for row in locked}

    async def remove(self, scope: ResourceKey, /) -> list[str]:
        return await self._write(lambda conn: self._delete(conn, _scope_filter(scope), feed=True), "removing")

    def _delete(self, conn: Connection, where: list[ColumnElement[bool]], *, feed: bool = False) -> list[str]:
        """Delete the instances ``where`` selects; fix counters; drop empty series and studies."""
        study_ids = _scalars(conn, statement=select(instances.c.study_id).distinct().where(*where))
        if not study_ids:
            return []
        # Lock the studies first (the order adds use), then read what is really there.
        _scalars(
            conn,
            statement=select(studies.c.id).where(studies.c.id.in_(study_ids)).order_by(studies.c.id).with_for_update(),
        )
        where = [*where, instances.c.study_id.in_(study_ids)]
        rows = (conn.execute(select(instances.c.series_id, instances.c.blob_key).where(*where))).all()
        if not rows:
            return []
        series_ids = sorted({row.series_id for row in rows})
        if feed:  # a removal (not a replacement, which add_many records as such)
            _changefeed.append_removed(conn, where)
        doomed = select(instances.c.id).where(*where)
        conn.execute(delete(instance_values).where(instance_values.c.instance_id.in_(doomed.scalar_subquery())))
        conn.execute(delete(instances).where(*where))
        for series_id in series_ids:
            self._refresh(conn, series, series_id, instances.c.series_id, SERIES_COLUMNS)
        for study_id in study_ids:
            self._refresh(conn, studies, study_id, instances.c.study_id, STUDY_COLUMNS)
        return [row.blob_key for row in rows]

    def _refresh(self, conn: Connection, table: Any, entity_id: int, link: Any, columns: dict[str, int]) -> None:
        """Recount one series/study from its rows; delete it if empty, else re-pick its representative."""
        count = conn.scalar(select(func.count()).select_from(instances).where(link == entity_id))
        if not count:
            conn.execute(delete(table).where(table.c.id == entity_id))
            return
        values: dict[str, Any] = {"num_instances": count}
        if table is studies:
            values["num_series"] = conn.scalar(
                select(func.count()).select_from(series).where(series.c.study_id == entity_id)
            )
        newest = conn.execute(
            select(instances.c.id, instances.c.metadata)
            .where(link == entity_id)
            .order_by(instances.c.id.desc())
            .limit(1)
        ).one()
        values.update(representative(_decode(newest.metadata), columns))
        if table is studies:
            values["representative_id"] = newest.id
            modalities, sop_classes = study_values(conn, [entity_id])
            values["modalities"] = encode_values(modalities.get(entity_id, ()))
            values["sop_classes"] = encode_values(sop_classes.get(entity_id, ()))
        conn.execute(update(table).where(table.c.id == entity_id).values(**values))


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


class _InstanceRow(NamedTuple):
    """An ``instances`` row to insert."""

    study_id: int
    series_id: int
    instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    blob_key: str
    size: int
    metadata: bytes
    pixel_layout: bytes | None


_VALUE_INSERT_COLUMNS: Final = ("instance_id", *VALUE_COLUMNS, "study_id", "series_id")
# A locked study's (ModalitiesInStudy, SOPClassesInStudy), None when not known (study_summary.py).
_Summary = tuple[set[str], set[str]] | None


def _kept_summary(row: Any) -> _Summary:
    if not row.num_instances:
        return set(), set()  # new (or emptied by a replacement): nothing yet
    if row.modalities is None or row.sop_classes is None:
        return None  # stays unknown: the search computes it
    return set(decode_values(row.modalities)), set(decode_values(row.sop_classes))


def _plan(
    records: Sequence[InstanceRecord],
    stored: dict[str, tuple[int, InstanceRecord]],
    on_existing: Literal["keep", "replace"],
) -> tuple[list[AddOutcome], list[int], list[int]]:
    """Each record in order, as sequential adds would do: a later record sees an earlier one of
    the batch as existing. Returns the outcomes, the positions of the records to insert (in
    insertion order) and the ids of the stored instances they replace."""
    stored = dict(stored)
    outcomes: list[AddOutcome] = []
    pending: dict[str, int] = {}  # instance UID -> position in records
    doomed: list[int] = []
    for position, record in enumerate(records):
        uid = record.instance_uid
        previous: InstanceRecord | None = None
        if uid in pending:
            previous = records[pending[uid]]
        elif uid in stored:
            previous = stored[uid][1]
        if previous is not None:
            if on_existing == "keep":
                outcomes.append(AddOutcome(stored=False, previous=previous))
                continue
            if uid in pending:
                del pending[uid]  # replaced before it was ever written
            else:
                doomed.append(stored.pop(uid)[0])
        pending[uid] = position
        outcomes.append(AddOutcome(stored=True, previous=previous))
    return outcomes, list(pending.values()), doomed


def _instance_row(
    record: InstanceRecord, study_ids: dict[str, int], series_ids: dict[tuple[int, str], int]
) -> _InstanceRow:
    study_id = study_ids[record.study_uid]
    return _InstanceRow(
        study_id,
        series_ids[(study_id, record.series_uid)],
        record.instance_uid,
        record.sop_class_uid,
        record.transfer_syntax_uid,
        record.blob_key,
        record.size,
        bytes(record.metadata),
        None if record.pixel_layout is None else _encode_layout(record.pixel_layout),
    )


def _insert_instances(run: Statements, rows: list[_InstanceRow]) -> list[int]:
    """Insert ``rows``; their new ids, in the same order."""
    if len(rows) == 1:
        return [run.insert_one(_INSERT_INSTANCES, rows[0]._asdict())]
    run.insert(_INSERT_INSTANCES, _InstanceRow._fields, rows)
    found = run.rows(_INSTANCE_IDS, {"uids": [row.instance_uid for row in rows]})
    ids = {row.instance_uid: int(row.id) for row in found}
    return [ids[row.instance_uid] for row in rows]


def _count(
    run: Statements,
    batch: list[InstanceRecord],
    rows: list[_InstanceRow],
    instance_ids: list[int],
    new_series: list[tuple[int, str]],
    summaries: dict[int, _Summary],
) -> None:
    """Add the batch to its series' and studies' counters; its newest instance of each is the
    representative. ``summaries``: each study's values with the batch's (study_summary.py)."""
    series_updates: dict[int, dict[str, Any]] = {}
    study_updates: dict[int, dict[str, Any]] = {}
    for record, row, instance_id in zip(batch, rows, instance_ids, strict=True):
        one = series_updates.setdefault(row.series_id, {"b_id": row.series_id, "b_count": 0})
        one["b_count"] += 1
        one["b_record"] = record
        study = study_updates.setdefault(row.study_id, {"b_id": row.study_id, "b_count": 0, "b_series": 0})
        study["b_count"] += 1
        study["b_record"] = record
        study["b_representative_id"] = instance_id
    for study_id, study in study_updates.items():
        summary = summaries[study_id]
        study["b_modalities"] = None if summary is None else encode_values(summary[0])
        study["b_sop_classes"] = None if summary is None else encode_values(summary[1])
    for study_id, _uid in new_series:
        study_updates[study_id]["b_series"] += 1
    run.execute(_COUNT_SERIES, [_representative_params(params, SERIES_COLUMNS) for params in series_updates.values()])
    run.execute(_COUNT_STUDIES, [_representative_params(params, STUDY_COLUMNS) for params in study_updates.values()])


def _counter_update(table: Any, columns: dict[str, int]) -> Any:
    values: dict[str, Any] = {
        "num_instances": table.c.num_instances + bindparam("b_count"),
        **{name: bindparam(f"b_{name}") for name in representative({}, columns)},
    }
    if table is studies:
        values["num_series"] = studies.c.num_series + bindparam("b_series")
        values.update({name: bindparam(f"b_{name}") for name in ("representative_id", "modalities", "sop_classes")})
    return update(table).where(table.c.id == bindparam("b_id")).values(**values)


def _representative_params(params: dict[str, Any], columns: dict[str, int]) -> dict[str, Any]:
    out = {key: value for key, value in params.items() if key != "b_record"}
    out.update({f"b_{name}": value for name, value in representative(params["b_record"].attributes, columns).items()})
    return out


def _transaction(engine: Engine, work: Callable[[Connection], T], write: bool) -> T:
    with engine.connect() as conn:
        return _in_transaction(work, write, conn)


def _in_transaction(work: Callable[[Connection], T], write: bool, conn: Connection) -> T:
    if write:
        conn = conn.execution_options(dwk_write=True)
    with conn.begin():
        return work(conn)


def _scalars(conn: Connection, *, statement: Any) -> list[Any]:
    return list((conn.execute(statement)).scalars().all())


def _rows(conn: Connection, *, statement: Any) -> Sequence[Row[Any]]:
    return (conn.execute(statement)).all()


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
        instances.c.pixel_layout,
    ).select_from(
        instances.join(series, series.c.id == instances.c.series_id).join(studies, studies.c.id == instances.c.study_id)
    )


def _metadata_select() -> Any:
    return select(instances.c.id, instances.c.study_id, instances.c.series_id, instances.c.metadata)


# The statements of ``add_many``, built once (they are cache keys, see ``sqlite_direct``).
def _any_of(column: Any, name: str) -> ColumnElement[bool]:
    result: ColumnElement[bool] = column.in_(bindparam(name, expanding=True))
    return result


_LOCK_INSTANCES: Final = select(instances.c.id).where(_any_of(instances.c.instance_uid, "uids")).with_for_update()
_STORED: Final = _record_select().where(_any_of(instances.c.id, "ids"))
_LOCK_STUDIES: Final = (
    select(studies.c.id, studies.c.study_uid, studies.c.num_instances, studies.c.modalities, studies.c.sop_classes)
    .where(_any_of(studies.c.study_uid, "uids"))
    .order_by(studies.c.id)
    .with_for_update()
)
_SERIES_IDS: Final = select(series.c.id, series.c.study_id, series.c.series_uid).where(
    _any_of(series.c.series_uid, "uids")
)
_INSTANCE_IDS: Final = select(instances.c.instance_uid, instances.c.id).where(_any_of(instances.c.instance_uid, "uids"))
_INSERT_SERIES: Final = insert(series)
_INSERT_INSTANCES: Final = insert(instances)
_INSERT_VALUES: Final = insert(instance_values)
_COUNT_SERIES: Final = _counter_update(series, SERIES_COLUMNS)
_COUNT_STUDIES: Final = _counter_update(studies, STUDY_COLUMNS)


@functools.cache
def _insert_studies(kind: Kind) -> Insert:
    return insert_ignore(kind, studies, ["study_uid"])


@functools.cache
def _get_statement() -> Any:
    """The one-instance lookup of :meth:`SqlIndex.get`, built once: viewers call it per frame, and
    building and keying a fresh statement cost as much as running it."""
    study = select(studies.c.id).where(studies.c.study_uid == bindparam("study")).scalar_subquery()
    in_series = select(series.c.id).where(series.c.series_uid == bindparam("series"), series.c.study_id.in_(study))
    return _record_select().where(
        instances.c.study_id.in_(study),
        instances.c.series_id.in_(in_series.scalar_subquery()),
        instances.c.instance_uid == bindparam("instance"),
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
        pixel_layout=None if row.pixel_layout is None else _decode_layout(bytes(row.pixel_layout)),
    )
