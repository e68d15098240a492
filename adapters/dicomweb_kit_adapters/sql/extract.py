"""What the SQL index stores of one instance to answer QIDO-RS matching in SQL.

Every normalised form here reproduces a rule of :mod:`dicomweb_kit.query.matching` (PS3.4
§C.2.2.2 as profiled by PS3.18 §8.3.4), so that a comparison in SQL gives exactly the answer
the reference matcher gives in Python:

* One ``instance_values`` row per value of a multi-valued attribute ("a multi-valued attribute
  matches if any of its values matches"), and for PN one row per non-empty component group
  (Alphabetic, Ideographic, Phonetic), with ``vidx`` (the value's position) and ``grp``.
* ``value``: the text Wild Card Matching (§C.2.2.2.4) sees: ``str(value).rstrip(" ")``; for PN
  the group with trailing padding/``^`` removed and case-folded (PN is case-insensitive).
* ``value_key``: the text Single Value, List of UID and Range Matching (§C.2.2.2.1/2/5) compare:
  numbers in an exact canonical form whose code point order is the numeric order
  (:func:`number_key`), DA/TM/DT normalised as ``normalise_datetime`` does, other VRs
  ``str(value).strip(" ")``; for PN the fuzzy form (accents removed, case-folded).
* ``orderby`` (:mod:`dicomweb_kit.query.ordering`) sorts in SQL on the ``vidx = 0`` row:
  ``value_key``, or for PN ``value`` of the first non-empty group, which are exactly the sort
  values of the core's ``sort_value`` (empty text is "no value").
* A value SQL cannot hold faithfully (longer than :data:`MAX_TEXT`, NUL, lone surrogates, a UID
  with non-space whitespace around it) gets one ``irregular`` row for its attribute instead;
  such instances are answered from their stored metadata by the reference matcher.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

from dicomweb_kit import (
    DATE_TIME_VRS,
    NUMERIC_VRS,
    as_number,
    fold,
    normalise_datetime,
    pn_groups,
    pn_strip,
    resolve_attribute,
)

__all__ = [
    "DATE_TIME_VRS",
    "DEFAULT_INDEXED",
    "MAX_TEXT",
    "NUMERIC_VRS",
    "SOURCE_TAG",
    "VALUE_COLUMNS",
    "ValueRow",
    "fold",
    "indexed_attributes",
    "number_key",
    "pn_groups",
    "pn_strip",
    "representative",
    "value_rows",
]

MAX_TEXT: Final = 256  # characters of an indexed value (index key size limits of all engines)

_UNINDEXABLE_VRS: Final = frozenset({"SQ", "OB", "OW", "OF", "OD", "OL", "OV", "UN"})

# ModalitiesInStudy / SOPClassesInStudy are matched against each instance's Modality / SOP
# Class UID (PS3.4 §C.6.1.1.3.2 Note), as matching.py does.
SOURCE_TAG: Final[Mapping[int, int]] = {0x00080061: 0x00080060, 0x00080062: 0x00080016}

# The attributes matched in SQL by default (tag -> VR, PS3.6): the QIDO-RS study, series and
# instance match keys of PS3.18 Tables 10.6.1-5..-7.
DEFAULT_INDEXED: Final[Mapping[int, str]] = {
    0x00080016: "UI",  # SOPClassUID
    0x00080018: "UI",  # SOPInstanceUID
    0x00080020: "DA",  # StudyDate
    0x00080030: "TM",  # StudyTime
    0x00080050: "SH",  # AccessionNumber
    0x00080060: "CS",  # Modality (and ModalitiesInStudy)
    0x00080090: "PN",  # ReferringPhysicianName
    0x00081030: "LO",  # StudyDescription
    0x0008103E: "LO",  # SeriesDescription
    0x00100010: "PN",  # PatientName
    0x00100020: "LO",  # PatientID
    0x00100030: "DA",  # PatientBirthDate
    0x00100040: "CS",  # PatientSex
    0x0020000D: "UI",  # StudyInstanceUID
    0x0020000E: "UI",  # SeriesInstanceUID
    0x00200010: "SH",  # StudyID
    0x00200011: "IS",  # SeriesNumber
    0x00200013: "IS",  # InstanceNumber
    0x00400244: "DA",  # PerformedProcedureStepStartDate
    0x00400245: "TM",  # PerformedProcedureStepStartTime
}


def indexed_attributes(extra: Sequence[str | int]) -> dict[int, str]:
    """The default match attributes plus ``extra`` (keywords, hex strings or int tags) with their VRs."""
    from dicomweb_kit import ConfigurationError, InvalidQuery

    indexed = dict(DEFAULT_INDEXED)
    for item in extra:
        name = f"{item:08X}" if isinstance(item, int) else item
        try:
            tag, vr = resolve_attribute(name)
        except InvalidQuery as err:
            raise ConfigurationError(f"extra_indexed: {err.message}") from None
        if vr in _UNINDEXABLE_VRS:
            raise ConfigurationError(f"extra_indexed: {name} has VR {vr}, which only supports universal matching")
        indexed[SOURCE_TAG.get(tag, tag)] = vr
    return indexed


def number_key(value: Any) -> str | None:
    """An exact, canonical and order-preserving text of a number, or ``None`` if not a number.

    Equal numbers give equal texts (Single Value Matching compares them), and the code point
    order of the texts is the numeric order (``orderby`` sorts on them in SQL). Zero is ``"1"``;
    a positive number is ``"2"``, its decimal exponent (:func:`_integer_key`) and its significant
    digits; a negative number is ``"0"``, the negated exponent, the nines' complement of its
    digits and ``"~"`` (so that a longer, i.e. larger, magnitude sorts first).
    """
    number = as_number(value)
    if number is None:
        return None
    if number == 0:
        return "1"
    sign, digits, exponent = number.as_tuple()
    assert isinstance(exponent, int)
    text = "".join(map(str, digits)).lstrip("0")
    adjusted = exponent + len(text) - 1  # the power of ten of the leading digit
    significant = text.rstrip("0")
    if sign:
        return "0" + _integer_key(-adjusted) + _complement(significant) + "~"
    return "2" + _integer_key(adjusted) + significant


def _complement(digits: str) -> str:
    return digits.translate(_NINES)


_NINES: Final = str.maketrans("0123456789", "9876543210")


def _integer_key(n: int) -> str:
    """An order-preserving, prefix-free text of the integer ``n``: sign class, length, digits."""
    digits = str(abs(n))
    if n >= 0:
        return "1" + chr(ord("A") + len(digits)) + digits
    return "0" + chr(ord("Z") - len(digits)) + _complement(digits)


def _storable(text: str | None) -> bool:
    if text is None:
        return True
    if len(text) > MAX_TEXT or "\x00" in text:
        return False
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False  # lone surrogates: no engine stores them
    return True


def _key(value: Any, vr: str) -> str | None:
    if vr in NUMERIC_VRS:
        return number_key(value)
    if vr in DATE_TIME_VRS:
        return normalise_datetime(str(value), vr)
    return str(value).strip(" ")


# One value's (grp, value, value_key) forms, or None when SQL cannot hold it (an irregular row).
_Forms = tuple[tuple[int, str | None, str | None], ...] | None


def _forms(vr: str, value: Any) -> _Forms:
    if vr == "PN":
        return _pn_forms(tuple(pn_groups(value)))
    text = str(value)
    if vr == "UI" and text.strip() != text.strip(" "):
        return None  # List of UID Matching strips all whitespace
    return _checked(((0, text.rstrip(" "), _key(value, vr)),))


@functools.lru_cache(maxsize=4096)
def _pn_forms(groups: tuple[str, ...]) -> _Forms:
    forms = []
    for grp, group in enumerate(groups):
        if group:
            stripped = pn_strip(group)
            forms.append((grp, fold(stripped, False), fold(stripped, True)))
    return _checked(tuple(forms))


def _checked(forms: tuple[tuple[int, str | None, str | None], ...]) -> _Forms:
    return forms if all(_storable(value) and _storable(key) for _grp, value, key in forms) else None


ValueRow = tuple[int, int, int, str | None, str | None, bool]
#: The columns of a :data:`ValueRow`, in order.
VALUE_COLUMNS: Final = ("tag", "vidx", "grp", "value", "value_key", "irregular")

# Values of these types are hashable and their text is their identity: most values of a batch
# repeat (a series' instances share all but a few attributes), so their rows are made once.
# ``typed`` keeps 1 and "1" apart; a bool (equal to 1, but not a number here) never reaches the
# cache, nor a float (0.0 == -0.0, yet "-0.0" is kept as written).
_CACHEABLE: Final = (str, int)


def value_rows(attrs: Mapping[str, Any], indexed: Mapping[int, str]) -> list[ValueRow]:
    """The ``instance_values`` rows (:data:`VALUE_COLUMNS`, without ``instance_id``) of one
    instance's DICOM JSON object."""
    rows: list[ValueRow] = []
    for tag, vr in indexed.items():
        element = attrs.get(_KEYS.get(tag) or f"{tag:08X}")
        values = element.get("Value") if isinstance(element, dict | Mapping) else None
        if not isinstance(values, list) or not values:
            continue  # missing or zero length: only Universal Matching applies (PS3.4 §C.2.2.2.3)
        if len(values) == 1 and type(values[0]) in _CACHEABLE:
            rows.extend(_single_value_rows(tag, vr, values[0]))
        else:
            rows.extend(_attribute_rows(tag, vr, values))
    return rows


_KEYS: Final = {tag: f"{tag:08X}" for tag in DEFAULT_INDEXED}  # their DICOM JSON keys, formatted once


@functools.lru_cache(maxsize=8192, typed=True)
def _single_value_rows(tag: int, vr: str, value: str | int) -> tuple[ValueRow, ...]:
    return tuple(_attribute_rows(tag, vr, [value]))


def _attribute_rows(tag: int, vr: str, values: list[Any]) -> list[ValueRow]:
    rows: list[ValueRow] = []
    for vidx, value in enumerate(values):
        if value is None:
            continue
        forms = _forms(vr, value)
        if forms is None:
            return [(tag, 0, 0, None, None, True)]  # the attribute is answered from its metadata
        rows.extend((tag, vidx, grp, text, key, False) for grp, text, key in forms)
    return rows


# --------------------------------------------------------------------------------------------
# Representative columns of studies and series (the newest instance's values)
# --------------------------------------------------------------------------------------------

_SAFE = re.compile(r"[\x00\ud800-\udfff]")


def _text(attrs: Mapping[str, Any], tag: int) -> str | None:
    element = attrs.get(f"{tag:08X}")
    values = element.get("Value") if isinstance(element, Mapping) else None
    if not isinstance(values, list) or not values or values[0] is None:
        return None
    value = values[0]
    if isinstance(value, Mapping):
        value = "=".join(pn_groups(value)).rstrip("=")
    return _SAFE.sub("", str(value).strip(" "))[:MAX_TEXT]


def representative(attrs: Mapping[str, Any], columns: Mapping[str, int]) -> dict[str, Any]:
    """Column values (first value, truncated to :data:`MAX_TEXT`) for ``columns`` (name -> tag).

    These are the summary columns of ``studies`` and ``series``; matching never reads them
    (a study matches when one of its instances does, so matching uses ``instance_values``).
    """
    out: dict[str, Any] = {name: _text(attrs, tag) for name, tag in columns.items()}
    if "patient_name" in columns:
        element = attrs.get("00100010")
        values = element.get("Value") if isinstance(element, Mapping) else None
        first = values[0] if isinstance(values, list) and values and values[0] is not None else None
        groups = pn_groups(first) if first is not None else ["", "", ""]
        alphabetic = _SAFE.sub("", pn_strip(groups[0]))[:MAX_TEXT]
        out["patient_name_alphabetic"] = alphabetic or None
        out["patient_name_ideographic"] = _SAFE.sub("", pn_strip(groups[1]))[:MAX_TEXT] or None
        out["patient_name_phonetic"] = _SAFE.sub("", pn_strip(groups[2]))[:MAX_TEXT] or None
        out["patient_name_fold"] = fold(alphabetic, False)[:MAX_TEXT] or None
        out["patient_name_fuzzy"] = fold(alphabetic, True)[:MAX_TEXT] or None
    return out
