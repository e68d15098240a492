"""Decoding and encoding single frames between transfer syntaxes (PS3.5 §8, Annex A.4).

The frame-level half of transcoding: WADO-RS frames, rendered images and thumbnails go through
these functions, and :mod:`.transcode` builds whole instances from them. Decoders come from
pydicom's plugin system (the ``codecs`` extra installs pylibjpeg, pyjpegls and python-gdcm);
encoders are pydicom's (RLE, JPEG 2000, JPEG-LS), GDCM's for JPEG Lossless SV1 (the image/jpeg
default of PS3.18 Table 8.7.3-5) and Pillow's for JPEG Baseline. What the installed
plugins cannot produce is simply not offered, so negotiation answers 406 rather than failing later.

Choices made here:

* Decoding is "as stored" (pydicom's ``as_rgb=False``, no LUTs): YBR data stays YBR. A JPEG
  YBR_FULL_422 frame decodes to full-resolution YBR_FULL, as pydicom's decoders return it; JPEG
  2000 YBR_ICT/YBR_RCT frames decode to RGB (the codec undoes its component transform).
* Encoding never changes the colour space the frame is described in: JPEG 2000 is written without
  a multi-component transform (PS3.5 §8.2.4 allows RGB then), JPEG-LS without a colour transform.
  JPEG Baseline is the exception by nature: colour frames become YCbCr 4:2:2 (YBR_FULL_422).
* Lossy targets (:data:`LOSSY`: JPEG Baseline, JPEG 2000 irreversible, JPEG-LS near-lossless) are
  listed like the others, but dicomweb-kit never picks one itself: a client gets lossy data from
  lossless data only when it names that transfer syntax (or a media type whose PS3.18 default
  it is). PS3.18 §8.7.3.4 lets the server fall back to lossy only for data it holds lossy.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import numpy as np
from pydicom.pixels.decoders.base import get_decoder
from pydicom.pixels.encoders.base import ENCODING_PROFILES, get_encoder
from pydicom.uid import (
    JPEG2000,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

from ..pixels.description import PixelDescription

__all__ = [
    "J2K_LOSSY_RATIO",
    "JLS_NEAR",
    "JPEG_QUALITY",
    "LOSSY",
    "LOSSY_METHOD",
    "UNCOMPRESSED",
    "FrameProfile",
    "can_decode",
    "convert_frame",
    "decode_frame",
    "encapsulated_frames",
    "encodable_syntaxes",
    "encode_array",
    "frame_syntaxes",
    "native_bytes",
    "unencodable_reason",
]

UNCOMPRESSED = frozenset(
    {ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian, DeflatedExplicitVRLittleEndian}
)

#: Targets whose encoding loses information; produced only when a client names them (module doc).
LOSSY = frozenset({JPEGBaseline8Bit, JPEG2000, JPEGLSNearLossless})

#: Pillow quality of JPEG Baseline frames we encode (libjpeg scale; 90 keeps errors of a few levels).
JPEG_QUALITY = 90
#: Compression ratio of the JPEG 2000 (1.2.840.10008.1.2.4.91) frames we encode, irreversibly.
J2K_LOSSY_RATIO = 10.0
#: The JPEG-LS NEAR parameter of near-lossless frames we encode: no sample is off by more than this.
JLS_NEAR = 2

# Lossy compression method codes for Lossy Image Compression Method (0028,2114), PS3.3 §C.7.6.1.1.5.1.
LOSSY_METHOD = {JPEGBaseline8Bit: "ISO_10918_1", JPEG2000: "ISO_15444_1", JPEGLSNearLossless: "ISO_14495_1"}


class FrameProfile(NamedTuple):
    """How one decoded frame's samples look: what an encoder is checked against (PS3.5 §8.2)."""

    rows: int
    columns: int
    samples_per_pixel: int
    bits_allocated: int
    bits_stored: int
    pixel_representation: int
    photometric_interpretation: str

    @classmethod
    def decoded(cls, description: PixelDescription, /, *, as_rgb: bool = False) -> FrameProfile:
        """The profile of a frame of ``description`` once decoded by pydicom (interleaved samples)."""
        photometric = description.photometric_interpretation
        if photometric in ("YBR_ICT", "YBR_RCT"):
            photometric = "RGB"  # the JPEG 2000 codec undoes its own component transform
        elif photometric.startswith("YBR_FULL"):
            photometric = "RGB" if as_rgb else "YBR_FULL"  # 4:2:2 is upsampled on decoding
        return cls(
            description.rows,
            description.columns,
            description.samples_per_pixel,
            description.bits_allocated,
            description.bits_stored,
            description.pixel_representation,
            photometric,
        )

    @property
    def native_length(self) -> int:
        return self.rows * self.columns * self.samples_per_pixel * ((self.bits_allocated + 7) // 8)

    def encoder_options(self) -> dict[str, Any]:
        """Keyword options for ``pydicom`` encoders: this profile, one interleaved frame."""
        return {**self._asdict(), "number_of_frames": 1, "planar_configuration": 0}


# --------------------------------------------------------------------------------------------
# What the installed plugins can do
# --------------------------------------------------------------------------------------------


@functools.cache
def can_decode(transfer_syntax: str, /) -> bool:
    """Can frames stored in ``transfer_syntax`` be decoded to native pixels here?"""
    if transfer_syntax in UNCOMPRESSED:
        return True
    try:
        return bool(get_decoder(UID(transfer_syntax)).is_available)
    except (NotImplementedError, ValueError):
        return False


@functools.cache
def _pydicom_encoder_plugins(transfer_syntax: str) -> tuple[str, ...]:
    try:
        encoder = get_encoder(UID(transfer_syntax))
    except (NotImplementedError, ValueError):
        return ()
    available = set(encoder.available_plugins)
    # pylibjpeg's RLE is C and an order of magnitude faster than pydicom's own numpy encoder.
    preferred = ("pylibjpeg", "pyjpegls", "pydicom", "gdcm")
    return tuple(name for name in preferred if name in available)


@functools.cache
def _pillow_jpeg() -> bool:
    from PIL import features

    return bool(features.check_codec("jpg"))


def _profile_reason(transfer_syntax: str, profile: FrameProfile) -> str | None:
    """Why PS3.5 §8.2 (pydicom's table of it) forbids ``profile`` in ``transfer_syntax``, or None."""
    for photometric, samples, representations, allocated, stored in ENCODING_PROFILES[UID(transfer_syntax)]:
        if (
            profile.photometric_interpretation == photometric
            and profile.samples_per_pixel == samples
            and profile.pixel_representation in representations
            and profile.bits_allocated in allocated
            and profile.bits_stored in stored
        ):
            return None
    return (
        f"{profile.photometric_interpretation}, {profile.samples_per_pixel} sample(s) per pixel,"
        f" {profile.bits_allocated} bits allocated, {profile.bits_stored} stored,"
        f" {'signed' if profile.pixel_representation else 'unsigned'} is not allowed in it (PS3.5 §8.2)"
    )


def _jpeg_baseline_reason(profile: FrameProfile) -> str | None:
    # PS3.5 §8.2.1, Table 8.2.1-1: process 1 is 8-bit unsigned only. Palette indices are not
    # luminance: lossy coding would scramble the colours, so PALETTE COLOR is refused too.
    if profile.bits_allocated != 8 or profile.bits_stored != 8 or profile.pixel_representation:
        return (
            f"it holds 8-bit unsigned samples only; this image has {profile.bits_allocated} bits allocated,"
            f" {profile.bits_stored} stored{', signed' if profile.pixel_representation else ''}"
        )
    grey = profile.samples_per_pixel == 1 and profile.photometric_interpretation in ("MONOCHROME1", "MONOCHROME2")
    colour = profile.samples_per_pixel == 3 and profile.photometric_interpretation in ("RGB", "YBR_FULL")
    if not (grey or colour):
        return f"{profile.photometric_interpretation} images are not encoded lossily"
    return None


def _pydicom_reason(transfer_syntax: str, profile: FrameProfile) -> str | None:
    if reason := _profile_reason(transfer_syntax, profile):
        return reason
    if transfer_syntax in (JPEG2000Lossless, JPEG2000):
        if profile.bits_stored > 24:
            return "the OpenJPEG encoder takes at most 24 bits stored"
        if min(profile.rows, profile.columns) < 32:
            return "the OpenJPEG encoder's 6 wavelet resolutions need at least 32 rows and columns"
    if transfer_syntax in (JPEGLSLossless, JPEGLSNearLossless) and profile.native_length < 256:
        # pyjpegls sizes its output buffer by the input: a tiny noisy frame overflows it.
        return "the pyjpegls encoder needs a frame of at least 256 bytes"
    if transfer_syntax == JPEGLSNearLossless and profile.pixel_representation:
        # The NEAR error can flip the sign of samples at the edge of their range (pydicom refuses).
        return "signed samples are not encoded near-lossless"
    if transfer_syntax == RLELossless and profile.samples_per_pixel * profile.bits_allocated // 8 > 15:
        return "RLE holds at most 15 byte segments (PS3.5 §G.2)"
    return None


def _encode_pillow_jpeg(array: np.ndarray, profile: FrameProfile) -> tuple[bytes, str]:
    from PIL import Image

    mode = {"RGB": "RGB", "YBR_FULL": "YCbCr"}.get(profile.photometric_interpretation, "L")
    image = Image.frombytes(mode, (profile.columns, profile.rows), np.ascontiguousarray(array, dtype=np.uint8))
    out = io.BytesIO()
    if mode == "L":
        image.save(out, "JPEG", quality=JPEG_QUALITY)
        return out.getvalue(), profile.photometric_interpretation
    # Libjpeg turns RGB into YCbCr; chroma is halved horizontally (PS3.5 §8.2.1: YBR_FULL_422).
    image.save(out, "JPEG", quality=JPEG_QUALITY, subsampling="4:2:2")
    return out.getvalue(), "YBR_FULL_422"


def _encode_pydicom(transfer_syntax: str) -> Callable[[np.ndarray, FrameProfile], tuple[bytes, str]]:
    options: dict[str, Any] = {}
    if transfer_syntax in (JPEG2000Lossless, JPEG2000):
        options["use_mct"] = False  # keep the photometric interpretation (module doc)
    if transfer_syntax == JPEG2000:
        options["j2k_cr"] = [J2K_LOSSY_RATIO]
    if transfer_syntax == JPEGLSNearLossless:
        options["jls_error"] = JLS_NEAR

    def encode(array: np.ndarray, profile: FrameProfile) -> tuple[bytes, str]:
        encoder = get_encoder(UID(transfer_syntax))
        plugin = _pydicom_encoder_plugins(transfer_syntax)[0]
        data = encoder.encode(array, encoding_plugin=plugin, **profile.encoder_options(), **options)
        return bytes(data), profile.photometric_interpretation

    return encode


@functools.cache
def _gdcm() -> bool:
    import importlib.util

    return importlib.util.find_spec("gdcm") is not None


def _jpeg_lossless_reason(profile: FrameProfile) -> str | None:
    # GDCM aborts the process (an uncaught C++ exception) on some layouts, e.g. 7 bits stored in
    # 8 allocated, and fails on others: only the layouts our tests cover are handed to it.
    if reason := _profile_reason(JPEGLosslessSV1, profile):
        return reason
    if profile.photometric_interpretation not in ("MONOCHROME1", "MONOCHROME2", "PALETTE COLOR", "RGB"):
        return f"the GDCM encoder does not take {profile.photometric_interpretation}"
    if profile.bits_allocated == 8 and (profile.bits_stored != 8 or profile.native_length % 2):
        return "the GDCM encoder takes 8-bit frames with 8 bits stored and an even number of samples only"
    if profile.bits_allocated == 16 and profile.bits_stored < 8:
        return "the GDCM encoder takes at least 8 bits stored"
    return None


def _encode_gdcm_jpeg_lossless(array: np.ndarray, profile: FrameProfile) -> tuple[bytes, str]:
    """JPEG Lossless, first-order prediction (process 14, selection value 1) by GDCM, set up as
    pydicom's GDCM RLE encoder does (the image must come from an ImageWriter that stays alive)."""
    import gdcm  # type: ignore[import-untyped]

    writer = gdcm.ImageWriter()
    image = writer.GetImage()
    image.SetNumberOfDimensions(2)
    image.SetDimensions((profile.columns, profile.rows, 1))
    kind = gdcm.PhotometricInterpretation.GetPIType(profile.photometric_interpretation)
    image.SetPhotometricInterpretation(gdcm.PhotometricInterpretation(kind))
    image.SetTransferSyntax(gdcm.TransferSyntax(gdcm.TransferSyntax.ImplicitVRLittleEndian))
    image.SetPixelFormat(
        gdcm.PixelFormat(
            profile.samples_per_pixel,
            profile.bits_allocated,
            profile.bits_stored,
            profile.bits_stored - 1,
            profile.pixel_representation,
        )
    )
    if profile.samples_per_pixel > 1:
        image.SetPlanarConfiguration(0)
    element = gdcm.DataElement(gdcm.Tag(0x7FE0, 0x0010))
    kind = "i" if profile.pixel_representation else "u"
    element.SetByteStringValue(np.ascontiguousarray(array, dtype=f"<{kind}{profile.bits_allocated // 8}").tobytes())
    image.SetDataElement(element)
    converter = gdcm.ImageChangeTransferSyntax()
    converter.SetTransferSyntax(gdcm.TransferSyntax(gdcm.TransferSyntax.JPEGLosslessProcess14_1))
    converter.SetInput(image)
    if not converter.Change():
        raise ValueError("GDCM could not encode the frame as JPEG Lossless")
    fragments = converter.GetOutput().GetDataElement().GetSequenceOfFragments()
    if fragments is None or fragments.GetNumberOfFragments() != 1:
        raise ValueError("GDCM did not produce one JPEG Lossless fragment")
    buffer: str = fragments.GetFragment(0).GetByteValue().GetBuffer()
    return buffer.encode("utf-8", "surrogateescape"), profile.photometric_interpretation


class _Target(NamedTuple):
    available: Callable[[], bool]
    reason: Callable[[FrameProfile], str | None]
    encode: Callable[[np.ndarray, FrameProfile], tuple[bytes, str]]


def _pydicom_target(transfer_syntax: str) -> _Target:
    return _Target(
        lambda: bool(_pydicom_encoder_plugins(transfer_syntax)),
        functools.partial(_pydicom_reason, transfer_syntax),
        _encode_pydicom(transfer_syntax),
    )


# Every syntax we know how to encode into, lossless first: the order frames are offered in.
_TARGETS: dict[str, _Target] = {
    RLELossless: _pydicom_target(RLELossless),
    JPEG2000Lossless: _pydicom_target(JPEG2000Lossless),
    JPEGLSLossless: _pydicom_target(JPEGLSLossless),
    JPEGLosslessSV1: _Target(_gdcm, _jpeg_lossless_reason, _encode_gdcm_jpeg_lossless),
    JPEGBaseline8Bit: _Target(_pillow_jpeg, _jpeg_baseline_reason, _encode_pillow_jpeg),
    JPEG2000: _pydicom_target(JPEG2000),
    JPEGLSNearLossless: _pydicom_target(JPEGLSNearLossless),
}


@functools.cache
def encodable_syntaxes() -> tuple[str, ...]:
    """The compressed transfer syntaxes the installed encoders can produce (lossless first)."""
    return tuple(ts for ts, target in _TARGETS.items() if target.available())


def unencodable_reason(transfer_syntax: str, profile: FrameProfile, /) -> str | None:
    """Why frames of ``profile`` cannot be encoded in ``transfer_syntax`` here, or None if they can."""
    if transfer_syntax not in encodable_syntaxes():
        return "no encoder for it is installed"
    return _TARGETS[transfer_syntax].reason(profile)


def encode_array(array: np.ndarray, profile: FrameProfile, transfer_syntax: str, /) -> tuple[bytes, str]:
    """One decoded frame (rows, columns[, samples]) encoded in ``transfer_syntax``: the codestream
    (one fragment's worth, PS3.5 §A.4) and the Photometric Interpretation it is in."""
    if reason := unencodable_reason(transfer_syntax, profile):
        raise ValueError(f"cannot encode in {UID(transfer_syntax).name}: {reason}")
    return _TARGETS[transfer_syntax].encode(array, profile)


# --------------------------------------------------------------------------------------------
# The frame seam (WADO-RS frames, rendered, thumbnails)
# --------------------------------------------------------------------------------------------


def frame_syntaxes(stored_ts: str, description: PixelDescription, /) -> tuple[str, ...]:
    """Transfer syntaxes one frame of an instance stored in ``stored_ts`` can be sent in, the
    stored one first. Native frames are the same bytes in every uncompressed syntax, so they are
    offered as Explicit VR Little Endian."""
    first = ExplicitVRLittleEndian if stored_ts in UNCOMPRESSED else stored_ts
    if not can_decode(stored_ts):
        return (first,)
    out = [first]
    if first != ExplicitVRLittleEndian:
        out.append(ExplicitVRLittleEndian)
    profile = FrameProfile.decoded(description)
    out += [ts for ts in encodable_syntaxes() if ts != first and unencodable_reason(ts, profile) is None]
    return tuple(out)


def convert_frame(data: bytes, description: PixelDescription, source_ts: str, target_ts: str, /) -> bytes:
    """One frame's bytes re-encoded from ``source_ts`` to ``target_ts`` (one of :func:`frame_syntaxes`).

    Native output is little endian, as wide as Bits Allocated, in the instance's Planar
    Configuration; colour from a YBR_FULL_422 JPEG is full-resolution YBR_FULL (module doc).
    """
    if source_ts == target_ts or (source_ts in UNCOMPRESSED and target_ts in UNCOMPRESSED):
        return data
    array = decode_frame(data, description, source_ts)
    if target_ts in UNCOMPRESSED:
        return native_bytes(array, description)
    codestream, _ = encode_array(array, FrameProfile.decoded(description), target_ts)
    return codestream


def decode_frame(data: bytes, description: PixelDescription, source_ts: str, /, *, as_rgb: bool = False) -> np.ndarray:
    """One frame as an array (rows, columns[, samples]), exactly as stored (no LUTs applied);
    ``as_rgb=True`` converts YBR colour to RGB as pydicom's ``pixel_array`` does."""
    options: dict[str, Any] = {
        **description.decoder_options(),
        "number_of_frames": 1,
        "transfer_syntax_uid": UID(source_ts),
        "as_rgb": as_rgb,
    }
    if source_ts not in UNCOMPRESSED:
        data = encapsulated_frames([data])  # pydicom reads a bare buffer as encapsulated Pixel Data
    array, _ = get_decoder(UID(source_ts)).as_array(data, index=0, **options)
    return array


def native_bytes(array: np.ndarray, description: PixelDescription, /) -> bytes:
    """A decoded frame as native pixel data (PS3.5 §8.1.1): little endian, Bits Allocated wide."""
    width = max(1, description.bits_allocated // 8)
    kind = "i" if description.pixel_representation else "u"
    if array.ndim == 3 and description.planar_configuration == 1:
        array = array.transpose(2, 0, 1)  # colour-by-plane (PS3.3 §C.7.6.3.1.3)
    return np.ascontiguousarray(array, dtype=f"<{kind}{width}").tobytes()


def encapsulated_frames(fragments: Iterable[bytes], /) -> bytes:
    """Frames as the value of an encapsulated Pixel Data element, one fragment per frame (PS3.5
    §A.4), with a Basic Offset Table when the offsets fit its 32-bit entries."""
    from pydicom.encaps import encapsulate

    frames = list(fragments)
    total = sum(len(frame) + (len(frame) & 1) + 8 for frame in frames)
    return encapsulate(frames, has_bot=total < 2**32)
