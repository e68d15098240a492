"""DICOM XML codec: the Native DICOM Model (PS3.19 §A.1) to and from the DICOM JSON dict.

Writing builds the document as strings with our own escaping (measured about 6x faster than
an equivalent ``xml.etree.ElementTree`` writer on pydicom's ``rtplan.dcm``). Reading uses
:mod:`xml.parsers.expat` directly, configured so that no DTD can be declared and no entity can
be defined or expanded: a document with a DOCTYPE is refused, which rules out billion-laughs
and external-entity (XXE) attacks, and references to undefined entities are parse errors.

Notes on the mapping:

* ``DicomAttribute`` carries ``tag``, ``vr``, ``keyword`` (from pydicom's data dictionary;
  omitted for private and unknown tags) and, for private elements, ``privateCreator`` taken
  from the element's Private Creator in the same data set (PS3.19 §A.1.5, PS3.5 §7.8.1).
* A ``null`` (empty) value of a multi-valued attribute (PS3.18 §F.2.5) is an empty
  ``<Value number="n"/>``.
* Each PN component group is written as its five components split on ``^`` (PS3.19 Table
  A.1.5-2). Empty components before the last present one are written as empty elements so
  that reading gives back the exact string; a sixth or later component (invalid, PS3.5 §6.2)
  is kept in ``NameSuffix`` joined with ``^``.
* Characters XML 1.0 cannot carry (C0 controls other than TAB, LF, CR; unpaired surrogates;
  U+FFFE/U+FFFF, see XML 1.0 §2.2 ``Char``) are written as U+FFFD. CR is written as ``&#13;``
  so that XML end-of-line normalisation (XML 1.0 §2.11) does not turn CRLF into LF.
* Reading gives IS/SL/SS/SV/UL/US/UV values as ``int`` and DS/FL/FD values as ``float``
  (PS3.18 Table F.2.3-1); an IS or DS value that does not parse stays a string, which Table
  F.2.3-1 allows.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any, Final
from xml.parsers import expat

from pydicom.datadict import keyword_for_tag

from ..errors import InvalidRequest, PayloadTooLarge
from .dicom_json import ALL_VRS

__all__ = ["DEFAULT_MAX_XML_SIZE", "NATIVE_DICOM_NAMESPACE", "json_dict_to_xml", "xml_to_json_dict"]

NATIVE_DICOM_NAMESPACE: Final = "http://dicom.nema.org/PS3.19/models/NativeDICOM"
DEFAULT_MAX_XML_SIZE: Final = 64 * 1024 * 1024
MAX_NESTING: Final = 64

_PN_GROUPS: Final = ("Alphabetic", "Ideographic", "Phonetic")
_PN_COMPONENTS: Final = ("FamilyName", "GivenName", "MiddleName", "NamePrefix", "NameSuffix")
_INT_VRS: Final = frozenset({"IS", "SL", "SS", "SV", "UL", "US", "UV"})
_FLOAT_VRS: Final = frozenset({"DS", "FD", "FL"})
# VRs whose values are not <Value> elements: Item, PersonName, InlineBinary/BulkData (PS3.19 §A.1.5)
_NON_VALUE_VRS: Final = frozenset({"SQ", "PN", "OB", "OD", "OF", "OL", "OV", "OW", "UN"})
_LENIENT_NUMBER_VRS: Final = frozenset({"IS", "DS"})  # may stay strings (PS3.18 Table F.2.3-1)

# --------------------------------------------------------------------------- writing

_INVALID_XML_CHARS: Final = "[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]"
_TEXT_SPECIAL: Final = re.compile(f"[&<>\r]|{_INVALID_XML_CHARS}")
_ATTR_SPECIAL: Final = re.compile(f'[&<>"\t\n\r]|{_INVALID_XML_CHARS}')
_ESCAPES: Final = {
    "&": "&amp;",
    "<": "&lt;",
    ">": "&gt;",
    '"': "&quot;",
    "\t": "&#9;",
    "\n": "&#10;",
    "\r": "&#13;",
}


def _replace(match: re.Match[str]) -> str:
    return _ESCAPES.get(match.group(), "\ufffd")


def _text(value: str) -> str:
    return _TEXT_SPECIAL.sub(_replace, value) if _TEXT_SPECIAL.search(value) else value


def _attr(value: str) -> str:
    return _ATTR_SPECIAL.sub(_replace, value) if _ATTR_SPECIAL.search(value) else value


@lru_cache(maxsize=8192)
def _attribute_open_tag(key: str, vr: str) -> str:
    """``<DicomAttribute tag=".." vr=".." keyword="..">`` for a public (or unknown) tag."""
    tag = int(key, 16)
    keyword = "" if (tag >> 16) % 2 else keyword_for_tag(tag)
    keyword_attr = f' keyword="{keyword}"' if keyword else ""
    return f'<DicomAttribute tag="{key}" vr="{_attr(vr)}"{keyword_attr}>'


def json_dict_to_xml(obj: Mapping[str, Any], /) -> bytes:
    """Render a DICOM JSON dict as one Native DICOM Model document (PS3.19 §A.1), UTF-8."""
    out: list[str] = [
        '<?xml version="1.0" encoding="UTF-8"?>\n',
        f'<NativeDicomModel xmlns="{NATIVE_DICOM_NAMESPACE}" xml:space="preserve">',
    ]
    _write_dataset(out, obj)
    out.append("</NativeDicomModel>\n")
    return "".join(out).encode("utf-8", "surrogatepass")


def _write_dataset(out: list[str], obj: Mapping[str, Any]) -> None:
    for key in sorted(obj):
        attr = obj[key]
        vr = attr.get("vr", "UN")
        private_creator = _private_creator(obj, key)
        if private_creator is None:
            out.append(_attribute_open_tag(key, vr))
        else:
            out.append(f'<DicomAttribute tag="{key}" vr="{_attr(vr)}" privateCreator="{_attr(private_creator)}">')
        _write_attribute_content(out, vr, attr)
        out.append("</DicomAttribute>")


def _private_creator(obj: Mapping[str, Any], key: str) -> str | None:
    """PS3.5 §7.8.1: (gggg,xxee) with odd gggg and xx >= 0x10 is reserved by (gggg,00xx)."""
    group, element = int(key[:4], 16), int(key[4:], 16)
    if not group % 2 or element < 0x1000:
        return None
    creator = obj.get(f"{key[:4]}00{key[4:6]}")
    values = creator.get("Value") if isinstance(creator, Mapping) else None
    if values and isinstance(values[0], str):
        return values[0]
    return None


def _write_attribute_content(out: list[str], vr: str, attr: Mapping[str, Any]) -> None:
    if "Value" in attr:
        writer = _VALUE_WRITERS.get(vr, _write_values)
        writer(out, attr["Value"])
    elif "InlineBinary" in attr:
        out.append(f"<InlineBinary>{_text(_one_string(attr['InlineBinary']))}</InlineBinary>")
    elif "BulkDataURI" in attr:
        out.append(f'<BulkData uri="{_attr(_one_string(attr["BulkDataURI"]))}"/>')


def _one_string(value: Any) -> str:
    if isinstance(value, list) and len(value) == 1:  # the PS3.18 §F.4 example's spelling
        value = value[0]
    if not isinstance(value, str):
        raise ValueError(f"InlineBinary/BulkDataURI must be a string, not {type(value).__name__}")
    return value


def _format_value(value: Any) -> str:
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, float):
        return repr(value)  # shortest round-tripping form; "nan"/"inf" parse back with float()
    return str(value)


def _write_values(out: list[str], values: list[Any]) -> None:
    for number, value in enumerate(values, 1):
        if value is None:
            out.append(f'<Value number="{number}"/>')  # PS3.18 §F.2.5 empty value
        else:
            out.append(f'<Value number="{number}">{_format_value(value)}</Value>')


def _write_items(out: list[str], values: list[Any]) -> None:
    for number, item in enumerate(values, 1):
        out.append(f'<Item number="{number}">')
        _write_dataset(out, item or {})
        out.append("</Item>")


def _write_person_names(out: list[str], values: list[Any]) -> None:
    for number, name in enumerate(values, 1):
        if not name:
            out.append(f'<PersonName number="{number}"/>')
            continue
        out.append(f'<PersonName number="{number}">')
        for group in _PN_GROUPS:
            text = name.get(group)
            if text:
                out.append(f"<{group}>")
                _write_pn_components(out, text)
                out.append(f"</{group}>")
        out.append("</PersonName>")


def _write_pn_components(out: list[str], group: str) -> None:
    parts = group.split("^")
    if len(parts) > 5:  # not a valid PN (PS3.5 §6.2): keep the rest in NameSuffix
        parts = [*parts[:4], "^".join(parts[4:])]
    for name, part in zip(_PN_COMPONENTS, parts, strict=False):
        out.append(f"<{name}>{_text(part)}</{name}>" if part else f"<{name}/>")


_VALUE_WRITERS: Final[dict[str, Callable[[list[str], list[Any]], None]]] = {
    "SQ": _write_items,
    "PN": _write_person_names,
}

# --------------------------------------------------------------------------- reading


def xml_to_json_dict(data: bytes, /, *, max_size: int = DEFAULT_MAX_XML_SIZE) -> dict[str, Any]:
    """Parse a Native DICOM Model document (PS3.19 §A.1) into a DICOM JSON dict.

    Raises :class:`~dicomweb_kit.errors.PayloadTooLarge` above `max_size` bytes and
    :class:`~dicomweb_kit.errors.InvalidRequest` for a DOCTYPE (no DTDs, no entities), malformed
    XML, or anything that is not a Native DICOM Model document.
    """
    if len(data) > max_size:
        raise PayloadTooLarge(f"XML document of {len(data)} bytes exceeds the limit of {max_size}")
    reader = _NativeModelReader()
    parser = expat.ParserCreate(namespace_separator=" ")
    reader.attach(parser)
    try:
        parser.Parse(data, True)
    except expat.ExpatError as exc:
        raise InvalidRequest(f"malformed XML: {exc}") from exc
    if reader.result is None:
        raise InvalidRequest("not a Native DICOM Model document (PS3.19 §A.1)")
    return reader.result


def _refuse_dtd(*_: Any) -> None:
    raise InvalidRequest("XML documents with a DOCTYPE, DTD or entity declarations are not accepted")


class _Attribute:
    """A DicomAttribute being read: its VR and its numbered children."""

    __slots__ = ("key", "vr", "children", "kind", "binary")

    def __init__(self, key: str, vr: str) -> None:
        self.key = key
        self.vr = vr
        self.children: dict[int, Any] = {}
        self.kind: str | None = None  # "Value", "PersonName", "Item", "InlineBinary", "BulkData"
        self.binary: str | None = None

    def set_kind(self, kind: str) -> None:
        if self.kind is not None and self.kind != kind:
            raise InvalidRequest(f"DicomAttribute {self.key} mixes {self.kind} and {kind} (PS3.19 §A.1.5)")
        self.kind = kind

    def add(self, number: int, value: Any) -> None:
        if number in self.children:
            raise InvalidRequest(f"DicomAttribute {self.key} repeats number={number}")
        self.children[number] = value

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"vr": self.vr}
        if self.kind == "InlineBinary":
            out["InlineBinary"] = self.binary or ""
        elif self.kind == "BulkData":
            out["BulkDataURI"] = self.binary or ""
        elif self.children:
            if sorted(self.children) != list(range(1, len(self.children) + 1)):
                raise InvalidRequest(f"DicomAttribute {self.key}: numbers must run 1..n (PS3.19 §A.1.5)")
            values = [self.children[n] for n in range(1, len(self.children) + 1)]
            if self.kind == "Item":  # PS3.18 §F.2.2: attributes in ascending tag order
                values = [dict(sorted(item.items())) for item in values]
            out["Value"] = values
        return out


class _NativeModelReader:
    """Expat callbacks building the JSON dict; element nesting is checked as it is read."""

    def __init__(self) -> None:
        self.result: dict[str, Any] | None = None
        self.stack: list[Any] = []  # open containers: dicts (data sets), _Attribute, PN lists
        self.text: list[str] | None = None  # collecting character data of a leaf element
        self.leaf: tuple[str, int] | None = None  # (element name, number) being collected
        self.depth = 0

    def attach(self, parser: Any) -> None:
        parser.buffer_text = True
        parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
        parser.StartDoctypeDeclHandler = _refuse_dtd
        parser.EntityDeclHandler = _refuse_dtd
        parser.UnparsedEntityDeclHandler = _refuse_dtd
        parser.NotationDeclHandler = _refuse_dtd
        parser.ExternalEntityRefHandler = _refuse_dtd
        parser.StartElementHandler = self.start
        parser.EndElementHandler = self.end
        parser.CharacterDataHandler = self.characters

    # -- expat callbacks

    def characters(self, data: str) -> None:
        if self.text is not None:
            self.text.append(data)

    def start(self, qname: str, attrs: dict[str, str]) -> None:
        name = _local_name(qname)
        if self.text is not None:
            raise InvalidRequest(f"unexpected element <{name}> inside a text element")
        top = self.stack[-1] if self.stack else None
        if top is None:
            self.start_root(name)
        elif isinstance(top, dict):
            self.start_attribute(name, attrs, top)
        elif isinstance(top, _Attribute):
            self.start_in_attribute(name, attrs, top)
        elif isinstance(top, list):  # inside PersonName: a component group
            self.start_pn_group(name, top)
        else:  # inside a component group
            self.start_pn_component(name, top)

    def end(self, qname: str) -> None:
        name = _local_name(qname)
        if self.text is not None:
            self.end_leaf("".join(self.text))
            return
        top = self.stack.pop()
        if isinstance(top, dict):
            self.end_dataset(name, top)
        elif isinstance(top, _Attribute):
            parent = self.stack[-1]
            parent[top.key] = top.to_json()
        elif isinstance(top, list):
            self.end_person_name(top)
        else:
            self.end_pn_group(name, top)

    # -- structure

    def start_root(self, name: str) -> None:
        if name != "NativeDicomModel" or self.result is not None:
            raise InvalidRequest(f"root element must be NativeDicomModel, not <{name}> (PS3.19 §A.1)")
        self.stack.append({})

    def start_attribute(self, name: str, attrs: dict[str, str], dataset: dict[str, Any]) -> None:
        if name != "DicomAttribute":
            raise InvalidRequest(f"<{name}> where a DicomAttribute was expected (PS3.19 §A.1.5)")
        key = attrs.get("tag", "").upper()
        if len(key) != 8 or not all(c in "0123456789ABCDEF" for c in key):
            raise InvalidRequest(f"DicomAttribute tag {key!r} is not 8 hex digits")
        vr = attrs.get("vr", "")
        if vr not in ALL_VRS:
            raise InvalidRequest(f"DicomAttribute {key} has no valid vr")
        if key in dataset:
            raise InvalidRequest(f"DicomAttribute {key} appears twice in one data set")
        self.stack.append(_Attribute(key, vr))

    def start_in_attribute(self, name: str, attrs: dict[str, str], attr: _Attribute) -> None:
        if name == "Value" and attr.vr not in _NON_VALUE_VRS:
            attr.set_kind(name)
            self.begin_leaf(name, _number(attrs))
        elif name == "Item" and attr.vr == "SQ":
            attr.set_kind(name)
            self.depth += 1
            if self.depth > MAX_NESTING:
                raise InvalidRequest(f"sequences nested deeper than {MAX_NESTING} levels")
            item: dict[str, Any] = {}
            attr.add(_number(attrs), item)
            self.stack.append(item)
        elif name == "PersonName" and attr.vr == "PN":
            attr.set_kind(name)
            self.stack.append([_number(attrs), {}])
        elif name == "InlineBinary" and attr.kind is None:
            attr.set_kind(name)
            self.begin_leaf(name, 0)
        elif name == "BulkData" and attr.kind is None:
            attr.set_kind(name)
            attr.binary = attrs.get("uri") or attrs.get("uuid")
            if not attr.binary:
                raise InvalidRequest(f"BulkData of DicomAttribute {attr.key} has no uri")
            self.stack.append(("BulkData", attr))
        else:
            raise InvalidRequest(f"<{name}> is not allowed in DicomAttribute {attr.key} (vr {attr.vr})")

    def start_pn_group(self, name: str, person: list[Any]) -> None:
        if name not in _PN_GROUPS or name in person[1]:
            raise InvalidRequest(f"<{name}> is not allowed in PersonName (PS3.19 Table A.1.5-2)")
        self.stack.append((name, [None] * len(_PN_COMPONENTS)))

    def start_pn_component(self, name: str, group: tuple[str, Any]) -> None:
        if group[0] == "BulkData" or name not in _PN_COMPONENTS:
            raise InvalidRequest(f"<{name}> is not allowed in <{group[0]}>")
        self.begin_leaf(name, _PN_COMPONENTS.index(name))

    def begin_leaf(self, name: str, number: int) -> None:
        self.text = []
        self.leaf = (name, number)

    def end_leaf(self, text: str) -> None:
        assert self.leaf is not None
        name, number = self.leaf
        self.text = self.leaf = None
        top = self.stack[-1]
        if isinstance(top, _Attribute):
            if name == "InlineBinary":
                top.binary = text
            else:
                top.add(number, _parse_value(top.vr, text))
        else:  # a PN component
            components = top[1]
            if components[number] is not None:
                raise InvalidRequest(f"<{name}> appears twice in one PN component group")
            components[number] = text

    def end_dataset(self, name: str, dataset: dict[str, Any]) -> None:
        if self.stack:
            self.depth -= 1
        else:
            self.result = dict(sorted(dataset.items()))

    def end_person_name(self, person: list[Any]) -> None:
        number, groups = person
        self.stack[-1].add(number, groups or None)

    def end_pn_group(self, name: str, group: tuple[str, Any]) -> None:
        if group[0] == "BulkData":
            return
        components: list[str | None] = group[1]
        while components and components[-1] is None:
            components.pop()
        text = "^".join(c or "" for c in components)
        if text:
            self.stack[-1][1][group[0]] = text


def _local_name(qname: str) -> str:
    namespace, _, local = qname.rpartition(" ")
    if namespace and namespace != NATIVE_DICOM_NAMESPACE:
        raise InvalidRequest(f"element <{local}> in unexpected namespace {namespace!r}")
    return local


def _number(attrs: Mapping[str, str]) -> int:
    text = attrs.get("number", "")
    if not text.isdigit() or int(text) < 1:
        raise InvalidRequest(f"number={text!r} must be a positive integer (PS3.19 §A.1.5)")
    return int(text)


def _parse_value(vr: str, text: str) -> Any:
    if not text:
        return None  # PS3.18 §F.2.5: an empty value
    if vr in _INT_VRS:
        return _parse_number(vr, text, int)
    if vr in _FLOAT_VRS:
        return _parse_number(vr, text, float)
    return text


def _parse_number(vr: str, text: str, kind: Callable[[str], Any]) -> Any:
    try:
        return kind(text)
    except ValueError:
        if vr in _LENIENT_NUMBER_VRS:
            return text
        raise InvalidRequest(f"{text!r} is not a valid {vr} value") from None
