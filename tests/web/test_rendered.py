"""WADO-RS rendered resources over HTTP (PS3.18 §10.4.1.1.3, §8.3.5), on every adapter."""

from __future__ import annotations

import email.parser
import email.policy
import io
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pydicom
import pydicom.data
import pytest
from conftest import host_app
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels.utils import pixel_array
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from dicomweb_kit import DicomWeb, Settings
from dicomweb_kit.pixels.render import RenderParams, display_array, render_image
from dicomweb_kit.services import rendered, rendering
from dicomweb_kit.testing import make_dataset, part10_bytes

pytestmark = pytest.mark.anyio

FILES = Path(pydicom.data.__file__).parent / "test_files"


async def store(client: httpx.AsyncClient, *blobs: bytes) -> None:
    body = b"".join(b"--b\r\nContent-Type: application/dicom\r\n\r\n" + b + b"\r\n" for b in blobs) + b"--b--"
    r = await client.post("/studies", content=body, headers={"Content-Type": "multipart/related; boundary=b"})
    assert r.status_code == 200, r.text


def image_dataset(frames: list[np.ndarray], **attributes: object) -> Dataset:
    """A 16-bit MONOCHROME2 instance holding ``frames``."""
    rows, columns = frames[0].shape
    ds = make_dataset(rows=rows, columns=columns, BitsStored=16, HighBit=15, **attributes)
    if len(frames) > 1:
        ds.NumberOfFrames = len(frames)
    ds.PixelData = np.stack(frames).astype("<u2").tobytes()
    return ds


def ramp(value: int = 0, rows: int = 6, columns: int = 8) -> np.ndarray:
    return (np.arange(rows * columns).reshape(rows, columns) * 10 + value).astype(np.uint16)


def path_of(ds: Dataset) -> str:
    return f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"


def png(response: httpx.Response) -> np.ndarray:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    return np.asarray(Image.open(io.BytesIO(response.content)))


def parts(response: httpx.Response) -> list[tuple[str, bytes]]:
    raw = b"Content-Type: " + response.headers["content-type"].encode() + b"\r\n\r\n" + response.content
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(raw)
    return [(part.get_content_type(), part.get_payload(decode=True)) for part in message.iter_parts()]


async def test_instance_rendered_is_jpeg_by_default(client: httpx.AsyncClient) -> None:
    ds = image_dataset([ramp()])
    await store(client, part10_bytes(ds))
    r = await client.get(path_of(ds) + "/rendered")
    assert r.status_code == 200
    assert r.headers["content-type"] == "image/jpeg"
    image = Image.open(io.BytesIO(r.content))
    assert image.format == "JPEG" and image.size == (8, 6)


async def test_rendered_png_is_the_pipeline_output_exactly(client: httpx.AsyncClient) -> None:
    ds = image_dataset([ramp()], WindowCenter=200, WindowWidth=300)
    await store(client, part10_bytes(ds))
    got = png(await client.get(path_of(ds) + "/rendered", headers={"Accept": "image/png"}))
    assert (got == display_array(ramp(), ds)).all()
    # The window parameter: LINEAR_EXACT over 0..470 maps value v to v * 255 / 470.
    query = {"accept": "image/png", "window": "235,470,linear-exact"}
    got = png(await client.get(path_of(ds) + "/rendered", params=query))
    assert (got == np.floor(ramp().astype(float) * 255 / 470 + 0.5)).all()


async def test_viewport_quality_and_annotation(client: httpx.AsyncClient) -> None:
    ds = image_dataset([ramp(rows=60, columns=80)])
    await store(client, part10_bytes(ds))
    r = await client.get(path_of(ds) + "/rendered", params={"viewport": "40,40", "quality": "50"})
    assert Image.open(io.BytesIO(r.content)).size == (40, 30)
    query = {"accept": "image/png", "viewport": "10,10,5,6,-10,10"}
    got = png(await client.get(path_of(ds) + "/rendered", params=query))
    expected = display_array(ramp(rows=60, columns=80), ds)[6:16, 5:15][:, ::-1]
    assert (got == expected).all()
    plain = png(await client.get(path_of(ds) + "/rendered", params={"accept": "image/png"}))
    query = {"accept": "image/png", "annotation": "patient"}
    annotated = png(await client.get(path_of(ds) + "/rendered", params=query))
    assert (annotated != plain).any() and (annotated[-5:, -5:] == plain[-5:, -5:]).all()


@pytest.mark.parametrize(
    ("query", "name"),
    [
        ({"window": "1,0"}, "window"),
        ({"viewport": "a,b"}, "viewport"),
        ({"viewport": "10,10,99,0,5,5"}, "source region"),
        ({"quality": "500"}, "quality"),
        ({"annotation": ","}, "annotation"),
    ],
)
async def test_bad_parameters_are_400(client: httpx.AsyncClient, query: dict[str, str], name: str) -> None:
    ds = image_dataset([ramp()])
    await store(client, part10_bytes(ds))
    r = await client.get(path_of(ds) + "/rendered", params=query)
    assert r.status_code == 400
    assert name in r.text


async def test_media_types_and_406(client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch) -> None:
    ds = image_dataset([ramp()])
    await store(client, part10_bytes(ds))
    for media_type, pil_format in [("image/gif", "GIF"), ("image/png", "PNG"), ("image/jp2", "JPEG2000")]:
        r = await client.get(path_of(ds) + "/rendered", headers={"Accept": media_type})
        assert r.status_code == 200 and r.headers["content-type"] == media_type
        assert Image.open(io.BytesIO(r.content)).format == pil_format
    assert (await client.get(path_of(ds) + "/rendered", headers={"Accept": "application/dicom"})).status_code == 406
    # A single frame is no video.
    assert (await client.get(path_of(ds) + "/rendered", headers={"Accept": "video/mp4"})).status_code == 406
    monkeypatch.setattr(rendered, "image_media_types", lambda: ("image/jpeg", "image/png", "image/gif"))
    assert (await client.get(path_of(ds) + "/rendered", headers={"Accept": "image/jp2"})).status_code == 406


async def test_multi_frame_instance_and_frames(client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch) -> None:
    frames = [ramp(value) for value in (0, 1000, 2000)]
    ds = image_dataset(frames, WindowCenter=1500, WindowWidth=3001, FrameTime=50)
    await store(client, part10_bytes(ds))
    r = await client.get(path_of(ds) + "/rendered")
    assert r.status_code == 200 and r.headers["content-type"] == "image/gif"  # animated by default
    gif = Image.open(io.BytesIO(r.content))
    assert gif.n_frames == 3 and gif.info["duration"] == 50
    # One frame: a single image; its pixels are that frame's.
    got = png(await client.get(path_of(ds) + "/frames/2/rendered", headers={"Accept": "image/png"}))
    assert (got == display_array(frames[1], ds)).all()
    # Several frames as multipart/related of PNGs, in the order asked.
    accept = {"Accept": 'multipart/related; type="image/png"'}
    r = await client.get(path_of(ds) + "/frames/3,1/rendered", headers=accept)
    assert r.headers["content-type"].startswith('multipart/related; type="image/png"')
    got_parts = parts(r)
    assert [t for t, _ in got_parts] == ["image/png", "image/png"]
    decoded = [np.asarray(Image.open(io.BytesIO(data))) for _, data in got_parts]
    assert (decoded[0] == display_array(frames[2], ds)).all() and (decoded[1] == display_array(frames[0], ds)).all()
    assert (await client.get(path_of(ds) + "/frames/4/rendered")).status_code == 404
    assert (await client.get(path_of(ds) + "/frames/0,x/rendered")).status_code == 400
    monkeypatch.setattr(rendered, "video_media_types", lambda: ())  # as without the `video` extra
    answer = await client.get(path_of(ds) + "/rendered", headers={"Accept": "video/mp4"})
    assert answer.status_code == 406
    assert "dicomweb-kit[video]" in answer.text  # says how to get it


async def test_multi_frame_as_video(client: httpx.AsyncClient) -> None:
    av = pytest.importorskip("av")
    frames = [np.full((16, 16), value, dtype=np.uint16) for value in (0, 100, 200, 255)]
    ds = image_dataset(frames, WindowCenter=127.5, WindowWidth=256, VOILUTFunction="LINEAR_EXACT", CineRate=25)
    await store(client, part10_bytes(ds))
    for media_type in ("video/mp4", "video/mpeg"):
        r = await client.get(path_of(ds) + "/rendered", headers={"Accept": media_type})
        assert r.status_code == 200 and r.headers["content-type"] == media_type
        with av.open(io.BytesIO(r.content)) as container:
            decoded = [frame.to_ndarray(format="gray") for frame in container.decode(video=0)]
        assert len(decoded) == 4
        assert [int(d[8, 8]) for d in decoded] == pytest.approx([0, 100, 200, 255], abs=6)


async def test_colour_instances_match_pydicom(client: httpx.AsyncClient) -> None:
    for name in ("SC_rgb_small_odd.dcm", "examples_palette.dcm", "SC_ybr_full_422_uncompressed.dcm"):
        path = FILES / name
        ds = pydicom.dcmread(path)
        await store(client, path.read_bytes())
        got = png(await client.get(path_of(ds) + "/rendered", headers={"Accept": "image/png"}))
        # pydicom's pixel_array() converts YBR to RGB (as_rgb=True).
        frame = pixel_array(path)
        expected = np.asarray(render_image(frame, ds, RenderParams(), photometric="RGB" if "ybr" in name else None))
        assert got.shape == expected.shape and np.abs(got.astype(int) - expected.astype(int)).max() <= 1, name


async def test_study_and_series_rendered_are_multipart(client: httpx.AsyncClient) -> None:
    study, series = generate_uid(), generate_uid()
    single = image_dataset([ramp(0)], study=study, series=series)
    multi = image_dataset([ramp(1), ramp(2)[::-1]], study=study, series=series)
    other = image_dataset([ramp(3)], study=study)
    await store(client, part10_bytes(single), part10_bytes(multi), part10_bytes(other))
    r = await client.get(f"/studies/{study}/rendered")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith('multipart/related; type="image/jpeg"')
    assert len(parts(r)) == 4  # one per frame
    accept = {"Accept": 'multipart/related; type="image/gif"'}
    r = await client.get(f"/studies/{study}/series/{series}/rendered", headers=accept)
    got = parts(r)
    assert [Image.open(io.BytesIO(data)).n_frames for _, data in got] == [1, 2]  # multi-frame: animated
    assert (await client.get(f"/studies/{generate_uid()}/rendered")).status_code == 404


def pdf_dataset() -> tuple[Dataset, bytes]:
    document = b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"  # odd length: padded when stored
    ds = make_dataset()
    del ds.PixelData
    for keyword in ("Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation",
                    "SamplesPerPixel", "PhotometricInterpretation"):
        delattr(ds, keyword)
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.104.1"
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.Modality = "DOC"
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocument = document + b"\0"
    ds.EncapsulatedDocumentLength = len(document)
    return ds, document


async def test_encapsulated_pdf(client: httpx.AsyncClient) -> None:
    ds, document = pdf_dataset()
    await store(client, part10_bytes(ds))
    r = await client.get(path_of(ds) + "/rendered")
    assert r.status_code == 200 and r.headers["content-type"] == "application/pdf"
    assert r.content == document
    assert (await client.get(path_of(ds) + "/rendered", headers={"Accept": "image/jpeg"})).status_code == 406
    assert (await client.get(path_of(ds) + "/thumbnail")).status_code == 406


async def test_structured_report(client: httpx.AsyncClient) -> None:
    path = FILES / "test-SR.dcm"
    ds = pydicom.dcmread(path)
    await store(client, path.read_bytes())
    r = await client.get(path_of(ds) + "/rendered")
    assert r.status_code == 200 and r.headers["content-type"] == "text/html; charset=utf-8"
    assert "<h1>Diagnosis</h1>" in r.text and "Diameter" in r.text
    r = await client.get(path_of(ds) + "/rendered", params={"accept": "text/plain"})
    assert r.headers["content-type"] == "text/plain; charset=utf-8" and "Diameter: 3 cm" in r.text
    r = await client.get(path_of(ds) + "/rendered", headers={"Accept": "text/xml"})
    assert r.headers["content-type"] == "text/xml; charset=utf-8" and b"<report" in r.content
    assert (await client.get(path_of(ds) + "/rendered", headers={"Accept": "image/png"})).status_code == 406


async def test_instance_without_pixels_is_406(client: httpx.AsyncClient) -> None:
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.66"  # Raw Data Storage
    ds.SOPInstanceUID, ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid(), generate_uid()
    ds.Modality = "OT"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    await store(client, part10_bytes(ds))
    r = await client.get(path_of(ds) + "/rendered")
    assert r.status_code == 406 and "no rendered representation" in r.text
    assert (await client.get(path_of(ds).replace(ds.SOPInstanceUID, generate_uid()) + "/rendered")).status_code == 404


async def test_pdf_larger_than_the_limit_is_413(make_kit: Callable[..., DicomWeb]) -> None:
    ds, _ = pdf_dataset()
    async with make_kit(Settings(max_rendered_document_bytes=100)) as kit:
        transport = httpx.ASGITransport(app=host_app(kit))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver/dicom-web") as client:
            await store(client, part10_bytes(ds))
            r = await client.get(path_of(ds) + "/rendered")
    assert r.status_code == 413 and "max_rendered_document_bytes" in r.text


@pytest.mark.parametrize(
    ("name", "frame"),
    [("examples_ybr_color.dcm", 7), ("MR_small_RLE.dcm", 1), ("JPEG2000.dcm", 1), ("SC_rgb_jpeg_gdcm.dcm", 1)],
)
async def test_compressed_frames_match_pydicom(client: httpx.AsyncClient, name: str, frame: int) -> None:
    path = FILES / name
    ds = pydicom.dcmread(path)
    await store(client, path.read_bytes())
    got = png(await client.get(path_of(ds) + f"/frames/{frame}/rendered", headers={"Accept": "image/png"}))
    decoded = pixel_array(path, index=frame - 1)  # pydicom's own decoding, YBR as RGB
    photometric = "RGB" if str(ds.PhotometricInterpretation).startswith("YBR") else None
    expected = display_array(decoded, ds, photometric=photometric, frame_index=frame - 1)
    assert got.shape == expected.shape and np.abs(got.astype(int) - expected.astype(int)).max() <= 1


async def test_study_with_nothing_to_render(client: httpx.AsyncClient) -> None:
    pdf, _ = pdf_dataset()
    await store(client, part10_bytes(pdf))
    r = await client.get(f"/studies/{pdf.StudyInstanceUID}/rendered")
    assert r.status_code == 406 and "no image instance" in r.text
    small = image_dataset([ramp()], study=pdf.StudyInstanceUID)  # 8x6: the region starts outside it
    large = image_dataset([ramp(rows=40, columns=40)], study=pdf.StudyInstanceUID)
    await store(client, part10_bytes(small))
    r = await client.get(f"/studies/{pdf.StudyInstanceUID}/rendered", params={"viewport": "10,10,20,20,5,5"})
    assert r.status_code == 400 and "outside" in r.text
    await store(client, part10_bytes(large))  # now one instance has the region: it alone is sent
    r = await client.get(f"/studies/{pdf.StudyInstanceUID}/rendered", params={"viewport": "10,10,20,20,5,5"})
    assert r.status_code == 200 and len(parts(r)) == 1


async def test_animation_over_the_memory_cap_is_413(client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch) -> None:
    ds = image_dataset([ramp(value) for value in (0, 10, 20)])
    await store(client, part10_bytes(ds))
    monkeypatch.setattr(rendering, "MAX_ANIMATION_BYTES", 2 * 48)  # two 8x6 grey frames
    r = await client.get(path_of(ds) + "/rendered")
    assert r.status_code == 413 and "viewport" in r.text
    assert (await client.get(path_of(ds) + "/frames/1,2/rendered")).status_code == 200


async def test_unrenderable_pixels_are_406_not_500(client: httpx.AsyncClient) -> None:
    # PALETTE COLOR without its lookup tables: pydicom cannot apply them.
    ds = make_dataset(PhotometricInterpretation="PALETTE COLOR", BitsAllocated=8, BitsStored=8, HighBit=7)
    ds.PixelData = bytes(16)
    await store(client, part10_bytes(ds))
    r = await client.get(path_of(ds) + "/rendered")
    assert r.status_code == 406 and "cannot be rendered" in r.text
    assert (await client.get(path_of(ds) + "/thumbnail")).status_code == 406
