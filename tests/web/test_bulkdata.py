"""WADO-RS bulk data over HTTP (PS3.18 §10.4.1.1.5): every BulkDataURI of the metadata answers
with the value pydicom reads from the file, whole or by HTTP range (RFC 9110 §14)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pydicom
import pytest
from conftest import PYDICOM_TEST_FILES
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, generate_uid
from test_frames import expected_frames, instance_path, parse_parts, store

from dicomweb_kit.testing import make_dataset, part10_bytes

pytestmark = pytest.mark.anyio

OCTET = "application/octet-stream"
OCTET_TYPE = f"{OCTET}; transfer-syntax={ExplicitVRLittleEndian}"


def bulk_uris(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        if "BulkDataURI" in value:
            yield value["BulkDataURI"]
        for inner in value.values():
            yield from bulk_uris(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from bulk_uris(inner)


def rich_dataset() -> Dataset:
    """Pixel data plus bulk data at the top level and inside a sequence item."""
    ds = make_dataset(rows=16, columns=16)
    ds.PixelData = np.arange(256, dtype="<u2").tobytes()
    ds.EncapsulatedDocument = bytes(range(256)) * 8  # (0042,0011) OB, 2 KiB
    icon = Dataset()
    icon.Rows, icon.Columns, icon.BitsAllocated, icon.SamplesPerPixel = 48, 48, 8, 1
    icon.PhotometricInterpretation, icon.BitsStored, icon.HighBit, icon.PixelRepresentation = "MONOCHROME2", 8, 7, 0
    icon.PixelData = bytes(range(256)) * 9  # nested Pixel Data: bulk data from the header
    ds.IconImageSequence = Sequence([icon])
    return ds


@pytest.fixture
async def rich(client: httpx.AsyncClient) -> Dataset:
    ds = rich_dataset()
    await store(client, part10_bytes(ds))
    return ds


async def test_every_bulk_data_uri_of_the_metadata(client: httpx.AsyncClient, rich: Dataset) -> None:
    metadata = (await client.get(f"{instance_path(rich)}/metadata")).json()
    uris = sorted(bulk_uris(metadata))
    base = f"http://testserver/dicom-web{instance_path(rich)}/bulkdata"
    assert uris == [f"{base}/00420011", f"{base}/00880200/0/7FE00010", f"{base}/7FE00010"]
    expected = {
        "00420011": rich.EncapsulatedDocument,
        "00880200/0/7FE00010": rich.IconImageSequence[0].PixelData,
        "7FE00010": rich.PixelData,
    }
    for uri in uris:
        r = await client.get(uri)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith(f'multipart/related; type="{OCTET}"')
        assert r.headers["accept-ranges"] == "bytes"
        [part] = parse_parts(r)
        assert part.payload == expected[uri.removeprefix(base + "/")]
        assert part.headers["content-location"] == uri
        assert part.content_type == OCTET_TYPE
        assert int(r.headers["content-length"]) == len(r.content)
        single = await client.get(uri, headers={"Accept": OCTET})
        assert single.headers["content-type"] == OCTET_TYPE
        assert single.content == part.payload


@pytest.mark.parametrize(
    ("header", "status", "piece"),
    [
        ("bytes=0-9", 206, slice(0, 10)),
        ("bytes=500-", 206, slice(500, None)),
        ("bytes=-7", 206, slice(-7, None)),
        ("bytes=-100000", 206, slice(0, None)),  # a suffix longer than the value: all of it
        ("bytes=510-100000", 206, slice(510, None)),  # the end is clamped
        ("bytes=3-3", 206, slice(3, 4)),
        ("BYTES = 1 - 2", 206, slice(1, 3)),
        ("bytes=0-1,4-5", 200, slice(None)),  # several ranges: the whole value (documented)
        ("bytes=5-1", 200, slice(None)),  # invalid: ignored
        ("bytes=abc", 200, slice(None)),
        ("items=0-1", 200, slice(None)),
    ],
)
async def test_ranges_of_a_value(
    client: httpx.AsyncClient, rich: Dataset, header: str, status: int, piece: slice
) -> None:
    value = rich.PixelData
    for path in ("7FE00010", "00420011"):
        full = value if path == "7FE00010" else rich.EncapsulatedDocument
        r = await client.get(f"{instance_path(rich)}/bulkdata/{path}", headers={"Accept": OCTET, "Range": header})
        assert r.status_code == status, (path, r.text)
        assert r.content == full[piece]
        assert int(r.headers["content-length"]) == len(r.content)
        if status == 206:
            start = piece.indices(len(full))[0]
            assert r.headers["content-range"] == f"bytes {start}-{start + len(r.content) - 1}/{len(full)}"
        else:
            assert "content-range" not in r.headers


@pytest.mark.parametrize("header", ["bytes=512-", "bytes=100000-200000", "bytes=-0"])
async def test_unsatisfiable_range_is_416(client: httpx.AsyncClient, rich: Dataset, header: str) -> None:
    r = await client.get(f"{instance_path(rich)}/bulkdata/7FE00010", headers={"Accept": OCTET, "Range": header})
    assert r.status_code == 416
    assert r.headers["content-range"] == "bytes */512"


async def test_if_range_sends_the_whole_value(client: httpx.AsyncClient, rich: Dataset) -> None:
    headers = {"Accept": OCTET, "Range": "bytes=0-1", "If-Range": '"x"'}
    r = await client.get(f"{instance_path(rich)}/bulkdata/7FE00010", headers=headers)
    assert r.status_code == 200 and r.content == rich.PixelData


async def test_big_endian_values_go_out_little_endian(client: httpx.AsyncClient) -> None:
    data = (PYDICOM_TEST_FILES / "MR_small_bigendian.dcm").read_bytes()
    await store(client, data)
    ds = pydicom.dcmread(io.BytesIO(data))
    expected = ds.pixel_array.astype("<i2").tobytes()
    path = f"{instance_path(ds)}/bulkdata/7FE00010"
    r = await client.get(path, headers={"Accept": OCTET})
    assert r.content == expected
    r = await client.get(path, headers={"Accept": OCTET, "Range": "bytes=3-10"})  # odd: inside words
    assert r.status_code == 206 and r.content == expected[3:11]
    r = await client.get(path, headers={"Accept": OCTET, "Range": "bytes=-3"})
    assert r.content == expected[-3:]


async def test_big_endian_ow_values_in_the_header(client: httpx.AsyncClient) -> None:
    ds = make_dataset()
    overlay = np.arange(1024, dtype=">u2")
    ds.add_new(0x60003000, "OW", overlay.tobytes())  # Overlay Data, big endian words
    ds.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
    ds.PixelData = np.arange(16, dtype=">u2").tobytes()
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True, little_endian=False, implicit_vr=False)
    await store(client, out.getvalue())
    r = await client.get(f"{instance_path(ds)}/bulkdata/60003000", headers={"Accept": OCTET})
    assert r.status_code == 200, r.text
    assert r.content == overlay.astype("<u2").tobytes()


async def test_encapsulated_pixel_data_is_one_part_per_frame(client: httpx.AsyncClient) -> None:
    data = (PYDICOM_TEST_FILES / "examples_ybr_color.dcm").read_bytes()
    await store(client, data)
    ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    r = await client.get(f"{instance_path(ds)}/bulkdata/7FE00010", headers={"Range": "bytes=0-1"})
    assert r.status_code == 200  # Range does not apply to a multipart representation
    assert r.headers["content-type"].startswith('multipart/related; type="image/jpeg"')
    parts = parse_parts(r)
    assert [p.payload for p in parts] == expected_frames(data)[1]
    frames_url = f"http://testserver/dicom-web{instance_path(ds)}/frames"
    assert [p.headers["content-location"] for p in parts] == [f"{frames_url}/{n}" for n in range(1, 31)]


async def test_a_single_compressed_frame_as_a_single_part(client: httpx.AsyncClient) -> None:
    data = (PYDICOM_TEST_FILES / "SC_rgb_dcmtk_+eb+cr.dcm").read_bytes()
    await store(client, data)
    ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    r = await client.get(f"{instance_path(ds)}/bulkdata/7FE00010", headers={"Accept": "image/jpeg"})
    assert r.headers["content-type"] == f"image/jpeg; transfer-syntax={pydicom.uid.JPEGBaseline8Bit}"
    assert r.content == expected_frames(data)[1][0]
    r = await client.get(f"{instance_path(ds)}/bulkdata/7FE00010")
    [part] = parse_parts(r)
    assert part.headers["content-location"].endswith("/bulkdata/7FE00010")


async def test_compressed_pixel_data_asked_for_uncompressed(client: httpx.AsyncClient) -> None:
    data = (PYDICOM_TEST_FILES / "rtdose_rle.dcm").read_bytes()
    await store(client, data)
    ds = pydicom.dcmread(io.BytesIO(data))
    r = await client.get(f"{instance_path(ds)}/bulkdata/7FE00010", headers={"Accept": OCTET})
    if r.status_code == 406:
        pytest.skip("no RLE decoder offered by the codec seam")
    assert r.headers["content-type"] == OCTET_TYPE  # every frame, decoded, in one part (Table 8.7.3-4)
    assert r.content == ds.pixel_array.astype("<u4").tobytes()


@pytest.mark.parametrize(
    "path", ["00100010", "00420012", "xyz", "7FE0001", "00880200/1/7FE00010", "00880200/0/00280010", "7FE00008"]
)
async def test_no_bulk_data_there_is_404(client: httpx.AsyncClient, rich: Dataset, path: str) -> None:
    r = await client.get(f"{instance_path(rich)}/bulkdata/{path}")
    assert r.status_code == 404, r.text


async def test_instance_without_pixel_data(client: httpx.AsyncClient) -> None:
    ds = make_dataset()
    del ds.PixelData
    await store(client, part10_bytes(ds))
    r = await client.get(f"{instance_path(ds)}/bulkdata/7FE00010")
    assert r.status_code == 404
    r = await client.get(f"{instance_path(ds)}/bulkdata")
    assert r.status_code == 404
    series = f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
    r = await client.get(f"{series}/instances/1.2.3/bulkdata/7FE00010")
    assert r.status_code == 404


async def test_a_value_is_not_acceptable_as_an_image(client: httpx.AsyncClient, rich: Dataset) -> None:
    r = await client.get(f"{instance_path(rich)}/bulkdata/00420011", headers={"Accept": "image/png"})
    assert r.status_code == 406


async def test_bulkdata_of_study_series_instance(client: httpx.AsyncClient) -> None:
    study, series = generate_uid(), generate_uid()
    first = rich_dataset()
    first.StudyInstanceUID, first.SeriesInstanceUID = study, series
    second = make_dataset(study=study, series=generate_uid())
    await store(client, part10_bytes(first), part10_bytes(second))
    for scope, instances in [
        (f"/studies/{study}", [first, second]),
        (f"/studies/{study}/series/{series}", [first]),
        (instance_path(second), [second]),
    ]:
        r = await client.get(f"{scope}/bulkdata")
        assert r.status_code == 200, r.text
        parts = parse_parts(r)
        uris: list[str] = []
        for ds in instances:
            metadata = (await client.get(f"{instance_path(ds)}/metadata")).json()
            uris += list(bulk_uris(metadata))
        assert sorted(p.headers["content-location"] for p in parts) == sorted(uris)
        for part in parts:
            single = await client.get(part.headers["content-location"], headers={"Accept": OCTET})
            assert single.content == part.payload
            assert part.content_type == OCTET_TYPE
    r = await client.get(f"/studies/{generate_uid()}/bulkdata")
    assert r.status_code == 404
