"""``sql/sqlite_direct.fetch`` gives exactly what SQLAlchemy's ``Connection.execute`` gives for
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
