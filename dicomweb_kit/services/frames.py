"""WADO-RS frames: an instance's frames read from its blob by byte range (PS3.18 §10.4.1.1.6).

Each frame is one ranged read of the blob (one per fragment of a fragmented encapsulated frame),
located by the :class:`~dicomweb_kit.pixels.layout.PixelLayout` computed at ingest. Records stored
before layouts existed get theirs computed here from the blob's header and item headers (ranged
reads, never the pixel data) and cached in memory. Deflated instances, whose stored bytes are
compressed as a whole, are inflated in memory (bounded by ``Settings.max_repair_bytes``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Final

import anyio
import msgspec

from ..codecs.part10 import HeaderIncomplete, NotPart10, Part10Header, parse_header
from ..codecs.transcode import to_explicit_vr_little_endian
from ..errors import InvalidRequest, ResourceNotFound
from ..index import InstanceRecord
from ..media_types import DEFLATED_EXPLICIT_VR_LE, EXPLICIT_VR_LE
from ..pixels.description import PixelDescription
from ..pixels.layout import FrameSpan, PixelLayout, PixelScanner, layout_from_bytes, layout_of
from ..resources import ResourceKey

if TYPE_CHECKING:
    from ..kit import DicomWeb

__all__ = [
    "PixelSource",
    "StoredFrame",
    "StoredFrames",
    "check_frame_numbers",
    "open_pixels",
    "parse_frame_list",
    "pixel_source",
    "read_blob",
    "read_frame",
    "read_frames",
    "read_header",
    "read_span",
]

# Pixel Data, Float Pixel Data, Double Float Pixel Data, as DICOM JSON keys.
_PIXEL_KEYS: Final = ("7FE00010", "7FE00008", "7FE00009")
_FIRST_HEADER_READ: Final = 64 << 10
_MAX_FRAME_LIST: Final = 10_000
_MAX_FRAME_LIST_TEXT: Final = 100_000


class StoredFrame(msgspec.Struct, frozen=True):
    """One frame's bytes as stored (native frames: little endian, first pixel at bit 0)."""

    data: bytes
    transfer_syntax_uid: str
    description: PixelDescription


class PixelSource(msgspec.Struct, frozen=True):
    """An instance's pixel data, located.

    Attributes:
        record: the instance's index record.
        layout: where the pixel data and its frames are.
        description: the Image Pixel Module (``None`` if the instance lacks one).
        count: how many frames there are.
        data: the whole instance in memory, re-encoded in Explicit VR Little Endian (deflated
            instances only); ``None``: frames are read from the blob.
    """

    record: InstanceRecord
    layout: PixelLayout
    description: PixelDescription | None
    count: int
    data: bytes | None = None

    @property
    def transfer_syntax_uid(self) -> str:
        """The transfer syntax of the frames as read: the stored one for encapsulated data; Explicit
        VR Little Endian for native data, which is read in Little Endian byte order whatever the
        stored byte order (so a decoder given these bytes must not see Explicit VR Big Endian)."""
        if self.data is not None or not self.layout.encapsulated:
            return EXPLICIT_VR_LE
        return self.record.transfer_syntax_uid

    def span(self, number: int, /) -> FrameSpan:
        """Where frame ``number`` (1-based, in range) is."""
        return self.layout.frame_span(self.description, number - 1)


class StoredFrames:
    """Frames of one instance, checked to exist, read one at a time as they are iterated."""

    def __init__(self, kit: DicomWeb, source: PixelSource, numbers: Sequence[int]) -> None:
        self.kit = kit
        self.source = source
        self.numbers = tuple(numbers)

    @property
    def transfer_syntax_uid(self) -> str:
        return self.source.transfer_syntax_uid

    @property
    def description(self) -> PixelDescription:
        assert self.source.description is not None  # read_frames checked it
        return self.source.description

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for number in self.numbers:
            yield await read_span(self.kit, self.source, self.source.span(number))


def parse_frame_list(text: str, /) -> list[int]:
    """The frame numbers of a ``{frames}`` path segment: comma separated, 1-based, no duplicates
    (PS3.18 §10.4.1.1.6; WADO-RS RetrieveFrames, PS3.18 2017 §6.5.4: "a comma or %2C separated
    list of one or more non duplicate frame numbers", in any order)."""
    if len(text) > _MAX_FRAME_LIST_TEXT:
        raise InvalidRequest("the frame list is too long")
    numbers: list[int] = []
    for piece in text.split(","):
        piece = piece.strip()
        if not piece.isascii() or not piece.isdigit():
            shown = piece if len(piece) <= 20 else piece[:17] + "..."
            raise InvalidRequest(
                f"malformed frame list {text[:60]!r}: {shown!r} is not a frame number"
                " (PS3.18 §10.4.1.1.6: comma-separated positive integers)"
            )
        number = int(piece)
        if number < 1:
            raise InvalidRequest(f"malformed frame list {text[:60]!r}: frame numbers start at 1")
        numbers.append(number)
    if len(set(numbers)) != len(numbers):
        raise InvalidRequest(f"the frame list {text[:60]!r} names a frame twice (PS3.18 §10.4.1.1.6)")
    if len(numbers) > _MAX_FRAME_LIST:
        raise InvalidRequest(f"the frame list names more than {_MAX_FRAME_LIST} frames")
    return numbers


def check_frame_numbers(numbers: Sequence[int], count: int, key: ResourceKey) -> None:
    """404 naming the valid range when a frame does not exist: the frame list is part of the
    target resource's path, so a frame that is not there is a resource that is not there (PS3.18
    §8.5; RFC 9110 §15.5.5: no current representation of the target resource). 400 is for a list
    that is not a list of frame numbers (:func:`parse_frame_list`)."""
    missing = [n for n in numbers if not 1 <= n <= count]
    if missing:
        shown = ", ".join(map(str, missing[:5])) + (", ..." if len(missing) > 5 else "")
        raise ResourceNotFound(f"instance {key.instance} has no frame {shown}: its frames are 1..{count}")


async def open_pixels(kit: DicomWeb, key: ResourceKey, /) -> PixelSource:
    """The located pixel data of instance ``key``; 404 when there is no such instance or it has no
    pixel data: its frames and pixel data resources then have no representation (PS3.18 §8.5,
    RFC 9110 §15.5.5). Not 400: the request is well formed, the resource is what is missing
    (PS3.18 §9.5.2 makes a frameNumber *query parameter* on a non-multi-frame target a 400, but
    here the frames are path segments of the target resource itself)."""
    record = await kit.index.get(key)
    if record is None:
        raise ResourceNotFound(f"no instance {key} is stored here")
    source = await pixel_source(kit, record)
    if source is None:
        raise ResourceNotFound(f"instance {key.instance} has no pixel data (it has no frames)")
    return source


async def read_frames(kit: DicomWeb, key: ResourceKey, numbers: Sequence[int]) -> StoredFrames:
    """Frames ``numbers`` (1-based) of instance ``key``, in that order, as stored.

    Existence is checked here (404 naming the valid range ``1..N``); the bytes are read with
    ranged reads of the blob as the result is iterated.
    """
    source = await open_pixels(kit, key)
    if source.description is None:
        raise ResourceNotFound(
            f"instance {key.instance} has no Image Pixel Module (Rows, Columns, Bits Allocated): it has no frames"
        )
    check_frame_numbers(numbers, source.count, key)
    return StoredFrames(kit, source, numbers)


async def read_frame(kit: DicomWeb, key: ResourceKey, number: int) -> StoredFrame:
    """Frame ``number`` (1-based) of instance ``key`` as stored, with what is needed to decode it."""
    frames = await read_frames(kit, key, [number])
    async for data in frames:
        return StoredFrame(data, frames.transfer_syntax_uid, frames.description)
    raise AssertionError("unreachable")  # pragma: no cover


async def read_span(kit: DicomWeb, source: PixelSource, span: FrameSpan, /) -> bytes:
    """The bytes ``span`` describes: one ranged read per range, then the span's fix-ups."""
    if source.data is not None:
        data = b"".join(source.data[offset : offset + length] for offset, length in span.ranges)
    else:
        key = source.record.blob_key
        pieces = [await read_blob(kit, key, offset, offset + length) for offset, length in span.ranges]
        data = pieces[0] if len(pieces) == 1 else b"".join(pieces)
    if span.verbatim:
        return data
    return await anyio.to_thread.run_sync(span.extract, data)


async def read_blob(kit: DicomWeb, blob_key: str, start: int, end: int | None) -> bytes:
    """Bytes ``[start, end)`` of a blob (fewer at its end)."""
    chunks = [chunk async for chunk in kit.blobs.get(blob_key, start=start, end=end)]
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


# --------------------------------------------------------------------------------------------
# Locating the pixel data

# Layouts computed on request for records stored without one (blob keys are never reused).
_LAYOUTS: OrderedDict[str, PixelLayout] = OrderedDict()
_LAYOUT_CACHE_SIZE: Final = 1024


def _has_pixel_data(record: InstanceRecord) -> bool:
    return any(key in record.attributes for key in _PIXEL_KEYS)


async def pixel_source(kit: DicomWeb, record: InstanceRecord, /) -> PixelSource | None:
    """The located pixel data of ``record``'s instance, or ``None`` if it has none."""
    description = PixelDescription.from_attributes(record.attributes)
    layout = record.pixel_layout
    data = None
    if layout is None:
        if not _has_pixel_data(record):
            return None
        layout = _LAYOUTS.get(record.blob_key)
        if layout is None and record.transfer_syntax_uid != DEFLATED_EXPLICIT_VR_LE:
            layout = await _scan_blob(kit, record)
            if layout is not None:
                _LAYOUTS[record.blob_key] = layout
                if len(_LAYOUTS) > _LAYOUT_CACHE_SIZE:
                    _LAYOUTS.popitem(last=False)
        if layout is None:
            data, layout = await _inflated(kit, record)
    return PixelSource(record, layout, description, layout.frame_count(description), data)


async def read_header(kit: DicomWeb, record: InstanceRecord, /) -> tuple[Part10Header, bytes]:
    """The parsed header of a stored instance and the bytes read for it (at least the header).

    Reads only the header's range when the layout says where the pixel data starts, else a
    growing prefix until the header parses.
    """
    size = record.size
    want = record.pixel_layout.value_offset if record.pixel_layout is not None else _FIRST_HEADER_READ
    while True:
        want = min(want, size)
        prefix = await read_blob(kit, record.blob_key, 0, want)
        complete = len(prefix) < want or want >= size
        try:
            header = await anyio.to_thread.run_sync(_parse, prefix, complete)
        except HeaderIncomplete:
            want *= 4
            continue
        return header, prefix


def _parse(prefix: bytes, complete: bool) -> Part10Header:
    try:
        return parse_header(prefix, complete=complete)
    except NotPart10 as exc:
        raise ResourceNotFound(f"the stored instance cannot be read: {exc}") from exc


async def _scan_blob(kit: DicomWeb, record: InstanceRecord) -> PixelLayout | None:
    """The layout of a stored blob: its header, then the item headers it asks for (ranged reads)."""
    header, prefix = await read_header(kit, record)
    if header.pixel_data_vr is None:
        return None
    scanner = PixelScanner(header.header_length)
    scanner.feed(prefix, 0)
    while (wanted := scanner.wants()) is not None:
        start, end = wanted
        data = await read_blob(kit, record.blob_key, start, end)
        scanner.feed(data, start)
        if len(data) < end - start:
            scanner.close()
    return layout_of(scanner, header, size=record.size)


async def _inflated(kit: DicomWeb, record: InstanceRecord) -> tuple[bytes, PixelLayout]:
    """A deflated (or otherwise unscannable) instance, re-encoded in memory, and its layout."""
    limit = kit.settings.max_repair_bytes
    if record.size > limit:
        raise ResourceNotFound(
            f"the pixel data of instance {record.instance_uid} cannot be located without reading all"
            f" {record.size} bytes of it (more than {limit})"
        )
    whole = await read_blob(kit, record.blob_key, 0, None)

    def convert() -> tuple[bytes, PixelLayout | None]:
        try:
            data = to_explicit_vr_little_endian(whole)
            return data, layout_from_bytes(data, parse_header(data, complete=True))
        except Exception as exc:  # pydicom raises many kinds on corrupt data
            raise ResourceNotFound(f"the pixel data of instance {record.instance_uid} cannot be read: {exc}") from exc

    data, layout = await anyio.to_thread.run_sync(convert)
    if layout is None:
        raise ResourceNotFound(f"the pixel data of instance {record.instance_uid} cannot be read")
    return data, layout
