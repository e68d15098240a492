"""The frame layout against pydicom's own frame extraction, for every bundled file with pixel data
and for synthetic encapsulations (offset tables present or not), fed whole or one byte at a time."""

from __future__ import annotations

import io
import random
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pydicom.data
import pytest
from pydicom.encaps import encapsulate, encapsulate_extended, generate_frames
from pydicom.uid import ExplicitVRBigEndian, JPEGBaseline8Bit, RLELossless, generate_uid

from dicomweb_kit.codecs import dicom_json
from dicomweb_kit.codecs.part10 import parse_header
from dicomweb_kit.pixels.description import PixelDescription
from dicomweb_kit.pixels.layout import PixelLayout, PixelScanner, layout_from_bytes, layout_of
from dicomweb_kit.testing import make_dataset, part10_bytes

FILES = Path(pydicom.data.__file__).parent / "test_files"


def _pixel_files() -> list[Path]:
    found = []
    for path in sorted(FILES.rglob("*")):
        if not path.is_file():
            continue
        data = path.read_bytes()
        if data[128:132] != b"DICM":
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if parse_header(data, complete=True).pixel_data_vr is None:
                    continue
        except Exception:
            continue
        found.append(path)
    return found


PIXEL_FILES = _pixel_files()


def frames_of(data: bytes, layout: PixelLayout) -> list[bytes]:
    """Every frame's bytes, read from ``data`` as a blob store would serve the ranges."""
    ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    description = PixelDescription.from_attributes(dicom_json.dataset_to_json_dict(ds))
    out = []
    for index in range(layout.frame_count(description)):
        span = layout.frame_span(description, index)
        out.append(span.extract(b"".join(data[offset : offset + length] for offset, length in span.ranges)))
    return out


def pydicom_frames(data: bytes) -> list[bytes]:
    """The frames as pydicom reads them: encapsulated via generate_frames, native via pixel_array,
    written back in little endian, stored order, 1-bit packed from bit 0."""
    ds = pydicom.dcmread(io.BytesIO(data))
    count = int(ds.get("NumberOfFrames") or 1)
    if ds.file_meta.TransferSyntaxUID.is_encapsulated and ds["PixelData"].is_undefined_length:
        return list(generate_frames(ds.PixelData, number_of_frames=count))
    rows, columns, samples, bits = ds.Rows, ds.Columns, ds.get("SamplesPerPixel", 1), ds.BitsAllocated
    if bits == 1:
        flat = ds.pixel_array.reshape(count, -1)
        return [np.packbits(frame, bitorder="little").tobytes() for frame in flat]
    if ds.PhotometricInterpretation == "YBR_FULL_422" or ds.file_meta.TransferSyntaxUID != ExplicitVRBigEndian:
        raw = ds.PixelData
        if ds.PhotometricInterpretation == "YBR_FULL_422":
            length = rows * columns * 2 * bits // 8  # two chroma samples per two pixels
        else:
            length = rows * columns * samples * bits // 8
        return [raw[i * length : (i + 1) * length] for i in range(count)]
    array = ds.pixel_array.reshape(count, rows, columns, samples)
    if ds.get("PlanarConfiguration", 0) == 1:
        array = array.transpose(0, 3, 1, 2)
    dtype = f"<{'i' if ds.PixelRepresentation else 'u'}{bits // 8}"
    return [frame.astype(dtype).tobytes() for frame in array]


@pytest.mark.parametrize("path", PIXEL_FILES, ids=lambda p: str(p.relative_to(FILES)))
def test_every_bundled_file(path: Path) -> None:
    data = path.read_bytes()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        header = parse_header(data, complete=True)
        layout = layout_from_bytes(data, header)
        if header.transfer_syntax_uid == pydicom.uid.DeflatedExplicitVRLittleEndian:
            assert layout is None  # located in memory instead (services.frames)
            return
        assert layout is not None
        try:
            expected = pydicom_frames(data)
        except Exception as exc:  # pydicom cannot read this file's pixels either
            pytest.skip(f"pydicom cannot read the frames: {exc}")
    got = frames_of(data, layout)
    if path.name == "MR_truncated.dcm":  # the value is cut short: no complete frame
        assert got == [] and layout.value_length == len(data) - layout.value_offset
        return
    assert got == expected


def test_the_bundled_files_cover_the_cases() -> None:
    names = {path.name for path in PIXEL_FILES}
    assert {
        "JPEG-lossy.dcm",
        "SC_rgb_jpeg_gdcm.dcm",
        "MR_small_jpeg_ls_lossless.dcm",
        "JPEG2000.dcm",
        "MR_small_RLE.dcm",
        "examples_ybr_color.dcm",
        "rtdose.dcm",
        "rtdose_expb.dcm",
        "liver_1frame.dcm",
        "liver_expb_1frame.dcm",
        "ExplVR_BigEnd.dcm",
        "SC_ybr_full_422_uncompressed.dcm",
        "SC_rgb_jpeg.dcm",  # encapsulated data written in implicit VR
    } <= names


def scan_in_chunks(data: bytes, start: int, sizes: list[int]) -> PixelScanner:
    scanner = PixelScanner(start)
    position, i = 0, 0
    while position < len(data):
        size = sizes[i % len(sizes)]
        scanner.feed(data[position : position + size], position)
        position += size
        i += 1
    scanner.close()
    return scanner


ENCAPSULATED = ["examples_ybr_color.dcm", "rtdose_rle.dcm", "SC_rgb_rle_2frame.dcm", "JPEG2000.dcm", "SC_rgb_jpeg.dcm"]


@pytest.mark.parametrize("name", ENCAPSULATED)
@pytest.mark.parametrize("sizes", [[1], [3, 5, 7], [8], [13, 1, 2]], ids=str)
def test_chunk_boundaries_anywhere_even_inside_item_headers(name: str, sizes: list[int]) -> None:
    data = (FILES / name).read_bytes()
    header = parse_header(data, complete=True)
    whole = layout_from_bytes(data, header)
    assert whole is not None and whole.encapsulated
    streamed = scan_in_chunks(data, header.header_length, sizes)
    assert layout_of(streamed, header, size=len(data)) == whole


def _synthetic(frames: list[bytes], pixel_data: bytes, extended: tuple[bytes, bytes] | None = None) -> bytes:
    ds = make_dataset(rows=8, columns=8, NumberOfFrames=len(frames))
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.PixelData = pixel_data
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    if extended is not None:
        ds.ExtendedOffsetTable, ds.ExtendedOffsetTableLengths = extended
    return part10_bytes(ds)


def _jpeg_like(n: int, size: int) -> bytes:
    body = bytes(random.Random(n).randrange(0, 0xFF) for _ in range(size))  # never 0xFF: no stray markers
    return b"\xff\xd8" + body + b"\xff\xd9"


@pytest.mark.parametrize(
    ("fragments", "with_bot"),
    [(1, True), (3, True), (1, False), (3, False)],
    ids=["bot-1", "bot-3-fragments", "no-bot-1", "no-bot-3-fragments-eoi-scan"],
)
def test_encapsulations(fragments: int, with_bot: bool) -> None:
    frames = [_jpeg_like(n, 40 + 8 * n) for n in range(5)]  # even lengths: no padding byte
    data = _synthetic(frames, encapsulate(frames, fragments_per_frame=fragments, has_bot=with_bot))
    header = parse_header(data, complete=True)
    layout = layout_from_bytes(data, header)
    assert layout is not None and layout.frames is not None
    assert all(len(frame) == fragments for frame in layout.frames)
    assert frames_of(data, layout) == frames
    assert frames_of(data, layout) == pydicom_frames(data)
    assert layout_of(scan_in_chunks(data, header.header_length, [1]), header, size=len(data)) == layout


def test_extended_offset_table() -> None:
    frames = [_jpeg_like(n, 30 + 2 * n) for n in range(4)]
    pixel_data, offsets, lengths = encapsulate_extended(frames)
    data = _synthetic(frames, pixel_data, (offsets, lengths))
    layout = layout_from_bytes(data, parse_header(data, complete=True))
    assert layout is not None
    assert frames_of(data, layout) == frames


def test_all_fragments_of_a_single_frame() -> None:
    frame = _jpeg_like(1, 90)
    pixel_data = encapsulate([frame], fragments_per_frame=4, has_bot=False)
    data = _synthetic([frame], pixel_data)
    layout = layout_from_bytes(data, parse_header(data, complete=True))
    assert layout is not None and layout.frames is not None and len(layout.frames[0]) == 4
    assert frames_of(data, layout) == [frame]


def test_one_bit_frames_that_do_not_start_on_a_byte() -> None:
    ds = make_dataset(rows=3, columns=5, NumberOfFrames=4)  # 15 bits a frame
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 1, 1, 0
    bits = np.array(random.Random(4).choices([0, 1], k=60), dtype=np.uint8)
    ds.PixelData = np.packbits(bits, bitorder="little").tobytes()
    data = part10_bytes(ds)
    layout = layout_from_bytes(data, parse_header(data, complete=True))
    assert layout is not None
    got = [np.unpackbits(np.frombuffer(f, np.uint8), bitorder="little")[:15].tolist() for f in frames_of(data, layout)]
    assert got == [bits[i * 15 : (i + 1) * 15].tolist() for i in range(4)]
    assert got == pydicom.dcmread(io.BytesIO(data)).pixel_array.reshape(4, 15).tolist()


@pytest.mark.parametrize("keyword", ["FloatPixelData", "DoubleFloatPixelData"])
def test_float_pixel_data(keyword: str) -> None:
    ds = make_dataset(rows=2, columns=3, NumberOfFrames=2)
    del ds.PixelData
    dtype = "<f4" if keyword == "FloatPixelData" else "<f8"
    ds.BitsAllocated = 32 if keyword == "FloatPixelData" else 64
    del ds.BitsStored, ds.HighBit, ds.PixelRepresentation
    values = np.arange(12, dtype=dtype) / 3
    setattr(ds, keyword, values.tobytes())
    data = part10_bytes(ds)
    header = parse_header(data, complete=True)
    assert header.pixel_data_vr in ("OF", "OD")
    layout = layout_from_bytes(data, header)
    assert layout is not None and layout.tag == (0x7FE00008 if keyword == "FloatPixelData" else 0x7FE00009)
    assert frames_of(data, layout) == [values[:6].tobytes(), values[6:].tobytes()]


def test_garbage_after_the_pixel_data_tag_gives_no_layout() -> None:
    frames = [_jpeg_like(1, 20)]
    data = bytearray(_synthetic(frames, encapsulate(frames)))
    header = parse_header(bytes(data), complete=True)
    item = header.header_length + 12  # the Basic Offset Table item
    data[item : item + 4] = b"\x01\x02\x03\x04"
    assert layout_from_bytes(bytes(data), header) is None
    assert layout_from_bytes(bytes(data[:-30]), header) is None  # cut inside the fragments


def test_a_false_start_is_not_taken_for_the_pixel_data() -> None:
    data = part10_bytes(make_dataset(study=generate_uid()))
    header = parse_header(data, complete=True)
    scanner = PixelScanner(header.header_length - 8)
    scanner.feed(data, 0)
    scanner.close()
    assert layout_of(scanner, header, size=len(data)) is None


def test_rle_two_frames_match_pydicom() -> None:
    data = (FILES / "SC_rgb_rle_2frame.dcm").read_bytes()
    layout = layout_from_bytes(data, parse_header(data, complete=True))
    assert layout is not None
    assert pydicom.dcmread(io.BytesIO(data)).file_meta.TransferSyntaxUID == RLELossless
    assert frames_of(data, layout) == pydicom_frames(data)


@pytest.mark.parametrize("has_bot", [False, True])
def test_a_video_is_one_unit(has_bot: bool) -> None:
    stream = [bytes(range(200)) * 3, bytes(range(100)) * 2, b"\x00\x01" * 50]
    pixel_data = encapsulate(stream, has_bot=has_bot)
    ds = make_dataset(rows=8, columns=8, NumberOfFrames=30)
    ds.file_meta.TransferSyntaxUID = pydicom.uid.MPEG4HP41
    ds.PixelData = pixel_data
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    data = part10_bytes(ds)
    layout = layout_from_bytes(data, parse_header(data, complete=True))
    assert layout is not None and layout.frames is not None and len(layout.frames) == 1
    assert frames_of(data, layout) == [b"".join(stream)]
