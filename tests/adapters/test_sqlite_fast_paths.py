"""The SQLite fast paths: ``sql/sqlite_direct.fetch`` gives exactly what SQLAlchemy's ``Connection.execute`` gives for
the index's reused statements: expanding lists (empty, repeated), literal binds, named columns; ``add_many`` on the
``sqlite3`` driver stores exactly what SQLAlchemy stores, raises its errors as SQLAlchemy does, and is really used."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from dicomweb_kit_adapters.sql import SqlIndex, study_summary
from dicomweb_kit_adapters.sql import search as sql_search
from dicomweb_kit_adapters.sql.extract import indexed_attributes, number_key, representative, value_rows
from dicomweb_kit_adapters.sql.schema import STUDY_COLUMNS
from dicomweb_kit_adapters.sql.sqlite_direct import SqliteStatements, Statements, fetch
from sqlalchemy import event, insert
from sqlalchemy.exc import IntegrityError

from dicomweb_kit import AddOutcome, InstanceRecord, Level, PixelLayout, ResourceKey
from dicomweb_kit.query.qido_params import parse_qido
from dicomweb_kit.testing import make_dataset, make_record

pytestmark = pytest.mark.anyio


async def test_fetch_is_execute(tmp_path: Path) -> None:
    index = SqlIndex(f"sqlite:///{tmp_path / 'index.db'}")
    await index.open()
    try:
        records = [make_record(make_dataset(Modality=modality)) for modality in ("CT", "MR", "CT")]
        await index.add_many(records, on_existing="keep")
        assert index._sync is not None
        with index._sync.connect() as conn, conn.begin():
            cases = [
                (study_summary._study_values_statement(), {"study_ids": [1, 2, 3]}),  # expanding, used twice
                (study_summary._study_values_statement(), {"study_ids": []}),
                (sql_search._rows_statement(Level.STUDY), {"ids": [3, 1]}),  # literal binds, labels
                (sql_search._rows_statement(Level.INSTANCE), {"ids": [2]}),
                (sql_search._irregular_statement(), {"tags": [0x00080060]}),
            ]
            for statement, params in cases:
                expected = [tuple(row) for row in conn.execute(statement, params).all()]
                got = fetch(conn, statement, params)
                assert [tuple(row) for row in got] == expected
                if got:
                    assert got[0]._fields == tuple(conn.execute(statement, params).keys())
            assert fetch(conn, sql_search._rows_statement(Level.STUDY), {"ids": [1]})[0].study_id == 1
    finally:
        await index.aclose()


@pytest.mark.parametrize("limit", [None, 3, 150])
async def test_searches_on_the_event_loop_fall_back_to_a_thread_past_their_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, limit: int | None
) -> None:
    """A search is tried on the event loop's connection; past its SQLite budget or its row
    bound it runs in a worker thread instead, with the same answer."""
    from dicomweb_kit_adapters.sql import index as sql_index

    from dicomweb_kit import ResourceKey
    from dicomweb_kit.query.qido_params import parse_qido

    index = SqlIndex(f"sqlite:///{tmp_path / 'index.db'}")
    await index.open()
    try:
        await index.add_many(
            [make_record(make_dataset(PatientID=f"P{n % 7}")) for n in range(130)], on_existing="keep"
        )
        params = [("PatientID", "P3")] + ([("limit", str(limit))] if limit else [])
        query = parse_qido(params, Level.STUDY, ResourceKey())
        everything = parse_qido([] if limit is None else [("limit", str(limit))], Level.STUDY, ResourceKey())
        inline = [await index.search(q) for q in (query, everything)]
        assert index._search_inline(query) is not None  # 19 rows, a few ticks: answered inline
        if limit != 3:
            assert index._search_inline(everything) is None  # 130 rows: too many to build on the loop
        monkeypatch.setattr(sql_index, "_INLINE_SEARCH_TICK", 1)  # every SQLite step is over budget
        monkeypatch.setattr(sql_index, "_INLINE_SEARCH_TICKS", 0)
        assert index._search_inline(query) is None
        threaded = [await index.search(q) for q in (query, everything)]
        assert [[row.key for row in page.rows] for page in threaded] == [[row.key for row in p.rows] for p in inline]
        assert [page.has_more for page in threaded] == [page.has_more for page in inline]
        assert len(inline[0].rows) == (min(limit, 19) if limit else 19)
    finally:
        await index.aclose()


# --------------------------------------------------------------------------------------------
# add_many on the sqlite3 driver (sqlite_direct.SqliteStatements)
# --------------------------------------------------------------------------------------------

_VARYING = {"dwk_instances": {"stored_at"}, "dwk_changefeed": {"at_us"}}  # clock times


def _tables(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every table's rows in rowid order (sqlite_sequence too), without the clock columns."""
    db = sqlite3.connect(path)
    try:
        names = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        out = {}
        for name in names:
            columns = [row[1] for row in db.execute(f'PRAGMA table_info("{name}")')]
            kept = ", ".join(
                f'"{column}", typeof("{column}")' for column in columns if column not in _VARYING.get(name, ())
            )
            order = "name" if name == "sqlite_sequence" else "rowid"
            out[name] = db.execute(f'SELECT {kept} FROM "{name}" ORDER BY {order}').fetchall()
        return out
    finally:
        db.close()


def _mixed_records() -> list[InstanceRecord]:
    """Studies/series out of UID order, several values, PN groups, irregular values, a layout."""
    layout = PixelLayout(0x7FE00010, "OB", 900, 40, frames=(((908, 10),), ((926, 6),)))
    records = []
    for n in range(7):
        study, series = f"1.2.80.{n % 3}", f"1.2.80.{n % 3}.{n % 2}"
        dataset = make_dataset(
            study=study,
            series=series,
            instance=f"{series}.{n}",
            patient_name=["Müller^Jürgen", "Yamada^Tarou=山田^太郎=やまだ^たろう", "Doe^Jane"][n % 3],
            SeriesDescription="LONG " * 60 if n == 4 else f"SERIES {n % 2}",
            ImageType=["ORIGINAL", "PRIMARY", "AXIAL"][: 1 + n % 3],
            SeriesNumber=n % 2 + 1,
            BodyPartExamined="HEAD",
        )
        record = make_record(dataset, blob_key=f"blob-{n}", size=100 + n)
        records.append(msgspec.structs.replace(record, pixel_layout=layout) if n % 2 else record)
    return list(reversed(records))


async def _store(index: SqlIndex) -> list[list[AddOutcome]]:
    records = _mixed_records()
    changed = [msgspec.structs.replace(record, blob_key=record.blob_key + "-v2") for record in records]
    outcomes = [
        await index.add_many([*records[:4], records[1]], on_existing="keep"),  # a repeat in the batch
        [await index.add(records[4], on_existing="keep")],  # one record: insert_one
        await index.add_many([changed[0], records[5], changed[2], records[6]], on_existing="replace"),
        await index.add_many([changed[3], changed[3]], on_existing="replace"),  # replaced within the batch
        await index.add_many(records[:3], on_existing="keep"),  # nothing new
    ]
    await index.remove(ResourceKey(records[6].study_uid, records[6].series_uid))
    assert await index.reindex() == 5
    return outcomes


async def test_driver_writes_store_exactly_what_sqlalchemy_stores(tmp_path: Path) -> None:
    """The same adds through the sqlite3 driver and through SQLAlchemy leave identical tables:
    every row of every table (values and SQLite storage classes, in rowid order), ids and
    AUTOINCREMENT counters, the change feed, and the same outcomes."""
    found: dict[bool, tuple[list[list[AddOutcome]], dict[str, list[tuple[Any, ...]]]]] = {}
    for driver in (True, False):
        path = tmp_path / f"index-{driver}.db"
        index = SqlIndex(f"sqlite:///{path}", extra_indexed=["BodyPartExamined"])
        index._driver_writes = driver
        await index.open()
        try:
            outcomes = await _store(index)
        finally:
            await index.aclose()
        found[driver] = (outcomes, _tables(path))
    (direct_outcomes, direct), (outcomes, expected) = found[True], found[False]
    assert direct_outcomes == outcomes
    assert direct.keys() == expected.keys()
    for name in expected:
        assert direct[name] == expected[name], name
    assert len(expected["dwk_instances"]) == 5 and len(expected["dwk_changefeed"]) == 12


async def test_add_many_runs_on_the_sqlite_driver(tmp_path: Path) -> None:
    """On SQLite nothing of add_many but the transaction's BEGIN goes through SQLAlchemy."""
    index = SqlIndex(f"sqlite:///{tmp_path / 'index.db'}")
    await index.open()
    executed: list[str] = []

    def spy(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        executed.append(statement)

    assert index._sync is not None and index._driver_writes
    event.listen(index._sync, "before_cursor_execute", spy)
    try:
        records = [make_record(make_dataset(study="1.2.81", series=f"1.2.81.{n % 2}")) for n in range(5)]
        outcomes = await index.add_many(records, on_existing="keep")  # new study, series, instances
        outcomes += await index.add_many(records[:2], on_existing="keep")  # stored already
        outcomes += [await index.add(make_record(make_dataset(study="1.2.81")), on_existing="keep")]
        assert [outcome.stored for outcome in outcomes] == [True] * 5 + [False, False, True]
        assert executed == ["BEGIN IMMEDIATE"] * 3
        studies = await index.search(parse_qido([], Level.STUDY, ResourceKey()))
        assert [(row.key.study, row.study_instances) for row in studies.rows] == [("1.2.81", 6)]
    finally:
        event.remove(index._sync, "before_cursor_execute", spy)
        await index.aclose()


@pytest.mark.parametrize("driver", [True, False])
async def test_driver_errors_are_raised_as_sqlalchemy_raises_them(tmp_path: Path, driver: bool) -> None:
    """A failing statement raises the same SQLAlchemy exception, wrapping the same driver error,
    on both paths (the index's retry and error mapping read these)."""
    from dicomweb_kit_adapters.sql import index as sql_index
    from dicomweb_kit_adapters.sql.schema import studies

    index = SqlIndex(f"sqlite:///{tmp_path / 'index.db'}")
    await index.open()
    await index.add(make_record(make_dataset(study="1.2.82")), on_existing="keep")
    make = SqliteStatements if driver else Statements
    columns = ("study_uid", "num_series", "num_instances")
    blank = {f"b_{name}": None for name in representative({}, STUDY_COLUMNS)}
    count = {"b_id": 1, "b_count": None, "b_series": 0, **blank}
    count.update(b_representative_id=None, b_modalities=None, b_sop_classes=None)
    failing: list[Callable[[Statements], object]] = [
        lambda run: run.insert(insert(studies), columns, [("1.2.83", 0, 0), ("1.2.82", 0, 0)]),  # duplicate
        lambda run: run.insert_one(insert(studies), {"study_uid": "1.2.82", "num_series": 0, "num_instances": 0}),
        lambda run: run.execute(sql_index._COUNT_STUDIES, [count]),  # num_instances + NULL: NOT NULL
    ]
    try:
        assert index._sync is not None
        for work in failing:
            with index._sync.connect() as conn, conn.begin():
                with pytest.raises(IntegrityError) as raised:
                    work(make(conn))
                assert isinstance(raised.value.orig, sqlite3.IntegrityError)
                assert str(raised.value.orig).startswith(("UNIQUE constraint failed", "NOT NULL constraint failed"))
    finally:
        await index.aclose()


class _LockedOnce:
    """A ``sqlite3`` connection whose first ``executemany`` finds the database locked."""

    def __init__(self, driver: sqlite3.Connection, raised: list[str]) -> None:
        self._driver, self._raised = driver, raised

    def cursor(self) -> Any:
        cursor = self._driver.cursor()
        raised = self._raised

        class Cursor:
            lastrowid = property(lambda _self: cursor.lastrowid)

            def execute(self, *args: Any) -> Any:
                return cursor.execute(*args)

            def executemany(self, *args: Any) -> Any:
                if not raised:
                    raised.append("locked")
                    raise sqlite3.OperationalError("database is locked")
                return cursor.executemany(*args)

        return Cursor()


async def test_a_locked_database_on_the_driver_path_is_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A busy error in the middle of the driver's writes rolls the transaction back and the
    index runs it again, as it does for SQLAlchemy's (``dialects.is_retryable``)."""
    raised: list[str] = []
    real_init = SqliteStatements.__init__

    def init(self: SqliteStatements, conn: Any) -> None:
        real_init(self, conn)
        self._driver = _LockedOnce(self._driver, raised)  # type: ignore[assignment]

    monkeypatch.setattr(SqliteStatements, "__init__", init)
    index = SqlIndex(f"sqlite:///{tmp_path / 'index.db'}")
    await index.open()
    try:
        records = [make_record(make_dataset(study="1.2.84", series="1.2.84.1")) for _ in range(3)]
        outcomes = await index.add_many(records, on_existing="keep")
        assert raised == ["locked"] and [outcome.stored for outcome in outcomes] == [True] * 3
        stored = [record.instance_uid async for record in index.records(ResourceKey("1.2.84"))]
        assert stored == [record.instance_uid for record in records]
        studies = await index.search(parse_qido([], Level.STUDY, ResourceKey()))
        assert [row.study_instances for row in studies.rows] == [3]
    finally:
        await index.aclose()


def test_value_rows_are_made_once_per_value_yet_keep_equal_values_apart() -> None:
    """``value_rows`` reuses the rows of a repeated value; values that compare equal but are
    stored differently (1, "1", True, 0.0, -0.0) each keep their own."""
    indexed = indexed_attributes(["SliceThickness"])
    number, thickness = 0x00200013, 0x00180050

    def rows(vr: str, value: Any, tag: int) -> list[Any]:
        return value_rows({f"{tag:08X}": {"vr": vr, "Value": [value]}}, indexed)

    for _ in range(2):  # the second time from the cache
        assert rows("IS", 1, number) == [(number, 0, 0, "1", number_key(1), False)]
        assert rows("IS", True, number) == [(number, 0, 0, "True", None, False)]
        assert rows("IS", "1 ", number) == [(number, 0, 0, "1", number_key(1), False)]
        assert rows("DS", 0.0, thickness) == [(thickness, 0, 0, "0.0", "1", False)]
        assert rows("DS", -0.0, thickness) == [(thickness, 0, 0, "-0.0", "1", False)]
        assert rows("IS", "\x00", number) == [(number, 0, 0, None, None, True)]  # irregular
    names = {"00100010": {"vr": "PN", "Value": [{"Alphabetic": "Müller^Jürgen"}, None, "Lee"]}}
    assert value_rows(names, indexed) == [
        (0x00100010, 0, 0, "müller^jürgen", "muller^jurgen", False),
        (0x00100010, 2, 0, "lee", "lee", False),
    ]
