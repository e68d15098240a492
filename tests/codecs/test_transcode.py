"""Whole-instance transcoding (dicomweb_kit.codecs.transcode): every bundled pydicom file with pixel
data, to every syntax it can be produced in, compared with pydicom's decoding of the original.

Tests that need the ``codecs`` extra skip without it, except under ``CI=true``, where they fail.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pydicom.data
import pytest
from pydicom.uid import (
    MPEG2MPML,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLSNearLossless,
    RLELossless,
)

from dicomweb_kit.codecs.pixel_codecs import JLS_NEAR, LOSSY, can_decode
from dicomweb_kit.codecs.transcode import (
    producible,
    producible_for_syntax,
    to_explicit_vr_little_endian,
    transcode,
    unproducible_reason,
)
from dicomweb_kit.pixels.description import PixelDescription
from dicomweb_kit.testing import make_dataset, part10_bytes

TEST_FILES = Path(pydicom.data.__file__).parent / "test_files"


def attributes_of(data: bytes) -> dict[str, Any]:
    """The DICOM JSON attributes the index would hold for ``data``."""
    header = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    return header.to_json_dict(suppress_invalid_tags=True)


def pixel_files() -> list[Path]:
    """Bundled Part 10 files with Pixel Data that pydicom decodes (some are broken on purpose)."""
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in sorted(TEST_FILES.glob("*.dcm")):
            data = path.read_bytes()
            if data[128:132] != b"DICM":
                continue
            try:
                ds = pydicom.dcmread(io.BytesIO(data))
                if "PixelData" not in ds or not ds.file_meta.get("TransferSyntaxUID"):
                    continue
                _ = ds.pixel_array
            except Exception:
                continue
            out.append(path)
    return out


FILES = pixel_files()


def test_the_corpus_covers_the_compressed_syntaxes(codecs: None) -> None:
    syntaxes = {str(pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID) for path in FILES}
    assert len(FILES) >= 40
    jpeg_ls, jpeg_lossless = "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.70"
    assert {JPEG2000Lossless, JPEGBaseline8Bit, RLELossless, jpeg_ls, jpeg_lossless} <= syntaxes


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_producible_syntax_holds_the_same_pixels(path: Path, codecs: None) -> None:
    data = path.read_bytes()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        original = pydicom.dcmread(io.BytesIO(data))
        stored = str(original.file_meta.TransferSyntaxUID)
        expected = original.pixel_array.astype(np.int64)
        targets = producible(stored, attributes_of(data))
        assert ExplicitVRLittleEndian in targets and can_decode(stored)
        assert not targets & {ImplicitVRLittleEndian, ExplicitVRBigEndian}  # PS3.18 §8.7.3.5
        for target in sorted(targets):
            out = transcode(data, target)
            ds = pydicom.dcmread(io.BytesIO(out))
            assert ds.file_meta.TransferSyntaxUID == target
            assert ds.SOPInstanceUID == original.SOPInstanceUID
            assert ds.file_meta.MediaStorageSOPInstanceUID == original.SOPInstanceUID
            assert ds.get("PatientName") == original.get("PatientName")
            got = ds.pixel_array.astype(np.int64)
            assert got.shape == expected.shape, UID(target).name
            error = np.abs(got - expected)
            if target not in LOSSY or target == stored:
                assert error.max() == 0, UID(target).name
            elif target == JPEGLSNearLossless:
                assert error.max() <= JLS_NEAR
            else:
                # Lossy: small on average, relative to the range the samples use.
                assert error.mean() <= 0.03 * max(1, np.ptp(expected)), UID(target).name
            if target in LOSSY and target != stored:
                assert ds.LossyImageCompression == "01"  # PS3.3 §C.7.6.1.1.5
                assert "ISO_" in str(ds.LossyImageCompressionMethod)


def test_lossy_marks_accumulate() -> None:
    ds = make_dataset(rows=40, columns=40, BitsAllocated=8, BitsStored=8, HighBit=7)
    ds.PixelData = np.arange(1600, dtype=np.uint8).tobytes()
    ds.LossyImageCompression = "01"
    ds.LossyImageCompressionRatio = 5
    ds.LossyImageCompressionMethod = "ISO_14495_1"
    out = pydicom.dcmread(io.BytesIO(transcode(part10_bytes(ds), JPEGBaseline8Bit)))
    assert out.LossyImageCompressionMethod == ["ISO_14495_1", "ISO_10918_1"]
    assert len(out.LossyImageCompressionRatio) == 2 and float(out.LossyImageCompressionRatio[1]) > 1


def test_native_to_deflated_and_back() -> None:
    ds = make_dataset(rows=32, columns=32)
    data = part10_bytes(ds)
    deflated = transcode(data, DeflatedExplicitVRLittleEndian)
    assert len(deflated) < len(data)
    read = pydicom.dcmread(io.BytesIO(deflated))
    assert read.file_meta.TransferSyntaxUID == DeflatedExplicitVRLittleEndian
    assert read.PixelData == ds.PixelData
    assert pydicom.dcmread(io.BytesIO(transcode(deflated, ExplicitVRLittleEndian))).PixelData == ds.PixelData


def test_an_instance_without_pixels_is_relabelled() -> None:
    data = (TEST_FILES / "rtplan.dcm").read_bytes()
    attributes = attributes_of(data)
    assert PixelDescription.from_attributes(attributes) is None
    assert RLELossless in producible(ImplicitVRLittleEndian, attributes)  # pydicom's own encoder
    out = pydicom.dcmread(io.BytesIO(transcode(data, RLELossless)))
    original = pydicom.dcmread(io.BytesIO(data))
    assert out.file_meta.TransferSyntaxUID == RLELossless
    assert [e.tag for e in out] == [e.tag for e in original]
    assert out.BeamSequence[0].BeamName == original.BeamSequence[0].BeamName


def test_what_cannot_be_produced_says_why(codecs: None) -> None:
    data = (TEST_FILES / "CT_small.dcm").read_bytes()  # 16-bit
    attributes = attributes_of(data)
    description = PixelDescription.from_attributes(attributes)
    assert JPEGBaseline8Bit not in producible(ExplicitVRLittleEndian, attributes)
    assert JPEGBaseline8Bit in producible_for_syntax(ExplicitVRLittleEndian)  # the syntax-level upper bound
    reason = unproducible_reason(ExplicitVRLittleEndian, description, JPEGBaseline8Bit)
    assert reason is not None and "8-bit" in reason
    assert unproducible_reason(ExplicitVRLittleEndian, description, ImplicitVRLittleEndian) is not None
    with pytest.raises(ValueError, match="JPEG Baseline"):
        transcode(data, JPEGBaseline8Bit)
    with pytest.raises(ValueError, match="PS3.18"):
        transcode(data, ExplicitVRBigEndian)


def test_undecodable_syntaxes_are_only_sent_as_stored() -> None:
    assert producible_for_syntax(MPEG2MPML) == {MPEG2MPML}
    assert producible_for_syntax(ImplicitVRLittleEndian) >= {ExplicitVRLittleEndian, DeflatedExplicitVRLittleEndian}
    assert ImplicitVRLittleEndian not in producible_for_syntax(ImplicitVRLittleEndian)


def test_big_endian_to_explicit_little_endian_swaps_words() -> None:
    data = (TEST_FILES / "MR_small_bigendian.dcm").read_bytes()
    out = pydicom.dcmread(io.BytesIO(to_explicit_vr_little_endian(data)))
    assert out.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert np.array_equal(out.pixel_array, pydicom.dcmread(io.BytesIO(data)).pixel_array)
