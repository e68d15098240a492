"""The SQLite fast paths: ``sql/sqlite_direct.fetch`` gives exactly what SQLAlchemy's ``Connection.execute`` gives for
the index's reused statements: expanding lists (empty, repeated), literal binds, named columns."""

from __future__ import annotations

from pathlib import Path

import pytest
from dicomweb_kit_adapters.sql import SqlIndex
from dicomweb_kit_adapters.sql import search as sql_search
from dicomweb_kit_adapters.sql.sqlite_direct import fetch

from dicomweb_kit import Level
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
                (sql_search._study_values_statement(), {"study_ids": [1, 2, 3]}),  # expanding, used twice
                (sql_search._study_values_statement(), {"study_ids": []}),
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
