"""A lean walk over a Part 10 header (PS3.10 §7) straight to its DICOM JSON (PS3.18 Annex F).

STOW-RS parses the header of every instance it stores. pydicom's ``dcmread`` followed by
:func:`dicom_json.dataset_to_json_dict` costs ~0.6 ms for a CT header, holding the GIL. This
module reads the common encodings itself: the File Meta Information (always Explicit VR Little
Endian, PS3.10 §7.1), then a data set in Explicit or Implicit VR Little Endian, and converts each
value with the raw handlers of :mod:`dicom_json`, the same functions that convert pydicom's raw
elements. Its result is byte for byte what the pydicom path gives.

It *declines* (:func:`walk_header` returns ``None``) wherever the pydicom path might do anything
else, and the caller then takes that path. It declines on:

* a missing preamble or ``DICM``; data that ends before the header does (without ``complete``:
  anywhere before the Pixel Data element, where pydicom asks for more bytes; with it: inside an
  element); data over ``MAX_WALK_BYTES``;
* a transfer syntax other than Implicit VR Little Endian or one of the explicit little endian
  ones (Explicit VR Big Endian, Deflated, pydicom's private syntaxes), or none;
* pydicom settings that change the conversion (see ``dicom_json._fast_path_allowed``) or make
  reading raise (``reading_validation_mode``);
* elements out of ascending order or repeated, Command (0000) or File Meta (0002) elements in the
  data set, item tags where an element belongs, items that do not fill their sequence exactly,
  nesting deeper than ``_MAX_DEPTH``;
* VRs pydicom decides itself: unknown ones, UN, UR, Implicit VR tags that are private, not in the
  public dictionary (e.g. repeating groups) or have an ambiguous VR (``US or SS``), LUT
  descriptors; undefined length anywhere but a sequence;
* a Specific Character Set other than the default, ISO_IR 6, ISO_IR 100 or ISO_IR 192, or one
  that is not the first element of the top-level data set, or one in a sequence item; text
  with ISO 2022 escape sequences;
* values the raw handlers refuse (an IS or DS that is no number, binary numbers of an odd length).
"""

from __future__ import annotations

import base64
import struct
from typing import Any, Final

import msgspec
from pydicom import config as pydicom_config
from pydicom import uid as pydicom_uid
from pydicom._dicom_dict import DicomDictionary
from pydicom.charset import python_encoding
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32

from .dicom_json import (
    _BULK_TAGS,
    _LUT_DESCRIPTOR_TAGS,
    _RAW_HANDLERS,
    ALL_VRS,
    BINARY_VRS,
    BulkDataUriFactory,
    JsonDict,
    _fast_path_allowed,
)

__all__ = ["MAX_WALK_BYTES", "WalkedHeader", "walk_header"]

#: Larger buffers go to pydicom: the walk needs them as ``bytes`` and will not copy a whole file.
MAX_WALK_BYTES: Final = 1 << 20

_PREAMBLE_END: Final = 132  # 128-byte preamble + "DICM" (PS3.10 §7.1)
# Explicit VR: tag, VR, 16-bit length; the VRs of _LONG_VRS follow with a 32-bit length (PS3.5 §7.1.2).
_EXPLICIT: Final = struct.Struct("<HH2sH")
# Implicit VR elements (PS3.5 §7.1.3) and item headers (PS3.5 §7.5): tag and 32-bit length.
_TAG_LENGTH: Final = struct.Struct("<HHL")
_LENGTH: Final = struct.Struct("<L")
_UNDEFINED: Final = 0xFFFFFFFF
_ITEM: Final = 0xFFFEE000
_ITEM_END: Final = 0xFFFEE00D
_SEQUENCE_END: Final = 0xFFFEE0DD
_PIXEL_DATA_TAGS: Final = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009})  # where pydicom stops
_PIXEL_DATA_VRS: Final = frozenset({"OB", "OW", "OF", "OD"})
_EXTENDED_OFFSETS: Final = 0x7FE00001
_EXTENDED_LENGTHS: Final = 0x7FE00002
_LAYOUT_TAGS: Final = frozenset({_EXTENDED_OFFSETS, _EXTENDED_LENGTHS})
_MEDIA_STORAGE_SOP_CLASS: Final = 0x00020002
_TRANSFER_SYNTAX: Final = 0x00020010
_META_UIDS: Final = frozenset({_MEDIA_STORAGE_SOP_CLASS, _TRANSFER_SYNTAX})
_PIXEL_GROUP: Final = 0x7FE0
_MAX_DEPTH: Final = 32

_VRS: Final = {vr.encode("ascii"): vr for vr in ALL_VRS}  # PS3.5 Table 6.2-1
_LONG_VRS: Final = frozenset(vr.value for vr in EXPLICIT_VR_LENGTH_32)
# An explicit VR's name, raw handler and whether its length has 32 bits, in one look-up.
_EXPLICIT_VRS: Final = {raw: (vr, _RAW_HANDLERS.get(vr), vr in _LONG_VRS) for raw, vr in _VRS.items()}
# (0008,0005) values whose text decodes with one codec, as pydicom's first encoding names it.
_CHARSETS: Final = {
    term.encode("ascii"): python_encoding[term] for term in ("", "ISO_IR 6", "ISO_IR 100", "ISO_IR 192")
}
# Syntaxes whose data set pydicom does not read as Explicit VR Little Endian (besides implicit).
_OTHER_ENCODINGS: Final = frozenset({pydicom_uid.ExplicitVRBigEndian, pydicom_uid.DeflatedExplicitVRLittleEndian})
_IMPLICIT_LITTLE: Final = str(pydicom_uid.ImplicitVRLittleEndian)

_KEYS: dict[int, str] = {}  # see _key
_MAX_KEYS: Final = 1 << 16


class WalkedHeader(msgspec.Struct):
    """What the walk found in a Part 10 header.

    Attributes:
        attributes: the data set's DICOM JSON object, as ``dataset_to_json_dict`` gives it, except
            that each ``BulkDataURI`` holds the attribute's path until :meth:`resolve_bulk_data_uris`.
        transfer_syntax_uid: (0002,0010).
        implicit_vr: the data set is in Implicit VR Little Endian.
        pixel_data_vr: VR of the Pixel Data element that ends the header, ``None`` if none does.
        header_length: offset of that Pixel Data element (else of the end of the data).
        media_storage_sop_class_uid: (0002,0002), ``""`` if absent or empty.
        number_of_frames: Number of Frames (0028,0008) as the pixel layout counts it (at least 1).
        extended_offsets: Extended Offset Table and its Lengths (7FE0,0001)/(7FE0,0002) if both
            have a value.
        bulk_data: the attributes of ``attributes`` whose ``BulkDataURI`` is still a path.
    """

    attributes: JsonDict
    transfer_syntax_uid: str
    implicit_vr: bool
    pixel_data_vr: str | None
    header_length: int
    media_storage_sop_class_uid: str
    number_of_frames: int
    extended_offsets: tuple[bytes, bytes] | None
    bulk_data: list[JsonDict]

    def resolve_bulk_data_uris(self, factory: BulkDataUriFactory) -> None:
        """Replace each bulk data attribute's path by ``factory(path)``."""
        for attribute in self.bulk_data:
            attribute["BulkDataURI"] = factory(attribute["BulkDataURI"])
        self.bulk_data = []

    def uid(self, key: str) -> str | None:
        """The value of the top-level UI attribute ``key`` if it has exactly one."""
        attribute = self.attributes.get(key)
        if attribute is None or attribute["vr"] != "UI":
            return None
        values = attribute.get("Value")
        return values[0] if values is not None and len(values) == 1 else None


def walk_header(
    data: bytes | bytearray | memoryview, /, *, complete: bool, bulk_data_threshold: int
) -> WalkedHeader | None:
    """Walk the Part 10 header at the start of ``data``; ``None`` where pydicom has to read it.

    Args:
        data: the first bytes of the file (up to a little past the Pixel Data tag will do).
        complete: ``data`` is the whole file.
        bulk_data_threshold: binary values longer than this are bulk data (as ``dataset_to_json_dict``).
    """
    if len(data) > MAX_WALK_BYTES or not _fast_path_allowed():
        return None
    if pydicom_config.settings.reading_validation_mode == pydicom_config.RAISE:
        return None  # pydicom's reads and conversions may raise where the walk would not
    walk = _Walk(data if isinstance(data, bytes) else bytes(data), complete, bulk_data_threshold)
    try:
        return walk.header()
    except _Decline:
        return None


def _key(tag: int) -> str:
    """``"00100010"`` for 0x00100010, remembered (formatting is a tenth of the walk)."""
    key = f"{tag:08X}"
    if len(_KEYS) < _MAX_KEYS:
        _KEYS[tag] = key
    return key


class _Decline(Exception):
    """Internal: the pydicom path has to read this header."""


class _Walk:
    """One walk: the bytes, the bulk data policy and what the data set says about itself."""

    __slots__ = ("data", "size", "complete", "threshold", "implicit", "encoding", "bulk", "layout", "end", "pixel_vr")

    def __init__(self, data: bytes, complete: bool, threshold: int) -> None:
        self.data = data
        self.size = len(data)
        self.complete = complete
        self.threshold = threshold
        self.implicit = False
        self.encoding: str = python_encoding[""]  # no Specific Character Set: the default repertoire
        self.bulk: list[JsonDict] = []
        self.layout: dict[int, bytes] = {}  # the Extended Offset Table and its Lengths
        self.end = 0
        self.pixel_vr: str | None = None

    def header(self) -> WalkedHeader:
        if self.size < _PREAMBLE_END or self.data[128:_PREAMBLE_END] != b"DICM":
            raise _Decline
        meta, pos = self._file_meta(_PREAMBLE_END)
        transfer_syntax = _single(meta.get(_TRANSFER_SYNTAX))
        if not transfer_syntax or transfer_syntax in _OTHER_ENCODINGS:
            raise _Decline
        if transfer_syntax in pydicom_uid.PrivateTransferSyntaxes:
            raise _Decline
        # PS3.5 §A.1: Implicit VR Little Endian; every other syntax pydicom reads as Explicit VR
        # Little Endian (PS3.5 §A.2, §A.4).
        self.implicit = transfer_syntax == _IMPLICIT_LITTLE
        attributes = self._top_level(pos)
        if not attributes:
            raise _Decline  # pydicom reads an empty data set as implicit VR, whatever the syntax
        return WalkedHeader(
            attributes=attributes,
            transfer_syntax_uid=transfer_syntax,
            implicit_vr=self.implicit,
            pixel_data_vr=self.pixel_vr,
            header_length=self.end,
            media_storage_sop_class_uid=_single(meta.get(_MEDIA_STORAGE_SOP_CLASS)) or "",
            number_of_frames=self._number_of_frames(attributes),
            extended_offsets=self._extended_offsets(),
            bulk_data=self.bulk,
        )

    # -- File Meta Information (PS3.10 §7.1): Explicit VR Little Endian, group 0002

    def _file_meta(self, pos: int) -> tuple[dict[int, list[Any] | None], int]:
        """The values of (0002,0002) and (0002,0010), by tag, and where the data set starts."""
        data, size = self.data, self.size
        values: dict[int, list[Any] | None] = {}
        previous = -1
        while pos + 8 <= size:
            group, element, raw_vr, length = _EXPLICIT.unpack_from(data, pos)
            if group != 0x0002:
                break
            tag = group << 16 | element
            vr = _VRS.get(raw_vr)
            if vr is None or vr == "SQ" or tag <= previous:
                raise _Decline
            previous = tag
            start = pos + 8
            if vr in _LONG_VRS:
                if pos + 12 > size:
                    raise _Decline
                length = _LENGTH.unpack_from(data, start)[0]
                start += 4
            pos = start + length
            if length == _UNDEFINED or pos > size:
                raise _Decline
            if tag in _META_UIDS:
                if vr != "UI":
                    raise _Decline  # pydicom would use the value all the same
                values[tag] = _RAW_HANDLERS["UI"](data[start:pos], True, "")
        if previous < 0 or pos + 8 > size:
            # No file meta; or nothing after it (pydicom then reads the data set as implicit VR,
            # or waits for more bytes): nothing to store without its UIDs either.
            raise _Decline
        return values, pos

    # -- the data set

    def _top_level(self, pos: int) -> JsonDict:
        data = self.data
        if self.implicit and 0x40 < data[pos + 4] < 0x5B and 0x40 < data[pos + 5] < 0x5B:
            # pydicom takes a first element whose length reads as two capitals for explicit VR.
            raise _Decline
        group = data[pos] | data[pos + 1] << 8
        if group == 0x0000:
            raise _Decline  # Command elements: pydicom reads them apart, in implicit VR (PS3.7 §6.3)
        attributes, self.end = self._elements(pos, None, self.size, "", 0)
        return attributes

    def _elements(self, pos: int, stop: int | None, limit: int, prefix: str, depth: int) -> tuple[JsonDict, int]:
        """The attributes of one data set and the offset after it.

        The top-level data set (``prefix`` ``""``) ends at Pixel Data or at the end of the data;
        an item at ``stop``, or if its length is undefined at its Item Delimitation Item
        (PS3.5 §7.5.2). ``prefix`` is the attributes' path for BulkDataURIs (``dicom_json``'s).
        The loop is the hot path of STOW-RS: the common element is converted inline.
        """
        data, implicit, top, encoding = self.data, self.implicit, not prefix, self.encoding
        # Module constants as locals: the loop runs once per element of every stored instance.
        handlers, keys, vrs, lut_descriptors = _RAW_HANDLERS, _KEYS, _EXPLICIT_VRS, _LUT_DESCRIPTOR_TAGS
        unpack_explicit, unpack_implicit, unpack_length = (
            _EXPLICIT.unpack_from,
            _TAG_LENGTH.unpack_from,
            _LENGTH.unpack_from,
        )
        out: JsonDict = {}
        previous = -1
        while pos != stop:
            if pos + 8 > limit:
                if top and pos == limit and self.complete:
                    break  # the file ends after its last element, no Pixel Data
                raise _Decline
            if implicit:
                group, element, length = unpack_implicit(data, pos)
                raw_vr = b""
            else:
                group, element, raw_vr, length = unpack_explicit(data, pos)
            start = pos + 8
            tag = group << 16 | element
            if group >= 0x7FE0:  # Pixel Data's group, and items (FFFE) where an element belongs
                if group == 0xFFFE:
                    if tag == _ITEM_END and stop is None and not top and not length and raw_vr in (b"", b"\0\0"):
                        return out, pos + 8
                    raise _Decline
                if top and tag in _PIXEL_DATA_TAGS:
                    self._pixel_data(pos, raw_vr)
                    return out, pos
            if tag <= previous:
                raise _Decline  # pydicom keeps the last of repeated tags and sorts: not worth mirroring
            previous = tag
            if implicit:
                entry = DicomDictionary.get(tag)
                vr = entry[0] if entry is not None else None
                handler = handlers.get(vr) if vr is not None else None
            else:
                known = vrs.get(raw_vr)
                if known is None:
                    raise _Decline
                vr, handler, long_length = known
                if long_length:
                    if start + 4 > limit:
                        raise _Decline
                    length = unpack_length(data, start)[0]
                    start += 4
            end = start + length
            if end > limit:  # past the data, or an undefined length (data is under MAX_WALK_BYTES)
                if length != _UNDEFINED or not element or group == 0x0002:
                    raise _Decline
                # Undefined length (PS3.5 §7.5): only a sequence is walked; encapsulated data in
                # an item (an icon) or an undefined-length UN is pydicom's.
                if vr != "SQ" or depth >= _MAX_DEPTH:
                    raise _Decline
                key = keys.get(tag) or _key(tag)
                out[key], pos = self._sequence(start, None, limit, prefix + key, depth + 1)
                continue
            if not element or group == 0x0002:
                # PS3.18 §F.2.2: no Group Length, and group 0002 is File Meta Information.
                if top and group == 0x0002:
                    raise _Decline
                pos = end
                continue
            key = keys.get(tag) or _key(tag)
            if tag == 0x00080005:  # Specific Character Set
                self._character_set(vr, start, length, top and not out)
                encoding = self.encoding
            if handler is not None and length and group != 0x7FE0 and (group != 0x0028 or tag not in lut_descriptors):
                # Text or numbers: dicom_json's raw handler, exactly as its converter calls it
                # (not LUT descriptors, and no Extended Offset Table in other VRs than its own).
                try:
                    values = handler(data[start:end], True, encoding)
                except Exception as exc:  # the converter leaves these to pydicom (or fails where it would)
                    raise _Decline from exc
                out[key] = {"vr": vr} if values is None else {"vr": vr, "Value": values}
                pos = end
                continue
            if vr is None or vr not in ALL_VRS or vr == "UN" or handler is not None and length:
                # Private or unknown (implicit VR), ambiguous, UN, the odd cases above: pydicom decides.
                raise _Decline
            if vr == "SQ" and length:
                if depth >= _MAX_DEPTH:
                    raise _Decline
                out[key] = self._sequence(start, end, end, prefix + key, depth + 1)[0]
                pos = end
                continue
            if length and vr not in BINARY_VRS:
                raise _Decline  # UR: pydicom converts it
            out[key] = self._binary_or_empty(tag, vr, start, end, prefix, key)
            if top and tag in _LAYOUT_TAGS:
                self.layout[tag] = data[start:end]
            pos = end
        return out, pos

    def _binary_or_empty(self, tag: int, vr: str, start: int, end: int, prefix: str, key: str) -> JsonDict:
        """An empty value, or an octet stream as ``dicom_json``'s converter makes it (PS3.18 §F.2.7)."""
        if start == end:
            return {"vr": vr}  # PS3.18 §F.2.5: present but empty
        if end - start > self.threshold or tag in _BULK_TAGS or (not prefix and tag >> 16 == _PIXEL_GROUP):
            attribute = {"vr": vr, "BulkDataURI": prefix + key}
            self.bulk.append(attribute)
            return attribute
        # One base64 string for the whole Value Field.
        return {"vr": vr, "InlineBinary": base64.b64encode(self.data[start:end]).decode("ascii")}

    def _sequence(self, pos: int, stop: int | None, limit: int, path: str, depth: int) -> tuple[JsonDict, int]:
        """A sequence's items, up to ``stop`` or its Sequence Delimitation Item (PS3.5 §7.5)."""
        data = self.data
        items: list[JsonDict] = []
        while pos != stop:
            if pos + 8 > limit:
                raise _Decline
            group, element, length = _TAG_LENGTH.unpack_from(data, pos)
            tag = group << 16 | element
            if tag == _SEQUENCE_END and stop is None and not length:
                pos += 8
                break
            if tag != _ITEM:
                raise _Decline
            prefix = f"{path}/{len(items)}/"
            if length == _UNDEFINED:
                item, pos = self._elements(pos + 8, None, limit, prefix, depth)
            else:
                item_end = pos + 8 + length
                if item_end > limit:
                    raise _Decline
                item, pos = self._elements(pos + 8, item_end, item_end, prefix, depth)
            items.append(item)
        # PS3.18 §F.2.5: a sequence without items has no "Value".
        return ({"vr": "SQ", "Value": items} if items else {"vr": "SQ"}), pos

    def _character_set(self, vr: str | None, start: int, length: int, first: bool) -> None:
        """(0008,0005): only a single-codec one, first in the top-level data set (text before it,
        or in an item that has its own, pydicom decodes otherwise)."""
        if not first or vr != "CS" or length == _UNDEFINED:
            raise _Decline
        encoding = _CHARSETS.get(self.data[start : start + length].rstrip(b" \0"))
        if encoding is None:
            raise _Decline
        self.encoding = encoding

    def _pixel_data(self, pos: int, raw_vr: bytes) -> None:
        """The header ends at the top-level Pixel Data element at ``pos``; pydicom reads its tag,
        VR and length (PS3.5 §7.1.2) before it stops there."""
        if self.implicit:
            self.pixel_vr = "OW"  # PS3.5 §A.1: Pixel Data in Implicit VR Little Endian is OW
            return
        vr = _VRS.get(raw_vr)
        if vr in _LONG_VRS and pos + 12 > self.size:
            raise _Decline
        self.pixel_vr = vr if vr in _PIXEL_DATA_VRS else "OB"

    # -- what the pixel layout needs

    def _number_of_frames(self, attributes: JsonDict) -> int:
        """As ``max(1, int(ds.NumberOfFrames or 1))`` where that works, else 1 (``layout_of``)."""
        attribute = attributes.get("00280008")
        if attribute is None:
            return 1
        if attribute["vr"] != "IS":
            raise _Decline  # pydicom's int() of some other kind of value: not mirrored
        values = attribute.get("Value")
        if not values or len(values) > 1 or values[0] is None:
            return 1
        return max(1, int(values[0]))

    def _extended_offsets(self) -> tuple[bytes, bytes] | None:
        offsets, lengths = self.layout.get(_EXTENDED_OFFSETS), self.layout.get(_EXTENDED_LENGTHS)
        return (offsets, lengths) if offsets and lengths else None


def _single(values: list[Any] | None) -> str | None:
    """A UI attribute's only value; multiple values decline (pydicom would take their list)."""
    if values is None:
        return None
    if len(values) > 1:
        raise _Decline
    value: str = values[0]
    return value
