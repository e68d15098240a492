"""WADO-RS retrieve in a negotiated transfer syntax (PS3.18 §8.7.3), on every adapter.

Each part's pixels are decoded with pydicom and compared with pydicom's decoding of what was
stored. Tests that need the ``codecs`` extra skip without it, except under ``CI=true``.
"""

from __future__ import annotations

import email.parser
import email.policy
import io
from pathlib import Path

import httpx
import numpy as np
import pydicom
import pydicom.data
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.pixels import pixel_array
from pydicom.uid import (
    MPEG2MPML,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)

from dicomweb_kit.codecs.transcode import transcode
from dicomweb_kit.testing import make_dataset, part10_bytes

pytestmark = pytest.mark.anyio

TEST_FILES = Path(pydicom.data.__file__).parent / "test_files"
DICOM = 'multipart/related; type="application/dicom"'


def parts(response: httpx.Response) -> list[tuple[str | None, bytes]]:
    """(transfer-syntax parameter, payload) of each part of a multipart/related response."""
    assert response.status_code == 200, response.text
    raw = b"Content-Type: " + response.headers["content-type"].encode() + b"\r\n\r\n" + response.content
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(raw)
    out = []
    for part in message.iter_parts():
        assert part.get_content_type() == "application/dicom"
        out.append((part.get_param("transfer-syntax"), part.get_payload(decode=True)))
    return out


def read(data: bytes) -> pydicom.Dataset:
    return pydicom.dcmread(io.BytesIO(data))


async def store(client: httpx.AsyncClient, *blobs: bytes) -> None:
    body = b"".join(b"--b\r\nContent-Type: application/dicom\r\n\r\n" + b + b"\r\n" for b in blobs) + b"--b--"
    r = await client.post("/studies", content=body, headers={"Content-Type": "multipart/related; boundary=b"})
    assert r.status_code == 200, r.text


def instance_url(ds: Dataset) -> str:
    return f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"


def ct(study: str | None = None, *, size: int = 64, **attributes: object) -> Dataset:
    """A 16-bit (12 stored) CT-like instance with a smooth, non-trivial image."""
    ds = make_dataset(study=study, rows=size, columns=size, **attributes)
    ramp = np.add.outer(np.arange(size), np.arange(size)) * 30 % 4096
    ds.PixelData = ramp.astype("<u2").tobytes()
    return ds


def mono8(study: str | None = None) -> Dataset:
    ds = make_dataset(study=study, rows=64, columns=64, BitsAllocated=8, BitsStored=8, HighBit=7)
    ds.PixelData = (np.add.outer(np.arange(64), np.arange(64)) * 2).astype(np.uint8).tobytes()
    return ds


COMPRESSED = [
    "MR_small_jp2klossless.dcm",  # JPEG 2000 lossless
    "MR_small_RLE.dcm",  # RLE
    "MR_small_jpeg_ls_lossless.dcm",  # JPEG-LS lossless
    "SC_rgb_jpeg_gdcm.dcm",  # JPEG lossless SV1, RGB
    "SC_rgb_jpeg_dcmtk.dcm",  # JPEG baseline, YBR_FULL_422
    "JPEG2000.dcm",  # JPEG 2000 (lossy allowed)
]


@pytest.mark.parametrize("name", COMPRESSED)
async def test_compressed_instances_go_out_as_explicit_vr_le_by_default(
    client: httpx.AsyncClient, name: str, codecs: None
) -> None:
    data = (TEST_FILES / name).read_bytes()
    original = read(data)
    await store(client, data)
    url = instance_url(original)
    # PS3.18 §8.7.3.4 and Table 8.7.3-2: no transfer syntax named → Explicit VR Little Endian.
    for headers in ({"Accept": DICOM}, {"Accept": "application/dicom"}, {}):
        r = await client.get(url, headers=headers)
        [(syntax, payload)] = parts(r)
        assert syntax == ExplicitVRLittleEndian
        assert "content-length" not in r.headers  # transcoded: not known up front
        got = read(payload)
        assert got.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        assert got.SOPInstanceUID == original.SOPInstanceUID
        assert np.array_equal(got.pixel_array, original.pixel_array)
    # `transfer-syntax=*`: as stored, byte for byte.
    r = await client.get(url, headers={"Accept": f"{DICOM}; transfer-syntax=*"})
    assert parts(r) == [(str(original.file_meta.TransferSyntaxUID), data)]


@pytest.mark.parametrize("syntax", [RLELossless, JPEG2000Lossless, JPEGLSLossless, DeflatedExplicitVRLittleEndian])
async def test_native_instances_in_a_lossless_syntax(client: httpx.AsyncClient, syntax: str, codecs: None) -> None:
    ds = ct()
    await store(client, part10_bytes(ds))
    r = await client.get(instance_url(ds), headers={"Accept": f"{DICOM}; transfer-syntax={syntax}"})
    assert f"transfer-syntax={syntax};" in r.headers["content-type"]
    [(part_syntax, payload)] = parts(r)
    got = read(payload)
    assert part_syntax == syntax == got.file_meta.TransferSyntaxUID
    assert np.array_equal(got.pixel_array, ds.pixel_array)
    # The same through the `accept` query parameter (PS3.18 §8.3.3.1), which overrides the header.
    r = await client.get(
        instance_url(ds), params={"accept": f"{DICOM}; transfer-syntax={syntax}"}, headers={"Accept": DICOM}
    )
    assert parts(r)[0][0] == syntax


async def test_lossy_jpeg_only_when_named(client: httpx.AsyncClient, codecs: None) -> None:
    ds = mono8()
    await store(client, part10_bytes(ds))
    for accept in (DICOM, f"{DICOM}; transfer-syntax=*", "*/*"):
        [(syntax, _)] = parts(await client.get(instance_url(ds), headers={"Accept": accept}))
        assert syntax == ExplicitVRLittleEndian  # never lossy unless asked
    r = await client.get(instance_url(ds), headers={"Accept": f"{DICOM}; transfer-syntax={JPEGBaseline8Bit}"})
    [(syntax, payload)] = parts(r)
    got = read(payload)
    assert syntax == JPEGBaseline8Bit and got.LossyImageCompression == "01"
    error = np.abs(got.pixel_array.astype(int) - ds.pixel_array.astype(int))
    assert error.mean() < 2 and error.max() < 16


async def test_q_values_fall_back_to_what_the_pixels_allow(client: httpx.AsyncClient) -> None:
    ds = ct()  # 16-bit: JPEG Baseline is out of reach
    await store(client, part10_bytes(ds))
    accept = f"{DICOM}; transfer-syntax={JPEGBaseline8Bit}, {DICOM}; transfer-syntax={RLELossless}; q=0.5"
    r = await client.get(instance_url(ds), headers={"Accept": accept})
    [(syntax, payload)] = parts(r)
    assert syntax == RLELossless
    assert np.array_equal(read(payload).pixel_array, ds.pixel_array)
    # The preferred syntax wins when it can be produced.
    accept = f"{DICOM}; transfer-syntax={RLELossless}; q=0.4, {DICOM}; transfer-syntax={ExplicitVRLittleEndian}"
    assert parts(await client.get(instance_url(ds), headers={"Accept": accept}))[0][0] == ExplicitVRLittleEndian


async def test_406_says_what_cannot_be_produced_and_what_can(client: httpx.AsyncClient) -> None:
    ds = ct()
    await store(client, part10_bytes(ds))
    r = await client.get(instance_url(ds), headers={"Accept": f"{DICOM}; transfer-syntax={JPEGBaseline8Bit}"})
    assert r.status_code == 406
    assert "JPEG Baseline" in r.text and "8-bit" in r.text and ds.SOPInstanceUID in r.text
    assert RLELossless in r.text and ExplicitVRLittleEndian in r.text  # what can be produced
    r = await client.get(instance_url(ds), headers={"Accept": f"{DICOM}; transfer-syntax={MPEG2MPML}"})
    assert r.status_code == 406 and ExplicitVRLittleEndian in r.text
    r = await client.get(instance_url(ds), headers={"Accept": f"{DICOM}; transfer-syntax=1.2.3.4"})
    assert r.status_code == 406


async def test_a_mixed_study_is_decided_instance_by_instance(client: httpx.AsyncClient, codecs: None) -> None:
    study = generate_uid()
    native = ct(study)
    j2k = read(transcode(part10_bytes(ct(study)), JPEG2000Lossless))
    small8 = mono8(study)
    no_pixels = make_dataset(study=study, Modality="SR")
    del no_pixels.PixelData
    for name in ("Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation"):
        delattr(no_pixels, name)
    datasets = [native, j2k, small8, no_pixels]
    await store(client, *(part10_bytes(ds) for ds in datasets))
    by_uid = {ds.SOPInstanceUID: ds for ds in datasets}

    async def fetch(accept: str) -> dict[str, tuple[str | None, Dataset]]:
        got = parts(await client.get(f"/studies/{study}", headers={"Accept": accept}))
        return {read(payload).SOPInstanceUID: (syntax, read(payload)) for syntax, payload in got}

    # Default: every part Explicit VR Little Endian, pixels unchanged.
    for uid, (syntax, got) in (await fetch(DICOM)).items():
        assert syntax == ExplicitVRLittleEndian
        if "PixelData" in by_uid[uid]:
            assert np.array_equal(got.pixel_array, by_uid[uid].pixel_array)
    # `*`: each as stored.
    stored = {uid: syntax for uid, (syntax, _) in (await fetch(f"{DICOM}; transfer-syntax=*")).items()}
    assert stored[j2k.SOPInstanceUID] == JPEG2000Lossless and stored[native.SOPInstanceUID] == ExplicitVRLittleEndian
    # One lossless syntax for all, the instance without pixels included (only its label changes).
    for uid, (syntax, got) in (await fetch(f"{DICOM}; transfer-syntax={RLELossless}")).items():
        assert syntax == RLELossless == got.file_meta.TransferSyntaxUID
        if "PixelData" in by_uid[uid]:
            assert np.array_equal(got.pixel_array, by_uid[uid].pixel_array)
        else:
            assert got.Modality == "SR"
    # JPEG Baseline fits the 8-bit instance but not the 16-bit ones: the whole study is a 406.
    r = await client.get(f"/studies/{study}", headers={"Accept": f"{DICOM}; transfer-syntax={JPEGBaseline8Bit}"})
    assert r.status_code == 406 and "JPEG Baseline" in r.text


async def test_an_unreadable_codestream_goes_out_as_stored(client: httpx.AsyncClient) -> None:
    ds = ct(size=16)
    ds.file_meta.TransferSyntaxUID = JPEG2000Lossless
    ds.PixelData = encapsulate([b"\xff\x4f\xff\x51 not really a codestream"])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    data = part10_bytes(ds)
    await store(client, data)
    r = await client.get(instance_url(ds), headers={"Accept": DICOM})
    # PS3.18 §8.7.8.2 Note 1: the part says which syntax it is in; the response is not cut off.
    assert parts(r) == [(JPEG2000Lossless, data)]


async def test_study_and_series_retrieve_of_compressed_data(client: httpx.AsyncClient, codecs: None) -> None:
    data = (TEST_FILES / "MR_small_RLE.dcm").read_bytes()
    original = read(data)
    await store(client, data)
    study = f"/studies/{original.StudyInstanceUID}"
    for url in (study, f"{study}/series/{original.SeriesInstanceUID}"):
        r = await client.get(url, headers={"Accept": f"{DICOM}; transfer-syntax={JPEG2000Lossless}"})
        [(syntax, payload)] = parts(r)
        assert syntax == JPEG2000Lossless
        assert np.array_equal(read(payload).pixel_array, original.pixel_array)


# --------------------------------------------------------------------------------------------
# Frames (PS3.18 §10.4.1.1.6): converted by pixel_codecs.convert_frame
# --------------------------------------------------------------------------------------------


def frame_parts(response: httpx.Response) -> list[tuple[str, str | None, bytes]]:
    """(media type, transfer-syntax, payload) of each part of a frames response."""
    assert response.status_code == 200, response.text
    raw = b"Content-Type: " + response.headers["content-type"].encode() + b"\r\n\r\n" + response.content
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(raw)
    return [
        (part.get_content_type(), part.get_param("transfer-syntax"), part.get_payload(decode=True))
        for part in message.iter_parts()
    ]


def expected_native(ds: Dataset, index: int) -> bytes:
    """Frame ``index`` as pydicom decodes it, as stored (no YBR to RGB), in the stored planar layout."""
    array = pixel_array(io.BytesIO(part10_bytes(ds)), index=index, as_rgb=False)
    if array.ndim == 3 and ds.get("PlanarConfiguration", 0) == 1:
        array = array.transpose(2, 0, 1)
    return np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes()


def decode_part(payload: bytes, like: Dataset, syntax: str, photometric: str | None = None) -> np.ndarray:
    """One encoded frame decoded by pydicom, in a copy of ``like``'s pixel description."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    for keyword in ("Rows", "Columns", "SamplesPerPixel", "BitsAllocated", "BitsStored", "HighBit"):
        setattr(ds, keyword, like.get(keyword))
    ds.PixelRepresentation = like.get("PixelRepresentation", 0)
    ds.PhotometricInterpretation = photometric or like.PhotometricInterpretation
    if ds.SamplesPerPixel > 1:
        ds.PlanarConfiguration = 0
    ds.PixelData = encapsulate([payload])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    return ds.pixel_array


OCTET = 'multipart/related; type="application/octet-stream"'


@pytest.mark.parametrize(
    ("name", "frame"),
    [
        ("MR_small_jp2klossless.dcm", 1),
        ("MR_small_RLE.dcm", 1),
        ("MR_small_jpeg_ls_lossless.dcm", 1),
        ("SC_rgb_rle_2frame.dcm", 2),
        ("SC_rgb_jpeg_gdcm.dcm", 1),  # JPEG Lossless SV1, RGB
    ],
)
async def test_compressed_frames_as_native(client: httpx.AsyncClient, name: str, frame: int, codecs: None) -> None:
    data = (TEST_FILES / name).read_bytes()
    ds = read(data)
    await store(client, data)
    url = f"{instance_url(ds)}/frames/{frame}"
    for accept in (f"{OCTET}; transfer-syntax={ExplicitVRLittleEndian}", OCTET):
        [(media_type, syntax, payload)] = frame_parts(await client.get(url, headers={"Accept": accept}))
        assert (media_type, syntax) == ("application/octet-stream", ExplicitVRLittleEndian)
        assert payload == expected_native(ds, frame - 1)


@pytest.mark.parametrize(
    ("media_type", "syntax"),
    [
        ("image/dicom-rle", RLELossless),
        ("image/jp2", JPEG2000Lossless),
        ("image/jls", JPEGLSLossless),
        ("image/jpeg", "1.2.840.10008.1.2.4.70"),  # JPEG Lossless SV1, image/jpeg's default
    ],
)
async def test_native_frames_in_a_lossless_syntax(
    client: httpx.AsyncClient, media_type: str, syntax: str, codecs: None
) -> None:
    ds = ct()
    await store(client, part10_bytes(ds))
    # Named, and as the media type's default (PS3.18 Table 8.7.3-5).
    named = f'multipart/related; type="{media_type}"; transfer-syntax={syntax}'
    for accept in (named, f"multipart/related; type={media_type}"):
        r = await client.get(f"{instance_url(ds)}/frames/1", headers={"Accept": accept})
        [(part_type, part_syntax, payload)] = frame_parts(r)
        assert (part_type, part_syntax) == (media_type, syntax)
        assert np.array_equal(decode_part(payload, ds, syntax), ds.pixel_array)


async def test_native_frame_as_lossy_jpeg(client: httpx.AsyncClient, codecs: None) -> None:
    ds = mono8()
    await store(client, part10_bytes(ds))
    accept = f'multipart/related; type="image/jpeg"; transfer-syntax={JPEGBaseline8Bit}'
    [(_, syntax, payload)] = frame_parts(await client.get(f"{instance_url(ds)}/frames/1", headers={"Accept": accept}))
    assert syntax == JPEGBaseline8Bit
    error = np.abs(decode_part(payload, ds, syntax).astype(int) - ds.pixel_array.astype(int))
    assert error.mean() < 2 and error.max() < 16
    # 16-bit data cannot be JPEG Baseline: 406, never 500.
    wide = ct()
    await store(client, part10_bytes(wide))
    r = await client.get(f"{instance_url(wide)}/frames/1", headers={"Accept": accept})
    assert r.status_code == 406
