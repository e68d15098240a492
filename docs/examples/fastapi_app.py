"""Mount the kit in a FastAPI app, and answer a route of the host's own through the Python API."""

from __future__ import annotations

from typing import Any

import anyio
import httpx
from dicomweb_kit_adapters.memory import MemoryBlobStore, MemoryIndex
from fastapi import FastAPI

from dicomweb_kit import DicomWeb
from dicomweb_kit.testing import make_dataset

kit = DicomWeb(blobs=MemoryBlobStore(), index=MemoryIndex())
app = FastAPI(lifespan=kit.lifespan)
app.mount("/dicom-web", kit.app)


@app.get("/patients/{patient_id}/studies")
async def patient_studies(patient_id: str) -> list[dict[str, Any]]:
    """The host's own JSON, from the same query model as QIDO-RS."""
    page = await kit.search_studies(PatientID=patient_id)
    return [{"study": s["0020000D"]["Value"][0], "date": s["00080020"]["Value"][0]} for s in page.results]


async def main() -> None:
    async with app.router.lifespan_context(app), httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as client:
        ds = make_dataset(patient_id="FASTAPI-1", study_date="20240315")
        await kit.store(ds)
        mine = await client.get("/patients/FASTAPI-1/studies")
        assert mine.json() == [{"study": ds.StudyInstanceUID, "date": "20240315"}]
        qido = await client.get("/dicom-web/studies", params={"PatientID": "FASTAPI-1"})
        assert qido.headers["content-type"] == "application/dicom+json"


if __name__ == "__main__":
    anyio.run(main)
