"""STOW-RS of metadata + bulk data over HTTP (PS3.18 §10.5.1.2), then the instances through WADO-RS."""

from __future__ import annotations

import io
from typing import Any

import httpx
import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.uid import generate_uid
from test_frames import parse_parts

from dicomweb_kit.codecs import dicom_json
from dicomweb_kit.codecs.dicom_xml import json_dict_to_xml
from dicomweb_kit.testing import make_dataset

pytestmark = pytest.mark.anyio

BOUNDARY = "metadata-and-bulk"
JSON_TYPE = f'multipart/related; type="application/dicom+json"; boundary="{BOUNDARY}"'
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
ENCAPSULATED_PDF = "1.2.840.10008.5.1.4.1.1.104.1"
PDF = (
    b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj 2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj "
    b"3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 72 72]>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"
)


def body(*parts: tuple[dict[str, str], bytes]) -> bytes:
    out = b""
    for headers, payload in parts:
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        out += f"--{BOUNDARY}\r\n{head}\r\n".encode() + payload + b"\r\n"
    return out + f"--{BOUNDARY}--\r\n".encode()


def json_part(*datasets: dict[str, Any]) -> tuple[dict[str, str], bytes]:
    return {"Content-Type": "application/dicom+json"}, dicom_json.encode(list(datasets))


def bulk(location: str, data: bytes, media_type: str = "application/octet-stream") -> tuple[dict[str, str], bytes]:
    return {"Content-Type": media_type, "Content-Location": location}, data


def native_metadata(ds: pydicom.Dataset, uri: str) -> dict[str, Any]:
    out = dicom_json.dataset_to_json_dict(ds)
    out["7FE00010"] = {"vr": "OW", "BulkDataURI": uri}
    return out


def photo_metadata(sop_class: str = SECONDARY_CAPTURE, study: str | None = None, **extra: Any) -> dict[str, Any]:
    ds = pydicom.Dataset()
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = study or generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientName = "Photo^Jane"
    ds.PatientID = "P-1"
    ds.Modality = "OT"
    for keyword, value in extra.items():
        setattr(ds, keyword, value)
    return dicom_json.dataset_to_json_dict(ds)


def path_of(metadata: dict[str, Any]) -> str:
    uid = lambda tag: metadata[tag]["Value"][0]  # noqa: E731
    return f"/studies/{uid('0020000D')}/series/{uid('0020000E')}/instances/{uid('00080018')}"


def grey(rows: int = 40, columns: int = 56) -> np.ndarray:
    return ((np.arange(rows * columns).reshape(rows, columns) * 5) % 253).astype(np.uint8)


def encoded(array: np.ndarray, fmt: str, **options: Any) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format=fmt, **options)
    return out.getvalue()


async def post(client: httpx.AsyncClient, data: bytes, path: str = "/studies", **headers: str) -> httpx.Response:
    return await client.post(path, content=data, headers={"Content-Type": JSON_TYPE, **headers})


async def retrieve(client: httpx.AsyncClient, path: str, transfer_syntax: str | None = None) -> pydicom.FileDataset:
    accept = 'multipart/related; type="application/dicom"'
    if transfer_syntax:
        accept += f"; transfer-syntax={transfer_syntax}"
    r = await client.get(path, headers={"Accept": accept})
    assert r.status_code == 200, r.text
    [part] = parse_parts(r)
    return pydicom.dcmread(io.BytesIO(part.payload))


async def test_native_pixel_data_is_stored_and_served(client: httpx.AsyncClient) -> None:
    ds = make_dataset(rows=8, columns=8)
    meta = native_metadata(ds, "http://client.example/bulk/1")
    r = await post(client, body(json_part(meta), bulk("http://client.example/bulk/1", ds.PixelData)))
    assert r.status_code == 200, r.text
    [item] = r.json()["00081199"]["Value"]
    assert item["00081190"]["Value"] == [f"http://testserver/dicom-web{path_of(meta)}"]
    assert "00081196" not in item
    octets = {"Accept": "multipart/related; type=application/octet-stream"}
    r = await client.get(f"{path_of(meta)}/frames/1", headers=octets)
    assert parse_parts(r)[0].payload == ds.PixelData
    r = await client.get(f"{path_of(meta)}/metadata")
    assert r.json()[0]["00100010"] == {"vr": "PN", "Value": [{"Alphabetic": "Doe^Jane"}]}


async def test_xml_metadata_with_an_xml_response(client: httpx.AsyncClient) -> None:
    ds = make_dataset(rows=8, columns=8)
    meta = native_metadata(ds, "px")
    data = body(({"Content-Type": "application/dicom+xml"}, json_dict_to_xml(meta)), bulk("px", ds.PixelData))
    ct = f'multipart/related; type="application/dicom+xml"; boundary="{BOUNDARY}"'
    r = await client.post("/studies", content=data, headers={"Content-Type": ct, "Accept": "application/dicom+xml"})
    assert r.status_code == 200 and r.content.startswith(b"<?xml")
    assert (await retrieve(client, path_of(meta))).PixelData == ds.PixelData


async def test_jpeg_baseline_retrieved_as_sent_and_decompressed(client: httpx.AsyncClient) -> None:
    jpeg = encoded(grey(), "JPEG", quality=80)
    expected = np.asarray(Image.open(io.BytesIO(jpeg)))
    meta = photo_metadata()
    meta["7FE00010"] = {"vr": "OB", "BulkDataURI": "photo.jpg"}
    r = await post(client, body(json_part(meta), bulk("photo.jpg", jpeg, "image/jpeg")))
    assert r.status_code == 202  # 0xB000: we named the transfer syntax and wrote Rows, Columns...
    assert r.json()["00081199"]["Value"][0]["00081196"]["Value"] == [0xB000]
    as_stored = await retrieve(client, path_of(meta), "*")
    assert as_stored.file_meta.TransferSyntaxUID == pydicom.uid.JPEGBaseline8Bit
    assert np.array_equal(as_stored.pixel_array, expected)
    native = await retrieve(client, path_of(meta))  # Explicit VR LE: the kit decompresses
    assert native.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert np.array_equal(native.pixel_array, expected)
    r = await client.get(f"{path_of(meta)}/frames/1", headers={"Accept": 'multipart/related; type="image/jpeg"'})
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(parse_parts(r)[0].payload))), expected)


async def test_png_is_stored_as_native_pixels(client: httpx.AsyncClient) -> None:
    rgb = np.dstack([grey(), grey()[::-1], 255 - grey()])
    meta = photo_metadata()
    meta["7FE00010"] = {"vr": "OB", "BulkDataURI": "photo.png"}
    r = await post(client, body(bulk("photo.png", encoded(rgb, "PNG"), "image/png"), json_part(meta)))
    assert r.status_code == 202
    stored = await retrieve(client, path_of(meta), "*")
    assert stored.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert stored.PhotometricInterpretation == "RGB"
    assert np.array_equal(stored.pixel_array, rgb)


async def test_pdf_becomes_an_encapsulated_pdf_rendered_as_pdf(client: httpx.AsyncClient) -> None:
    meta = photo_metadata(ENCAPSULATED_PDF, Modality="DOC", DocumentTitle="Report")
    meta["00420011"] = {"vr": "OB", "BulkDataURI": "report.pdf"}
    r = await post(client, body(json_part(meta), bulk("report.pdf", PDF, "application/pdf")))
    assert r.status_code == 202, r.text
    r = await client.get(f"{path_of(meta)}/rendered", headers={"Accept": "application/pdf"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/pdf"
    assert r.content.rstrip(b"\0") == PDF.rstrip(b"\0")
    assert (await retrieve(client, path_of(meta))).MIMETypeOfEncapsulatedDocument == "application/pdf"


async def test_a_missing_bulk_part_fails_that_instance(client: httpx.AsyncClient) -> None:
    ds = make_dataset()
    meta = native_metadata(ds, "http://client.example/nowhere")
    r = await post(client, body(json_part(meta), bulk("http://client.example/elsewhere", ds.PixelData)))
    assert r.status_code == 409
    [failed] = r.json()["00081198"]["Value"]
    assert failed["00081197"]["Value"] == [0xC000]
    assert failed["00081155"]["Value"] == [ds.SOPInstanceUID]
    assert (await client.get(path_of(meta))).status_code == 404


async def test_study_of_the_target_resource_is_checked(client: httpx.AsyncClient) -> None:
    target = generate_uid()
    inside, outside = photo_metadata(study=target), photo_metadata()
    inside["7FE00010"] = {"vr": "OB", "BulkDataURI": "a"}
    outside["7FE00010"] = {"vr": "OB", "BulkDataURI": "b"}
    jpeg = encoded(grey(), "JPEG")
    data = body(json_part(inside, outside), bulk("a", jpeg, "image/jpeg"), bulk("b", jpeg, "image/jpeg"))
    r = await post(client, data, f"/studies/{target}")
    assert r.status_code == 202
    response = r.json()
    assert response["00081198"]["Value"][0]["00081197"]["Value"] == [0xC409]
    assert response["00081190"]["Value"] == [f"http://testserver/dicom-web/studies/{target}"]
    assert (await client.get(f"/studies/{target}/instances")).json()[0]["00080018"] == inside["00080018"]


async def test_other_part_types_are_still_415(client: httpx.AsyncClient) -> None:
    ct = "multipart/related; type=text/plain; boundary=x"
    r = await client.post("/studies", content=b"x", headers={"Content-Type": ct})
    assert r.status_code == 415
    assert "application/dicom+json" in r.text


async def test_tutorial_style_hand_built_body(client: httpx.AsyncClient) -> None:
    """Built the way the DICOMweb tutorial builds its STOW body (bytearray, Content-Length in each
    part, an unquoted type parameter, no CRLF after the closing delimiter, XML response)."""
    ds = make_dataset(rows=4, columns=4)
    metadata = dicom_json.encode([native_metadata(ds, "pixels")])
    request = bytearray()
    request += bytearray("--MESSAGEBOUNDARY\r\n", "ascii")
    request += bytearray("Content-Type: application/dicom+json\r\n", "ascii")
    request += bytearray("Content-Length: " + str(len(metadata)) + "\r\n\r\n", "ascii")
    request += metadata
    request += bytearray("\r\n--MESSAGEBOUNDARY\r\n", "ascii")
    request += bytearray("Content-Type: application/octet-stream\r\n", "ascii")
    request += bytearray("Content-Location: pixels\r\n", "ascii")
    request += bytearray("Content-Length: " + str(len(ds.PixelData)) + "\r\n\r\n", "ascii")
    request += ds.PixelData
    request += bytearray("\r\n--MESSAGEBOUNDARY--", "ascii")
    headers = {
        "Content-Type": "multipart/related; type=application/dicom+json; boundary=MESSAGEBOUNDARY",
        "Accept": "application/dicom+xml",
    }
    r = await client.post("/studies", content=bytes(request), headers=headers)
    assert r.status_code == 200, r.text
    assert ds.SOPInstanceUID.encode() in r.content
    stored = await retrieve(client, path_of(native_metadata(ds, "pixels")))
    assert np.array_equal(stored.pixel_array, ds.pixel_array)
