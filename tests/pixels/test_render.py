"""The rendering pipeline on arrays: windowing by hand-computed values, LUTs, colour, viewport,
annotations and encoders, checked against pydicom's own pipeline where it has one."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pydicom
import pydicom.data
import pytest
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.pixels.processing import apply_color_lut, apply_modality_lut, apply_voi, apply_windowing
from pydicom.pixels.utils import pixel_array

from dicomweb_kit.codecs.pixel_codecs import decode_frame
from dicomweb_kit.codecs.structured_report import render_report
from dicomweb_kit.errors import InvalidRequest
from dicomweb_kit.pixels.annotate import annotate
from dicomweb_kit.pixels.description import PixelDescription
from dicomweb_kit.pixels.encode import encode_frames, encode_image, image_media_types, video_media_types
from dicomweb_kit.pixels.params import parse_render_params
from dicomweb_kit.pixels.render import RenderParams, display_array, render_image
from dicomweb_kit.pixels.viewport import Viewport, apply_viewport
from dicomweb_kit.pixels.window import Window
from dicomweb_kit.render_cache import MemoryRenderCache
from dicomweb_kit.testing.datasets import make_dataset, make_record

FILES = Path(pydicom.data.__file__).parent / "test_files"


def grey(values: list[int] | np.ndarray, **attributes: object) -> tuple[np.ndarray, Dataset]:
    """A one-row frame of ``values`` and a MONOCHROME2 data set carrying ``attributes``."""
    frame = np.asarray(values).reshape(1, -1)
    ds = Dataset()
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsStored = 16
    ds.PixelRepresentation = 1 if frame.min() < 0 else 0
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    return frame, ds


# ----------------------------------------------------------------------------- windowing (PS3.3 C.11.2.1)


def test_linear_window_matches_hand_computed_values() -> None:
    # c=40, w=81: x <= -0.5 -> 0, x > 79.5 -> 255, else ((x - 39.5) / 80 + 0.5) * 255, rounded half up.
    frame, ds = grey([-1, 0, 20, 40, 79, 80], WindowCenter=40, WindowWidth=81)
    assert display_array(frame, ds).tolist() == [[0, 2, 65, 129, 253, 255]]


def test_linear_exact_and_sigmoid_match_hand_computed_values() -> None:
    frame, ds = grey([-1, 0, 20, 40, 80, 81], WindowCenter=40, WindowWidth=80, VOILUTFunction="LINEAR_EXACT")
    # ((x - 40) / 80 + 0.5) * 255 inside (0, 80]; 127.5 rounds up.
    assert display_array(frame, ds).tolist() == [[0, 0, 64, 128, 255, 255]]
    frame, ds = grey([0, 40, 80], WindowCenter=40, WindowWidth=80, VOILUTFunction="SIGMOID")
    # 255 / (1 + exp(-4 (x - 40) / 80)): 255 / (1 + e^2) = 30.40, 127.5, 255 / (1 + e^-2) = 224.6
    assert display_array(frame, ds).tolist() == [[30, 128, 225]]


def test_window_parameter_overrides_the_instance_window() -> None:
    frame, ds = grey([0, 20, 40], WindowCenter=1000, WindowWidth=10)
    params = parse_render_params([("window", "40,80,linear-exact")])
    assert params.window == Window(40, 80, "LINEAR_EXACT")
    assert display_array(frame, ds, window=params.window).tolist() == [[0, 64, 128]]


def test_window_agrees_with_pydicom_apply_windowing() -> None:
    ds = pydicom.dcmread(FILES / "MR_small.dcm")  # signed 16-bit, window 600/1600
    frame = ds.pixel_array
    ours = display_array(frame, ds).astype(int)
    theirs = apply_windowing(apply_modality_lut(frame, ds).astype(float), ds)  # onto the signed 16-bit range
    expected = np.floor((theirs + 32768) / 65535 * 255 + 0.5)
    assert np.abs(ours - expected).max() <= 1


def test_rescale_then_window() -> None:
    # Hounsfield = 2 * stored - 1024; window 0/100 LINEAR_EXACT maps -50..50 HU onto 0..255.
    frame, ds = grey(
        [487, 512, 537], RescaleSlope=2, RescaleIntercept=-1024, WindowCenter=0, WindowWidth=100,
        VOILUTFunction="LINEAR_EXACT",
    )
    assert display_array(frame, ds).tolist() == [[0, 128, 255]]


def test_signed_pixels_without_window_use_the_frame_range() -> None:
    frame, ds = grey(np.array([-1000, 0, 1000], dtype=np.int16))
    assert display_array(frame, ds).tolist() == [[0, 128, 255]]


def test_monochrome1_is_inverted() -> None:
    frame, ds = grey([0, 20, 40], WindowCenter=40, WindowWidth=80, VOILUTFunction="LINEAR_EXACT")
    normal = display_array(frame, ds)
    ds.PhotometricInterpretation = "MONOCHROME1"
    assert (display_array(frame, ds) == 255 - normal).all()


def test_modality_lut_sequence_and_voi_lut_sequence() -> None:
    frame, ds = grey([0, 1, 2, 3])
    mlut = Dataset()
    mlut.LUTDescriptor = [4, 0, 16]
    mlut.ModalityLUTType = "HU"
    mlut.LUTData = [0, 100, 200, 300]
    ds.ModalityLUTSequence = [mlut]
    voi = Dataset()
    voi.LUTDescriptor = [301, 0, 16]
    voi.LUTData = [min(65535, v * 256) for v in range(301)]
    ds.VOILUTSequence = [voi]
    modality = apply_modality_lut(frame, ds)
    assert modality.tolist() == [[0, 100, 200, 300]]
    expected = np.floor(apply_voi(modality.astype(int), ds).astype(float) * 255 / 65535 + 0.5)
    # v * 256 * 255 / 65535, rounded: 100 -> 99.6 -> 100, 200 -> 199.2 -> 199, 300 -> clipped to 65535 -> 255.
    assert display_array(frame, ds).tolist() == expected.astype(int).tolist() == [[0, 100, 199, 255]]


def test_ct_small_rescale_and_signed_against_pydicom() -> None:
    ds = pydicom.dcmread(FILES / "CT_small.dcm")
    hu = apply_modality_lut(ds.pixel_array, ds).astype(float)
    expected = np.floor((hu - hu.min()) / (hu.max() - hu.min()) * 255 + 0.5)
    assert (display_array(ds.pixel_array, ds) == expected).all()


# ----------------------------------------------------------------------------------------- colour


def test_rgb_passes_through() -> None:
    ds = pydicom.dcmread(FILES / "SC_rgb_small_odd.dcm")
    assert (display_array(ds.pixel_array, ds) == ds.pixel_array).all()


def test_16_bit_rgb_is_scaled() -> None:
    ds = pydicom.dcmread(FILES / "SC_rgb_rle_16bit.dcm")
    expected = np.floor(ds.pixel_array.astype(float) * 255 / 65535 + 0.5)
    assert (display_array(ds.pixel_array, ds) == expected).all()


def test_ybr_full_422_is_converted_like_pydicom() -> None:
    path = FILES / "SC_ybr_full_422_uncompressed.dcm"
    ds = pydicom.dcmread(path)
    raw = pixel_array(path, raw=True)  # still YBR
    ours = display_array(raw, ds).astype(int)
    assert np.abs(ours - pixel_array(path).astype(int)).max() <= 1  # pydicom's own YBR -> RGB


def test_decoded_ybr_frame_renders_as_pydicom_rgb() -> None:
    # decode_frame hands back YBR as stored; the pipeline converts it.
    path = FILES / "SC_ybr_full_422_uncompressed.dcm"
    ds = pydicom.dcmread(path)
    record = make_record(ds)
    description = PixelDescription.from_attributes(record.attributes)
    assert description is not None
    frame = decode_frame(ds.PixelData[: description.frame_length], description, str(ds.file_meta.TransferSyntaxUID))
    assert np.abs(display_array(frame, ds).astype(int) - pixel_array(path).astype(int)).max() <= 1


def test_palette_color_like_pydicom() -> None:
    ds = pydicom.dcmread(FILES / "examples_palette.dcm")
    rgb = apply_color_lut(ds.pixel_array, ds)  # 16-bit entries
    expected = np.floor(rgb.astype(float) * 255 / 65535 + 0.5)
    assert (display_array(ds.pixel_array, ds) == expected).all()


def test_planar_configuration_through_the_frame_decoder() -> None:
    rgb = np.random.default_rng(1).integers(0, 256, (3, 5, 3), dtype=np.uint8)
    ds = make_dataset(rows=3, columns=5, SamplesPerPixel=3, PhotometricInterpretation="RGB",
                      BitsAllocated=8, BitsStored=8, HighBit=7, PlanarConfiguration=1)
    ds.PixelData = rgb.transpose(2, 0, 1).tobytes()  # colour-by-plane
    description = PixelDescription.from_attributes(make_record(ds).attributes)
    assert description is not None
    frame = decode_frame(ds.PixelData, description, str(ds.file_meta.TransferSyntaxUID))
    assert (display_array(frame, ds) == rgb).all()


# --------------------------------------------------------------------------------------- viewport


def test_viewport_scales_to_fit_keeping_the_aspect_ratio() -> None:
    image = Image.new("L", (100, 50))
    assert apply_viewport(image, Viewport(50, 50)).size == (50, 25)
    assert apply_viewport(image, Viewport(400, 100)).size == (200, 100)
    assert apply_viewport(image, Viewport(1, 1)).size == (1, 1)


def test_viewport_crops_the_source_region_and_flips() -> None:
    pixels = np.arange(100 * 50, dtype=np.uint32).reshape(50, 100).astype(np.uint8)
    image = Image.fromarray(pixels)
    region = apply_viewport(image, Viewport(20, 10, 10, 5, 20, 10))
    assert (np.asarray(region) == pixels[5:15, 10:30]).all()
    flipped = apply_viewport(image, Viewport(20, 10, 10, 5, -20, -10))
    assert (np.asarray(flipped) == pixels[5:15, 10:30][::-1, ::-1]).all()
    scaled = apply_viewport(image, Viewport(10, 10, 10, 5, 20, 10))
    assert scaled.size == (10, 5)
    # Missing sw/sh run to the image's edges.
    assert apply_viewport(image, Viewport(1000, 1000, 90, 40)).size == (1000, 1000)
    with pytest.raises(ValueError, match="outside"):
        apply_viewport(image, Viewport(10, 10, 100, 0))


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("window", "40"),
        ("window", "a,b"),
        ("window", "40,0.5,linear"),
        ("window", "40,0,sigmoid"),
        ("window", "40,80,cubic"),
        ("viewport", "0,10"),
        ("viewport", "10"),
        ("viewport", "10,10,1,2,3"),
        ("viewport", "10,10,-1,0,5,5"),
        ("viewport", "10,10,0,0,0,5"),
        ("viewport", "99999,10"),
        ("quality", "0"),
        ("quality", "101"),
        ("quality", "high"),
        ("annotation", "patient,"),
    ],
)
def test_bad_parameters_name_themselves(name: str, value: str) -> None:
    with pytest.raises(InvalidRequest, match=name):
        parse_render_params([(name, value)])


def test_parameters_parse() -> None:
    params = parse_render_params(
        [("viewport", "64,32,,,,"), ("quality", "40"), ("annotation", "technique,patient,other"), ("foo", "x")]
    )
    assert params == RenderParams(viewport=Viewport(64, 32), quality=40, annotation=("technique", "patient"))
    assert parse_render_params([("viewport", "10,20,1,2,-3,4")]).viewport == Viewport(10, 20, 1, 2, -3, 4)
    with pytest.raises(InvalidRequest, match="given more than once"):
        parse_render_params([("quality", "1"), ("quality", "2")])
    # A thumbnail takes the viewport only, and only its dimensions.
    assert parse_render_params([("window", "bad"), ("viewport", "8,8")], thumbnail=True).viewport == Viewport(8, 8)
    with pytest.raises(InvalidRequest, match="viewport"):
        parse_render_params([("viewport", "8,8,0,0,4,4")], thumbnail=True)


# ------------------------------------------------------------------------------------- annotation


@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_annotation_changes_only_the_box(mode: str) -> None:
    rng = np.random.default_rng(0)
    shape = (200, 300) if mode == "L" else (200, 300, 3)
    pixels = rng.integers(0, 256, shape, dtype=np.uint8)
    image = Image.fromarray(pixels)
    out = np.asarray(annotate(image, ["Doe Jane", "ID 12345"]))
    changed = np.argwhere((out != pixels).reshape(200, 300, -1).any(axis=-1))
    bottom, right = changed.max(axis=0)
    box = out[: bottom + 1, : right + 1]
    assert 0 < bottom < 100 and 0 < right < 200  # a corner box, not the whole image
    assert (out[bottom + 1 :] == pixels[bottom + 1 :]).all() and (out[:, right + 1 :] == pixels[:, right + 1 :]).all()
    assert (box == 0).mean() > 0.5 and box.max() > 200  # light text on a dark box


def test_annotations_from_the_instance() -> None:
    ds = pydicom.dcmread(FILES / "CT_small.dcm")
    plain = render_image(ds.pixel_array, ds, RenderParams())
    annotated = render_image(ds.pixel_array, ds, RenderParams(annotation=("patient", "technique")))
    assert annotated.size == plain.size and annotated.tobytes() != plain.tobytes()
    assert np.asarray(annotated)[-1, -1] == np.asarray(plain)[-1, -1]


# ---------------------------------------------------------------------------------------- encoding


@pytest.mark.parametrize("media_type", image_media_types())
@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_every_image_media_type_decodes(media_type: str, mode: str) -> None:
    pixels = np.random.default_rng(2).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    image = Image.fromarray(pixels).convert(mode)
    data = encode_image(image, media_type, quality=80)
    decoded = Image.open(io.BytesIO(data))
    assert decoded.size == (60, 40)
    assert decoded.format == {"image/jpeg": "JPEG", "image/png": "PNG", "image/gif": "GIF", "image/jp2": "JPEG2000"}[
        media_type
    ]
    if media_type == "image/png":
        assert decoded.tobytes() == image.tobytes()  # lossless


def test_jpeg_quality_changes_the_size() -> None:
    image = Image.fromarray(np.random.default_rng(3).integers(0, 256, (64, 64), dtype=np.uint8))
    assert len(encode_image(image, "image/jpeg", quality=10)) < len(encode_image(image, "image/jpeg", quality=95))


def test_animated_gif_has_every_frame() -> None:
    frames = [Image.fromarray(np.full((8, 8), v, dtype=np.uint8)) for v in (0, 128, 255)]
    decoded = Image.open(io.BytesIO(encode_frames(frames, "image/gif", frame_rate=5)))
    assert decoded.n_frames == 3
    decoded.seek(1)
    assert np.asarray(decoded.convert("L"))[0, 0] == 128
    assert decoded.info["duration"] == 200


@pytest.mark.parametrize("media_type", ["video/mp4", "video/mpeg"])
def test_video_decodes_with_pyav(media_type: str) -> None:
    av = pytest.importorskip("av")
    assert media_type in video_media_types()
    frames = [Image.fromarray(np.full((15, 21), v, dtype=np.uint8)) for v in range(0, 250, 25)]
    data = encode_frames(frames, media_type, frame_rate=25, quality=90)
    with av.open(io.BytesIO(data)) as container:
        decoded = [frame.to_ndarray(format="gray") for frame in container.decode(video=0)]
    assert len(decoded) == 10
    assert decoded[0].shape == (16, 22)  # padded to even sides for 4:2:0
    assert abs(int(decoded[5][4, 4]) - 125) <= 4


# ------------------------------------------------------------------------------------ cache and SR


@pytest.mark.anyio
async def test_memory_cache_is_an_lru_bounded_by_bytes() -> None:
    cache = MemoryRenderCache(10)
    await cache.put("a", b"1234")
    await cache.put("b", b"5678")
    assert await cache.get("a") == b"1234"  # a is now the most recent
    await cache.put("c", b"90ab")
    assert await cache.get("b") is None and await cache.get("a") == b"1234" and await cache.get("c") == b"90ab"
    await cache.put("big", b"x" * 11)
    assert await cache.get("big") is None and cache.size == 8


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_structured_report_renderings() -> None:
    ds = pydicom.dcmread(FILES / "test-SR.dcm")
    html = render_report(ds, "text/html").decode()
    assert html.startswith("<!DOCTYPE html>") and "<h1>Diagnosis</h1>" in html
    assert "<b>Diameter</b>: 3 cm" in html  # NUM with its unit
    assert "&amp;%$§&quot;!()&lt;&gt;" in html  # text is escaped
    text = render_report(ds, "text/plain").decode()
    assert "Diameter: 3 cm" in text and "  Text Code: A mass of" in text  # nested items indented
    import xml.etree.ElementTree as ET

    root = ET.fromstring(render_report(ds, "text/xml"))
    assert root.tag == "report" and root.get("title") == "Diagnosis"
    assert any(item.findtext("value") == "3 cm" for item in root.iter("item"))


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int16", "int32"])
@pytest.mark.parametrize("function", ["LINEAR", "LINEAR_EXACT", "SIGMOID", None])
def test_lookup_table_path_equals_the_per_pixel_formulas(dtype: str, function: str | None) -> None:
    """Integer frames go through a per-code table; it must give exactly what the formulas give."""
    from dicomweb_kit.pixels import render

    info = np.iinfo(dtype)
    rng = np.random.default_rng(5)
    low, high = max(info.min, -3000), min(info.max, 3000)
    frame = rng.integers(low, high, size=(64, 48), endpoint=True).astype(dtype)
    ds = Dataset()
    ds.RescaleSlope, ds.RescaleIntercept = "1.5", "-1024"
    window = None if function is None else Window(40.0, 400.0, function)  # type: ignore[arg-type]
    via_table = render._grey(frame, ds, window, 0)
    direct = render._grey_values(frame, ds, window, 0)
    assert via_table.dtype == np.uint8
    assert np.array_equal(via_table, direct)
