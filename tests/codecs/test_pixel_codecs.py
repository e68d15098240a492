"""Frame decoding and encoding (dicomweb_kit.codecs.pixel_codecs), checked against pydicom's own reading.

Tests that need the ``codecs`` extra skip without it, except under ``CI=true``, where they fail.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pydicom.data
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import generate_frames
from pydicom.pixels.decoders.base import get_decoder
from pydicom.uid import (
    JPEG2000,
    MPEG2MPML,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    HTJ2KLossless,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

from dicomweb_kit.codecs import pixel_codecs
from dicomweb_kit.codecs.pixel_codecs import (
    JLS_NEAR,
    LOSSY,
    FrameProfile,
    can_decode,
    convert_frame,
    decode_frame,
    encodable_syntaxes,
    frame_syntaxes,
    native_bytes,
    unencodable_reason,
)
from dicomweb_kit.pixels.description import PixelDescription

TEST_FILES = Path(pydicom.data.__file__).parent / "test_files"
AS_STORED: dict[str, Any] = {"as_rgb": False}


def describe(**overrides: Any) -> PixelDescription:
    fields: dict[str, Any] = {"rows": 64, "columns": 48, "bits_allocated": 16, "bits_stored": 12}
    return PixelDescription(**(fields | overrides))


def sample_frame(description: PixelDescription) -> np.ndarray:
    """A smooth image with some noise, within Bits Stored: compressible, yet not trivially so."""
    rng = np.random.default_rng(7)
    shape: tuple[int, ...] = (description.rows, description.columns)
    if description.samples_per_pixel > 1:
        shape += (description.samples_per_pixel,)
    top = 2**description.bits_stored
    ramp = np.add.outer(np.arange(description.rows), np.arange(description.columns)).astype(float)
    ramp = ramp / max(1.0, ramp.max()) * (top - 1) * 0.8
    if description.samples_per_pixel > 1:
        ramp = np.stack([ramp, ramp[::-1], ramp[:, ::-1]], axis=-1)
    values = ramp + rng.integers(0, max(2, top // 64), size=shape)
    if description.pixel_representation:
        values -= top // 2
    dtype = f"{'i' if description.pixel_representation else 'u'}{description.bits_allocated // 8}"
    return np.clip(values, *(-(top // 2), top // 2 - 1) if description.pixel_representation else (0, top - 1)).astype(
        dtype
    )


def read_with_pydicom(codestream: bytes, description: PixelDescription, syntax: str, photometric: str) -> np.ndarray:
    """Wrap one encoded frame in a dataset and let pydicom decode it (RGB, as ``pixel_array`` does)."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = UID(syntax)
    ds.Rows, ds.Columns = description.rows, description.columns
    ds.SamplesPerPixel = description.samples_per_pixel
    ds.BitsAllocated, ds.BitsStored = description.bits_allocated, description.bits_stored
    ds.HighBit = description.bits_stored - 1
    ds.PixelRepresentation = description.pixel_representation
    ds.PhotometricInterpretation = photometric
    if description.samples_per_pixel > 1:
        ds.PlanarConfiguration = 0
    ds.PixelData = pixel_codecs.encapsulated_frames([codestream])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    return ds.pixel_array


DESCRIPTIONS = {
    "mono8": describe(bits_allocated=8, bits_stored=8),
    "mono12": describe(),
    "mono16-signed": describe(bits_stored=16, pixel_representation=1),
    "rgb8": describe(bits_allocated=8, bits_stored=8, samples_per_pixel=3, photometric_interpretation="RGB"),
}


def test_the_plugins_cover_every_syntax_pydicom_can_decode(codecs: None) -> None:
    for syntax in (JPEGBaseline8Bit, JPEGExtended12Bit, JPEGLosslessSV1, JPEGLSLossless, JPEGLSNearLossless):
        assert can_decode(syntax), UID(syntax).name
    for syntax in (JPEG2000Lossless, JPEG2000, HTJ2KLossless, RLELossless):
        assert can_decode(syntax), UID(syntax).name
    lossless = {RLELossless, JPEG2000Lossless, JPEGLSLossless, JPEGLosslessSV1}
    assert set(encodable_syntaxes()) >= lossless | {JPEG2000, JPEGBaseline8Bit, JPEGLSNearLossless}
    assert not can_decode(MPEG2MPML)  # video stays as stored
    assert not can_decode("1.2.3.4")


@pytest.mark.parametrize("name", sorted(DESCRIPTIONS))
def test_native_frames_encode_to_every_offered_syntax_and_decode_back(name: str, codecs: None) -> None:
    description = DESCRIPTIONS[name]
    frame = sample_frame(description)
    native = native_bytes(frame, description)
    offered = frame_syntaxes(ExplicitVRLittleEndian, description)
    assert offered[0] == ExplicitVRLittleEndian
    assert {RLELossless, JPEG2000Lossless, JPEGLSLossless, JPEGLosslessSV1} <= set(offered)
    assert (JPEGBaseline8Bit in offered) == (description.bits_allocated == 8)
    for syntax in offered[1:]:
        codestream = convert_frame(native, description, ExplicitVRLittleEndian, syntax)
        photometric = description.photometric_interpretation
        if syntax == JPEGBaseline8Bit and description.samples_per_pixel == 3:
            photometric = "YBR_FULL_422"  # colour JPEG is YCbCr 4:2:2
        decoded = read_with_pydicom(codestream, description, syntax, photometric).astype(np.int64)
        error = np.abs(decoded - frame.astype(np.int64))
        if syntax not in LOSSY:
            assert error.max() == 0, UID(syntax).name
        elif syntax == JPEGLSNearLossless:
            assert error.max() <= JLS_NEAR
        else:
            assert error.mean() <= 0.02 * 2**description.bits_stored, UID(syntax).name
        # And back to native through our own decoder: the same pixels pydicom sees.
        if syntax not in LOSSY or syntax == JPEGLSNearLossless:
            back = convert_frame(codestream, description, syntax, ExplicitVRLittleEndian)
            assert back == native_bytes(decoded.astype(frame.dtype), description)


def test_jpeg_baseline_only_for_8_bit_unsigned_grey_or_colour(codecs: None) -> None:
    assert JPEGBaseline8Bit not in frame_syntaxes(ExplicitVRLittleEndian, describe())
    assert JPEGBaseline8Bit not in frame_syntaxes(ExplicitVRLittleEndian, describe(bits_allocated=8, bits_stored=7))
    palette = describe(bits_allocated=8, bits_stored=8, photometric_interpretation="PALETTE COLOR")
    assert not set(frame_syntaxes(ExplicitVRLittleEndian, palette)) & LOSSY  # lossy indices scramble colours
    assert RLELossless in frame_syntaxes(ExplicitVRLittleEndian, palette)
    reason = unencodable_reason(JPEGBaseline8Bit, FrameProfile.decoded(describe()))
    assert reason is not None and "8-bit" in reason and "16 bits allocated" in reason
    with pytest.raises(ValueError, match="JPEG Baseline"):
        convert_frame(bytes(64 * 48 * 2), describe(), ExplicitVRLittleEndian, JPEGBaseline8Bit)


def test_jpeg_lossless_only_where_gdcm_is_known_to_cope(codecs: None) -> None:
    # GDCM aborts the process on 7 bits stored in 8 allocated: never handed to it.
    assert JPEGLosslessSV1 not in frame_syntaxes(ExplicitVRLittleEndian, describe(bits_allocated=8, bits_stored=7))
    odd = describe(rows=3, columns=5, bits_allocated=8, bits_stored=8)
    assert JPEGLosslessSV1 not in frame_syntaxes(ExplicitVRLittleEndian, odd)  # GDCM fails on these
    ybr = describe(bits_allocated=8, bits_stored=8, samples_per_pixel=3, photometric_interpretation="YBR_FULL")
    assert JPEGLosslessSV1 not in frame_syntaxes(ExplicitVRLittleEndian, ybr)
    for description in (describe(rows=3, columns=5), describe(rows=1, columns=1, bits_stored=16)):
        frame = sample_frame(description)
        codestream = convert_frame(
            native_bytes(frame, description), description, ExplicitVRLittleEndian, JPEGLosslessSV1
        )
        assert np.array_equal(read_with_pydicom(codestream, description, JPEGLosslessSV1, "MONOCHROME2"), frame)


def test_what_the_encoders_cannot_take_is_not_offered(codecs: None) -> None:
    tiny = describe(rows=8, columns=8)
    offered = frame_syntaxes(ExplicitVRLittleEndian, tiny)
    assert JPEG2000Lossless not in offered  # OpenJPEG's 6 resolutions need 32 pixels a side
    assert JPEGLSLossless not in offered  # pyjpegls overflows its buffer on tiny frames
    assert RLELossless in offered
    one_bit = describe(bits_allocated=1, bits_stored=1)
    assert frame_syntaxes(ExplicitVRLittleEndian, one_bit) == (ExplicitVRLittleEndian,)


def test_stored_syntax_first_and_undecodable_only_as_stored(codecs: None) -> None:
    description = describe()
    assert frame_syntaxes(ImplicitVRLittleEndian, description)[0] == ExplicitVRLittleEndian
    assert frame_syntaxes(DeflatedExplicitVRLittleEndian, description)[0] == ExplicitVRLittleEndian
    j2k = frame_syntaxes(JPEG2000Lossless, description)
    assert j2k[:2] == (JPEG2000Lossless, ExplicitVRLittleEndian) and j2k.count(JPEG2000Lossless) == 1
    assert frame_syntaxes(MPEG2MPML, description) == (MPEG2MPML,)


def test_native_to_native_is_the_same_bytes() -> None:
    data = bytes(range(256)) * 4
    assert convert_frame(data, describe(rows=16, columns=32), ImplicitVRLittleEndian, ExplicitVRLittleEndian) is data


def test_rle_works_without_the_plugins() -> None:
    # pydicom's own RLE encoder and decoder need nothing installed.
    description = DESCRIPTIONS["mono12"]
    frame = sample_frame(description)
    codestream = convert_frame(native_bytes(frame, description), description, ExplicitVRLittleEndian, RLELossless)
    assert np.array_equal(decode_frame(codestream, description, RLELossless), frame)


def test_planar_configuration_of_native_output_follows_the_description(codecs: None) -> None:
    description = describe(bits_allocated=8, bits_stored=8, samples_per_pixel=3, photometric_interpretation="RGB")
    frame = sample_frame(description)
    codestream = convert_frame(native_bytes(frame, description), description, ExplicitVRLittleEndian, RLELossless)
    planar = PixelDescription(**{**_fields(description), "planar_configuration": 1})
    by_plane = convert_frame(codestream, planar, RLELossless, ExplicitVRLittleEndian)
    assert by_plane == frame.transpose(2, 0, 1).tobytes()


def _fields(description: PixelDescription) -> dict[str, Any]:
    return {name: getattr(description, name) for name in description.__struct_fields__}


def compressed_files() -> list[Path]:
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in sorted(TEST_FILES.glob("*.dcm")):
            try:
                ds = pydicom.dcmread(path)
            except Exception:
                continue
            syntax = str(ds.file_meta.get("TransferSyntaxUID", ""))
            if "PixelData" not in ds or not syntax or not UID(syntax).is_compressed:
                continue
            try:
                _ = ds.pixel_array
            except Exception:
                continue  # a deliberately broken test file: pydicom itself cannot decode it
            out.append(path)
    return out


@pytest.mark.parametrize("path", compressed_files(), ids=lambda p: p.name)
def test_bundled_compressed_frames_convert_to_native_as_pydicom_decodes_them(path: Path, codecs: None) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(path)
        syntax = str(ds.file_meta.TransferSyntaxUID)
        expected, _ = get_decoder(UID(syntax)).as_array(ds, index=0, **AS_STORED)
        description = PixelDescription.from_attributes(ds.to_json_dict(suppress_invalid_tags=True))
        assert description is not None
        frames = int(ds.get("NumberOfFrames") or 1)
        first = next(generate_frames(ds.PixelData, number_of_frames=frames))
        assert ExplicitVRLittleEndian in frame_syntaxes(syntax, description)
        native = convert_frame(first, description, syntax, ExplicitVRLittleEndian)
        decoded = decode_frame(first, description, syntax)
    assert np.array_equal(decoded, expected)
    if description.planar_configuration == 0 or description.samples_per_pixel == 1:
        assert native == np.ascontiguousarray(expected).astype(expected.dtype.newbyteorder("<")).tobytes()
