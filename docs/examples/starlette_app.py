"""Mount the kit in a Starlette app: DICOMweb under /dicom-web, the kit's lifespan on the host."""

from __future__ import annotations

from pathlib import Path
from tempfile import TemporaryDirectory

import anyio
import httpx
from dicomweb_kit_adapters.filesystem import FileBlobStore
from dicomweb_kit_adapters.sql import SqlIndex
from starlette.applications import Starlette
from starlette.routing import Mount

from dicomweb_kit import DicomWeb
from dicomweb_kit.testing import make_dataset, part10_bytes


def create_app(data: Path) -> Starlette:
    kit = DicomWeb(blobs=FileBlobStore(data / "blobs"), index=SqlIndex(f"sqlite:///{data / 'index.sqlite3'}"))
    # A mounted app's own lifespan never runs: the host runs the kit's (opens and closes the adapters).
    return Starlette(routes=[Mount("/dicom-web", app=kit.app)], lifespan=kit.lifespan)


async def main() -> None:
    with TemporaryDirectory() as data:
        app = create_app(Path(data))
        # What uvicorn does at startup and shutdown; then requests, here in process.
        async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://testserver"
        ) as client:
            ds = make_dataset(patient_id="STARLETTE-1")
            body = b"--b\r\nContent-Type: application/dicom\r\n\r\n" + part10_bytes(ds) + b"\r\n--b--\r\n"
            stored = await client.post(
                "/dicom-web/studies",
                content=body,
                headers={"Content-Type": 'multipart/related; type="application/dicom"; boundary=b'},
            )
            assert stored.status_code == 200, stored.text
            found = await client.get("/dicom-web/studies", params={"PatientID": "STARLETTE-1"})
            [study] = found.json()
            # RetrieveURL is built from the request, mount prefix included.
            assert study["00081190"]["Value"] == [f"http://testserver/dicom-web/studies/{ds.StudyInstanceUID}"]


if __name__ == "__main__":
    anyio.run(main)
