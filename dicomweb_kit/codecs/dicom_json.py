"""DICOM JSON Model codec (PS3.18 Annex F), built on msgspec.

The internal form of a data set is the DICOM JSON object as a plain ``dict``:
``{"00100010": {"vr": "PN", "Value": [{"Alphabetic": "Doe^Jane"}]}, ...}``, keys eight
upper-case hex digits in ascending order (PS3.18 §F.2.2).

:func:`dataset_to_json_dict` reads a :class:`pydicom.Dataset` without going through pydicom's
per-element machinery where it can: elements still in their raw (as-read) form are converted
straight from their bytes for the VRs whose conversion does not depend on anything but the
bytes (numbers, ASCII strings, binary values, and text that needs no ISO 2022 code extension).
Everything else (sequences, UN, ambiguous VRs, values with escape sequences, values that do
not parse) goes through ``ds[tag]``, i.e. exactly pydicom's own conversion, so the result is
the same as pydicom's :meth:`~pydicom.dataset.Dataset.to_json_dict` except as listed below.

Differences from pydicom
------------------------
``dataset_to_json_dict(ds)`` equals ``ds.to_json_dict()`` except for these standard-backed
points (the parity test normalises exactly these and nothing else):

1. Group Length elements ``(gggg,0000)`` are left out. PS3.18 §F.2.2: "Group Length
   (gggg,0000) attributes shall not be included in a DICOM JSON Model object."
2. File Meta Information elements (group 0002) are left out, even when a data set carries
   them: the JSON Model represents a Data Set (PS3.18 §F.2.2) and group 0002 belongs to the
   File Meta Information of the PS3.10 file, not to the Data Set (PS3.10 §7.1).
3. A sequence with no items is ``{"vr": "SQ"}`` (pydicom: ``"Value": []``). PS3.18 §F.2.5: an
   attribute that is present but empty has no "Value".
4. An empty value inside a multi-valued attribute (e.g. CS ``A\\\\B``) is ``null``
   (pydicom: ``""``, or an exception for IS, DS and PN). PS3.18 §F.2.5.
5. PN values carry only their non-empty component groups (``"=山田^太郎"`` gives
   ``{"Ideographic": "山田^太郎"}``; pydicom adds ``"Alphabetic": ""``). PS3.18 §F.2.2: "The
   non-empty name components of each element are encoded as JSON strings".
6. ``bulk_data_threshold`` is compared with the length of the value in bytes, and Pixel Data,
   Float/Double Float Pixel Data, Waveform Data and any top-level (7FE0,xxxx) element always go
   to ``BulkDataURI`` when a factory is given (pydicom compares with 3/4 of the threshold and
   has no such list). PS3.18 §F.2.6 leaves the choice to the origin server; only relevant with
   a factory, so the parity test (no factory) does not see it.

Behaviour kept as pydicom has it (no standard text overrides it):

* IS values become JSON integers, DS values JSON floats (``float(value)``), as pydicom does.
  A DS of ``NaN`` or ``Infinity`` stays a float; :func:`encode` writes it as ``null`` (RFC 8259
  has no NaN).

7. An IS or DS value that is not a number (e.g. IS ``"1A"`` in pydicom's ``badVR.dcm``) is
   kept as a JSON string, where pydicom's ``to_json_dict`` raises: a STOW-RS of a real file
   with one sloppy value must not fail (PS3.18 Table F.2.3-1 allows strings for IS/DS).
* OB/OW/OD/OF/OL/OV/UN values are base64 of the Value Field bytes as stored in the data set
  (no byte swapping for big-endian data sets), as pydicom does (PS3.18 §F.2.7).
* Text is decoded with the data set's Specific Character Set exactly as pydicom does it (values
  with ISO 2022 escape sequences are decoded by pydicom itself).
"""

from __future__ import annotations

import base64
import binascii
import struct
import sys
from collections.abc import Callable, Iterable, Mapping, MutableSequence
from typing import Any, Final

import msgspec
from pydicom import config as pydicom_config
from pydicom._dicom_dict import DicomDictionary  # the plain dict behind pydicom.datadict
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.hooks import hooks as pydicom_hooks
from pydicom.hooks import raw_element_value, raw_element_vr
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.valuerep import VR, PersonName

from ..errors import InvalidRequest

__all__ = [
    "BulkDataUriFactory",
    "BulkDataLoader",
    "dataset_to_json_dict",
    "decode",
    "encode",
    "json_dict_to_dataset",
]

BulkDataUriFactory = Callable[[str], str]
"""Receives the attribute path (``"7FE00010"``, ``"00540016/0/00181072"``); returns the BulkDataURI."""

BulkDataLoader = Callable[[str], bytes]
"""Receives a BulkDataURI; returns the bytes of the Value Field it names."""

JsonDict = dict[str, Any]

_ENCODER: Final = msgspec.json.Encoder()
_DECODER: Final = msgspec.json.Decoder()

# PS3.18 §F.2.7: the VRs whose value is an octet stream (InlineBinary / BulkDataURI).
BINARY_VRS: Final = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
_INT_VRS: Final = frozenset({"IS", "SL", "SS", "SV", "UL", "US", "UV"})
_FLOAT_VRS: Final = frozenset({"DS", "FD", "FL"})
# Every VR of PS3.5 Table 6.2-1 (pydicom also lists ambiguous ones like "US or SS").
ALL_VRS: Final = frozenset(vr.value for vr in VR if " " not in vr.value)
# pydicom's VR is a str Enum; map it (and plain strings) to the plain string we emit.
_PLAIN_VR: Final = {vr: vr for vr in ALL_VRS}

# Pixel Data, Float Pixel Data, Double Float Pixel Data, Waveform Data: always bulk data when
# a factory is given (PS3.18 §F.2.6, §8.7.3.3 Bulkdata).
_BULK_TAGS: Final = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009, 0x54001010})
_PIXEL_GROUP: Final = 0x7FE0
# pydicom fixes the first value of these US/SS descriptors on read; leave them to pydicom.
_LUT_DESCRIPTOR_TAGS: Final = frozenset({0x00281101, 0x00281102, 0x00281103, 0x00283002})
_ESC: Final = 0x1B
_LATIN1: Final = "latin_1"  # pydicom's default_encoding "iso8859" is this codec
_NATIVE_LITTLE: Final = sys.byteorder == "little"
_NUMBER_FORMATS: Final = {"US": "H", "SS": "h", "UL": "I", "SL": "i", "FL": "f", "FD": "d", "SV": "q", "UV": "Q"}
_PN_GROUPS: Final = ("Alphabetic", "Ideographic", "Phonetic")


class _Fallback(Exception):
    """Internal: this raw element needs pydicom's own conversion."""


# --------------------------------------------------------------------------- public API


def encode(obj: Any, /) -> bytes:
    """Serialise a DICOM JSON dict (or list of them) to UTF-8 JSON bytes (RFC 8259)."""
    return _ENCODER.encode(obj)


def decode(data: bytes | str, /) -> Any:
    """Parse JSON; malformed input raises :class:`~dicomweb_kit.errors.InvalidRequest`."""
    try:
        return _DECODER.decode(data)
    except msgspec.DecodeError as exc:
        raise InvalidRequest(f"malformed JSON: {exc}") from exc


def dataset_to_json_dict(
    ds: Dataset,
    /,
    *,
    bulk_data_uri: BulkDataUriFactory | None = None,
    bulk_data_threshold: int = 1024,
) -> JsonDict:
    """Return the DICOM JSON Model object of `ds` (PS3.18 §F.2); see the module docstring.

    Binary values (OB OD OF OL OV OW UN) are InlineBinary unless `bulk_data_uri` is given and
    the value is longer than `bulk_data_threshold` bytes or is pixel/waveform data, in which
    case the attribute gets ``"BulkDataURI": bulk_data_uri(path)``.
    """
    fast = _fast_path_allowed()
    return _Converter(bulk_data_uri, bulk_data_threshold, fast).dataset(ds, "")


def json_dict_to_dataset(obj: Mapping[str, Any], /, *, bulk_data_loader: BulkDataLoader | None = None) -> Dataset:
    """Build a :class:`pydicom.Dataset` from a DICOM JSON Model object (PS3.18 §F.2).

    InlineBinary is base64-decoded. An attribute with a BulkDataURI is left out of the data
    set unless `bulk_data_loader` is given, which then supplies its bytes. ``null`` values of
    string VRs become empty values. Anything that is not a DICOM JSON object raises
    :class:`~dicomweb_kit.errors.InvalidRequest`.
    """
    return _json_dataset(obj, bulk_data_loader, depth=0)


# --------------------------------------------------------------------------- dataset -> JSON


def _fast_path_allowed() -> bool:
    """Our raw conversion mirrors pydicom's defaults; any customisation sends all to pydicom."""
    cfg = pydicom_config
    return (
        cfg.data_element_callback is None
        and not cfg.datetime_conversion
        and not cfg.use_DS_numpy
        and not cfg.use_IS_numpy
        and not cfg.use_DS_decimal
        and getattr(pydicom_hooks, "raw_element_vr", raw_element_vr) is raw_element_vr
        and getattr(pydicom_hooks, "raw_element_value", raw_element_value) is raw_element_value
    )


def _first_encoding(ds: Dataset) -> str:
    """The codec pydicom uses for text without escape sequences (``Dataset.__getitem__``)."""
    encodings: str | MutableSequence[str] = ds.original_character_set or ds._character_set
    return encodings if isinstance(encodings, str) else encodings[0]


class _Converter:
    """One conversion run: the bulk data policy plus per-VR handlers for raw elements."""

    __slots__ = ("factory", "threshold", "fast")

    def __init__(self, factory: BulkDataUriFactory | None, threshold: int, fast: bool) -> None:
        self.factory = factory
        self.threshold = threshold
        self.fast = fast

    def dataset(self, ds: Dataset, prefix: str) -> JsonDict:
        out: JsonDict = {}
        elements = ds._dict
        encoding: str | None = None
        for tag in sorted(elements):
            # PS3.18 §F.2.2: no Group Length; group 0002 is File Meta Information (PS3.10 §7.1).
            if not tag & 0xFFFF or tag >> 16 == 0x0002:
                continue
            elem = elements[tag]
            key = f"{tag:08X}"
            attr: JsonDict | None = None
            if self.fast and type(elem) is RawDataElement:
                if encoding is None:
                    encoding = _first_encoding(ds)
                attr = self.raw(elem, tag, prefix, key, encoding)
            if attr is None:
                converted = ds[tag]  # pydicom's conversion, incl. ambiguous VR correction
                vr = converted.VR
                attr = self.element(_PLAIN_VR.get(vr, str(vr)), converted.value, tag, prefix, key)
            out[key] = attr
        return out

    # -- raw elements (bytes straight from the file)

    def raw(self, elem: RawDataElement, tag: int, prefix: str, key: str, encoding: str) -> JsonDict | None:
        """The attribute for a raw element, or None when pydicom has to convert it."""
        vr = elem.VR
        if vr is None:  # implicit VR: public dictionary only (private/ambiguous go to pydicom)
            entry = DicomDictionary.get(tag)
            if entry is None:
                return None
            vr = entry[0]
        vr = _PLAIN_VR.get(vr, vr)
        if vr == "UN":  # pydicom may replace UN by the dictionary VR
            return None
        value = elem.value
        if value is None:
            return {"vr": vr} if elem.length == 0 and vr in ALL_VRS else None  # else deferred read
        if not value:
            return {"vr": vr} if vr in ALL_VRS else None
        if vr in BINARY_VRS:
            return self.binary(vr, value, tag, prefix, key)
        handler = _RAW_HANDLERS.get(vr)
        if handler is None or tag in _LUT_DESCRIPTOR_TAGS:
            return None
        try:
            values = handler(value, elem.is_little_endian, encoding)
        except (_Fallback, ValueError, UnicodeError, LookupError, struct.error):
            return None  # pydicom decides (and raises where it would)
        if values is None:
            return {"vr": vr}
        return {"vr": vr, "Value": values}

    # -- converted DataElements (and the pydicom fallback)

    def element(self, vr: str, value: Any, tag: int, prefix: str, key: str) -> JsonDict:
        if vr == "SQ":
            return self.sequence(value, prefix + key)
        if vr in BINARY_VRS or (" or " in vr and isinstance(value, bytes | bytearray)):
            if not value:
                return {"vr": vr}
            return self.binary(vr, bytes(value), tag, prefix, key)
        if value is None or value == "" or value == b"":
            return {"vr": vr}
        if isinstance(value, MultiValue | list | tuple):
            if not value:
                return {"vr": vr}
            items: Iterable[Any] = value
        else:
            items = (value,)
        return {"vr": vr, "Value": _python_values(vr, items)}

    def sequence(self, items: Sequence | None, path: str) -> JsonDict:
        if not items:
            return {"vr": "SQ"}  # PS3.18 §F.2.5: present but empty -> no "Value"
        return {"vr": "SQ", "Value": [self.dataset(item, f"{path}/{i}/") for i, item in enumerate(items)]}

    def binary(self, vr: str, value: bytes, tag: int, prefix: str, key: str) -> JsonDict:
        factory = self.factory
        if factory is not None and (
            len(value) > self.threshold or tag in _BULK_TAGS or (not prefix and tag >> 16 == _PIXEL_GROUP)
        ):
            return {"vr": vr, "BulkDataURI": factory(prefix + key)}
        # PS3.18 §F.2.7: one base64 string for the whole Value Field.
        return {"vr": vr, "InlineBinary": base64.b64encode(value).decode("ascii")}


def _python_values(vr: str, items: Iterable[Any]) -> list[Any]:
    """JSON values of a converted element's values; empty ones are null (PS3.18 §F.2.5)."""
    if vr == "PN":
        return [_pn_object(v.components if isinstance(v, PersonName) else str(v).split("=")) for v in items]
    if vr == "AT":
        return [None if v is None or v == "" else f"{v:08X}" for v in items]
    if vr in _INT_VRS:
        return [None if v is None or v == "" else _number(v, int, vr) for v in items]
    if vr in _FLOAT_VRS:
        return [None if v is None or v == "" else _number(v, float, vr) for v in items]
    return [None if v is None or v == "" else str(v) for v in items]


def _number(value: Any, kind: type[int] | type[float], vr: str) -> Any:
    try:
        return kind(value)
    except ValueError:
        if vr not in ("IS", "DS"):
            raise
        # An IS/DS string that is no number (badVR.dcm's IS "1A"): keep the text rather than
        # lose the instance; PS3.18 Table F.2.3-1 lets IS/DS be JSON strings.
        return str(value).strip()


def _pn_object(components: Iterable[str]) -> dict[str, str] | None:
    """PS3.18 §F.2.2: only the non-empty component groups; a wholly empty name is null (§F.2.5)."""
    obj = {group: comp for group, comp in zip(_PN_GROUPS, components, strict=False) if comp}
    return obj or None


# --------------------------------------------------------------------------- raw value handlers
# Each returns the "Value" list, or None for an empty value. They mirror pydicom.values.


def _none_if_empty(parts: list[str]) -> list[Any] | None:
    if len(parts) == 1:
        return None if not parts[0] else parts  # VM 0 -> no Value (PS3.18 §F.2.5)
    return [p if p else None for p in parts]


def _raw_ascii_multi(value: bytes, little: bool, encoding: str) -> list[Any] | None:
    """AS CS DA DT TM: trailing padding removed, split on backslash (pydicom multi_string)."""
    return _none_if_empty(value.decode(_LATIN1).rstrip(" \x00").split("\\"))


def _raw_ae(value: bytes, little: bool, encoding: str) -> list[Any] | None:
    """AE: leading and trailing spaces are not significant (PS3.5 §6.2)."""
    return _none_if_empty([p.strip() for p in value.decode(_LATIN1).split("\\")])


def _raw_ui(value: bytes, little: bool, encoding: str) -> list[Any] | None:
    return _none_if_empty(value.decode(_LATIN1).rstrip("\x00 ").split("\\"))


def _decode_text(value: bytes, encoding: str) -> str:
    if _ESC in value:  # ISO 2022 code extensions (PS3.5 §6.1.2.5): pydicom decodes these
        raise _Fallback
    return value.decode(encoding)


def _raw_text_multi(value: bytes, little: bool, encoding: str) -> list[Any] | None:
    """SH LO UC: decoded with the Specific Character Set, then split (PS3.18 §F.2.4)."""
    return _none_if_empty([p.rstrip("\x00 ") for p in _decode_text(value, encoding).split("\\")])


def _raw_text_single(value: bytes, little: bool, encoding: str) -> list[Any] | None:
    """ST LT UT: one value, backslash is an ordinary character."""
    text = _decode_text(value, encoding).rstrip("\x00 ")
    return [text] if text else None


def _raw_pn(value: bytes, little: bool, encoding: str) -> list[Any] | None:
    text = _decode_text(value.rstrip(b"\x00 "), encoding)
    if not text:
        return None
    return [_pn_object(v.split("=")) for v in text.split("\\")]


def _parse_is(text: str) -> int | None:
    text = text.strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        number = float(text)  # pydicom's IS accepts "1.0"; anything else goes to pydicom
        if not number.is_integer():
            raise
        return int(number)


def _raw_is(value: bytes, little: bool, encoding: str) -> list[Any] | None:
    parts = value.decode(_LATIN1).rstrip(" \x00").split("\\")
    if len(parts) == 1 and not parts[0].strip():
        return None
    return [_parse_is(p) for p in parts]


def _raw_ds(value: bytes, little: bool, encoding: str) -> list[Any] | None:
    parts = value.decode(_LATIN1).strip().rstrip(" \x00").split("\\")
    if len(parts) == 1 and not parts[0].strip():
        return None
    return [float(p) if p.strip() else None for p in parts]


def _number_handler(code: str) -> Callable[[bytes, bool, str], list[Any] | None]:
    size = struct.calcsize(code)

    def handler(value: bytes, little: bool, encoding: str) -> list[Any] | None:
        if len(value) % size:
            raise _Fallback  # pydicom raises or converts to UN
        if little == _NATIVE_LITTLE:
            view: Any = memoryview(value)  # native order matches: a zero-copy cast
            values: list[Any] = view.cast(code).tolist()
            return values
        return list(struct.unpack(f"{'<' if little else '>'}{len(value) // size}{code}", value))

    return handler


def _raw_at(value: bytes, little: bool, encoding: str) -> list[Any] | None:
    if len(value) % 4:
        raise _Fallback
    halves = struct.unpack(f"{'<' if little else '>'}{len(value) // 2}H", value)
    return [f"{halves[i]:04X}{halves[i + 1]:04X}" for i in range(0, len(halves), 2)]


_RawHandler = Callable[[bytes, bool, str], "list[Any] | None"]
_RAW_HANDLERS: Final[dict[str, _RawHandler]] = {
    **dict.fromkeys(("AS", "CS", "DA", "DT", "TM"), _raw_ascii_multi),
    "AE": _raw_ae,
    "UI": _raw_ui,
    **dict.fromkeys(("SH", "LO", "UC"), _raw_text_multi),
    **dict.fromkeys(("ST", "LT", "UT"), _raw_text_single),
    "PN": _raw_pn,
    "IS": _raw_is,
    "DS": _raw_ds,
    "AT": _raw_at,
    **{vr: _number_handler(code) for vr, code in _NUMBER_FORMATS.items()},
}


# --------------------------------------------------------------------------- JSON -> dataset

_MAX_DEPTH: Final = 64


def _json_dataset(obj: Mapping[str, Any], loader: BulkDataLoader | None, depth: int) -> Dataset:
    if not isinstance(obj, Mapping):
        raise InvalidRequest("a DICOM JSON data set must be a JSON object (PS3.18 §F.2.2)")
    if depth > _MAX_DEPTH:
        raise InvalidRequest(f"sequences nested deeper than {_MAX_DEPTH} levels")
    ds = Dataset()
    for key, attr in obj.items():
        elem = _json_element(key, attr, loader, depth)
        if elem is not None:
            ds.add(elem)
    return ds


def _json_tag(key: str) -> int:
    if not isinstance(key, str) or len(key) != 8:
        raise InvalidRequest(f"attribute name {key!r} is not 8 hex digits (PS3.18 §F.2.2)")
    try:
        return int(key, 16)
    except ValueError:
        raise InvalidRequest(f"attribute name {key!r} is not 8 hex digits (PS3.18 §F.2.2)") from None


def _json_element(key: str, attr: Any, loader: BulkDataLoader | None, depth: int) -> DataElement | None:
    tag = _json_tag(key)
    if not isinstance(attr, Mapping):
        raise InvalidRequest(f"attribute {key} must be a JSON object")
    vr = attr.get("vr")
    if vr not in ALL_VRS:
        raise InvalidRequest(f"attribute {key} has no valid 'vr' (PS3.18 §F.2.3)")
    present = [name for name in ("Value", "InlineBinary", "BulkDataURI") if name in attr]
    if len(present) > 1:
        raise InvalidRequest(f"attribute {key} has more than one of {present} (PS3.18 §F.2.2)")
    if not present:
        return _new_element(tag, vr, [] if vr == "SQ" else None)
    if present[0] == "Value":
        return _new_element(tag, vr, _json_value(key, vr, attr["Value"], loader, depth))
    binary = _json_binary(key, vr, present[0], attr[present[0]], loader)
    return None if binary is None else _new_element(tag, vr, binary)


def _new_element(tag: int, vr: str, value: Any) -> DataElement:
    try:
        return DataElement(tag, vr, value)
    except (ValueError, TypeError, OverflowError) as exc:
        raise InvalidRequest(f"attribute {tag:08X} ({vr}) has an invalid value: {exc}") from exc


def _json_value(key: str, vr: str, values: Any, loader: BulkDataLoader | None, depth: int) -> Any:
    if not isinstance(values, list):
        raise InvalidRequest(f"'Value' of attribute {key} must be an array (PS3.18 §F.2.4)")
    if vr == "SQ":
        return Sequence([_json_dataset(item or {}, loader, depth + 1) for item in values])
    if vr in BINARY_VRS:
        raise InvalidRequest(f"attribute {key} with VR {vr} must use InlineBinary or BulkDataURI (PS3.18 §F.2.2)")
    converted = [_json_scalar(key, vr, v) for v in values]
    if not converted:
        return None
    return converted[0] if len(converted) == 1 else converted


def _json_scalar(key: str, vr: str, value: Any) -> Any:
    if value is None:  # PS3.18 §F.2.5: an empty value of a multi-valued attribute
        if vr in _NUMBER_FORMATS or vr == "AT":
            raise InvalidRequest(f"attribute {key}: null is not a valid {vr} value")
        return ""
    if vr == "PN":
        if not isinstance(value, Mapping) or not all(isinstance(value.get(g, ""), str) for g in _PN_GROUPS):
            raise InvalidRequest(f"PN value of attribute {key} must be an object of strings (PS3.18 §F.2.2)")
        groups = [value.get(group, "") for group in _PN_GROUPS]
        while groups and not groups[-1]:
            groups.pop()
        return "=".join(groups)
    if vr == "AT":
        return _json_tag(value)
    if vr in _INT_VRS or vr in _FLOAT_VRS:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise InvalidRequest(f"attribute {key}: {value!r} is not a {vr} value (PS3.18 Table F.2.3-1)")
        return value  # a JSON String is allowed for IS/DS/SV/UV (Table F.2.3-1); pydicom parses it
    if not isinstance(value, str):
        raise InvalidRequest(f"attribute {key}: {value!r} is not a {vr} string (PS3.18 Table F.2.3-1)")
    return value


def _json_binary(key: str, vr: str, name: str, value: Any, loader: BulkDataLoader | None) -> bytes | None:
    # The F.4 example wraps the string in an array; accept both spellings.
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if not isinstance(value, str):
        raise InvalidRequest(f"'{name}' of attribute {key} must be a string (PS3.18 §F.2.6, §F.2.7)")
    if name == "BulkDataURI":
        return None if loader is None else loader(value)
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidRequest(f"InlineBinary of attribute {key} is not base64 (PS3.18 §F.2.7)") from exc
