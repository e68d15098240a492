"""Schema versioning: a one-row ``dwk_schema_version`` table and an ordered list of steps.

Why not Alembic: the index is one embedded package that must create or upgrade its own few
tables on three engines at application start-up, from ``open()``, with no separate tool, no
migration scripts directory to ship and locate, and no extra dependency. What Alembic would
give us beyond that (autogenerate, branching, downgrades) is for applications that own their
schema's evolution by hand; here the package owns it and only ever moves forward. Each step is
a plain async function; :func:`upgrade` runs the missing ones in order under a lock, so it is
idempotent and several workers may call ``open()`` at the same moment:

* PostgreSQL: ``pg_advisory_xact_lock`` in the migration transaction (DDL is transactional);
* MariaDB: ``GET_LOCK`` on the session (DDL commits implicitly, so a transaction cannot hold it);
* SQLite: the migration transaction itself is ``BEGIN IMMEDIATE``.

A new schema version appends ``(n, step)`` to :data:`MIGRATIONS`; steps must not be edited
once released (step 1 creates the tables as they were at version 1).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final

from pydicom.datadict import dictionary_VR
from sqlalchemy import bindparam, false, func, inspect, select, text, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from dicomweb_kit import ConfigurationError

from .changefeed import TABLES as CHANGEFEED_TABLES
from .changefeed import changefeed_head
from .dialects import Kind, acquire_schema_lock, insert_ignore, release_schema_lock
from .extract import MAX_TEXT, NUMERIC_VRS, number_key
from .schema import (
    OLD_VALUE_INDEXES,
    VALUE_INDEXES,
    instance_values,
    instances,
    metadata,
    schema_version,
    series,
    studies,
    workitems,
)
from .study_summary import encode_values, study_values
from .ups_tables import TABLES as UPS_TABLES

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "current_version", "upgrade"]

Step = Callable[[AsyncConnection, Kind], Awaitable[None]]


async def _v1_create_tables(conn: AsyncConnection, _kind: Kind) -> None:
    tables = [studies, series, instances, instance_values]
    await conn.run_sync(lambda sync: metadata.create_all(sync, tables=tables, checkfirst=True))


_BATCH: Final = 1000


def _dictionary_vr(tag: int) -> str | None:
    try:
        return dictionary_VR(tag).split(" or ")[0]
    except KeyError:
        return None


async def _v2_ordered_number_keys(conn: AsyncConnection, _kind: Kind) -> None:
    """Rewrite the ``value_key`` of numeric values in the order-preserving form of
    ``extract.number_key`` (version 1 stored an unordered canonical form), so that ``orderby``
    can sort numbers in SQL. The VR of an indexed attribute is its dictionary VR."""
    v = instance_values
    tags = (await conn.execute(select(v.c.tag).distinct())).scalars().all()
    numeric = [int(tag) for tag in tags if _dictionary_vr(int(tag)) in NUMERIC_VRS]
    if not numeric:
        return
    base = (
        select(v.c.instance_id, v.c.tag, v.c.vidx, v.c.grp, v.c.value)
        .where(v.c.tag.in_(numeric), v.c.irregular == false())
        .order_by(v.c.instance_id, v.c.tag, v.c.vidx, v.c.grp)
        .limit(_BATCH)
    )
    change = (
        update(v)
        .where(
            v.c.instance_id == bindparam("b_instance"),
            v.c.tag == bindparam("b_tag"),
            v.c.vidx == bindparam("b_vidx"),
            v.c.grp == bindparam("b_grp"),
        )
        .values(value_key=bindparam("b_key"), irregular=bindparam("b_irregular"))
    )
    last: tuple[int, int, int, int] | None = None
    while True:
        statement = base
        if last is not None:
            statement = statement.where(tuple_(v.c.instance_id, v.c.tag, v.c.vidx, v.c.grp) > tuple_(*last))
        rows = (await conn.execute(statement)).all()
        updates = []
        for row in rows:
            key = None if row.value is None else number_key(row.value)
            updates.append(
                {
                    "b_instance": row.instance_id,
                    "b_tag": row.tag,
                    "b_vidx": row.vidx,
                    "b_grp": row.grp,
                    "b_key": key if key is None or len(key) <= MAX_TEXT else None,
                    "b_irregular": key is not None and len(key) > MAX_TEXT,  # answered from metadata
                }
            )
        if updates:
            await conn.execute(change, updates)
        if len(rows) < _BATCH:
            return
        last = (rows[-1].instance_id, rows[-1].tag, rows[-1].vidx, rows[-1].grp)


async def _v3_value_entities(conn: AsyncConnection, kind: Kind) -> None:
    """Copy each value row's study and series ids into ``instance_values`` and replace the
    ``(tag, value)``/``(tag, value_key)`` indexes by the covering seek/scan indexes of
    ``schema.VALUE_INDEXES`` (study/series searches read one index instead of probing every
    instance). Idempotent: a database created at version 3 already has all of it."""
    table = instance_values.name

    def inspect_table(sync: Any) -> tuple[set[str], set[str]]:
        inspector = inspect(sync)
        columns = {column["name"] for column in inspector.get_columns(table)}
        indexes = {str(index["name"]) for index in inspector.get_indexes(table)}
        return columns, indexes

    columns, indexes = await conn.run_sync(inspect_table)
    integer = "INTEGER" if kind == "sqlite" else "BIGINT"
    for column in ("study_id", "series_id"):
        if column not in columns:
            await conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {column} {integer}"))
    i = instances.name
    if kind == "postgresql":
        backfill = (
            f"UPDATE {table} AS v SET study_id = i.study_id, series_id = i.series_id "
            f"FROM {i} AS i WHERE i.id = v.instance_id AND v.study_id IS NULL"
        )
    elif kind == "mysql":
        backfill = (
            f"UPDATE {table} AS v JOIN {i} AS i ON i.id = v.instance_id "
            "SET v.study_id = i.study_id, v.series_id = i.series_id WHERE v.study_id IS NULL"
        )
    else:
        backfill = (
            f"UPDATE {table} SET study_id = (SELECT i.study_id FROM {i} AS i WHERE i.id = {table}.instance_id), "
            f"series_id = (SELECT i.series_id FROM {i} AS i WHERE i.id = {table}.instance_id) "
            "WHERE study_id IS NULL"
        )
    await conn.execute(text(backfill))
    for name in OLD_VALUE_INDEXES:
        if name in indexes:
            await conn.execute(text(f"DROP INDEX {name} ON {table}" if kind == "mysql" else f"DROP INDEX {name}"))
    defined = {str(index.name): index for index in instance_values.indexes}
    for name in VALUE_INDEXES:
        if name not in indexes:
            await conn.run_sync(defined[name].create)
    study_sop = next(index for index in instances.indexes if index.name == "dwk_instances_study_sop_class")

    def instance_indexes(sync: Any) -> set[str]:
        return {str(index["name"]) for index in inspect(sync).get_indexes(instances.name)}

    if study_sop.name not in await conn.run_sync(instance_indexes):
        await conn.run_sync(study_sop.create)


async def _v4_pixel_layout(conn: AsyncConnection, _kind: Kind) -> None:
    """Add the nullable ``instances.pixel_layout`` column (where each frame is in the blob).
    Existing rows keep NULL: the core computes their layout from the blob when a frame is asked
    for. Idempotent: a database created at version 4 already has it."""

    def columns(sync: Any) -> set[str]:
        return {column["name"] for column in inspect(sync).get_columns(instances.name)}

    if "pixel_layout" not in await conn.run_sync(columns):
        column_type = instances.c.pixel_layout.type.compile(dialect=conn.dialect)
        await conn.execute(text(f"ALTER TABLE {instances.name} ADD COLUMN pixel_layout {column_type} NULL"))


async def _v5_workitems(conn: AsyncConnection, _kind: Kind) -> None:
    """Create the ``dwk_workitems`` table of UPS workitems (PS3.4 Annex CC). Idempotent."""
    await conn.run_sync(lambda sync: workitems.create(sync, checkfirst=True))


async def _v6_ups_subscriptions(conn: AsyncConnection, _kind: Kind) -> None:
    """Create the UPS subscription, subscriber and event log tables and the event bus's message
    table (``ups_tables.py``). Idempotent."""
    await conn.run_sync(lambda sync: metadata.create_all(sync, tables=UPS_TABLES, checkfirst=True))


async def _v7_changefeed(conn: AsyncConnection, kind: Kind) -> None:
    """Create the instance change feed and its head row (``changefeed.py``). Instances stored
    before have no entries; the feed starts at sequence 1. Idempotent."""
    await conn.run_sync(lambda sync: metadata.create_all(sync, tables=CHANGEFEED_TABLES, checkfirst=True))
    await conn.execute(insert_ignore(kind, changefeed_head, ["id"]), {"id": 1, "seq": 0})


async def _v8_study_summary(conn: AsyncConnection, _kind: Kind) -> None:
    """Add ``studies.representative_id``, ``modalities`` and ``sop_classes``
    (``study_summary.py``) and fill them for the studies stored before. Idempotent: a
    database created at version 8 has the columns, and only rows still NULL are filled."""

    def columns(sync: Any) -> set[str]:
        return {column["name"] for column in inspect(sync).get_columns(studies.name)}

    present = await conn.run_sync(columns)
    for name in ("representative_id", "modalities", "sop_classes"):
        if name not in present:
            column_type = studies.c[name].type.compile(dialect=conn.dialect)
            await conn.execute(text(f"ALTER TABLE {studies.name} ADD COLUMN {name} {column_type} NULL"))
    await conn.run_sync(_fill_study_summaries)


def _fill_study_summaries(conn: Any) -> None:
    pending = select(studies.c.id).where(studies.c.representative_id.is_(None)).order_by(studies.c.id).limit(_BATCH)
    newest = select(instances.c.study_id, func.max(instances.c.id).label("newest")).group_by(instances.c.study_id)
    change = (
        update(studies)
        .where(studies.c.id == bindparam("b_id"))
        .values(
            representative_id=bindparam("b_newest"),
            modalities=bindparam("b_modalities"),
            sop_classes=bindparam("b_sop_classes"),
        )
    )
    last = 0
    while ids := [int(row.id) for row in conn.execute(pending.where(studies.c.id > last))]:
        found = {
            int(row.study_id): int(row.newest) for row in conn.execute(newest.where(instances.c.study_id.in_(ids)))
        }
        modalities, sop_classes = study_values(conn, ids, run=lambda c, s, p: c.execute(s, p).all())
        updates = [
            {
                "b_id": study_id,
                "b_newest": found[study_id],
                "b_modalities": encode_values(modalities.get(study_id, ())),
                "b_sop_classes": encode_values(sop_classes.get(study_id, ())),
            }
            for study_id in ids
            if study_id in found  # (an empty study row is deleted by the next removal)
        ]
        if updates:
            conn.execute(change, updates)
        last = ids[-1]


MIGRATIONS: Final[list[tuple[int, Step]]] = [
    (1, _v1_create_tables),
    (2, _v2_ordered_number_keys),
    (3, _v3_value_entities),
    (4, _v4_pixel_layout),
    (5, _v5_workitems),
    (6, _v6_ups_subscriptions),
    (7, _v7_changefeed),
    (8, _v8_study_summary),
]
SCHEMA_VERSION: Final = MIGRATIONS[-1][0]


async def current_version(conn: AsyncConnection) -> int:
    """The stored schema version (0: none yet)."""
    version = await conn.scalar(select(schema_version.c.version).where(schema_version.c.id == 1))
    return int(version or 0)


async def upgrade(engine: AsyncEngine, kind: Kind) -> int:
    """Bring the schema to :data:`SCHEMA_VERSION`; return the version found before."""
    async with engine.connect() as conn:
        conn = await conn.execution_options(dwk_write=True)
        if kind == "mysql":
            await acquire_schema_lock(kind, conn)
            await conn.commit()
        try:
            async with conn.begin():
                if kind == "postgresql":
                    await acquire_schema_lock(kind, conn)
                await conn.run_sync(lambda sync: schema_version.create(sync, checkfirst=True))
                found = await current_version(conn)
                if found > SCHEMA_VERSION:
                    raise ConfigurationError(
                        f"the index schema is version {found}, newer than this dicomweb-kit supports ({SCHEMA_VERSION})"
                    )
                for version, step in MIGRATIONS:
                    if version > found:
                        await step(conn, kind)
                if found == 0:
                    await conn.execute(insert_ignore(kind, schema_version, ["id"]), {"id": 1, "version": 0})
                if found < SCHEMA_VERSION:
                    await conn.execute(
                        schema_version.update().where(schema_version.c.id == 1).values(version=SCHEMA_VERSION)
                    )
        finally:
            if kind == "mysql":
                await release_schema_lock(kind, conn)
                await conn.commit()
        return found
