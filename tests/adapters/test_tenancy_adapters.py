"""The tenancy contract on every adapter: memory; files + SQLite; files + PostgreSQL; files +
MariaDB (the last two as in ``test_sql.py``: skipped without a server, failed under ``CI=true``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from dicomweb_kit_adapters.filesystem import FileBlobStore
from dicomweb_kit_adapters.memory import MemoryBlobStore, MemoryIndex
from dicomweb_kit_adapters.sql import SqlIndex
from pydicom.uid import generate_uid
from test_sql import ENGINES, MARIADB_URL, POSTGRES_URL, _admin

from dicomweb_kit import DicomWeb, ResourceKey, tenant_identifier
from dicomweb_kit.testing import make_dataset
from dicomweb_kit.testing.tenancy_contracts import TenancyContract

TENANTS = ("north", "south", "east", "reopened")


async def _drop_tenants(index: SqlIndex, engine: str) -> None:
    base = index._schema
    assert base is not None
    for tenant in TENANTS:
        name = tenant_identifier(base, tenant)
        if engine == "postgresql":
            await _admin(POSTGRES_URL, f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        elif engine == "mariadb":
            await _admin(MARIADB_URL, f"DROP DATABASE IF EXISTS `{name}`")


class TestMemoryTenancy(TenancyContract):
    @pytest.fixture
    async def tenancy_kit(self) -> AsyncIterator[DicomWeb]:
        async with DicomWeb(blobs=MemoryBlobStore(), index=MemoryIndex()) as kit:
            yield kit


@pytest.fixture(params=sorted(ENGINES))
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class TestFilesAndSqlTenancy(TenancyContract):
    @pytest.fixture
    async def tenancy_kit(self, engine: str, tmp_path: Path) -> AsyncIterator[DicomWeb]:
        async for index in ENGINES[engine](tmp_path):
            try:
                async with DicomWeb(blobs=FileBlobStore(tmp_path / "blobs"), index=index) as kit:
                    yield kit
            finally:
                await _drop_tenants(index, engine) if engine != "sqlite" else None

    async def test_a_tenant_survives_a_restart(self, tenancy_kit: DicomWeb, tmp_path: Path) -> None:
        """A tenant's records and blobs are where a new kit on the same storage finds them."""
        kit = await tenancy_kit.tenant("reopened")
        ds = make_dataset(patient_name="Again^Pat")
        await kit.store(ds)
        key = ResourceKey(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
        index = tenancy_kit.index
        assert isinstance(index, SqlIndex)
        again = SqlIndex(index._url, schema=index._schema)
        async with DicomWeb(blobs=FileBlobStore(tmp_path / "blobs"), index=again) as fresh:
            assert b"Again^Pat" in await (await fresh.tenant("reopened")).retrieve_instance(key)
            assert (await fresh.search_studies()).results == []


@pytest.mark.anyio
async def test_a_tenants_files_are_one_directory(tmp_path: Path) -> None:
    index = SqlIndex(f"sqlite:///{tmp_path / 'index.sqlite3'}")
    async with DicomWeb(blobs=FileBlobStore(tmp_path / "blobs"), index=index) as kit:
        await (await kit.tenant("north")).store(make_dataset(study=generate_uid()))
    assert (tmp_path / "tenants" / "north" / "index.sqlite3").is_file()
    blobs = [p for p in (tmp_path / "blobs" / "tenants" / "north").rglob("*") if p.is_file()]
    assert len(blobs) == 1
    assert not [p for p in (tmp_path / "blobs").rglob("*") if p.is_file() and "tenants" not in p.parts]


def test_tenant_identifiers_fit_and_never_collide() -> None:
    assert tenant_identifier("dwk", "north") == "dwk_t_north"
    names = {tenant_identifier("dwk", t) for t in ("North", "north", "north-1", "north_1", "NORTH")}
    assert len(names) == 5
    assert tenant_identifier("dwk", "North").startswith("dwk_h_")
    assert all(len(tenant_identifier("b" * 60, t)) <= 63 for t in ("a" * 64, "x"))
