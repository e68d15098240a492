"""Optional DELETE (Settings.allow_delete): off by default, 204 then gone when on."""

from __future__ import annotations

import httpx
import pytest
from conftest import host_app
from pydicom.uid import generate_uid

from dicomweb_kit import DicomWeb, ResourceKey, Settings
from dicomweb_kit.testing import make_dataset, part10_bytes

pytestmark = pytest.mark.anyio


async def test_delete_is_405_by_default(client: httpx.AsyncClient) -> None:
    r = await client.delete(f"/studies/{generate_uid()}")
    assert r.status_code == 405


async def test_delete_study_series_instance(make_kit) -> None:
    async with make_kit(Settings(allow_delete=True)) as kit:
        kit: DicomWeb
        transport = httpx.ASGITransport(app=host_app(kit))
        async with httpx.AsyncClient(transport=transport, base_url="http://t/dicom-web") as c:
            study, series = generate_uid(), generate_uid()
            datasets = [make_dataset(study=study, series=series) for _ in range(3)] + [make_dataset(study=study)]
            body = b"".join(b"--b\r\n\r\n" + part10_bytes(ds) + b"\r\n" for ds in datasets) + b"--b--"
            r = await c.post("/studies", content=body, headers={"Content-Type": "multipart/related; boundary=b"})
            assert r.status_code == 200
            first = datasets[0]
            instance = f"/studies/{study}/series/{series}/instances/{first.SOPInstanceUID}"
            assert (await c.delete(instance)).status_code == 204
            assert (await c.get(instance)).status_code == 404
            assert (await c.delete(instance)).status_code == 404
            assert (await c.delete(f"/studies/{study}/series/{series}")).status_code == 204
            [left] = (await c.get(f"/studies/{study}/instances")).json()
            assert left["00080018"]["Value"] == [datasets[3].SOPInstanceUID]
            assert (await c.delete(f"/studies/{study}")).status_code == 204
            assert (await c.get("/studies")).json() == []
            assert [k async for k in kit.blobs.iter_keys()] == []
            assert await kit.index.summary(ResourceKey(study)) is None
