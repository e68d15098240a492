"""The kit mounted inside host apps (Starlette, FastAPI) at several prefixes: URLs stay followable."""

from __future__ import annotations

import httpx
import pytest
from dicomweb_kit_adapters.memory import MemoryBlobStore, MemoryIndex
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.routing import Mount

from dicomweb_kit import ConfigurationError, DicomWeb, Settings
from dicomweb_kit.testing import make_dataset, part10_bytes

pytestmark = pytest.mark.anyio


def starlette_host(kit: DicomWeb, root: str) -> Starlette:
    return Starlette(routes=[Mount(root, app=kit.app)], lifespan=kit.lifespan)


def fastapi_host(kit: DicomWeb, root: str) -> FastAPI:
    app = FastAPI(lifespan=kit.lifespan)
    app.mount(root, kit.app)
    return app


@pytest.mark.parametrize("host", [starlette_host, fastapi_host])
@pytest.mark.parametrize("root", ["/dicom-web", "/pacs/dicom-web"])
async def test_every_returned_url_is_followable(host, root: str) -> None:
    kit = DicomWeb(blobs=MemoryBlobStore(), index=MemoryIndex())
    async with kit:
        transport = httpx.ASGITransport(app=host(kit, root))
        async with httpx.AsyncClient(transport=transport, base_url="http://host.example:8080") as client:
            ds = make_dataset()
            body = b"--b\r\nContent-Type: application/dicom\r\n\r\n" + part10_bytes(ds) + b"\r\n--b--"
            r = await client.post(
                root + "/studies", content=body, headers={"Content-Type": "multipart/related; boundary=b"}
            )
            assert r.status_code == 200
            study_url = r.json()["00081190"]["Value"][0]
            assert study_url == f"http://host.example:8080{root}/studies/{ds.StudyInstanceUID}"
            instance_url = r.json()["00081199"]["Value"][0]["00081190"]["Value"][0]
            assert (await client.get(instance_url)).status_code == 200
            [study] = (await client.get(root + "/studies")).json()
            assert study["00081190"]["Value"] == [study_url]
            [series] = (await client.get(study_url + "/series")).json()
            [instance] = (await client.get(series["00081190"]["Value"][0] + "/instances")).json()
            assert instance["00081190"]["Value"] == [instance_url]
            [meta] = (await client.get(instance_url + "/metadata")).json()
            assert meta["7FE00010"]["BulkDataURI"].startswith(instance_url + "/")


def test_adapters_are_checked_at_construction() -> None:
    with pytest.raises(ConfigurationError, match="blobs must implement"):
        DicomWeb(blobs=object(), index=MemoryIndex())  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="index must implement"):
        DicomWeb(blobs=MemoryBlobStore(), index=object())  # type: ignore[arg-type]


async def test_public_url_overrides_what_the_request_says() -> None:
    """dicomweb-client sends ``Host`` without the port; an operator can pin the public root."""
    public = "https://pacs.example.org/dicom-web"
    kit = DicomWeb(blobs=MemoryBlobStore(), index=MemoryIndex(), settings=Settings(public_url=public + "/"))
    async with kit:
        transport = httpx.ASGITransport(app=starlette_host(kit, "/dicom-web"))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            ds = make_dataset()
            body = b"--b\r\nContent-Type: application/dicom\r\n\r\n" + part10_bytes(ds) + b"\r\n--b--"
            headers = {"Content-Type": "multipart/related; boundary=b", "Host": "127.0.0.1"}
            r = await client.post("/dicom-web/studies", content=body, headers=headers)
            instance_url = r.json()["00081199"]["Value"][0]["00081190"]["Value"][0]
            assert instance_url.startswith(f"{public}/studies/{ds.StudyInstanceUID}/series/")
            [meta] = (await client.get("/dicom-web" + instance_url.removeprefix(public) + "/metadata")).json()
            assert meta["7FE00010"]["BulkDataURI"] == instance_url + "/bulkdata/7FE00010"
