"""WADO-RS retrieve and metadata over HTTP (PS3.18 §10.4)."""

from __future__ import annotations

import email.parser
import email.policy
import io
from collections.abc import AsyncIterator

import httpx
import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

from dicomweb_kit import DicomWeb, StorageUnavailable
from dicomweb_kit.resources import ResourceKey
from dicomweb_kit.services import wado
from dicomweb_kit.testing import make_dataset, part10_bytes

pytestmark = pytest.mark.anyio


def parse_parts(response: httpx.Response) -> list[tuple[str, bytes]]:
    """Split a multipart/related response with the standard library's MIME parser.

    Returns (media type; transfer-syntax, payload) per part.
    """
    raw = b"Content-Type: " + response.headers["content-type"].encode() + b"\r\n\r\n" + response.content
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(raw)
    return [
        (
            f"{part.get_content_type()}; transfer-syntax={part.get_param('transfer-syntax')}",
            part.get_payload(decode=True),
        )
        for part in message.iter_parts()
    ]


async def store(client: httpx.AsyncClient, *blobs: bytes) -> None:
    body = b"".join(b"--b\r\nContent-Type: application/dicom\r\n\r\n" + b + b"\r\n" for b in blobs) + b"--b--"
    r = await client.post("/studies", content=body, headers={"Content-Type": "multipart/related; boundary=b"})
    assert r.status_code == 200, r.text


async def test_retrieve_study_series_instance(client: httpx.AsyncClient) -> None:
    study, series = generate_uid(), generate_uid()
    datasets = [make_dataset(study=study, series=series) for _ in range(3)]
    blobs = [part10_bytes(ds) for ds in datasets]
    await store(client, *blobs)
    for path, expected in [
        (f"/studies/{study}", blobs),
        (f"/studies/{study}/series/{series}", blobs),
        (f"/studies/{study}/series/{series}/instances/{datasets[1].SOPInstanceUID}", blobs[1:2]),
    ]:
        r = await client.get(path, headers={"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'})
        assert r.status_code == 200
        assert r.headers["content-type"].startswith('multipart/related; type="application/dicom"')
        parts = parse_parts(r)
        assert [p[1] for p in parts] == expected
        assert parts[0][0] == f"application/dicom; transfer-syntax={ExplicitVRLittleEndian}"


RETRIEVE_ANY = 'multipart/related; type="application/dicom"; transfer-syntax=*'


async def test_retrieve_declares_its_exact_length(client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch) -> None:
    study, series = generate_uid(), generate_uid()
    blobs = [part10_bytes(make_dataset(study=study, series=series)) for _ in range(3)]
    await store(client, *blobs)
    r = await client.get(f"/studies/{study}", headers={"Accept": RETRIEVE_ANY})
    assert r.headers["content-length"] == str(len(r.content))
    assert "transfer-encoding" not in r.headers
    assert [p[1] for p in parse_parts(r)] == blobs
    # Above the listing limit the same body streams without a length.
    monkeypatch.setattr(wado, "SIZED_RETRIEVE_MAX_INSTANCES", 2)
    streamed = await client.get(f"/studies/{study}", headers={"Accept": RETRIEVE_ANY})
    assert "content-length" not in streamed.headers
    assert [p[1] for p in parse_parts(streamed)] == blobs


async def test_a_blob_that_does_not_match_its_record_breaks_off_the_body(kit: DicomWeb) -> None:
    study, series = generate_uid(), generate_uid()
    ds = make_dataset(study=study, series=series)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=kit.app), base_url="http://t") as client:
        await store(client, part10_bytes(ds))
    [record] = [r async for r in kit.index.records(ResourceKey(study))]
    await kit.blobs.put(record.blob_key, _one(b"not the stored bytes"))
    plan = await wado.plan_retrieve(kit, ResourceKey(study), RETRIEVE_ANY)
    body = await wado.retrieve_body(kit, plan)
    assert body.length is not None
    with pytest.raises(StorageUnavailable, match="does not hold"):
        async for _ in body.chunks:
            pass


async def _one(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def test_implicit_vr_goes_out_as_explicit_little_endian(client: httpx.AsyncClient) -> None:
    ds = make_dataset()
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    blob = part10_bytes(ds)
    await store(client, blob)
    url = f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"
    for accept in ("multipart/related; type=application/dicom; transfer-syntax=*", "*/*"):
        r = await client.get(url, headers={"Accept": accept})
        assert "content-length" not in r.headers  # transcoded: the length is not known up front
        [(content_type, payload)] = parse_parts(r)
        assert content_type.endswith(ExplicitVRLittleEndian)
        out = pydicom.dcmread(io.BytesIO(payload))
        assert out.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        assert out.PixelData == ds.PixelData and out.PatientName == ds.PatientName
    r = await client.get(
        url, headers={"Accept": f"multipart/related; type=application/dicom; transfer-syntax={ImplicitVRLittleEndian}"}
    )
    assert r.status_code == 406
    assert ExplicitVRLittleEndian in r.text


async def test_unknown_and_malformed_uids(client: httpx.AsyncClient) -> None:
    assert (await client.get(f"/studies/{generate_uid()}")).status_code == 404
    assert (await client.get(f"/studies/{generate_uid()}/metadata")).status_code == 404
    assert (await client.get("/studies/not-a-uid")).status_code == 400
    assert (await client.get("/studies/1.02.3/metadata")).status_code == 400


async def test_metadata_has_bulk_data_uris_that_resolve_against_the_service(client: httpx.AsyncClient) -> None:
    ds = make_dataset(patient_name="Ürsula^Ödön")
    await store(client, part10_bytes(ds))
    r = await client.get(f"/studies/{ds.StudyInstanceUID}/metadata")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/dicom+json"
    [meta] = r.json()
    assert meta["00100010"]["Value"] == [{"Alphabetic": "Ürsula^Ödön"}]
    assert meta["7FE00010"] == {
        "vr": "OW",
        "BulkDataURI": f"http://testserver/dicom-web/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
        f"/instances/{ds.SOPInstanceUID}/bulkdata/7FE00010",
    }
    series = await client.get(f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/metadata")
    assert series.json() == [meta]
    xml = await client.get(f"/studies/{ds.StudyInstanceUID}/metadata", headers={"Accept": "application/dicom+xml"})
    assert xml.status_code == 200
    assert "Ürsula" in xml.content.decode()


async def test_wrong_method_is_405(client: httpx.AsyncClient) -> None:
    r = await client.delete("/studies")
    assert r.status_code == 405
    assert "GET" in r.headers["allow"]


async def test_metadata_etag_304_and_gzip(client: httpx.AsyncClient) -> None:
    import gzip

    study, series = generate_uid(), generate_uid()
    await store(client, *(part10_bytes(make_dataset(study=study, series=series)) for _ in range(3)))
    url = f"/studies/{study}/series/{series}/metadata"
    plain = await client.get(url, headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers
    etag = plain.headers["etag"]
    assert (await client.get(url, headers={"If-None-Match": etag})).status_code == 304
    assert (await client.get(url, headers={"If-None-Match": '"other", ' + etag})).status_code == 304
    raw = await client.get(url, headers={"Accept-Encoding": "gzip"})
    assert raw.headers["content-encoding"] == "gzip"
    assert raw.json() == plain.json()  # httpx decodes gzip; check the bytes really were compressed:
    async with client.stream("GET", url, headers={"Accept-Encoding": "gzip"}) as streamed:
        compressed = b"".join([chunk async for chunk in streamed.aiter_raw()])
    assert gzip.decompress(compressed) == plain.content
    # A new instance changes the ETag; the old one no longer matches.
    await store(client, part10_bytes(make_dataset(study=study, series=series)))
    again = await client.get(url, headers={"If-None-Match": etag})
    assert again.status_code == 200 and len(again.json()) == 4
    assert again.headers["etag"] != etag
    xml = await client.get(url, headers={"Accept": "application/dicom+xml"})
    assert xml.headers["etag"] != again.headers["etag"]  # one ETag per representation
