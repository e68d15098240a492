"""STOW-RS of metadata + bulk data (PS3.18 §10.5.1.2) in the service: what is stored, byte for byte."""

from __future__ import annotations

import io
import struct
from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.encaps import generate_frames, parse_basic_offsets
from pydicom.uid import generate_uid

from dicomweb_kit import DicomWeb, ResourceKey, Settings
from dicomweb_kit.codecs import dicom_json
from dicomweb_kit.codecs.dicom_xml import json_dict_to_xml
from dicomweb_kit.errors import MalformedMultipart
from dicomweb_kit.services.stow import StoreOutcome, store_instances
from dicomweb_kit.testing import make_dataset

pytestmark = pytest.mark.anyio

JSON_TYPE = 'multipart/related; type="application/dicom+json"; boundary=XbX'
XML_TYPE = 'multipart/related; type="application/dicom+xml"; boundary=XbX'
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
ENCAPSULATED_PDF = "1.2.840.10008.5.1.4.1.1.104.1"
# A minimal one-page PDF (odd length on purpose: the value gets a padding byte).
PDF = (
    b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj 2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj "
    b"3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 72 72]>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"
)


def body(*parts: tuple[dict[str, str], bytes], boundary: str = "XbX") -> bytes:
    out = b""
    for headers, payload in parts:
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        out += f"--{boundary}\r\n{head}\r\n".encode() + payload + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


async def chunked(data: bytes, size: int = 1000) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def json_part(*datasets: dict[str, Any]) -> tuple[dict[str, str], bytes]:
    return {"Content-Type": "application/dicom+json"}, dicom_json.encode(list(datasets))


def bulk(location: str, data: bytes, media_type: str = "application/octet-stream") -> tuple[dict[str, str], bytes]:
    return {"Content-Type": media_type, "Content-Location": location}, data


def metadata_of(ds: pydicom.Dataset, **bulk_uris: str) -> dict[str, Any]:
    """The data set as DICOM JSON, with Pixel Data (and any other keyword given) as a BulkDataURI."""
    out = dicom_json.dataset_to_json_dict(ds)
    out["7FE00010"]["vr"] = "OW"  # make_dataset leaves pydicom's "OB or OW"
    for keyword, uri in bulk_uris.items():
        tag = pydicom.datadict.tag_for_keyword(keyword)
        assert tag is not None
        out[f"{tag:08X}"] = {"vr": out.get(f"{tag:08X}", {}).get("vr", "OB"), "BulkDataURI": uri}
    return out


def image_metadata(sop_class: str = SECONDARY_CAPTURE, **extra: Any) -> dict[str, Any]:
    """A Secondary Capture data set without any Image Pixel attribute: the bulk data supplies them."""
    ds = pydicom.Dataset()
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientName = "Photo^Jane"
    ds.Modality = "OT"
    for keyword, value in extra.items():
        setattr(ds, keyword, value)
    return dicom_json.dataset_to_json_dict(ds)


async def stow(kit: DicomWeb, data: bytes, content_type: str = JSON_TYPE, study: str | None = None) -> StoreOutcome:
    return await store_instances(kit, chunked(data), content_type, study=ResourceKey(study) if study else None)


async def stored_file(kit: DicomWeb, metadata: dict[str, Any]) -> pydicom.FileDataset:
    uid = lambda tag: metadata[tag]["Value"][0]  # noqa: E731
    record = await kit.index.get(ResourceKey(uid("0020000D"), uid("0020000E"), uid("00080018")))
    assert record is not None
    data = b"".join([chunk async for chunk in kit.blobs.get(record.blob_key)])
    return pydicom.dcmread(io.BytesIO(data))


def grey(rows: int = 48, columns: int = 64, seed: int = 0) -> np.ndarray:
    return ((np.arange(rows * columns).reshape(rows, columns) * 7 + seed * 31) % 251).astype(np.uint8)


def encoded(array: np.ndarray, fmt: str, **options: Any) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format=fmt, **options)
    return out.getvalue()


async def test_json_metadata_with_native_pixel_data(kit: DicomWeb) -> None:
    ds = make_dataset(rows=8, columns=8)
    meta = metadata_of(ds, PixelData="http://client/px/1")
    outcome = await stow(kit, body(json_part(meta), bulk("http://client/px/1", ds.PixelData)))
    assert outcome.http_status == 200, outcome.failed and outcome.failed[0].message
    assert outcome.stored[0].warning_reason is None  # nothing added: native is Explicit VR LE by definition
    stored = await stored_file(kit, meta)
    assert stored.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert stored.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert stored.PixelData == ds.PixelData
    assert np.array_equal(stored.pixel_array, ds.pixel_array)
    assert stored.PatientName == ds.PatientName


async def test_xml_metadata_after_its_bulk_data(kit: DicomWeb) -> None:
    ds = make_dataset(rows=8, columns=8)
    meta = metadata_of(ds, PixelData="px")
    data = body(bulk("px", ds.PixelData), ({"Content-Type": "application/dicom+xml"}, json_dict_to_xml(meta)))
    outcome = await stow(kit, data, XML_TYPE)
    assert outcome.http_status == 200
    assert (await stored_file(kit, meta)).PixelData == ds.PixelData


async def test_several_datasets_share_one_json_part(kit: DicomWeb) -> None:
    a, b = make_dataset(), make_dataset()
    meta_a, meta_b = metadata_of(a, PixelData="a"), metadata_of(b, PixelData="b")
    outcome = await stow(kit, body(json_part(meta_a, meta_b), bulk("b", b.PixelData), bulk("a", a.PixelData)))
    assert [s.record.instance_uid for s in outcome.stored] == [a.SOPInstanceUID, b.SOPInstanceUID]
    assert (await stored_file(kit, meta_b)).PixelData == b.PixelData


async def test_inline_binary_needs_no_bulk_part(kit: DicomWeb) -> None:
    ds = make_dataset()
    meta = metadata_of(ds)  # Pixel Data as InlineBinary
    assert "InlineBinary" in meta["7FE00010"]
    outcome = await stow(kit, body(json_part(meta)))
    assert outcome.http_status == 200
    assert (await stored_file(kit, meta)).PixelData == ds.PixelData


async def test_bulk_parts_over_the_memory_budget_spill_to_a_file(make_kit: Callable[..., DicomWeb]) -> None:
    datasets = [make_dataset(rows=64, columns=64) for _ in range(3)]
    metas = [metadata_of(ds, PixelData=f"px{i}") for i, ds in enumerate(datasets)]
    parts = [bulk(f"px{i}", ds.PixelData) for i, ds in enumerate(datasets)]
    async with make_kit(Settings(stow_bulk_memory_bytes=10_000)) as kit:  # one part fits, not three
        outcome = await stow(kit, body(*parts, json_part(*metas)))
        assert outcome.http_status == 200
        for ds, meta in zip(datasets, metas, strict=True):
            assert (await stored_file(kit, meta)).PixelData == ds.PixelData


async def test_jpeg_baseline_is_encapsulated_as_sent(kit: DicomWeb) -> None:
    jpeg = encoded(grey(), "JPEG", quality=85)
    meta = image_metadata()
    meta["7FE00010"] = {"vr": "OB", "BulkDataURI": "jpeg"}
    outcome = await stow(kit, body(json_part(meta), bulk("jpeg", jpeg, "image/jpeg")))
    # We named the transfer syntax and wrote Rows, Columns...: Warning Reason 0xB000.
    assert outcome.http_status == 202
    assert outcome.stored[0].warning_reason == 0xB000
    stored = await stored_file(kit, meta)
    assert stored.file_meta.TransferSyntaxUID == pydicom.uid.JPEGBaseline8Bit  # SOF0, not Table 8.7.3-5's default
    assert (stored.Rows, stored.Columns, stored.SamplesPerPixel, stored.BitsStored) == (48, 64, 1, 8)
    assert stored.PhotometricInterpretation == "MONOCHROME2"
    [frame] = generate_frames(stored.PixelData, number_of_frames=1)
    assert frame.rstrip(b"\0") == jpeg.rstrip(b"\0")  # one fragment, the JPEG itself
    assert np.array_equal(stored.pixel_array, np.asarray(Image.open(io.BytesIO(jpeg))))


async def test_jpeg_frames_each_get_a_fragment_and_an_offset(kit: DicomWeb) -> None:
    frames = [encoded(grey(seed=i), "JPEG", quality=90) for i in range(3)]
    meta = image_metadata("1.2.840.10008.5.1.4.1.1.7.2")  # Multi-frame Grayscale Byte SC
    meta["7FE00010"] = {"vr": "OB", "BulkDataURI": "http://client/pixels"}
    parts = [bulk(f"http://client/pixels/frames/{i + 1}", f, "image/jpeg") for i, f in enumerate(frames)]
    outcome = await stow(kit, body(json_part(meta), *parts))
    assert outcome.stored, outcome.failed[0].message
    stored = await stored_file(kit, meta)
    assert stored.NumberOfFrames == 3
    offsets = parse_basic_offsets(stored.PixelData)
    lengths = [len(f) + len(f) % 2 for f in frames]
    assert offsets == [0, 8 + lengths[0], 16 + lengths[0] + lengths[1]]
    for i, frame in enumerate(frames):
        expected = np.asarray(Image.open(io.BytesIO(frame)))
        assert np.array_equal(stored.pixel_array[i], expected)
    record = outcome.stored[0].record
    assert record.pixel_layout is not None  # the frame index was built on ingest, as for Part 10


async def test_transfer_syntax_parameter_is_honoured_and_checked(kit: DicomWeb) -> None:
    jpeg = encoded(grey(), "JPEG")
    meta, wrong = image_metadata(), image_metadata()
    meta["7FE00010"] = {"vr": "OB", "BulkDataURI": "a"}
    wrong["7FE00010"] = {"vr": "OB", "BulkDataURI": "b"}
    outcome = await stow(
        kit,
        body(
            json_part(meta, wrong),
            bulk("a", jpeg, "image/jpeg; transfer-syntax=1.2.840.10008.1.2.4.50"),
            bulk("b", jpeg, "image/jpeg; transfer-syntax=1.2.840.10008.1.2.4.90"),
        ),
    )
    assert (await stored_file(kit, meta)).file_meta.TransferSyntaxUID == pydicom.uid.JPEGBaseline8Bit
    [failed] = outcome.failed
    assert failed.sop_instance_uid == wrong["00080018"]["Value"][0]
    assert failed.failure_reason == 0xC000
    assert "Table 8.7.3-5" in failed.message


async def test_png_becomes_native_pixels(kit: DicomWeb) -> None:
    rgb = np.dstack([grey(), grey(seed=1), grey(seed=2)])
    meta = image_metadata()
    meta["7FE00010"] = {"vr": "OB", "BulkDataURI": "cid:photo@client"}
    part = ({"Content-Type": "image/png", "Content-ID": "<photo@client>"}, encoded(rgb, "PNG"))
    outcome = await stow(kit, body(json_part(meta), part))
    assert outcome.stored[0].warning_reason == 0xB000
    stored = await stored_file(kit, meta)
    assert stored.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert (stored.PhotometricInterpretation, stored.SamplesPerPixel, stored.PlanarConfiguration) == ("RGB", 3, 0)
    assert np.array_equal(stored.pixel_array, rgb)


async def test_pdf_becomes_an_encapsulated_pdf(kit: DicomWeb) -> None:
    meta = image_metadata(ENCAPSULATED_PDF, Modality="DOC")
    meta["00420011"] = {"vr": "OB", "BulkDataURI": "report.pdf"}
    outcome = await stow(kit, body(bulk("report.pdf", PDF, "application/pdf"), json_part(meta)))
    assert outcome.stored[0].warning_reason == 0xB000  # MIME Type of Encapsulated Document was added
    stored = await stored_file(kit, meta)
    assert stored.MIMETypeOfEncapsulatedDocument == "application/pdf"
    assert stored.EncapsulatedDocument == PDF + b"\0"


async def test_a_bulk_data_uri_naming_no_part_fails_that_instance_only(kit: DicomWeb) -> None:
    good, bad = make_dataset(), make_dataset()
    meta_good, meta_bad = metadata_of(good, PixelData="good"), metadata_of(bad, PixelData="missing")
    outcome = await stow(kit, body(json_part(meta_good, meta_bad), bulk("good", good.PixelData)))
    assert outcome.http_status == 202
    [failed] = outcome.failed
    assert (failed.failure_reason, failed.sop_instance_uid) == (0xC000, bad.SOPInstanceUID)
    assert "'missing'" in failed.message and "(7FE0,0010)" in failed.message
    assert [r.instance_uid async for r in kit.index.records(ResourceKey())] == [good.SOPInstanceUID]


@pytest.mark.parametrize(("tag", "reason"), [("00080018", "SOPInstanceUID is missing"), ("00080016", "SOPClassUID")])
async def test_missing_sop_uids_are_a900(kit: DicomWeb, tag: str, reason: str) -> None:
    ds = make_dataset()
    meta = metadata_of(ds, PixelData="px")
    del meta[tag]
    outcome = await stow(kit, body(json_part(meta), bulk("px", ds.PixelData)))
    assert outcome.http_status == 409
    assert outcome.failed[0].failure_reason == 0xA900
    assert reason in outcome.failed[0].message


async def test_study_mismatch_is_c409(kit: DicomWeb) -> None:
    target = generate_uid()
    inside, outside = make_dataset(study=target), make_dataset()
    meta_in, meta_out = metadata_of(inside, PixelData="a"), metadata_of(outside, PixelData="b")
    outcome = await stow(
        kit, body(json_part(meta_in, meta_out), bulk("a", inside.PixelData), bulk("b", outside.PixelData)), study=target
    )
    assert [s.record.instance_uid for s in outcome.stored] == [inside.SOPInstanceUID]
    assert outcome.failed[0].failure_reason == 0xC409
    assert [key async for key in kit.blobs.iter_keys()] == [outcome.stored[0].record.blob_key]


async def test_pixel_data_of_the_wrong_length_fails(kit: DicomWeb) -> None:
    ds = make_dataset(rows=8, columns=8)
    meta = metadata_of(ds, PixelData="px")
    outcome = await stow(kit, body(json_part(meta), bulk("px", ds.PixelData[:-8])))
    assert outcome.failed[0].failure_reason == 0xC000
    assert "120 bytes" in outcome.failed[0].message and "128" in outcome.failed[0].message


async def test_jpeg_contradicting_rows_fails(kit: DicomWeb) -> None:
    meta = image_metadata(Rows=100)
    meta["7FE00010"] = {"vr": "OB", "BulkDataURI": "jpeg"}
    outcome = await stow(kit, body(json_part(meta), bulk("jpeg", encoded(grey(), "JPEG"), "image/jpeg")))
    assert "Rows 100 in the metadata differs from the image's 48" in outcome.failed[0].message


async def test_a_number_sent_as_bulk_data_is_read_as_its_vr(kit: DicomWeb) -> None:
    ds = make_dataset()
    meta = metadata_of(ds)
    meta["00181310"] = {"vr": "US", "BulkDataURI": "matrix"}  # Acquisition Matrix
    outcome = await stow(kit, body(json_part(meta), bulk("matrix", struct.pack("<4H", 0, 256, 256, 0))))
    assert outcome.http_status == 200
    assert (await stored_file(kit, meta)).AcquisitionMatrix == [0, 256, 256, 0]


async def test_malformed_metadata_fails_without_taking_the_others_down(kit: DicomWeb) -> None:
    ds = make_dataset()
    data = body(({"Content-Type": "application/dicom+json"}, b"[{not json"), json_part(metadata_of(ds, PixelData="p")),
                bulk("p", ds.PixelData))  # fmt: skip
    outcome = await stow(kit, data)
    assert outcome.http_status == 202
    assert outcome.failed[0].failure_reason == 0xC000 and "malformed JSON" in outcome.failed[0].message


async def test_duplicates_follow_the_policy(make_kit: Callable[..., DicomWeb]) -> None:
    ds = make_dataset()
    data = body(json_part(metadata_of(ds, PixelData="p")), bulk("p", ds.PixelData))
    async with make_kit(Settings(on_duplicate="reject")) as kit:
        assert (await stow(kit, data)).http_status == 200
        again = await stow(kit, data)
    assert again.http_status == 409 and again.failed[0].failure_reason == 0x0111


async def test_mp4_becomes_a_video_instance(kit: DicomWeb) -> None:
    av = pytest.importorskip("av")
    video = io.BytesIO()
    with av.open(video, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(5):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), i * 40, np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    mp4 = video.getvalue()
    meta = image_metadata(
        "1.2.840.10008.5.1.4.1.1.77.1.4.1", Rows=48, Columns=64, NumberOfFrames=5, SamplesPerPixel=3,
        PhotometricInterpretation="YBR_PARTIAL_420", BitsAllocated=8, BitsStored=8, HighBit=7, PixelRepresentation=0,
        PlanarConfiguration=0,
    )  # fmt: skip
    meta["7FE00010"] = {"vr": "OB", "BulkDataURI": "clip.mp4"}
    outcome = await stow(kit, body(json_part(meta), bulk("clip.mp4", mp4, "video/mp4")))
    assert outcome.stored, outcome.failed and outcome.failed[0].message
    stored = await stored_file(kit, meta)
    assert stored.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.102"  # Table 8.7.3-5's video/mp4 default
    assert parse_basic_offsets(stored.PixelData) == []  # video frames are not fragments: no offsets
    [fragment] = generate_frames(stored.PixelData, number_of_frames=1)
    assert fragment[: len(mp4)] == mp4


async def test_a_body_that_breaks_off_stores_nothing(kit: DicomWeb) -> None:
    ds = make_dataset()
    data = body(json_part(metadata_of(ds, PixelData="p")), bulk("p", ds.PixelData))
    with pytest.raises(MalformedMultipart):
        await stow(kit, data[:-40])
    assert [key async for key in kit.blobs.iter_keys()] == []


async def test_an_instance_over_max_part_bytes_is_a700(make_kit: Callable[..., DicomWeb]) -> None:
    ds = make_dataset(rows=64, columns=64)
    async with make_kit(Settings(max_part_bytes=4096)) as kit:
        outcome = await stow(kit, body(json_part(metadata_of(ds, PixelData="p")), bulk("p", ds.PixelData)))
    assert outcome.failed[0].failure_reason == 0xA700


async def test_the_before_store_hook_sees_and_coerces_them(make_kit: Callable[..., DicomWeb]) -> None:
    from dicomweb_kit.hooks import Coerce, IncomingInstance

    seen: list[str] = []

    async def hook(incoming: IncomingInstance) -> Coerce:
        seen.append(str(incoming.dataset.file_meta.TransferSyntaxUID))
        return Coerce({"IssuerOfPatientID": "HOSPITAL"})

    jpeg = encoded(grey(), "JPEG")
    meta = image_metadata()
    meta["7FE00010"] = {"vr": "OB", "BulkDataURI": "jpeg"}
    kit = make_kit()
    kit.before_store = hook
    async with kit:
        outcome = await stow(kit, body(json_part(meta), bulk("jpeg", jpeg, "image/jpeg")))
        assert outcome.stored[0].warning_reason == 0xB000
        stored = await stored_file(kit, meta)
    assert seen == [pydicom.uid.JPEGBaseline8Bit]
    assert stored.IssuerOfPatientID == "HOSPITAL"
    assert np.array_equal(stored.pixel_array, np.asarray(Image.open(io.BytesIO(jpeg))))


async def test_metadata_over_the_limit_is_413(kit: DicomWeb, monkeypatch: pytest.MonkeyPatch) -> None:
    from dicomweb_kit.errors import PayloadTooLarge
    from dicomweb_kit.services import stow_metadata

    monkeypatch.setattr(stow_metadata, "_MAX_METADATA_BYTES", 1500)  # each part fits, both do not
    a, b = make_dataset(), make_dataset()
    data = body(json_part(metadata_of(a, PixelData="a")), json_part(metadata_of(b, PixelData="b")))
    with pytest.raises(PayloadTooLarge, match="metadata parts"):
        await stow(kit, data)
