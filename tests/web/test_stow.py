"""STOW-RS over HTTP (PS3.18 §10.5): statuses, the response module, atomicity."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from conftest import host_app
from pydicom.uid import generate_uid

from dicomweb_kit import DicomWeb, ResourceKey, Settings
from dicomweb_kit.codecs import dicom_json
from dicomweb_kit.testing import make_dataset, part10_bytes

pytestmark = pytest.mark.anyio

CT = "1.2.840.10008.5.1.4.1.1.2"
DICOM_CT = 'multipart/related; type="application/dicom"; boundary=b'


def multipart(*parts: bytes, boundary: str = "B0UNDARY", part_type: str = "application/dicom") -> tuple[bytes, str]:
    body = b"".join(
        b"--" + boundary.encode() + b"\r\nContent-Type: " + part_type.encode() + b"\r\n\r\n" + p + b"\r\n"
        for p in parts
    )
    body += b"--" + boundary.encode() + b"--\r\n"
    return body, f'multipart/related; type="application/dicom"; boundary="{boundary}"'


async def blob_count(kit: DicomWeb) -> int:
    return len([key async for key in kit.blobs.iter_keys()])


async def stow(client: httpx.AsyncClient, *parts: bytes, path: str = "/studies", **kw: str) -> httpx.Response:
    body, content_type = multipart(*parts, **kw)
    return await client.post(path, content=body, headers={"Content-Type": content_type})


async def test_all_stored_is_200_with_referenced_sop_sequence(client: httpx.AsyncClient) -> None:
    a, b = make_dataset(), make_dataset()
    r = await stow(client, part10_bytes(a), part10_bytes(b))
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/dicom+json"
    body = r.json()
    items = body["00081199"]["Value"]
    assert [i["00081155"]["Value"][0] for i in items] == [a.SOPInstanceUID, b.SOPInstanceUID]
    assert items[0]["00081150"]["Value"] == [CT]
    assert items[0]["00081190"]["Value"][0] == (
        f"http://testserver/dicom-web/studies/{a.StudyInstanceUID}/series/{a.SeriesInstanceUID}"
        f"/instances/{a.SOPInstanceUID}"
    )
    assert body["00081190"] == {"vr": "UR"}  # two studies: the study RetrieveURL is empty (Type 2)
    assert "00081198" not in body


async def test_one_bad_part_is_202_and_the_good_one_is_stored(client: httpx.AsyncClient) -> None:
    good = make_dataset()
    r = await stow(client, part10_bytes(good), b"this is not DICOM" * 10)
    assert r.status_code == 202
    body = r.json()
    assert body["00081198"]["Value"][0]["00081197"]["Value"] == [0xC000]
    assert [i["00081155"]["Value"][0] for i in body["00081199"]["Value"]] == [good.SOPInstanceUID]
    assert (await client.get(f"/studies/{good.StudyInstanceUID}/metadata")).status_code == 200


async def test_nothing_stored_is_409(client: httpx.AsyncClient, kit: DicomWeb) -> None:
    r = await stow(client, b"\0" * 128 + b"DICM" + b"garbage")
    assert r.status_code == 409
    assert r.json()["00081198"]["Value"][0]["00081197"]["Value"] == [0xC000]
    assert [rec async for rec in kit.index.records(ResourceKey())] == []


async def test_study_uid_mismatch_fails_that_instance(client: httpx.AsyncClient) -> None:
    target = generate_uid()
    matching, other = make_dataset(study=target), make_dataset()
    r = await stow(client, part10_bytes(matching), part10_bytes(other), path=f"/studies/{target}")
    assert r.status_code == 202
    body = r.json()
    failed = body["00081198"]["Value"][0]
    assert failed["00081155"]["Value"] == [other.SOPInstanceUID]
    assert failed["00081197"]["Value"] == [0xC409]
    assert body["00081190"]["Value"] == [f"http://testserver/dicom-web/studies/{target}"]


async def test_missing_uid_is_a900(client: httpx.AsyncClient) -> None:
    ds = make_dataset()
    del ds.SeriesInstanceUID
    r = await stow(client, part10_bytes(ds))
    assert r.status_code == 409
    assert r.json()["00081198"]["Value"][0]["00081197"]["Value"] == [0xA900]


async def test_a_non_dicom_part_type_fails_that_part(client: httpx.AsyncClient) -> None:
    body, content_type = multipart(b"{}", part_type="application/json")
    r = await client.post("/studies", content=body, headers={"Content-Type": content_type})
    assert r.status_code == 409


@pytest.mark.parametrize(
    ("content_type", "status"),
    [
        ("application/dicom", 415),
        ("multipart/form-data; boundary=x", 415),
        ('multipart/related; type="application/json"; boundary=x', 415),
        ('multipart/related; type="application/dicom+json"; boundary=x', 400),  # metadata + bulk data, malformed
        ('multipart/related; type="application/dicom"', 400),
        (None, 415),
    ],
)
async def test_request_media_type(client: httpx.AsyncClient, content_type: str | None, status: int) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    r = await client.post("/studies", content=b"x", headers=headers)
    assert r.status_code == status
    assert r.text.strip()


async def test_empty_and_garbage_bodies_are_400(client: httpx.AsyncClient) -> None:
    ct = 'multipart/related; type="application/dicom"; boundary=B'
    for body in (b"", b"garbage without any delimiter", b"--B\r\nContent-Type: application/dicom\r\n\r\ntruncated"):
        r = await client.post("/studies", content=body, headers={"Content-Type": ct})
        assert r.status_code == 400, body


async def test_accept_xml_and_406(client: httpx.AsyncClient) -> None:
    body, ct = multipart(part10_bytes(make_dataset()))
    r = await client.post("/studies", content=body, headers={"Content-Type": ct, "Accept": "application/dicom+xml"})
    assert r.status_code == 200
    assert r.content.startswith(b"<?xml")
    r = await client.post("/studies", content=body, headers={"Content-Type": ct, "Accept": "text/html"})
    assert r.status_code == 406
    assert "application/dicom+json" in r.text


async def test_declared_content_length_over_the_limit_is_413(make_kit) -> None:
    async with make_kit(Settings(max_request_bytes=1000)) as kit:
        transport = httpx.ASGITransport(app=host_app(kit))
        async with httpx.AsyncClient(transport=transport, base_url="http://t/dicom-web") as c:
            body, ct = multipart(part10_bytes(make_dataset(rows=64, columns=64)))
            r = await c.post("/studies", content=body, headers={"Content-Type": ct})
            assert r.status_code == 413


async def test_part_over_the_limit_fails_alone(make_kit) -> None:
    async with make_kit(Settings(max_part_bytes=2000)) as kit:
        transport = httpx.ASGITransport(app=host_app(kit))
        async with httpx.AsyncClient(transport=transport, base_url="http://t/dicom-web") as c:
            small, big = make_dataset(), make_dataset(rows=64, columns=64)
            r = await stow(c, part10_bytes(big), part10_bytes(small))
            assert r.status_code == 202
            body = r.json()
            assert body["00081198"]["Value"][0]["00081197"]["Value"] == [0xA700]
            assert [i["00081155"]["Value"][0] for i in body["00081199"]["Value"]] == [small.SOPInstanceUID]


@pytest.mark.parametrize("policy", ["keep", "replace", "reject"])
async def test_duplicate_policy(make_kit, policy: str) -> None:
    async with make_kit(Settings(on_duplicate=policy)) as kit:
        transport = httpx.ASGITransport(app=host_app(kit))
        async with httpx.AsyncClient(transport=transport, base_url="http://t/dicom-web") as c:
            first = make_dataset(patient_name="First^Name")
            second = make_dataset(
                study=first.StudyInstanceUID,
                series=first.SeriesInstanceUID,
                instance=first.SOPInstanceUID,
                patient_name="Second^Name",
            )
            assert (await stow(c, part10_bytes(first))).status_code == 200
            r = await stow(c, part10_bytes(second))
            assert r.status_code == (409 if policy == "reject" else 200)
            if policy == "reject":
                assert r.json()["00081198"]["Value"][0]["00081197"]["Value"] == [0x0111]
            meta = (await c.get(f"/studies/{first.StudyInstanceUID}/metadata")).json()
            assert len(meta) == 1
            name = meta[0]["00100010"]["Value"][0]["Alphabetic"]
            assert name == ("Second^Name" if policy == "replace" else "First^Name")
            assert await blob_count(kit) == 1  # the losing copy's blob is gone


async def test_interrupted_body_stores_nothing_of_the_broken_part(client: httpx.AsyncClient, kit: DicomWeb) -> None:
    data = part10_bytes(make_dataset(rows=128, columns=128))

    async def body() -> AsyncIterator[bytes]:
        yield b"--B\r\nContent-Type: application/dicom\r\n\r\n"
        yield data[: len(data) // 2]
        raise httpx.ReadError("client went away")

    with pytest.raises(httpx.ReadError):
        await client.post("/studies", content=body(), headers={"Content-Type": "multipart/related; boundary=B"})
    assert [r async for r in kit.index.records(ResourceKey())] == []
    assert await blob_count(kit) == 0


async def test_response_json_is_dicom_json(client: httpx.AsyncClient) -> None:
    r = await stow(client, part10_bytes(make_dataset()))
    assert dicom_json.json_dict_to_dataset(r.json()).ReferencedSOPSequence[0].ReferencedSOPClassUID == CT


async def test_a_dataset_without_preamble_is_stored_as_part10_with_a_warning(client: httpx.AsyncClient) -> None:
    import io

    import pydicom

    ds = make_dataset()
    raw = io.BytesIO()
    pydicom.dcmwrite(raw, ds)  # what dicomweb-client sends: file meta, but no preamble and no DICM
    assert raw.getvalue()[128:132] != b"DICM"
    r = await stow(client, raw.getvalue())
    assert r.status_code == 202
    item = r.json()["00081199"]["Value"][0]
    assert item["00081196"]["Value"] == [0xB000]
    got = await client.get(item["00081190"]["Value"][0])
    assert b"DICM" in got.content and ds.PixelData in got.content


async def test_a_stalled_body_is_408(make_kit) -> None:
    import anyio

    async with make_kit(Settings(body_read_timeout=0.2)) as kit:
        transport = httpx.ASGITransport(app=host_app(kit))
        async with httpx.AsyncClient(transport=transport, base_url="http://t/dicom-web") as c:

            async def stalls() -> AsyncIterator[bytes]:
                yield b"--b\r\nContent-Type: application/dicom\r\n\r\n"
                await anyio.sleep(5)
                yield b"never"

            with anyio.fail_after(3):
                r = await c.post("/studies", content=stalls(), headers={"Content-Type": DICOM_CT})
            assert r.status_code == 408
            assert "request body" in r.text


async def test_dcm4chee_style_transfer_syntax_parameters(client: httpx.AsyncClient) -> None:
    ds = make_dataset()
    body = (
        b"--b\r\nContent-Type: application/dicom; transfer-syntax=1.2.840.10008.1.2.1\r\n\r\n"
        + part10_bytes(ds)
        + b"\r\n--b--\r\n"
    )
    content_type = 'multipart/related; type="application/dicom"; boundary=b; transfer-syntax=1.2.840.10008.1.2.1'
    r = await client.post("/studies", content=body, headers={"Content-Type": content_type})
    assert r.status_code == 200, r.text
