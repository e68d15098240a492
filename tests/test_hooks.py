"""Ingest hooks (``dicomweb_kit.hooks``): before-store accept/reject/coerce, after-store in the
background; on the memory and files+SQLite adapters, over HTTP."""

from __future__ import annotations

import io
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import anyio
import httpx
import pydicom
import pytest
from conftest import ADAPTERS, PYDICOM_TEST_FILES, host_app

from dicomweb_kit import DicomWeb, InstanceRecord
from dicomweb_kit.hooks import Coerce, IncomingInstance, Reject
from dicomweb_kit.testing import make_dataset, part10_bytes

pytestmark = pytest.mark.anyio

BOUNDARY = "HOOKS"


def multipart(*parts: bytes) -> tuple[bytes, dict[str, str]]:
    head = b"--" + BOUNDARY.encode() + b"\r\nContent-Type: application/dicom\r\n\r\n"
    body = b"".join(head + p + b"\r\n" for p in parts)
    body += b"--" + BOUNDARY.encode() + b"--\r\n"
    return body, {"Content-Type": f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'}


KitClient = Callable[..., Any]


@pytest.fixture
async def kit_client(adapter_name: str, tmp_path: Path) -> AsyncIterator[KitClient]:
    """``async with kit_client(before_store=..., after_store=...) as (kit, client)``."""
    import contextlib

    @contextlib.asynccontextmanager
    async def make(**hooks: Any) -> AsyncIterator[tuple[DicomWeb, httpx.AsyncClient]]:
        blobs, index = ADAPTERS[adapter_name](tmp_path)
        kit = DicomWeb(blobs=blobs, index=index, **hooks)  # type: ignore[arg-type]
        async with kit:
            transport = httpx.ASGITransport(app=host_app(kit))
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver/dicom-web") as client:
                yield kit, client

    yield make


async def stow(client: httpx.AsyncClient, *parts: bytes) -> httpx.Response:
    body, headers = multipart(*parts)
    return await client.post("/studies", content=body, headers=headers)


def instance_path(ds: pydicom.Dataset) -> str:
    return f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"


def parse_single_part(response: httpx.Response) -> pydicom.Dataset:
    content_type = response.headers["content-type"]
    boundary = content_type.split("boundary=")[1].split(";")[0].strip('"')
    body = response.content
    start = body.index(b"\r\n\r\n") + 4
    end = body.rindex(b"\r\n--" + boundary.encode() + b"--")
    return pydicom.dcmread(io.BytesIO(body[start:end]))


async def fix_issuer(incoming: IncomingInstance) -> Coerce | None:
    if incoming.dataset.get("IssuerOfPatientID") != "HOSP-A":
        return Coerce({"IssuerOfPatientID": "HOSP-A", 0x00081030: "Fixed by hook"})
    return None


async def test_coercion_is_reported_and_stored_in_blob_metadata_and_index(kit_client: KitClient) -> None:
    ds = make_dataset(rows=64, columns=48, IssuerOfPatientID="wrong", StudyDescription="before")
    async with kit_client(before_store=fix_issuer) as (_kit, client):
        r = await stow(client, part10_bytes(ds))
        assert r.status_code == 202  # PS3.18 §10.5.3: stored with a warning
        [item] = r.json()["00081199"]["Value"]
        assert item["00081196"]["Value"] == [0xB000]  # Coercion of data elements

        # Retrieve: the stored Part 10 file carries the new values and the same pixels.
        got = await client.get(instance_path(ds), headers={"Accept": 'multipart/related; type="application/dicom"'})
        assert got.status_code == 200
        stored = parse_single_part(got)
        assert stored.IssuerOfPatientID == "HOSP-A"
        assert stored.StudyDescription == "Fixed by hook"
        assert stored.PatientName == ds.PatientName
        assert stored.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert stored.PixelData == ds.PixelData
        assert (stored.pixel_array == ds.pixel_array).all()

        # Metadata and QIDO: the index was built from the coerced header.
        meta = (await client.get(instance_path(ds) + "/metadata")).json()[0]
        assert meta["00100021"]["Value"] == ["HOSP-A"]
        assert meta["00081030"]["Value"] == ["Fixed by hook"]
        found = (await client.get("/studies", params={"IssuerOfPatientID": "HOSP-A"})).json()
        assert [s["0020000D"]["Value"][0] for s in found] == [ds.StudyInstanceUID]
        assert (await client.get("/studies", params={"IssuerOfPatientID": "wrong"})).json() == []
        described = (await client.get("/studies", params={"StudyDescription": "Fixed*"})).json()
        assert len(described) == 1

        # Frames are found in the rewritten blob (the layout was computed from it).
        octets = {"Accept": "multipart/related; type=application/octet-stream"}
        frame = await client.get(instance_path(ds) + "/frames/1", headers=octets)
        assert frame.status_code == 200
        assert ds.PixelData in frame.content


@pytest.mark.parametrize(
    "name", ["JPEG2000.dcm", "SC_rgb_rle_2frame.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm", "CT_small.dcm"]
)
async def test_coercion_keeps_each_transfer_syntax_and_the_pixels(kit_client: KitClient, name: str) -> None:
    path = PYDICOM_TEST_FILES / name
    original = pydicom.dcmread(path)
    async with kit_client(before_store=fix_issuer) as (_kit, client):
        r = await stow(client, path.read_bytes())
        assert r.status_code == 202, r.text
        as_stored = {"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'}
        got = await client.get(instance_path(original), headers=as_stored)
        stored = parse_single_part(got)
        assert stored.IssuerOfPatientID == "HOSP-A"
        assert stored.PatientName == original.PatientName
        if original.file_meta.TransferSyntaxUID in ("1.2.840.10008.1.2", "1.2.840.10008.1.2.2"):
            # Implicit VR and Big Endian go out as Explicit VR Little Endian (PS3.18 §8.7.3.5).
            assert (stored.pixel_array == original.pixel_array).all()
        else:
            assert stored.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
            assert stored.PixelData == original.PixelData  # the same bytes (fragments), copied as they were
        frame = await client.get(instance_path(original) + "/frames/1", headers={"Accept": "*/*"})
        assert frame.status_code == 200


async def test_a_deflated_instance_cannot_be_coerced(kit_client: KitClient) -> None:
    async with kit_client(before_store=fix_issuer) as (kit, client):
        r = await stow(client, (PYDICOM_TEST_FILES / "image_dfl.dcm").read_bytes())
        assert r.status_code == 409
        [failed] = r.json()["00081198"]["Value"]
        assert failed["00081197"]["Value"] == [0x0110]
        assert "Deflated" in failed["00741048"]["Value"][0]["00000902"]["Value"][0]
        assert [key async for key in kit.blobs.iter_keys()] == []


async def test_an_accepted_instance_is_stored_unchanged(kit_client: KitClient) -> None:
    ds = make_dataset(IssuerOfPatientID="HOSP-A")
    data = part10_bytes(ds)
    seen: list[str] = []

    async def look(incoming: IncomingInstance) -> None:
        seen.append(incoming.record.instance_uid)
        incoming.dataset.PatientName = "Changed^Ignored"  # a private copy: no effect

    async with kit_client(before_store=look) as (_kit, client):
        r = await stow(client, data)
        assert r.status_code == 200
        got = await client.get(instance_path(ds), headers={"Accept": 'multipart/related; type="application/dicom"'})
        assert parse_single_part(got).PatientName == "Doe^Jane"
    assert seen == [ds.SOPInstanceUID]


async def test_rejection_goes_to_failed_sop_sequence_and_nothing_is_kept(kit_client: KitClient) -> None:
    good, bad = make_dataset(), make_dataset(PatientID="")

    async def require_patient_id(incoming: IncomingInstance) -> Reject | None:
        if not incoming.dataset.get("PatientID"):
            return Reject("Patient ID is required here", failure_reason=0xA900)
        return None

    async with kit_client(before_store=require_patient_id) as (kit, client):
        r = await stow(client, part10_bytes(good), part10_bytes(bad))
        assert r.status_code == 202
        body = r.json()
        [failed] = body["00081198"]["Value"]
        assert failed["00081155"]["Value"] == [bad.SOPInstanceUID]
        assert failed["00081197"]["Value"] == [0xA900]
        assert failed["00741048"]["Value"][0]["00000902"]["Value"] == ["Patient ID is required here"]
        again, headers = multipart(part10_bytes(bad))
        as_xml = await client.post("/studies", content=again, headers={**headers, "Accept": "application/dicom+xml"})
        assert as_xml.status_code == 409
        assert b"Patient ID is required here" in as_xml.content
        assert [i["00081155"]["Value"][0] for i in body["00081199"]["Value"]] == [good.SOPInstanceUID]
        assert (await client.get(instance_path(bad) + "/metadata")).status_code == 404
        assert len([key async for key in kit.blobs.iter_keys()]) == 1  # the rejected blob is gone


async def test_a_failing_hook_rejects_with_processing_failure(kit_client: KitClient) -> None:
    async def broken(_incoming: IncomingInstance) -> None:
        raise RuntimeError("boom")

    async with kit_client(before_store=broken) as (_kit, client):
        r = await stow(client, part10_bytes(make_dataset()))
        assert r.status_code == 409
        assert r.json()["00081198"]["Value"][0]["00081197"]["Value"] == [0x0110]


async def test_a_bad_coercion_rejects_the_instance(kit_client: KitClient) -> None:
    async def bad(_incoming: IncomingInstance) -> Coerce:
        return Coerce({"NotAKeyword": "x"})

    async with kit_client(before_store=bad) as (_kit, client):
        r = await stow(client, part10_bytes(make_dataset()))
        assert r.status_code == 409
        assert r.json()["00081198"]["Value"][0]["00081197"]["Value"] == [0x0110]


async def test_a_coercion_that_breaks_the_instance_rejects_it(kit_client: KitClient) -> None:
    async def bad_uid(_incoming: IncomingInstance) -> Coerce:
        return Coerce({"SeriesInstanceUID": "not a UID"})

    async with kit_client(before_store=bad_uid) as (kit, client):
        r = await stow(client, part10_bytes(make_dataset()))
        assert r.status_code == 409
        assert r.json()["00081198"]["Value"][0]["00081197"]["Value"] == [0xA900]
        assert [key async for key in kit.blobs.iter_keys()] == []


async def test_after_store_runs_in_the_background(kit_client: KitClient) -> None:
    started, finished = anyio.Event(), anyio.Event()
    received: list[list[str]] = []

    async def slow_pipeline(records: Sequence[InstanceRecord]) -> None:
        received.append([r.instance_uid for r in records])
        started.set()
        await anyio.sleep(2)
        finished.set()

    a, b = make_dataset(), make_dataset()
    async with kit_client(after_store=slow_pipeline) as (_kit, client):
        begun = time.monotonic()
        r = await stow(client, part10_bytes(a), part10_bytes(b))
        assert r.status_code == 200
        assert time.monotonic() - begun < 1.5  # STOW answered before the hook finished
        with anyio.fail_after(5):
            await started.wait()
        assert not finished.is_set()
        # Other requests answer quickly while the hook sleeps.
        begun = time.monotonic()
        assert (await client.get("/studies")).status_code == 200
        assert (await client.get(instance_path(a) + "/metadata")).status_code == 200
        assert time.monotonic() - begun < 1.0
        with anyio.fail_after(5):
            await finished.wait()
    assert received == [[a.SOPInstanceUID, b.SOPInstanceUID]]


async def test_a_slow_before_store_hook_delays_only_its_own_request(kit_client: KitClient) -> None:
    async def slow(_incoming: IncomingInstance) -> None:
        await anyio.sleep(2)

    async with kit_client(before_store=slow) as (_kit, client):
        stored = make_dataset()
        results: dict[str, float] = {}

        async def upload() -> None:
            begun = time.monotonic()
            assert (await stow(client, part10_bytes(stored))).status_code == 200
            results["stow"] = time.monotonic() - begun

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(upload)
            await anyio.sleep(0.2)
            begun = time.monotonic()
            assert (await client.get("/studies")).status_code == 200
            results["qido"] = time.monotonic() - begun
        assert results["qido"] < 1.0 < 2.0 <= results["stow"]


async def test_after_store_errors_are_logged_not_raised(
    kit_client: KitClient, caplog: pytest.LogCaptureFixture
) -> None:
    called = anyio.Event()

    async def failing(_records: Sequence[InstanceRecord]) -> None:
        called.set()
        raise ValueError("pipeline down")

    async with kit_client(after_store=failing) as (_kit, client):
        assert (await stow(client, part10_bytes(make_dataset()))).status_code == 200
        with anyio.fail_after(5):
            await called.wait()
        await anyio.sleep(0.05)
        assert "after-store hook failed" in caplog.text
        assert (await stow(client, part10_bytes(make_dataset()))).status_code == 200


async def test_a_commit_that_fails_once_is_not_retried_over_deleted_blobs() -> None:
    """The index fails the group commit (its blobs are deleted): the request fails with 503 and
    no record is left pointing at a deleted blob (STOW-RS used to commit the same group again)."""
    from dicomweb_kit_adapters.memory import MemoryBlobStore, MemoryIndex

    from dicomweb_kit import StorageUnavailable

    class FlakyIndex(MemoryIndex):
        failures = 1

        async def add_many(self, records: Any, /, *, on_existing: Any) -> Any:
            if self.failures:
                self.failures -= 1
                raise StorageUnavailable("the index is down")
            return await super().add_many(records, on_existing=on_existing)

    index = FlakyIndex()
    async with DicomWeb(blobs=MemoryBlobStore(), index=index, before_store=fix_issuer) as kit:
        transport = httpx.ASGITransport(app=host_app(kit))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver/dicom-web") as client:
            r = await stow(client, part10_bytes(make_dataset()))
            assert r.status_code == 503
            assert (await client.get("/studies")).json() == []
            assert [key async for key in kit.blobs.iter_keys()] == []
