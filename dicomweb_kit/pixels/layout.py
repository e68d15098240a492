"""Where the Pixel Data value and each of its frames lie in a stored Part 10 blob.

Computed once, at ingest, by :class:`PixelScanner` while the instance streams to the blob store
(it sees each chunk as it passes and keeps only a few bytes of it), and stored in the index with
the record, so that a frame request reads exactly the frame's bytes with one ranged read.

* Native data (PS3.5 §8.1.1, §8.2): the value's offset and length; frame ``i`` follows from the
  frame length of the Image Pixel Module. 1-bit data is packed across frame boundaries, so frame
  offsets are bit offsets.
* Encapsulated data (PS3.5 §A.4): the fragments (offset, length) of every frame, found the way
  pydicom's ``pydicom.encaps.generate_fragmented_frames`` finds them: the Extended Offset Table
  (7FE0,0001)/(7FE0,0002) if present, else the Basic Offset Table, else one fragment per frame
  when the counts match, else all fragments for a single frame, else a JPEG EOI/EOC marker at
  the end of a fragment ends a frame.

All offsets are of the bytes as stored (after any rewrite by STOW-RS), from the start of the blob.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Final, Literal

import msgspec
import numpy as np
from pydicom.uid import DeflatedExplicitVRLittleEndian

from ..codecs.part10 import Part10Header
from ..media_types import TRANSFER_SYNTAX_MEDIA_TYPES
from .description import PixelDescription

__all__ = [
    "PIXEL_DATA_TAGS",
    "FrameSpan",
    "LayoutInputs",
    "PixelLayout",
    "PixelScanner",
    "layout_from_bytes",
    "layout_inputs",
    "layout_of",
]

#: Pixel Data, Float Pixel Data, Double Float Pixel Data (PS3.18 §10.4.3.3.6: the pixel data of
#: an instance is the value of whichever of them is in the top-level data set).
PIXEL_DATA_TAGS: Final = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009})

_ITEM: Final = b"\xfe\xff\x00\xe0"  # (FFFE,E000) little endian: encapsulated data is always LE
_SEQUENCE_DELIMITER: Final = b"\xfe\xff\xdd\xe0"  # (FFFE,E0DD)
_UNDEFINED: Final = b"\xff\xff\xff\xff"
# VRs with a 2-byte reserved field and a 4-byte length in explicit VR (PS3.5 §7.1.2).
_LONG_VRS: Final = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)
_IMPLICIT_VR: Final = {0x7FE00010: "OW", 0x7FE00008: "OF", 0x7FE00009: "OD"}  # PS3.5 §A.1, PS3.6
# Video transfer syntaxes (PS3.18 Table 8.7.3-5: video/mpeg2, video/mp4, video/H265).
_VIDEO: Final = frozenset(uid for uid, kind in TRANSFER_SYNTAX_MEDIA_TYPES.items() if kind.startswith("video/"))
_EOI: Final = b"\xff\xd9"  # JPEG EOI / JPEG 2000 EOC marker
_EOI_WINDOW: Final = 10  # where pydicom looks for it: the last 10 bytes of a fragment
_MAX_OFFSET_TABLE: Final = 64 << 20  # a Basic Offset Table of 16 million frames
_MAX_FRAGMENTS: Final = 1 << 22


class PixelLayout(msgspec.Struct, frozen=True, array_like=True):
    """The position of an instance's pixel data in its stored blob.

    Attributes:
        tag: (7FE0,0010), (7FE0,0008) or (7FE0,0009), as an int.
        vr: the element's VR (``OB``, ``OW``, ``OF``, ``OD``).
        value_offset: offset of the first byte of the value (encapsulated: of the Basic Offset
            Table item).
        value_length: bytes of the value (encapsulated: up to and including the Sequence
            Delimitation Item).
        big_endian: the value is in big endian byte order (Explicit VR Big Endian).
        frames: encapsulated data only: for each frame, its fragments' (offset, length) values.
    """

    tag: int
    vr: str
    value_offset: int
    value_length: int
    big_endian: bool = False
    frames: tuple[tuple[tuple[int, int], ...], ...] | None = None

    @property
    def encapsulated(self) -> bool:
        return self.frames is not None

    def frame_count(self, description: PixelDescription | None) -> int:
        """How many frames the data holds: the fragments grouped into frames, or for native data
        Number of Frames (0028,0008), as far as the value is long enough for them."""
        if self.frames is not None:
            return len(self.frames)
        if description is None:
            return 0
        bits = description.frame_bit_offset(1)
        if bits <= 0:
            return 0
        return min(description.number_of_frames, self.value_length * 8 // bits)

    def frame_span(self, description: PixelDescription | None, index: int, /) -> FrameSpan:
        """Where frame ``index`` (0-based, in range) is, and how to turn its bytes into the frame."""
        if self.frames is not None:
            return FrameSpan(self.frames[index])
        assert description is not None
        bits = description.frame_bit_offset(1)
        first_bit = index * bits
        span = self.value_span(description, first_bit // 8, (first_bit + bits + 7) // 8)
        if first_bit % 8:
            return msgspec.structs.replace(span, bit_shift=first_bit % 8, bits=bits)
        return span

    def value_span(self, description: PixelDescription | None, start: int, end: int, /) -> FrameSpan:
        """Bytes ``[start, end)`` of a native value, in Little Endian byte order."""
        bits_allocated = description.bits_allocated if description is not None else 0
        width = _swap_width(self.vr, bits_allocated) if self.big_endian else 1
        # A big endian value is swapped word by word: read whole words around the range.
        aligned_start = start - start % width
        aligned_end = min(end + (-end) % width, self.value_length)
        return FrameSpan(
            ((self.value_offset + aligned_start, aligned_end - aligned_start),),
            skip=start - aligned_start,
            length=end - start,
            swap=width,
        )


class FrameSpan(msgspec.Struct, frozen=True):
    """The byte ranges of one frame and the steps that give its bytes (native data only: the
    frame is in Little Endian byte order and starts at bit 0 of its first byte afterwards).

    Attributes:
        ranges: (offset, length) in the blob; several for a fragmented encapsulated frame.
        skip, length: the frame's bytes within the concatenated ranges (``length`` 0: all of them).
        bit_shift, bits: 1-bit data whose frame starts at bit ``bit_shift`` of its first byte:
            the frame's ``bits`` bits are moved to the start (PS3.5 §8.1.1: first pixel in bit 0).
        swap: word width to swap from big to little endian (1: no swap).
    """

    ranges: tuple[tuple[int, int], ...]
    skip: int = 0
    length: int = 0
    bit_shift: int = 0
    bits: int = 0
    swap: int = 1

    @property
    def size(self) -> int:
        """The read's size in bytes (all ranges)."""
        return sum(length for _, length in self.ranges)

    @property
    def output_size(self) -> int:
        """The frame's size in bytes, after :meth:`extract`."""
        if self.bits:
            return (self.bits + 7) // 8
        return self.length or self.size

    @property
    def verbatim(self) -> bool:
        """The frame is exactly the bytes of its ranges."""
        return self.swap == 1 and not self.bits and self.skip == 0 and self.length in (0, self.size)

    def extract(self, data: bytes, /) -> bytes:
        """The frame from the concatenated bytes of :attr:`ranges`."""
        if self.verbatim:
            return data
        if self.swap > 1:
            usable = len(data) - len(data) % self.swap
            words = np.frombuffer(data, dtype=f">u{self.swap}", count=usable // self.swap)
            data = words.astype(f"<u{self.swap}").tobytes() + data[usable:]
        data = data[self.skip : self.skip + self.length] if self.length else data[self.skip :]
        if self.bits:
            bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8), bitorder="little")
            data = np.packbits(bits[self.bit_shift : self.bit_shift + self.bits], bitorder="little").tobytes()
        return data


def _swap_width(vr: str, bits_allocated: int) -> int:
    if bits_allocated in (16, 32, 64):
        return bits_allocated // 8  # pixel words are as wide as Bits Allocated (PS3.5 §8.1.1)
    return {"OW": 2, "OF": 4, "OL": 4, "OD": 8, "OV": 8}.get(vr, 1)


class _Fragment(msgspec.Struct, frozen=True, array_like=True):
    offset: int
    length: int
    ends_with_eoi: bool


class PixelScanner:
    """Finds the layout of the pixel data element at ``start`` in a stream, incrementally.

    Feed it the stream as it passes (:meth:`feed` with each chunk and its offset; chunks in order)
    or, for data at rest, read what :meth:`wants` asks for and feed that. It walks the item headers
    of encapsulated data and skips the fragments' contents, keeping only each fragment's last bytes
    (for the JPEG marker test); it never holds the pixel data. A chunk boundary may fall anywhere,
    inside an element or item header too.

    The element at ``start`` is only presumed to be the Pixel Data element (the caller found its
    tag in the byte stream): :meth:`layout` checks it against the parsed header.
    """

    def __init__(self, start: int, /) -> None:
        self.start = start
        self._need = (start, start + 12)  # the element header (explicit VR: 12 bytes)
        self._buffer = bytearray()
        self._header = b""
        self._items_start = 0
        self._fragment: tuple[int, int] | None = None  # the fragment whose tail is being read
        self._offset_table: bytes | None = None
        self._first_item: int | None = None
        self._fragments: list[_Fragment] = []
        self._end: int | None = None
        self.done = False
        self.failure: str | None = None

    def wants(self) -> tuple[int, int] | None:
        """The byte range ``[start, end)`` the scanner needs next, or ``None`` when it is done."""
        if self.done:
            return None
        start, end = self._need
        return start + len(self._buffer), end

    def feed(self, data: bytes | bytearray | memoryview, at: int, /) -> None:
        """Look at ``data``, the bytes of the stream from offset ``at`` on."""
        view = memoryview(data).cast("B")
        end = at + len(view)
        while not self.done:
            need_start, need_end = self._need
            have = need_start + len(self._buffer)
            if have >= end:
                return
            if have < at:
                self._fail(f"the bytes at offset {have} were not seen")
                return
            take = min(need_end, end)
            self._buffer += view[have - at : take - at]
            if take < need_end:
                return
            piece = bytes(self._buffer)
            self._buffer.clear()
            self._step(piece, need_start)

    def close(self) -> None:
        """The stream ended: whatever is still wanted is missing."""
        if not self.done:
            if self._need == (self.start, self.start + 12) and len(self._buffer) >= 8:
                # A value shorter than 4 bytes right at the end of the file: an 8-byte header suffices.
                self._header = bytes(self._buffer)
                self.done = True
                return
            self._fail("the file ends inside the pixel data")

    def _fail(self, why: str) -> None:
        self.failure = why
        self.done = True

    def _step(self, piece: bytes, offset: int) -> None:
        if offset == self.start and not self._header:
            self._header = piece
            if piece[4:6] in (b"OB", b"OW") and piece[8:12] == _UNDEFINED:
                self._next_item(self.start + 12)  # encapsulated (PS3.5 §A.4)
            elif piece[4:8] == _UNDEFINED:
                # Encapsulated, in a file written in implicit VR: the first item header began
                # inside the 12 bytes already taken.
                self._next_item(self.start + 8)
                self._buffer += piece[8:12]
            else:
                self.done = True  # native: the header is all we need
            return
        if self._fragment is not None:
            fragment_offset, fragment_length = self._fragment
            tail = piece[:-8]
            self._fragments.append(_Fragment(fragment_offset, fragment_length, _EOI in tail[-_EOI_WINDOW:]))
            self._fragment = None
            self._item_header(piece[-8:], fragment_offset + fragment_length)
        elif self._offset_table is None and self._first_item is None and len(piece) > 8:
            # The Basic Offset Table's value and the header of the item after it.
            self._offset_table = piece[:-8]
            self._first_item = offset + len(piece) - 8
            self._item_header(piece[-8:], self._first_item)
        else:
            self._item_header(piece, offset)

    def _next_item(self, offset: int) -> None:
        if not self._items_start:
            self._items_start = offset
        self._need = (offset, offset + 8)

    def _item_header(self, header: bytes, offset: int) -> None:
        tag, length = header[:4], int.from_bytes(header[4:8], "little")
        if tag == _SEQUENCE_DELIMITER:
            if self._first_item is None:
                self._fail("the encapsulated pixel data has no Basic Offset Table item")
                return
            self._end = offset + 8
            self.done = True
            return
        if tag != _ITEM or header[4:8] == _UNDEFINED:
            self._fail(f"no item at offset {offset} of the encapsulated pixel data")
            return
        value = offset + 8
        if self._first_item is None:
            if self._offset_table is not None or length > _MAX_OFFSET_TABLE:
                self._fail("unreadable Basic Offset Table")
                return
            if length == 0:
                self._offset_table = b""
                self._first_item = value
                self._next_item(value)
            else:
                self._need = (value, value + length + 8)
            return
        if len(self._fragments) >= _MAX_FRAGMENTS:
            self._fail("too many fragments")
            return
        self._fragment = (value, length)
        self._need = (max(value, value + length - _EOI_WINDOW), value + length + 8)

    # ----------------------------------------------------------------------------------------

    def layout(
        self,
        *,
        implicit_vr: bool,
        big_endian: bool,
        number_of_frames: int,
        extended_offsets: tuple[bytes, bytes] | None = None,
        size: int | None = None,
    ) -> PixelLayout | None:
        """The layout, given how the data set is encoded (as the header parse found it),
        Number of Frames, the Extended Offset Table and the file's ``size``; ``None`` when the
        scan went wrong (a file that ends inside encapsulated data, an element that is not Pixel
        Data)."""
        if not self.done or self.failure is not None or len(self._header) < 8:
            return None
        header = self._header
        order: Literal["big", "little"] = "big" if big_endian else "little"
        tag = int.from_bytes(header[0:2], order) << 16 | int.from_bytes(header[2:4], order)
        if tag not in PIXEL_DATA_TAGS:
            return None
        if self._end is not None:
            assert self._first_item is not None and self._offset_table is not None
            frames = _group(
                self._fragments,
                self._offset_table,
                self._first_item,
                number_of_frames,
                extended_offsets,
            )
            if frames is None:
                return None
            value = self._items_start
            return PixelLayout(tag, "OB", value, self._end - value, frames=frames)
        if implicit_vr:
            vr, value, length = _IMPLICIT_VR[tag], self.start + 8, int.from_bytes(header[4:8], order)
        else:
            raw_vr = header[4:6]
            if raw_vr in _LONG_VRS:
                if len(header) < 12:
                    return None
                value, length = self.start + 12, int.from_bytes(header[8:12], order)
            else:
                value, length = self.start + 8, int.from_bytes(header[6:8], order)
            vr = raw_vr.decode("ascii", "replace")
        if length == 0xFFFFFFFF:
            return None
        if size is not None:
            length = max(0, min(length, size - value))  # a truncated file: only the bytes there are
        return PixelLayout(tag, vr, value, length, big_endian=big_endian)


def _group(
    fragments: list[_Fragment],
    offset_table: bytes,
    first_item: int,
    number_of_frames: int,
    extended_offsets: tuple[bytes, bytes] | None,
) -> tuple[tuple[tuple[int, int], ...], ...] | None:
    """Fragments grouped into frames, as ``pydicom.encaps.generate_fragmented_frames`` does."""
    if extended_offsets and extended_offsets[0]:
        # PS3.3 §C.7.6.3.1.8: offsets of each frame's (single) item, from the first item after
        # the Basic Offset Table; lengths of the frames' values.
        offsets = _unpack("Q", extended_offsets[0])
        lengths = _unpack("Q", extended_offsets[1])
        if len(offsets) != len(lengths):
            return None
        return tuple(((first_item + offset + 8, length),) for offset, length in zip(offsets, lengths, strict=True))
    spans = [(f.offset, f.length) for f in fragments]
    if not spans:
        return ()
    if offset_table:
        starts = _unpack("I", offset_table)
        return tuple(_by_offset_table(spans, starts))
    if len(spans) == 1 or len(spans) == number_of_frames:
        return tuple((span,) for span in spans)
    if number_of_frames <= 1:
        return (tuple(spans),)
    if len(spans) < number_of_frames:
        # pydicom gives up here; we serve the fragments there are, one frame each.
        return tuple((span,) for span in spans)
    frames: list[tuple[tuple[int, int], ...]] = []
    current: list[tuple[int, int]] = []
    for fragment, span in zip(fragments, spans, strict=True):
        current.append(span)
        if fragment.ends_with_eoi:
            frames.append(tuple(current))
            current = []
    if current:
        frames.append(tuple(current))  # no marker at the end: the data is probably corrupt
    return tuple(frames)


def _by_offset_table(spans: list[tuple[int, int]], starts: list[int]) -> Iterator[tuple[tuple[int, int], ...]]:
    frame: list[tuple[int, int]] = []
    index, position, last = 0, 0, len(starts) - 1
    for span in spans:
        if index < last and position >= starts[index + 1]:
            yield tuple(frame)
            index += 1
            frame = []
        frame.append(span)
        position += span[1] + 8  # + the item header
    yield tuple(frame)


def _unpack(code: str, data: bytes) -> list[int]:
    size = struct.calcsize(code)
    return list(struct.unpack(f"<{len(data) // size}{code}", data[: len(data) - len(data) % size]))


class LayoutInputs(msgspec.Struct, frozen=True):
    """What :func:`layout_of` needs from an instance's header, for callers without a pydicom
    data set (``dicomweb_kit.codecs.header_walk``).

    Attributes:
        transfer_syntax_uid, pixel_data_vr, header_length: as in :class:`Part10Header`.
        implicit_vr, big_endian: how the data set is encoded (pydicom's ``original_encoding``).
        number_of_frames: Number of Frames (0028,0008), at least 1.
        extended_offsets: the Extended Offset Table (7FE0,0001) and its Lengths (7FE0,0002), if
            both have a value.
    """

    transfer_syntax_uid: str
    pixel_data_vr: str | None
    header_length: int
    implicit_vr: bool
    big_endian: bool
    number_of_frames: int
    extended_offsets: tuple[bytes, bytes] | None


def layout_inputs(header: Part10Header, /) -> LayoutInputs:
    """The :class:`LayoutInputs` of a header parsed by pydicom."""
    ds = header.dataset
    try:
        number_of_frames = max(1, int(ds.get("NumberOfFrames") or 1))
    except (TypeError, ValueError):
        number_of_frames = 1
    offsets, lengths = ds.get(0x7FE00001), ds.get(0x7FE00002)
    extended: tuple[bytes, bytes] | None = None
    if offsets is not None and lengths is not None and offsets.value and lengths.value:
        extended = (bytes(offsets.value), bytes(lengths.value))
    implicit, little = ds.original_encoding
    return LayoutInputs(
        transfer_syntax_uid=header.transfer_syntax_uid,
        pixel_data_vr=header.pixel_data_vr,
        header_length=header.header_length,
        implicit_vr=implicit is True,
        big_endian=little is False,
        number_of_frames=number_of_frames,
        extended_offsets=extended,
    )


def layout_of(scanner: PixelScanner, header: Part10Header | LayoutInputs, /, *, size: int) -> PixelLayout | None:
    """The layout a finished scan of a ``size``-byte file found, checked against the instance's
    parsed header: ``None`` unless the scan started at the header's Pixel Data element and made
    sense of it."""
    if header.pixel_data_vr is None or scanner.start != header.header_length:
        return None
    inputs = header if isinstance(header, LayoutInputs) else layout_inputs(header)
    number_of_frames, extended = inputs.number_of_frames, inputs.extended_offsets
    if inputs.transfer_syntax_uid == DeflatedExplicitVRLittleEndian:
        return None  # offsets into the inflated stream mean nothing in the stored bytes
    if inputs.transfer_syntax_uid in _VIDEO:
        # MPEG-2/MPEG-4/HEVC: one bit stream for all frames (PS3.5 §8.2.5-8.2.7; PS3.18 §8.7.3.3
        # sends a video as one part): it is located as a single unit.
        number_of_frames, extended = 1, None
    layout = scanner.layout(
        implicit_vr=inputs.implicit_vr,
        big_endian=inputs.big_endian,
        number_of_frames=number_of_frames,
        extended_offsets=extended,
        size=size,
    )
    if layout is not None and layout.frames and len(layout.frames) > 1 and inputs.transfer_syntax_uid in _VIDEO:
        layout = msgspec.structs.replace(layout, frames=(tuple(span for frame in layout.frames for span in frame),))
    return layout


def layout_from_bytes(
    data: bytes | bytearray | memoryview, header: Part10Header | LayoutInputs, /
) -> PixelLayout | None:
    """The layout of the pixel data in ``data``, a whole Part 10 file in memory."""
    if header.pixel_data_vr is None:
        return None
    scanner = PixelScanner(header.header_length)
    scanner.feed(data, 0)
    scanner.close()
    return layout_of(scanner, header, size=len(data))
