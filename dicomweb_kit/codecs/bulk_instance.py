"""A Part 10 file from DICOM JSON metadata whose bulk data arrived as separate parts (PS3.18 §10.5.1.2).

:func:`assemble` resolves every BulkDataURI through a lookup (the request's parts by
Content-Location), decides the transfer syntax from the Pixel Data parts' media type
(:mod:`.bulk_media`), fills in the Image Pixel attributes a JPEG/PNG header makes certain, and
returns the file as a list of segments: encoded bytes, and references to bulk parts that are
copied into the file only when it is streamed. Top-level binary values (Pixel Data, Encapsulated
Document, ...) are never read into memory here; nested or non-binary bulk values (small, in
practice) are, up to a limit.

Layout written (PS3.10 §7.1, PS3.5 §7.1.2 and §A.4): preamble, ``DICM``, File Meta Information,
then the data set in Explicit VR Little Endian; compressed Pixel Data is encapsulated with one
frame per fragment and a Basic Offset Table (empty for video, whose frames are not fragments).
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.tag import Tag
from pydicom.uid import UID

from ..media_types import EXPLICIT_VR_LE, IMPLICIT_VR_LE, transfer_syntaxes_for_media_type
from . import dicom_json
from .bulk_media import (
    DECODED_MEDIA_TYPES,
    JPEG_2000_TYPES,
    NATIVE_MEDIA_TYPE,
    ImageInfo,
    UnreadableBulkData,
    codestream,
    decode_image,
    image_info,
    is_jp2_file,
    transfer_syntax_for,
)

__all__ = ["AssembledInstance", "BulkPart", "Segment", "assemble"]

_PIXEL_DATA: Final = 0x7FE00010
_ENCAPSULATED_DOCUMENT: Final = 0x00420011
_MIME_TYPE_OF_ENCAPSULATED_DOCUMENT: Final = "00420012"
# Values with a 4-byte length in Explicit VR (PS3.5 Table 7.1-1) that we stream from their part.
_STREAMED_VRS: Final = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
_HEAD_BYTES: Final = 64 << 10  # enough of a compressed frame for its header (SOF, SIZ, COD)
_MAX_ITEM: Final = 0xFFFF_FFF0  # an item's length is 32 bits and 0xFFFFFFFF means undefined (even)
_ITEM: Final = b"\xfe\xff\x00\xe0"
_SEQUENCE_DELIMITATION: Final = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
# The Image Pixel attributes we fill in from a compressed frame's or a PNG's header.
_GEOMETRY: Final = ("Rows", "Columns", "SamplesPerPixel")


class BulkPart(Protocol):
    """One bulk data part of the request, held by the caller (in memory or spilled to a file)."""

    @property
    def media_type(self) -> str: ...  # canonical (lower case, PS3.18 name)
    @property
    def params(self) -> Mapping[str, str]: ...
    @property
    def length(self) -> int: ...
    def read(self, start: int = 0, end: int | None = None, /) -> bytes:
        """Bytes ``start:end`` of the part (a blocking call: run it in a thread)."""
        ...


Segment = bytes | BulkPart
"""Encoded bytes, or a whole bulk part copied as is."""

Lookup = Callable[[str], Sequence[BulkPart]]
"""A BulkDataURI → the parts it names (several: one frame each, in order); empty when none."""


@dataclass(slots=True)
class AssembledInstance:
    """A Part 10 file ready to be streamed, and what we changed to make it."""

    segments: list[Segment]
    transfer_syntax_uid: str
    # Attributes we added or changed (each a short phrase): Warning Reason 0xB000 (PS3.18 Table I.2-1).
    coerced: list[str] = field(default_factory=list)

    @property
    def size(self) -> int:
        return sum(len(s) if isinstance(s, bytes) else s.length for s in self.segments)


@dataclass(slots=True)
class _Streamed:
    vr: str
    segments: list[Segment]
    encapsulated: bool = False  # items with an undefined length, not one value


def assemble(metadata: Mapping[str, Any], lookup: Lookup, /, *, max_loaded_bytes: int) -> AssembledInstance:
    """Build the Part 10 file of one data set of a metadata + bulk data request.

    ``max_loaded_bytes`` bounds a bulk value that has to be read into memory (nested in a
    sequence, not a binary VR, or a PNG/GIF to decode).

    Raises:
        UnreadableBulkData: a BulkDataURI names no part, a part does not hold what its media type
            says, or the metadata contradicts the bulk data (the message says which).
        InvalidRequest: the metadata is not a valid DICOM JSON data set.
    """
    meta_syntax = _string_value(metadata.get("00020010"))
    coerced: list[str] = []
    streamed: dict[int, _Streamed] = {}
    in_json: dict[str, Any] = {}
    charset = _values(metadata.get("00080005"))

    def load(uri: str) -> bytes:
        parts = _parts(lookup, uri)
        size = sum(p.length for p in parts)
        if size > max_loaded_bytes:
            raise UnreadableBulkData(f"the bulk data at {uri!r} ({size} bytes) is over {max_loaded_bytes} bytes")
        return b"".join(p.read() for p in parts)

    syntax = EXPLICIT_VR_LE
    pixel: tuple[str, Sequence[BulkPart]] | None = None
    for key, attr in metadata.items():
        if key.startswith("0002"):
            continue  # File Meta Information is ours to write (PS3.10 §7.1)
        if isinstance(attr, Mapping) and "BulkDataURI" in attr and _is_tag(key):
            uri = _uri(key, attr["BulkDataURI"])
            vr = str(attr.get("vr"))
            tag = int(key, 16)
            if tag == _PIXEL_DATA:
                pixel = (vr, _parts(lookup, uri, key))
                continue
            if vr in _STREAMED_VRS:
                parts = _parts(lookup, uri, key)
                streamed[tag] = _Streamed(vr, [*parts])
                if tag == _ENCAPSULATED_DOCUMENT and _MIME_TYPE_OF_ENCAPSULATED_DOCUMENT not in metadata:
                    # PS3.3 §C.24.2: Type 1; the part's own media type is the document's.
                    in_json[_MIME_TYPE_OF_ENCAPSULATED_DOCUMENT] = {"vr": "LO", "Value": [parts[0].media_type]}
                    coerced.append("MIME Type of Encapsulated Document")
                continue
        in_json[key] = _loaded(key, attr, load, charset)
    ds = dicom_json.json_dict_to_dataset(in_json, bulk_data_loader=load)
    if pixel is not None:
        syntax = _pixel_data(ds, *pixel, meta_syntax, streamed, coerced, max_loaded_bytes)
    elif meta_syntax not in (None, EXPLICIT_VR_LE, IMPLICIT_VR_LE) and "PixelData" in ds:
        raise UnreadableBulkData(
            f"Transfer Syntax UID {meta_syntax} needs the Pixel Data as a bulk data part of its media type,"
            " not InlineBinary (which is native, PS3.18 §F.2.7)"
        )
    return AssembledInstance(_segments(ds, syntax, streamed), syntax, coerced)


# --------------------------------------------------------------------------------------------- metadata


def _is_tag(key: str) -> bool:
    return len(key) == 8 and all(c in "0123456789abcdefABCDEF" for c in key)


def _uri(key: str, value: Any) -> str:
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if not isinstance(value, str) or not value.strip():
        raise UnreadableBulkData(f"the BulkDataURI of attribute {key} is not a URI (PS3.18 §F.2.6)")
    return value.strip()


def _values(attr: Any) -> list[Any] | None:
    values = attr.get("Value") if isinstance(attr, Mapping) else None
    return values if isinstance(values, list) and values else None


def _string_value(attr: Any) -> str | None:
    values = _values(attr)
    return str(values[0]).strip() if values else None


def _parts(lookup: Lookup, uri: str, key: str | None = None) -> Sequence[BulkPart]:
    parts = lookup(uri)
    if not parts:
        where = f" of attribute ({key[:4]},{key[4:]})" if key else ""
        raise UnreadableBulkData(
            f"the BulkDataURI {uri!r}{where} names no part of the request: no part has that Content-Location"
            " (PS3.18 §8.6.1.2)"
        )
    return parts


def _loaded(key: str, attr: Any, load: Callable[[str], bytes], charset: list[Any] | None) -> Any:
    """``attr`` with the bulk values it holds (itself, or in its items) that are not binary VRs
    turned into values; binary ones stay BulkDataURIs that ``load`` will supply."""
    if not isinstance(attr, Mapping):
        return attr  # json_dict_to_dataset says what is wrong with it
    vr = attr.get("vr")
    if vr == "SQ" and isinstance(attr.get("Value"), list):
        items = [
            {k: _loaded(k, a, load, charset) for k, a in item.items()} if isinstance(item, Mapping) else item
            for item in attr["Value"]
        ]
        return {**attr, "Value": items}
    if "BulkDataURI" not in attr or vr in dicom_json.BINARY_VRS or not isinstance(vr, str) or not _is_tag(key):
        return attr
    # A number or text value sent as bulk data (PS3.18 §10.4.3.3.2 allows it for DS, FL, UT...): its
    # bytes are the little endian Value Field; pydicom reads them as it would from a file.
    raw = load(_uri(key, attr["BulkDataURI"]))
    tag = Tag(int(key, 16))
    ds = Dataset()
    if charset:
        ds.SpecificCharacterSet = charset
    ds._dict[tag] = RawDataElement(tag, vr, len(raw), raw, 0, False, True)
    try:
        converted = dicom_json.dataset_to_json_dict(ds)
    except Exception as exc:
        raise UnreadableBulkData(f"the {vr} bulk data value of attribute {key} cannot be read: {exc}") from exc
    return converted.get(key.upper(), {"vr": vr})


# --------------------------------------------------------------------------------------------- pixels


def _pixel_data(
    ds: Dataset,
    vr: str,
    parts: Sequence[BulkPart],
    meta_syntax: str | None,
    streamed: dict[int, _Streamed],
    coerced: list[str],
    max_loaded_bytes: int,
) -> str:
    """Put the Pixel Data parts in ``streamed`` (or decoded pixels); return the transfer syntax."""
    media_type = parts[0].media_type
    if any(p.media_type != media_type for p in parts):
        raise UnreadableBulkData(f"the Pixel Data parts mix media types: {sorted({p.media_type for p in parts})}")
    if media_type == NATIVE_MEDIA_TYPE:
        syntax = transfer_syntax_for(media_type, parts[0].params, b"")
        if meta_syntax not in (None, EXPLICIT_VR_LE, IMPLICIT_VR_LE):
            raise UnreadableBulkData(
                f"Transfer Syntax UID {meta_syntax} contradicts native (application/octet-stream) Pixel Data"
            )
        if meta_syntax == IMPLICIT_VR_LE:  # PS3.18 §8.7.3.5: not for web services
            coerced.append(f"Transfer Syntax UID {EXPLICIT_VR_LE}")
        _check_native_length(ds, sum(p.length for p in parts))
        streamed[_PIXEL_DATA] = _Streamed(vr if vr in ("OB", "OW") else "OW", [*parts])
        return syntax
    if media_type in DECODED_MEDIA_TYPES:
        return _decoded(ds, parts, streamed, coerced, max_loaded_bytes)
    if not transfer_syntaxes_for_media_type(media_type):
        raise UnreadableBulkData(
            f"Pixel Data cannot be sent as {media_type}: neither a media type of PS3.18 Table 8.7.3-5"
            " nor image/png or image/gif"
        )
    head = parts[0].read(0, _HEAD_BYTES)
    params = dict(parts[0].params)
    if "transfer-syntax" not in params and meta_syntax is not None:
        # The metadata's own Transfer Syntax UID counts as the client's statement when it is one
        # of the media type's syntaxes.
        if meta_syntax not in transfer_syntaxes_for_media_type(media_type):
            raise UnreadableBulkData(f"Transfer Syntax UID {meta_syntax} contradicts Pixel Data sent as {media_type}")
        params["transfer-syntax"] = meta_syntax
    syntax = transfer_syntax_for(media_type, params, head)
    if "transfer-syntax" not in params:
        coerced.append(f"Transfer Syntax UID {syntax} (from the {media_type} data)")
    video = media_type.startswith("video/")
    if not video:
        info = image_info(media_type, head)
        if info is not None:
            _apply_image_info(ds, info, coerced)
        _set_number_of_frames(ds, len(parts), coerced)
    if vr != "OB":
        coerced.append("Pixel Data VR OB (encapsulated, PS3.5 §A.4)")
    fragments: list[Segment] = []
    for part in parts:
        if media_type in JPEG_2000_TYPES and is_jp2_file(part.read(0, 12)):
            if part.length > max_loaded_bytes:
                raise UnreadableBulkData(f"a JP2 file of {part.length} bytes is over {max_loaded_bytes} bytes")
            fragments.append(codestream(part.read()))  # the JP2 boxes go, the code-stream stays
            coerced.append("JPEG 2000 code-stream without its JP2 boxes (PS3.5 §A.4.4)")
        else:
            fragments.append(part)
    streamed[_PIXEL_DATA] = _Streamed("OB", _encapsulated(fragments, offsets=not video), encapsulated=True)
    return syntax


def _decoded(
    ds: Dataset, parts: Sequence[BulkPart], streamed: dict[int, _Streamed], coerced: list[str], limit: int
) -> str:
    """PNG/GIF frames decoded to native pixels (they have no DICOM transfer syntax)."""
    pixels: list[Segment] = []
    info: ImageInfo | None = None
    for part in parts:
        if part.length > limit:
            raise UnreadableBulkData(f"an image of {part.length} bytes to decode is over {limit} bytes")
        decoded = decode_image(part.read())
        if info is not None and decoded.info != info:
            raise UnreadableBulkData("the frames of one instance differ in size or colour")
        info = decoded.info
        pixels.append(decoded.pixels)
    assert info is not None  # parts is never empty
    _apply_image_info(ds, info, coerced)
    _set_number_of_frames(ds, len(parts), coerced)
    coerced.append(f"Pixel Data decoded from {parts[0].media_type} (no DICOM transfer syntax)")
    streamed[_PIXEL_DATA] = _Streamed("OW" if info.bits_allocated > 8 else "OB", pixels)
    return EXPLICIT_VR_LE


def _apply_image_info(ds: Dataset, info: ImageInfo, coerced: list[str]) -> None:
    """Fill in the Image Pixel attributes the image's header makes certain; refuse contradictions."""
    declared = {"Rows": info.rows, "Columns": info.columns, "SamplesPerPixel": info.samples_per_pixel}
    for keyword in _GEOMETRY:
        value = ds.get(keyword)
        if value is not None and value != "" and int(value) != declared[keyword]:
            raise UnreadableBulkData(
                f"{keyword} {value} in the metadata differs from the image's {declared[keyword]}"
            )
    wanted: dict[str, Any] = {
        **declared,
        "BitsAllocated": info.bits_allocated,
        "BitsStored": info.bits_stored,
        "HighBit": info.bits_stored - 1,
        "PixelRepresentation": 0,
    }
    if info.photometric_interpretation is not None:
        wanted["PhotometricInterpretation"] = info.photometric_interpretation
    if info.samples_per_pixel > 1:
        wanted["PlanarConfiguration"] = 0  # PS3.5 §8.2: colour-by-pixel in compressed frames
    for keyword, value in wanted.items():
        if keyword not in ds or ds[keyword].value in (None, ""):
            setattr(ds, keyword, value)
            coerced.append(keyword)


def _set_number_of_frames(ds: Dataset, frames: int, coerced: list[str]) -> None:
    declared = ds.get("NumberOfFrames")
    if declared not in (None, ""):
        if int(declared) != frames:
            raise UnreadableBulkData(f"Number of Frames is {declared} but {frames} frame(s) were sent")
    elif frames > 1:
        ds.NumberOfFrames = frames
        coerced.append("NumberOfFrames")


def _check_native_length(ds: Dataset, length: int) -> None:
    """Native Pixel Data must be exactly what the Image Pixel Module describes (PS3.5 §8.1.1)."""
    try:
        rows, columns = int(ds.Rows), int(ds.Columns)
        samples, bits = int(ds.get("SamplesPerPixel", 1)), int(ds.BitsAllocated)
        frames = int(ds.get("NumberOfFrames") or 1)
    except (AttributeError, TypeError, ValueError):
        return  # not an image description we can check; the frames service copes or says why
    expected = (rows * columns * samples * frames * bits + 7) // 8
    if length not in (expected, expected + 1):
        raise UnreadableBulkData(
            f"the Pixel Data is {length} bytes; Rows, Columns, Samples per Pixel, Bits Allocated and"
            f" Number of Frames make {expected}"
        )


def _encapsulated(fragments: list[Segment], *, offsets: bool) -> list[Segment]:
    """Items of encapsulated Pixel Data (PS3.5 §A.4): the Basic Offset Table, one item per frame
    (a fragment each), the Sequence Delimitation Item."""
    items: list[tuple[list[Segment], int]] = []
    for piece in fragments:
        length = len(piece) if isinstance(piece, bytes) else piece.length
        if length > _MAX_ITEM:
            raise UnreadableBulkData(f"a bulk data part of {length} bytes is over the 4 GiB limit of an item")
        # An odd fragment gets one trailing zero byte (PS3.5 §A.4: items have even length).
        items.append(([piece, b"\0"] if length % 2 else [piece], length + length % 2))
    table = b""
    if offsets:
        positions, at = [], 0
        for _, length in items:
            positions.append(at)
            at += 8 + length
        if at <= 0xFFFF_FFFF:  # else the 32-bit table cannot say it: leave it empty (PS3.5 §A.4)
            table = struct.pack(f"<{len(positions)}I", *positions)
    out: list[Segment] = [_ITEM + struct.pack("<I", len(table)) + table]
    for pieces, length in items:
        out.append(_ITEM + struct.pack("<I", length))
        out.extend(pieces)
    out.append(_SEQUENCE_DELIMITATION)
    return out


# --------------------------------------------------------------------------------------------- the file


def _element_header(tag: int, vr: str, length: int) -> bytes:
    return struct.pack("<HH2sHI", tag >> 16, tag & 0xFFFF, vr.encode("ascii"), 0, length)


def _segments(ds: Dataset, syntax: str, streamed: dict[int, _Streamed]) -> list[Segment]:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = UID(syntax)
    head = DicomBytesIO()
    head.write(b"\0" * 128 + b"DICM")
    write_file_meta_info(head, meta, enforce_standard=True)
    out: list[Segment] = [head.getvalue()]
    encoding = ds._character_set
    tags = sorted(ds.keys())
    start = 0
    for tag in [*sorted(streamed), None]:
        end = len(tags) if tag is None else next((i for i, t in enumerate(tags) if t > tag), len(tags))
        if end > start:
            fp = DicomBytesIO()
            fp.is_little_endian, fp.is_implicit_VR = True, False
            write_dataset(fp, Dataset({t: ds._dict[t] for t in tags[start:end]}), parent_encoding=encoding)
            out.append(fp.getvalue())
            start = end
        if tag is None:
            break
        element = streamed[tag]
        if element.encapsulated:
            out.append(_element_header(tag, "OB", 0xFFFF_FFFF))
            out.extend(element.segments)
            continue
        length = sum(len(s) if isinstance(s, bytes) else s.length for s in element.segments)
        out.append(_element_header(tag, element.vr, length + length % 2))
        out.extend(element.segments)
        if length % 2:
            out.append(b"\0")  # PS3.5 §7.1.1: values have even length
    return out


def part10_bytes(instance: AssembledInstance, /) -> bytes:
    """The whole file in memory (tests and small instances)."""
    buffer = io.BytesIO()
    for segment in instance.segments:
        buffer.write(segment if isinstance(segment, bytes) else segment.read())
    return buffer.getvalue()
