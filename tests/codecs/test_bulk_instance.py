"""Part 10 files from metadata + bulk data parts: every compressed pydicom test file, taken apart
into DICOM JSON and one part per frame, is put back together and must decode to the same pixels."""

from __future__ import annotations

import io
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
import pytest
from conftest import pydicom_files_with_pixels
from pydicom.encaps import generate_frames

from dicomweb_kit.codecs import dicom_json
from dicomweb_kit.codecs.bulk_instance import assemble, part10_bytes
from dicomweb_kit.codecs.bulk_media import UnreadableBulkData, codestream, image_info, transfer_syntax_for
from dicomweb_kit.media_types import TRANSFER_SYNTAX_MEDIA_TYPES

# A code-stream with the reversible 5-3 wavelet may still be lossy (truncated layers); these are
# labelled lossy by their writer and we, reading only the header, say lossless (Table 8.7.3-5's default).
_J2K_LOSSY_BUT_REVERSIBLE = {"693_J2KI.dcm", "SC_rgb_gdcm_KY.dcm"}
_BROKEN = {"JPEG2000-embedded-sequence-delimiter.dcm"}  # its SIZ marker is damaged


@dataclass
class FakePart:
    data: bytes
    media_type: str
    params: Mapping[str, str] = field(default_factory=dict)

    @property
    def length(self) -> int:
        return len(self.data)

    def read(self, start: int = 0, end: int | None = None, /) -> bytes:
        return self.data[start:end]


def compressed_files() -> list[Path]:
    found = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in pydicom_files_with_pixels():
            if path.name in _BROKEN:
                continue
            ds = pydicom.dcmread(path)
            syntax = ds.file_meta.get("TransferSyntaxUID")
            if syntax in TRANSFER_SYNTAX_MEDIA_TYPES and syntax.is_compressed and "PixelData" in ds:
                found.append(path)
    return found


def read(path: Path) -> pydicom.FileDataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(path)


@pytest.mark.parametrize("path", compressed_files(), ids=lambda p: p.name)
def test_the_stream_header_names_the_transfer_syntax(path: Path) -> None:
    ds = read(path)
    syntax = ds.file_meta.TransferSyntaxUID
    media_type = TRANSFER_SYNTAX_MEDIA_TYPES[syntax]
    frame = next(generate_frames(ds.PixelData, number_of_frames=int(ds.get("NumberOfFrames") or 1)))
    expected = "1.2.840.10008.1.2.4.90" if path.name in _J2K_LOSSY_BUT_REVERSIBLE else syntax
    assert transfer_syntax_for(media_type, {}, frame[:65536]) == expected
    info = image_info(media_type, frame[:65536])
    if media_type != "image/dicom-rle":  # RLE segments carry no geometry
        assert info is not None
        assert (info.rows, info.columns, info.samples_per_pixel) == (ds.Rows, ds.Columns, ds.SamplesPerPixel)


@pytest.mark.parametrize("path", compressed_files(), ids=lambda p: p.name)
def test_frames_as_parts_make_the_same_instance(path: Path) -> None:
    ds = read(path)
    syntax = ds.file_meta.TransferSyntaxUID
    frames = int(ds.get("NumberOfFrames") or 1)
    media_type = TRANSFER_SYNTAX_MEDIA_TYPES[syntax]
    parts = [FakePart(f, media_type) for f in generate_frames(ds.PixelData, number_of_frames=frames)]
    try:
        pixels = ds.pixel_array
    except Exception as exc:  # e.g. 12-bit JPEG Extended, which no installed plugin decodes
        pytest.skip(f"pydicom cannot decode the original: {exc}")
    del ds.PixelData
    metadata = dicom_json.dataset_to_json_dict(ds)
    metadata["00020010"] = {"vr": "UI", "Value": [syntax]}  # the client names it: no guessing
    metadata["7FE00010"] = {"vr": "OB", "BulkDataURI": "pixels"}
    lookup = {"pixels": parts} if frames == 1 else {f"pixels/frames/{i + 1}": [p] for i, p in enumerate(parts)}
    built = assemble(metadata, lambda uri: lookup.get(uri) or ([] if frames == 1 else _frames(lookup, uri)),
                     max_loaded_bytes=1 << 20)  # fmt: skip
    assert built.transfer_syntax_uid == syntax
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = pydicom.dcmread(io.BytesIO(part10_bytes(built)))
        assert np.array_equal(again.pixel_array, pixels)
    assert again.file_meta.TransferSyntaxUID == syntax
    assert again.SOPInstanceUID == ds.SOPInstanceUID


def _frames(lookup: dict[str, list[FakePart]], uri: str) -> list[FakePart]:
    found: list[FakePart] = []
    while parts := lookup.get(f"{uri}/frames/{len(found) + 1}"):
        found.extend(parts)
    return found


def test_a_jp2_file_loses_its_boxes() -> None:
    openjpeg = pytest.importorskip("openjpeg")
    array = (np.arange(96 * 80).reshape(80, 96) % 256).astype(np.uint8)  # openjpeg needs 2^6 for its 6 levels
    stream = bytes(openjpeg.encode(array, codec_format=0))  # J2K: a bare code-stream
    jp2 = bytes(openjpeg.encode(array, codec_format=1))  # JP2: boxes around it
    assert codestream(jp2) == stream and codestream(stream) == stream
    metadata = {
        "00080016": {"vr": "UI", "Value": ["1.2.840.10008.5.1.4.1.1.7"]},
        "00080018": {"vr": "UI", "Value": ["1.2.3.4"]},
        "7FE00010": {"vr": "OB", "BulkDataURI": "x"},
    }
    built = assemble(metadata, lambda _: [FakePart(jp2, "image/jp2")], max_loaded_bytes=1 << 20)
    again = pydicom.dcmread(io.BytesIO(part10_bytes(built)))
    assert again.file_meta.TransferSyntaxUID == pydicom.uid.JPEG2000Lossless
    assert (again.Rows, again.Columns, again.PhotometricInterpretation) == (80, 96, "MONOCHROME2")
    assert np.array_equal(again.pixel_array, array)


@pytest.mark.parametrize(
    ("media_type", "params", "message"),
    [
        ("application/octet-stream", {"transfer-syntax": "1.2.840.10008.1.2.4.50"}, "octet-stream"),
        ("image/jpeg", {"transfer-syntax": "1.2.840.10008.1.2.4.90"}, "Table 8.7.3-5"),
        ("text/plain", {}, "Table 8.7.3-5"),
    ],
)
def test_impossible_transfer_syntaxes(media_type: str, params: dict[str, str], message: str) -> None:
    with pytest.raises(UnreadableBulkData, match=message):
        transfer_syntax_for(media_type, params, b"")
