"""Tenants: one kit, one archive per hospital, named by the URL path; the same UIDs in both."""

from __future__ import annotations

import tempfile
from pathlib import Path

import anyio
import httpx
from dicomweb_kit_adapters.filesystem import FileBlobStore
from dicomweb_kit_adapters.sql import SqlIndex
from starlette.applications import Starlette
from starlette.routing import Mount

from dicomweb_kit import DicomWeb, InstanceRecord, current_tenant
from dicomweb_kit.testing import make_dataset, part10_bytes
from dicomweb_kit.web.tenants import TenantFromPath

HOSPITALS = {"fairview", "lakeside"}  # the tenants that exist (in practice: the host's registry)


async def after_store(records: list[InstanceRecord]) -> None:
    """Hooks learn whose data it is from current_tenant(), e.g. to queue the right AI pipeline."""
    print(f"{current_tenant()}: stored {len(records)} instance(s)")


async def main() -> None:
    with tempfile.TemporaryDirectory() as data:
        kit = DicomWeb(
            blobs=FileBlobStore(Path(data) / "blobs"),  # a tenant's blobs: blobs/tenants/<tenant>/
            index=SqlIndex(f"sqlite:///{Path(data) / 'index.sqlite3'}"),  # its index: tenants/<tenant>/index.sqlite3
            tenants=TenantFromPath("/tenants/{tenant}/dicom-web", known=HOSPITALS),
            after_store=after_store,
        )
        app = Starlette(routes=[Mount("/", app=kit.app)], lifespan=kit.lifespan)
        async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://testserver"
        ) as client:
            # The same instance UIDs in both hospitals: two different instances.
            ds = make_dataset(patient_name="Fairview^Pat")
            await (await kit.tenant("fairview")).store(ds)  # the Python API, per tenant
            ds.PatientName = "Lakeside^Pat"
            body = b"--b\r\nContent-Type: application/dicom\r\n\r\n" + part10_bytes(ds) + b"\r\n--b--\r\n"
            r = await client.post(
                "/tenants/lakeside/dicom-web/studies",  # STOW-RS, per tenant
                content=body,
                headers={"Content-Type": 'multipart/related; type="application/dicom"; boundary=b'},
            )
            assert r.status_code == 200

            for hospital in ("fairview", "lakeside"):
                [study] = (await client.get(f"/tenants/{hospital}/dicom-web/studies")).json()
                assert study["00100010"]["Value"] == [{"Alphabetic": f"{hospital.title()}^Pat"}]
                # RetrieveURL keeps the tenant's prefix: clients follow it unchanged.
                assert study["00081190"]["Value"][0].startswith(f"http://testserver/tenants/{hospital}/")
            assert (await client.get("/tenants/elsewhere/dicom-web/studies")).status_code == 404


if __name__ == "__main__":
    anyio.run(main)
