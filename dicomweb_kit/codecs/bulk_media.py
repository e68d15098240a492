"""What a STOW-RS bulk data part's media type and bytes say about the instance it belongs to.

A metadata + bulk data request (PS3.18 §10.5.1.2) sends Pixel Data as ``application/octet-stream``
(native, Explicit VR Little Endian) or in a compressed media type whose transfer syntax is given
by PS3.18 Table 8.7.3-5, optionally narrowed by a ``transfer-syntax`` parameter. Without that
parameter we read the compressed stream's own header to pick among the syntaxes of its media
type (a JPEG SOF0 is Baseline, not the table's default Lossless SV1), and to learn the image's
geometry (Rows, Columns, Samples per Pixel, bit depth) for the attributes the client left out.

``image/png`` (and ``image/gif``) have no DICOM transfer syntax: they are decoded with Pillow to
native pixels, as dcm4chee does for "JPEG/PNG encapsulated as new instances".
"""

from __future__ import annotations

import io
import struct
from collections.abc import Mapping
from typing import Final

import msgspec
from pydicom import uid as _uid

from ..media_types import EXPLICIT_VR_LE, canonical_media_type, transfer_syntaxes_for_media_type

__all__ = [
    "DECODED_MEDIA_TYPES",
    "JPEG_2000_TYPES",
    "NATIVE_MEDIA_TYPE",
    "DecodedImage",
    "ImageInfo",
    "UnreadableBulkData",
    "codestream",
    "decode_image",
    "image_info",
    "is_jp2_file",
    "transfer_syntax_for",
]

NATIVE_MEDIA_TYPE: Final = "application/octet-stream"
# Decoded to native pixels: these formats have no DICOM transfer syntax.
DECODED_MEDIA_TYPES: Final = frozenset({"image/png", "image/gif"})
JPEG_2000_TYPES: Final = frozenset({"image/jp2", "image/jpx", "image/jphc"})
# The lossy member of each JPEG 2000 family, chosen when the code-stream uses the irreversible
# 9-7 wavelet (PS3.5 §A.4.4: the reversible 5-3 one is what lossless coding needs).
_J2K_LOSSY: Final = {
    "image/jp2": str(_uid.JPEG2000),
    "image/jpx": str(_uid.JPEG2000MC),
    "image/jphc": str(_uid.HTJ2K),
}
_J2K_LOSSLESS: Final = {
    "image/jp2": str(_uid.JPEG2000Lossless),
    "image/jpx": str(_uid.JPEG2000MCLossless),
    "image/jphc": str(_uid.HTJ2KLossless),
}


class UnreadableBulkData(ValueError):
    """A bulk data part does not hold what its media type says, or names a wrong transfer syntax."""


class ImageInfo(msgspec.Struct, frozen=True, kw_only=True):
    """The geometry a compressed frame's header declares (what the Image Pixel Module must say)."""

    rows: int
    columns: int
    samples_per_pixel: int
    bits_stored: int
    photometric_interpretation: str | None = None

    @property
    def bits_allocated(self) -> int:
        return 8 if self.bits_stored <= 8 else 16


class DecodedImage(msgspec.Struct, frozen=True, kw_only=True):
    """A PNG/GIF decoded to native pixels, little endian, colour-by-pixel."""

    info: ImageInfo
    pixels: bytes


def transfer_syntax_for(media_type: str, params: Mapping[str, str], head: bytes, /) -> str:
    """The transfer syntax of Pixel Data sent as one or more parts of ``media_type``.

    ``head`` is the start of the first part (a few KiB: enough for the stream's header).
    Order: the part's ``transfer-syntax`` parameter (PS3.18 §8.7.3.5.2), else what the stream's
    header says, else the media type's default in Table 8.7.3-5.

    Raises:
        UnreadableBulkData: a media type with no transfer syntax, or a parameter that is not one
            of its media type's syntaxes.
    """
    media_type = canonical_media_type(media_type)
    if media_type == NATIVE_MEDIA_TYPE:
        named = params.get("transfer-syntax")
        if named not in (None, EXPLICIT_VR_LE):
            # PS3.18 §8.7.3.3.1: uncompressed bulk data is little endian bytes, nothing else.
            raise UnreadableBulkData(f"application/octet-stream bulk data cannot have transfer-syntax={named}")
        return EXPLICIT_VR_LE
    syntaxes = transfer_syntaxes_for_media_type(media_type)
    if not syntaxes:
        raise UnreadableBulkData(f"Pixel Data cannot be sent as {media_type} (PS3.18 Table 8.7.3-5)")
    named = params.get("transfer-syntax")
    if named is not None:
        if named not in syntaxes:
            raise UnreadableBulkData(
                f"transfer-syntax={named} is not one of {media_type}'s: {', '.join(syntaxes)} (PS3.18 Table 8.7.3-5)"
            )
        return named
    sniffed = _sniff(media_type, head)
    return sniffed if sniffed in syntaxes else syntaxes[0]


def _sniff(media_type: str, head: bytes) -> str | None:
    try:
        if media_type == "image/jpeg":
            return _jpeg_syntax(head)
        if media_type == "image/jls":
            near = _jls_near(head)
            return None if near is None else str(_uid.JPEGLSLossless if near == 0 else _uid.JPEGLSNearLossless)
        if media_type in JPEG_2000_TYPES:
            reversible = _j2k_reversible(codestream(head))
            if reversible is None:
                return None
            return (_J2K_LOSSLESS if reversible else _J2K_LOSSY)[media_type]
    except (struct.error, IndexError):
        return None
    return None


# ----------------------------------------------------------------------------------------- JPEG (ITU T.81)

_SOF_LOSSLESS: Final = frozenset({0xC3, 0xC7, 0xCB, 0xCF})
_SOF: Final = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg_segments(data: bytes) -> list[tuple[int, bytes]]:
    """The marker segments of a JPEG (or JPEG-LS) stream up to and including the first SOS."""
    if data[:2] != b"\xff\xd8":
        return []
    segments = []
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            break
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        (length,) = struct.unpack_from(">H", data, pos + 2)
        segments.append((marker, data[pos + 4 : pos + 2 + length]))
        if marker == 0xDA:
            break
        pos += 2 + length
    return segments


def _jpeg_syntax(head: bytes) -> str | None:
    segments = _jpeg_segments(head)
    sof = next((m for m, _ in segments if m in _SOF), None)
    if sof is None:
        return None
    if sof == 0xC0:
        return str(_uid.JPEGBaseline8Bit)
    if sof in (0xC1, 0xC2):
        return str(_uid.JPEGExtended12Bit)
    if sof in _SOF_LOSSLESS:
        sos = next((body for m, body in segments if m == 0xDA), None)
        if sos is None:
            return str(_uid.JPEGLossless)
        predictor = sos[1 + 2 * sos[0]]  # Ss: the predictor of a lossless scan (T.81 §H.1.2.1)
        return str(_uid.JPEGLosslessSV1 if predictor == 1 else _uid.JPEGLossless)
    return None


def _jpeg_info(head: bytes) -> ImageInfo | None:
    segments = _jpeg_segments(head)
    found = next(((m, body) for m, body in segments if m in _SOF or m == 0xF7), None)
    if found is None:
        return None
    marker, sof = found
    precision, rows, columns, components = struct.unpack_from(">BHHB", sof)
    photometric = "MONOCHROME2" if components == 1 else None
    if components == 3:
        adobe = next((body for m, body in segments if m == 0xEE and body[:5] == b"Adobe" and len(body) >= 12), None)
        ids = bytes(sof[6 + 3 * i] for i in range(3))
        if marker in _SOF_LOSSLESS or marker == 0xF7 or (adobe is not None and adobe[11] == 0) or ids == b"RGB":
            # Lossless JPEG and JPEG-LS keep RGB; so do Adobe's transform 0 and libjpeg's "RGB" ids.
            photometric = "RGB"
        else:
            # Lossy JPEG colour is YCbCr (JFIF); subsampled chroma is YBR_FULL_422 (PS3.5 §8.2.1).
            sampling = {sof[6 + 3 * i + 1] for i in range(3)}
            photometric = "YBR_FULL_422" if len(sampling) > 1 else "YBR_FULL"
    return ImageInfo(
        rows=rows, columns=columns, samples_per_pixel=components, bits_stored=precision,
        photometric_interpretation=photometric,
    )  # fmt: skip


def _jls_near(head: bytes) -> int | None:
    sos = next((body for m, body in _jpeg_segments(head) if m == 0xDA), None)
    if sos is None:
        return None
    return sos[1 + 2 * sos[0]]  # NEAR follows the component specifications (T.87 §C.2.3)


# ------------------------------------------------------------------------------------------ JPEG 2000

_JP2_SIGNATURE: Final = b"\x00\x00\x00\x0cjP  \r\n\x87\n"


def is_jp2_file(head: bytes, /) -> bool:
    """Whether ``head`` starts a JP2 file (ISO 15444-1 Annex I) rather than a bare code-stream."""
    return head.startswith(_JP2_SIGNATURE)


def codestream(data: bytes, /) -> bytes:
    """The JPEG 2000 code-stream of ``data``: a JP2 file's ``jp2c`` box, else ``data`` itself.

    PS3.5 §A.4.4: a fragment holds the bare code-stream, never the JP2 file format around it.
    """
    if not is_jp2_file(data):
        return data
    pos = 0
    while pos + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        header = 8
        if length == 1:
            (length,) = struct.unpack_from(">Q", data, pos + 8)
            header = 16
        elif length == 0:
            length = len(data) - pos
        if kind == b"jp2c":
            return data[pos + header : pos + length]
        if length < header:
            break
        pos += length
    raise UnreadableBulkData("a JP2 file without a code-stream (jp2c) box")


def _j2k_markers(stream: bytes) -> dict[int, bytes]:
    """The main header's marker segments (SIZ, COD, ...) of a code-stream, by marker."""
    if stream[:2] != b"\xff\x4f":
        return {}
    markers: dict[int, bytes] = {}
    pos = 2
    while pos + 4 <= len(stream) and stream[pos] == 0xFF and stream[pos + 1] != 0x90:  # until SOT
        marker = stream[pos + 1]
        (length,) = struct.unpack_from(">H", stream, pos + 2)
        markers.setdefault(marker, stream[pos + 4 : pos + 2 + length])
        pos += 2 + length
    return markers


def _j2k_reversible(stream: bytes) -> bool | None:
    cod = _j2k_markers(stream).get(0x52)
    if cod is None or len(cod) < 10:
        return None
    return cod[9] == 1  # SPcod transformation: 1 = 5-3 reversible, 0 = 9-7 irreversible (T.800 Table A.20)


def _j2k_info(stream: bytes) -> ImageInfo | None:
    markers = _j2k_markers(stream)
    siz = markers.get(0x51)
    if siz is None:
        return None
    _, x, y, x0, y0 = struct.unpack_from(">HIIII", siz)
    (components,) = struct.unpack_from(">H", siz, 34)
    precision = (siz[36] & 0x7F) + 1
    photometric = "MONOCHROME2" if components == 1 else None
    cod = markers.get(0x52)
    if components == 3 and cod is not None and len(cod) >= 10:
        mct = cod[4]
        # PS3.5 §8.2.4: the multi-component transform decides YBR_RCT / YBR_ICT; none is RGB.
        photometric = "RGB" if mct == 0 else ("YBR_RCT" if cod[9] == 1 else "YBR_ICT")
    return ImageInfo(
        rows=y - y0, columns=x - x0, samples_per_pixel=components, bits_stored=precision,
        photometric_interpretation=photometric,
    )  # fmt: skip


def image_info(media_type: str, head: bytes, /) -> ImageInfo | None:
    """The geometry in a compressed frame's header, or ``None`` when we cannot read it."""
    media_type = canonical_media_type(media_type)
    try:
        if media_type in ("image/jpeg", "image/jls"):
            return _jpeg_info(head)
        if media_type in JPEG_2000_TYPES:
            return _j2k_info(codestream(head))
    except (struct.error, IndexError):
        return None
    return None


# ------------------------------------------------------------------------------------------ PNG, GIF


def decode_image(data: bytes, /) -> DecodedImage:
    """Decode a PNG or GIF with Pillow to native pixels (first frame of an animation).

    Grey images stay grey (8 or 16 bit), everything else becomes 8-bit RGB; transparency is
    dropped (DICOM has no alpha channel).

    Raises:
        UnreadableBulkData: Pillow cannot read it.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            mode = image.mode
            if mode in ("I;16", "I;16B", "I;16L", "I"):
                grey = image if mode == "I;16" else image.convert("I;16")
                return DecodedImage(info=_native_info(grey.size, 1, 16, "MONOCHROME2"), pixels=grey.tobytes())
            if mode in ("1", "L", "LA") or (mode == "P" and _grey_palette(image)):
                grey = image.convert("L")
                return DecodedImage(info=_native_info(grey.size, 1, 8, "MONOCHROME2"), pixels=grey.tobytes())
            rgb = image.convert("RGB")
            return DecodedImage(info=_native_info(rgb.size, 3, 8, "RGB"), pixels=rgb.tobytes())
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise UnreadableBulkData(f"cannot decode the image: {exc}") from exc


def _grey_palette(image: object) -> bool:
    palette = image.getpalette() or []  # type: ignore[attr-defined]
    return all(palette[i] == palette[i + 1] == palette[i + 2] for i in range(0, len(palette) - 2, 3))


def _native_info(size: tuple[int, int], samples: int, bits: int, photometric: str) -> ImageInfo:
    columns, rows = size
    return ImageInfo(
        rows=rows, columns=columns, samples_per_pixel=samples, bits_stored=bits, photometric_interpretation=photometric
    )
