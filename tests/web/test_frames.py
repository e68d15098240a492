"""WADO-RS frames and pixel data over HTTP (PS3.18 §10.4.1.1.6): every bundled pydicom image is
stored, its frames fetched and compared with pydicom's own reading of the file."""

from __future__ import annotations

import io
import warnings
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pydicom
import pytest
from conftest import PYDICOM_TEST_FILES, pydicom_files_with_pixels
from pydicom.encaps import generate_frames
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, generate_uid

from dicomweb_kit import DicomWeb, validate_uid
from dicomweb_kit.codecs.transcode import UNCOMPRESSED
from dicomweb_kit.testing import make_dataset, part10_bytes

pytestmark = pytest.mark.anyio

OCTET = "application/octet-stream"


class Part:
    def __init__(self, headers: dict[str, str], payload: bytes) -> None:
        self.headers = headers
        self.payload = payload

    @property
    def content_type(self) -> str:
        return self.headers["content-type"]


def parse_parts(response: httpx.Response) -> list[Part]:
    """The parts of a multipart/related response (RFC 2046 §5.1.1), split on the boundary."""
    _, params = response.headers["content-type"].split(";", 1)
    boundary = next(p.split("=", 1)[1] for p in params.split(";") if p.strip().startswith("boundary="))
    body = response.content
    delimiter = b"--" + boundary.strip('"').encode()
    assert body.startswith(delimiter + b"\r\n") and body.endswith(delimiter + b"--\r\n")
    parts = []
    for chunk in body[len(delimiter) + 2 : -len(delimiter) - 6].split(b"\r\n" + delimiter + b"\r\n"):
        head, _, payload = chunk.partition(b"\r\n\r\n")
        headers = dict(line.decode().split(": ", 1) for line in head.split(b"\r\n"))
        parts.append(Part({name.lower(): value for name, value in headers.items()}, payload))
    return parts


async def store(client: httpx.AsyncClient, *blobs: bytes) -> None:
    body = b"".join(b"--b\r\nContent-Type: application/dicom\r\n\r\n" + b + b"\r\n" for b in blobs) + b"--b--"
    r = await client.post("/studies", content=body, headers={"Content-Type": "multipart/related; boundary=b"})
    assert r.status_code in (200, 202), r.text


def instance_path(ds: pydicom.Dataset) -> str:
    return f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"


def expected_frames(data: bytes) -> tuple[str, list[bytes]]:
    """(transfer syntax the frames go out in, each frame's bytes), from pydicom's reading."""
    ds = pydicom.dcmread(io.BytesIO(data))
    syntax = str(ds.file_meta.TransferSyntaxUID)
    count = int(ds.get("NumberOfFrames") or 1)
    if syntax not in UNCOMPRESSED:
        return syntax, list(generate_frames(ds.PixelData, number_of_frames=count))
    rows, columns, samples = ds.Rows, ds.Columns, ds.get("SamplesPerPixel", 1)
    bits = ds.BitsAllocated
    if bits == 1:
        flat = np.unpackbits(np.frombuffer(ds.PixelData, dtype=np.uint8), bitorder="little")
        per = rows * columns * samples
        frames = [np.packbits(flat[i * per : (i + 1) * per], bitorder="little").tobytes() for i in range(count)]
        return ExplicitVRLittleEndian, frames
    if syntax != ExplicitVRBigEndian:
        if ds.PhotometricInterpretation == "YBR_FULL_422":
            length = rows * columns * 2 * bits // 8
        else:
            length = rows * columns * samples * bits // 8
        if len(ds.PixelData) < count * length:
            raise ValueError("truncated pixel data")
        return ExplicitVRLittleEndian, [ds.PixelData[i * length : (i + 1) * length] for i in range(count)]
    # Big endian: pydicom's decoded values, written little endian in stored (planar) order.
    array = ds.pixel_array.reshape(count, rows, columns, samples)
    if ds.get("PlanarConfiguration", 0) == 1:
        array = array.transpose(0, 3, 1, 2)
    dtype = f"<{'i' if ds.PixelRepresentation else 'u'}{bits // 8}"
    return ExplicitVRLittleEndian, [frame.astype(dtype).tobytes() for frame in array]


def _image_files() -> list[Path]:
    found = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in pydicom_files_with_pixels():
            try:
                ds = pydicom.dcmread(path)
                if "PixelData" not in ds or "Rows" not in ds:
                    continue
                for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID"):
                    validate_uid(str(ds.get(keyword, "")))  # else STOW rejects it (0xA900)
                if ds.file_meta.get("MediaStorageSOPClassUID", ds.SOPClassUID) != ds.SOPClassUID:
                    continue
                expected_frames(path.read_bytes())
            except Exception:  # files pydicom itself cannot read frames of: not a reference
                continue
            found.append(path)
    return found


IMAGES = _image_files()


def read(path: Path) -> bytes:
    return path.read_bytes()


def test_the_bundled_files_cover_the_kinds_of_pixel_data() -> None:
    names = {path.name for path in IMAGES}
    for name in [
        "JPEG-lossy.dcm",  # JPEG extended
        "SC_rgb_jpeg_gdcm.dcm",  # JPEG lossless
        "SC_rgb_dcmtk_+eb+cr.dcm",  # JPEG baseline
        "MR_small_jpeg_ls_lossless.dcm",
        "JPEG2000.dcm",
        "MR_small_RLE.dcm",
        "examples_ybr_color.dcm",  # multi-frame JPEG
        "rtdose_rle.dcm",  # multi-frame RLE
        "rtdose.dcm",  # multi-frame native 32-bit
        "rtdose_expb.dcm",  # big endian multi-frame
        "MR_small_bigendian.dcm",
        "liver_1frame.dcm",  # 1-bit
        "SC_rgb_small_odd.dcm",
        "image_dfl.dcm",  # deflated
    ]:
        assert name in names, name


@pytest.mark.parametrize("path", IMAGES, ids=lambda p: str(p.relative_to(PYDICOM_TEST_FILES)))
async def test_every_frame_of_a_bundled_file(client: httpx.AsyncClient, path: Path) -> None:
    data = read(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        syntax, expected = expected_frames(data)
        ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    await store(client, data)
    numbers = ",".join(str(n) for n in range(1, len(expected) + 1))
    r = await client.get(f"{instance_path(ds)}/frames/{numbers}")
    assert r.status_code == 200, r.text
    media_type = OCTET if syntax == ExplicitVRLittleEndian else r.headers["content-type"].split('"')[1]
    assert r.headers["content-type"].startswith(f'multipart/related; type="{media_type}"; transfer-syntax={syntax}')
    assert int(r.headers["content-length"]) == len(r.content)
    parts = parse_parts(r)
    assert [p.payload for p in parts] == expected
    for n, part in enumerate(parts, 1):
        assert part.content_type == f"{media_type}; transfer-syntax={syntax}"
        assert part.headers["content-location"] == f"http://testserver/dicom-web{instance_path(ds)}/frames/{n}"


@pytest.fixture
async def multiframe(client: httpx.AsyncClient) -> tuple[str, list[bytes]]:
    data = (PYDICOM_TEST_FILES / "examples_ybr_color.dcm").read_bytes()
    await store(client, data)
    ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    return instance_path(ds), expected_frames(data)[1]


async def test_frames_in_the_order_asked(client: httpx.AsyncClient, multiframe: tuple[str, list[bytes]]) -> None:
    path, expected = multiframe
    r = await client.get(f"{path}/frames/30,2,17")
    assert [p.payload for p in parse_parts(r)] == [expected[29], expected[1], expected[16]]
    r = await client.get(f"{path}/frames/3%2C4")  # PS3.18: comma or %2C
    assert [p.payload for p in parse_parts(r)] == expected[2:4]


@pytest.mark.parametrize("frames", ["0", "1,,2", "a", "1.5", "-1", "2,2", "1;2", "%20"])
async def test_malformed_frame_list_is_400(client: httpx.AsyncClient, multiframe: Any, frames: str) -> None:
    r = await client.get(f"{multiframe[0]}/frames/{frames}")
    assert r.status_code == 400, r.text
    assert "frame" in r.text


async def test_frame_out_of_range_is_404_naming_the_range(client: httpx.AsyncClient, multiframe: Any) -> None:
    r = await client.get(f"{multiframe[0]}/frames/1,31")
    assert r.status_code == 404
    assert "1..30" in r.text and "31" in r.text


async def test_truncated_pixel_data_has_the_complete_frames_only(client: httpx.AsyncClient) -> None:
    ds = make_dataset(rows=4, columns=4, NumberOfFrames=3)
    ds.PixelData = np.arange(48, dtype="<u2").tobytes()
    data = part10_bytes(ds)[:-20]  # frame 3 is cut short
    await store(client, data)
    r = await client.get(f"{instance_path(ds)}/frames/1,2")
    expected = [np.arange(16, dtype="<u2").tobytes(), np.arange(16, 32, dtype="<u2").tobytes()]
    assert [p.payload for p in parse_parts(r)] == expected
    r = await client.get(f"{instance_path(ds)}/frames/3")
    assert r.status_code == 404 and "1..2" in r.text


async def test_instance_without_pixel_data_has_no_frames(client: httpx.AsyncClient) -> None:
    ds = make_dataset()
    del ds.PixelData
    await store(client, part10_bytes(ds))
    r = await client.get(f"{instance_path(ds)}/frames/1")
    assert r.status_code == 404
    assert "no pixel data" in r.text
    r = await client.get(f"{instance_path(ds)[:-3]}9.9/frames/1")
    assert r.status_code == 404


async def test_single_part_when_only_a_single_part_type_is_accepted(
    client: httpx.AsyncClient, multiframe: tuple[str, list[bytes]]
) -> None:
    path, expected = multiframe
    r = await client.get(f"{path}/frames/5", headers={"Accept": "image/jpeg"})
    assert r.status_code == 200
    assert r.headers["content-type"] == f"image/jpeg; transfer-syntax={pydicom.uid.JPEGBaseline8Bit}"
    assert r.content == expected[4]
    # Several frames cannot be one part: multipart after all (the media type's lenient matching).
    r = await client.get(f"{path}/frames/5,6", headers={"Accept": "image/jpeg"})
    assert r.headers["content-type"].startswith('multipart/related; type="image/jpeg"')
    # multipart accepted too: multipart, the default (PS3.18 §8.7.3.3).
    r = await client.get(f"{path}/frames/5", headers={"Accept": "image/jpeg, multipart/related; q=0.5"})
    assert r.headers["content-type"].startswith("multipart/related")


async def test_native_frame_single_part(client: httpx.AsyncClient) -> None:
    data = (PYDICOM_TEST_FILES / "rtdose.dcm").read_bytes()
    await store(client, data)
    ds = pydicom.dcmread(io.BytesIO(data))
    r = await client.get(f"{instance_path(ds)}/frames/15", headers={"Accept": OCTET})
    assert r.headers["content-type"] == f"{OCTET}; transfer-syntax={ExplicitVRLittleEndian}"
    assert np.array_equal(np.frombuffer(r.content, dtype="<u4").reshape(ds.Rows, ds.Columns), ds.pixel_array[14])


@pytest.mark.parametrize(
    "accept",
    [
        'multipart/related; type="application/octet-stream"',
        f'multipart/related; type="application/octet-stream"; transfer-syntax={ExplicitVRLittleEndian}',
        'multipart/related; type="application/octet-stream"; transfer-syntax=*',
        "multipart/related",
        "*/*",
    ],
)
async def test_native_frames_accept(client: httpx.AsyncClient, accept: str) -> None:
    ds = make_dataset(rows=3, columns=5, NumberOfFrames=2)
    ds.PixelData = np.arange(30, dtype="<u2").tobytes()
    await store(client, part10_bytes(ds))
    r = await client.get(f"{instance_path(ds)}/frames/2", headers={"Accept": accept})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith(f'multipart/related; type="{OCTET}"')
    assert [p.payload for p in parse_parts(r)] == [np.arange(15, 30, dtype="<u2").tobytes()]


@pytest.mark.parametrize(
    "accept",
    [
        'multipart/related; type="video/mp4"',
        f'multipart/related; type="image/jpeg"; transfer-syntax={pydicom.uid.JPEG2000Lossless}',
        "image/png",
    ],
)
async def test_what_cannot_be_produced_is_406(client: httpx.AsyncClient, multiframe: Any, accept: str) -> None:
    r = await client.get(f"{multiframe[0]}/frames/1", headers={"Accept": accept})
    assert r.status_code == 406, r.text


async def test_compressed_frames_asked_for_uncompressed_are_decoded(client: httpx.AsyncClient) -> None:
    data = (PYDICOM_TEST_FILES / "rtdose_rle.dcm").read_bytes()
    await store(client, data)
    ds = pydicom.dcmread(io.BytesIO(data))
    accept = 'multipart/related; type="application/octet-stream"'
    r = await client.get(f"{instance_path(ds)}/frames/2,15", headers={"Accept": accept})
    if r.status_code == 406:
        pytest.skip("no RLE decoder offered by the codec seam")
    expected_type = f'multipart/related; type="{OCTET}"; transfer-syntax={ExplicitVRLittleEndian}'
    assert r.headers["content-type"].startswith(expected_type)
    got = [np.frombuffer(p.payload, dtype="<u4").reshape(ds.Rows, ds.Columns) for p in parse_parts(r)]
    assert np.array_equal(got[0], ds.pixel_array[1]) and np.array_equal(got[1], ds.pixel_array[14])


async def test_the_accept_query_parameter_overrides_the_header(client: httpx.AsyncClient, multiframe: Any) -> None:
    r = await client.get(f"{multiframe[0]}/frames/1", params={"accept": "image/jpeg"}, headers={"Accept": "image/png"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("image/jpeg")


async def test_frames_are_ranged_reads(
    client: httpx.AsyncClient, kit: DicomWeb, multiframe: tuple[str, list[bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, expected = multiframe
    seen: list[tuple[int, int | None]] = []
    real: Callable[..., AsyncIterator[bytes]] = kit.blobs.get

    def recording(key: str, /, *, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        seen.append((start, end))
        return real(key, start=start, end=end)

    monkeypatch.setattr(kit.blobs, "get", recording)
    r = await client.get(f"{path}/frames/4,9")
    assert [p.payload for p in parse_parts(r)] == [expected[3], expected[8]]
    assert [end - start for start, end in seen if end is not None] == [len(expected[3]), len(expected[8])]
    assert len(seen) == 2


async def test_pixeldata_of_study_series_instance(client: httpx.AsyncClient) -> None:
    study, series = generate_uid(), generate_uid()
    native = make_dataset(study=study, series=series, rows=2, columns=3)
    without = make_dataset(study=study, series=series)
    del without.PixelData
    jpeg = pydicom.dcmread(PYDICOM_TEST_FILES / "examples_ybr_color.dcm")
    jpeg.StudyInstanceUID, jpeg.SeriesInstanceUID = study, generate_uid()
    encoded = io.BytesIO()
    jpeg.save_as(encoded)
    await store(client, part10_bytes(native), part10_bytes(without), encoded.getvalue())
    frames = expected_frames(encoded.getvalue())[1]
    base = f"http://testserver/dicom-web{instance_path(jpeg)}"

    r = await client.get(f"/studies/{study}/pixeldata")
    assert r.status_code == 200, r.text
    parts = parse_parts(r)
    assert [p.payload for p in parts] == [native.PixelData, *frames]
    assert parts[0].content_type == f"{OCTET}; transfer-syntax={ExplicitVRLittleEndian}"
    assert parts[0].headers["content-location"].endswith(f"{instance_path(native)}/bulkdata/7FE00010")
    assert parts[1].content_type == f"image/jpeg; transfer-syntax={pydicom.uid.JPEGBaseline8Bit}"
    assert [p.headers["content-location"] for p in parts[1:]] == [f"{base}/frames/{n}" for n in range(1, 31)]

    r = await client.get(f"/studies/{study}/series/{series}/pixeldata")
    assert [p.payload for p in parse_parts(r)] == [native.PixelData]
    r = await client.get(f"{instance_path(jpeg)}/pixeldata")
    assert [p.payload for p in parse_parts(r)] == frames
    assert r.headers["content-type"].startswith('multipart/related; type="image/jpeg"')
    # A media type an instance of the scope cannot be sent in: 406 naming the instance.
    r = await client.get(f"/studies/{study}/pixeldata", headers={"Accept": 'multipart/related; type="video/mp4"'})
    assert r.status_code == 406 and native.SOPInstanceUID in r.text
    r = await client.get(f"{instance_path(without)}/pixeldata")
    assert r.status_code == 404
    r = await client.get(f"/studies/{generate_uid()}/pixeldata")
    assert r.status_code == 404
