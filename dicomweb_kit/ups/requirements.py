"""PS3.4 attribute requirements of UPS workitems (Table CC.2.5-3), checked on DICOM JSON.

* :func:`check_create`: the Req. Type N-CREATE column (PS3.4 §CC.2.5.1.1, Table CC.2.5-3):
  Type 1 attributes with a valid value, Procedure Step State SCHEDULED, no Transaction UID.
  Missing Type 2 attributes of the list below are added empty (they must be present, possibly
  empty, in the stored workitem); we do not refuse a workitem for them.
* :func:`check_set`: the N-SET column: what an Update may not touch, and Type 1 attributes an
  Update may not empty.
* :func:`final_state_problems`: the Final State column (PS3.4 §CC.2.5.1.3, Table CC.2.5-2 codes
  R, P, X) checked before a change to COMPLETED or CANCELED.

Every message names the attribute by keyword and tag.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

from pydicom.datadict import keyword_for_tag

from ..errors import InvalidRequest
from ..query.qido_params import normalise_datetime
from .states import State

__all__ = [
    "UPS_PUSH_SOP_CLASS",
    "check_create",
    "check_dataset",
    "check_set",
    "final_state_problems",
    "has_value",
    "name",
    "value",
]

UPS_PUSH_SOP_CLASS: Final = "1.2.840.10008.5.1.4.34.6.1"  # PS3.4 §CC.3.1: every UPS is one

SPECIFIC_CHARACTER_SET: Final = 0x00080005
SOP_CLASS_UID: Final = 0x00080016
SOP_INSTANCE_UID: Final = 0x00080018
TRANSACTION_UID: Final = 0x00081195
PRIORITY: Final = 0x00741200
LABEL: Final = 0x00741204
WORKLIST_LABEL: Final = 0x00741202
START_DATETIME: Final = 0x00404005
MODIFICATION_DATETIME: Final = 0x00404010
INPUT_READINESS: Final = 0x00404041
STATE: Final = 0x00741000
PROGRESS_SEQUENCE: Final = 0x00741002
CANCELLATION_DATETIME: Final = 0x00404052
DISCONTINUATION_REASONS: Final = 0x0074100E
REASON_FOR_CANCELLATION: Final = 0x00741238
PERFORMED_SEQUENCE: Final = 0x00741216
STATION_NAMES: Final = 0x00404025
HUMAN_PERFORMERS: Final = 0x00404034

# Enumerated values (PS3.3 §C.30.1: Scheduled Procedure Step Priority, Input Readiness State).
_ENUMERATED: Final[dict[int, frozenset[str]]] = {
    PRIORITY: frozenset({"HIGH", "MEDIUM", "LOW"}),
    INPUT_READINESS: frozenset({"INCOMPLETE", "UNAVAILABLE", "READY"}),
}

# Req. Type N-CREATE = 1 (Table CC.2.5-3); Procedure Step State must be SCHEDULED.
CREATE_TYPE_1: Final = (PRIORITY, LABEL, START_DATETIME, INPUT_READINESS, STATE)

# Req. Type N-CREATE = 2 at the top level (Table CC.2.5-3): present, possibly empty.
CREATE_TYPE_2: Final[dict[int, str]] = {
    0x00100010: "PN",  # Patient's Name
    0x00100020: "LO",  # Patient ID
    0x00100030: "DA",  # Patient's Birth Date
    0x00100040: "CS",  # Patient's Sex
    0x00380010: "LO",  # Admission ID
    0x00380014: "SQ",  # Issuer of Admission ID Sequence
    0x0040A370: "SQ",  # Referenced Request Sequence
    0x00404018: "SQ",  # Scheduled Workitem Code Sequence
    0x00404021: "SQ",  # Input Information Sequence
    STATION_NAMES: "SQ",  # Scheduled Station Name Code Sequence
    0x00404026: "SQ",  # Scheduled Station Class Code Sequence
    0x00404027: "SQ",  # Scheduled Station Geographic Location Code Sequence
}

# Req. Type N-SET "-" (not allowed; PS3.4 §CC.2.6.2): identity, state and lock. The state
# changes only through N-ACTION (C303 for SCHEDULED), the Transaction UID only by claiming.
SET_NOT_ALLOWED: Final = (SOP_CLASS_UID, SOP_INSTANCE_UID, STATE, TRANSACTION_UID)
# Type 1 attributes an N-SET may change but not empty.
SET_TYPE_1: Final = (PRIORITY, LABEL, START_DATETIME, INPUT_READINESS)

# Final State requirements (Table CC.2.5-3 Final State column; codes of Table CC.2.5-2):
# R: needed for COMPLETED and CANCELED; P: for COMPLETED; X: for CANCELED.
_BOTH = frozenset({State.COMPLETED, State.CANCELED})
FINAL_STATE: Final[tuple[tuple[int, frozenset[State], tuple[tuple[int, frozenset[State]], ...]], ...]] = (
    (SOP_CLASS_UID, _BOTH, ()),
    (SOP_INSTANCE_UID, _BOTH, ()),
    (PRIORITY, _BOTH, ()),
    (LABEL, _BOTH, ()),
    (MODIFICATION_DATETIME, _BOTH, ()),
    (START_DATETIME, _BOTH, ()),
    (INPUT_READINESS, _BOTH, ()),
    (STATE, _BOTH, ()),
    (
        PROGRESS_SEQUENCE,
        frozenset({State.CANCELED}),
        (
            (CANCELLATION_DATETIME, frozenset({State.CANCELED})),
            (DISCONTINUATION_REASONS, frozenset({State.CANCELED})),
        ),
    ),
    (
        PERFORMED_SEQUENCE,
        frozenset({State.COMPLETED}),
        (
            (0x00404028, frozenset({State.COMPLETED})),  # Performed Station Name Code Sequence
            (0x00404050, frozenset({State.COMPLETED})),  # Performed Procedure Step Start DateTime
            (0x00404019, frozenset({State.COMPLETED})),  # Performed Workitem Code Sequence
            (0x00404051, frozenset({State.COMPLETED})),  # Performed Procedure Step End DateTime
            (0x00404033, frozenset({State.COMPLETED})),  # Output Information Sequence
        ),
    ),
)


def name(tag: int, /) -> str:
    """``Keyword (gggg,eeee)``: how messages name an attribute."""
    keyword = keyword_for_tag(tag) or "attribute"
    return f"{keyword} ({tag >> 16:04X},{tag & 0xFFFF:04X})"


def _key(tag: int) -> str:
    return f"{tag:08X}"


def value(attrs: Mapping[str, Any], tag: int, /) -> Any:
    """The first value of ``tag`` in DICOM JSON ``attrs``, or ``None``."""
    element = attrs.get(_key(tag))
    values = element.get("Value") if isinstance(element, Mapping) else None
    return values[0] if isinstance(values, list) and values else None


def has_value(attrs: Mapping[str, Any], tag: int, /) -> bool:
    """Present with at least one value (one item, for a sequence); PS3.4 §CC.2.5.1.3."""
    element = attrs.get(_key(tag))
    values = element.get("Value") if isinstance(element, Mapping) else None
    return isinstance(values, list) and any(v not in (None, "", {}) for v in values)


_HEX8: Final = frozenset("0123456789ABCDEF")
_MAX_DEPTH: Final = 16
_NUMBER_VRS: Final = frozenset({"IS", "DS", "US", "SS", "UL", "SL", "UV", "SV", "FL", "FD"})
_TEXT_VRS: Final = frozenset({"AE", "AS", "AT", "CS", "DA", "DT", "LO", "LT", "SH", "ST", "TM", "UC", "UI", "UR", "UT"})
_PN_GROUPS: Final = frozenset({"Alphabetic", "Ideographic", "Phonetic"})


def _valid_value(vr: str, item: Any) -> bool:
    """PS3.18 §F.2.3-F.2.5: the JSON type of one value of ``vr``."""
    if item is None:
        return True
    if vr == "PN":
        return isinstance(item, dict) and all(k in _PN_GROUPS and isinstance(v, str) for k, v in item.items())
    if vr in _NUMBER_VRS:
        return isinstance(item, int | float | str) and not isinstance(item, bool)
    if vr in _TEXT_VRS:
        return isinstance(item, str)
    return True


def check_dataset(obj: Any, /, *, what: str = "The workitem", depth: int = 0) -> dict[str, Any]:
    """``obj`` as a DICOM JSON object (PS3.18 §F.2) with upper-case keys; InvalidRequest if it is not one.

    Only the shape is checked (what the UPS rules read): 8-hex-digit keys, objects with a
    ``vr``, ``Value`` lists, sequence items that are objects in turn.
    """
    if not isinstance(obj, dict):
        raise InvalidRequest(f"{what} is not a DICOM JSON object (PS3.18 §F.2)")
    if depth > _MAX_DEPTH:
        raise InvalidRequest(f"{what} nests sequences more than {_MAX_DEPTH} deep")
    checked: dict[str, Any] = {}
    for key, element in obj.items():
        tag = str(key).upper()
        if len(tag) != 8 or not set(tag) <= _HEX8:
            raise InvalidRequest(f"{what}: {str(key)[:20]!r} is not an attribute tag of 8 hex digits (PS3.18 §F.2.1)")
        shown = name(int(tag, 16))
        if not isinstance(element, dict) or not isinstance(element.get("vr"), str) or len(element["vr"]) != 2:
            raise InvalidRequest(f"{what}: {shown} is not an object with a two-letter \"vr\" (PS3.18 §F.2.2)")
        values = element.get("Value")
        if values is not None:
            if not isinstance(values, list):
                raise InvalidRequest(f"{what}: the \"Value\" of {shown} is not an array (PS3.18 §F.2.4)")
            vr = element["vr"]
            bad = next((item for item in values if vr != "SQ" and not _valid_value(vr, item)), None)
            if bad is not None:
                raise InvalidRequest(f"{what}: {str(bad)[:40]!r} is not a valid {vr} value of {shown} (PS3.18 §F.2)")
            if vr == "SQ":
                element = {
                    **element,
                    "Value": [check_dataset(item, what=f"{what}: {shown} item", depth=depth + 1) for item in values],
                }
        checked[tag] = element
    return checked


def _check_values(attrs: Mapping[str, Any], tags: Iterable[int], problems: list[str]) -> None:
    for tag in tags:
        if _key(tag) not in attrs:
            continue
        first = value(attrs, tag)
        allowed = _ENUMERATED.get(tag)
        if allowed is not None and first is not None and first not in allowed:
            problems.append(f"{name(tag)} is {first!r}, not one of {', '.join(sorted(allowed))}")
        if tag == START_DATETIME and first is not None and normalise_datetime(str(first), "DT") is None:
            problems.append(f"{name(tag)} is {first!r}, not a valid DT (PS3.5 §6.2)")


def check_create(attrs: dict[str, Any], /) -> None:
    """Check an N-CREATE dataset and complete it in place; raise InvalidRequest listing every problem."""
    problems: list[str] = []
    for tag in CREATE_TYPE_1:
        if not has_value(attrs, tag):
            problems.append(f"{name(tag)} is required (Type 1) and has no value")
    state = value(attrs, STATE)
    if state is not None and state != State.SCHEDULED:
        problems.append(f"{name(STATE)} is {state!r}: a workitem is created SCHEDULED (PS3.4 §CC.2.5.1.1)")
    if has_value(attrs, TRANSACTION_UID):
        problems.append(f"{name(TRANSACTION_UID)} must be empty at creation (PS3.4 Table CC.1.1-2)")
    sop_class = value(attrs, SOP_CLASS_UID)
    if sop_class is not None and sop_class != UPS_PUSH_SOP_CLASS:
        problems.append(f"{name(SOP_CLASS_UID)} is {sop_class!r}, not UPS Push ({UPS_PUSH_SOP_CLASS})")
    _check_values(attrs, (PRIORITY, INPUT_READINESS, START_DATETIME), problems)
    if problems:
        raise InvalidRequest(
            "The workitem does not meet the N-CREATE requirements of PS3.4 Table CC.2.5-3: " + "; ".join(problems)
        )
    attrs.pop(_key(TRANSACTION_UID), None)
    for tag, vr in CREATE_TYPE_2.items():
        attrs.setdefault(_key(tag), {"vr": vr})


def check_set(changes: Mapping[str, Any], current: Mapping[str, Any], /) -> None:
    """Check an N-SET dataset against the workitem ``current``; raise InvalidRequest listing every problem.

    An attribute that may not be set is accepted only if it repeats the current value (clients
    often send a retrieved workitem back).
    """
    problems: list[str] = []
    for tag in SET_NOT_ALLOWED:
        key = _key(tag)
        same = key in current and changes.get(key, {}).get("Value") == current[key].get("Value")
        if key in changes and (tag == TRANSACTION_UID or not same):
            why = {
                STATE: "change it with the Change State transaction (PS3.18 §11.7)",
                TRANSACTION_UID: "it is given as the transaction query parameter, not in the dataset",
            }.get(tag, "it identifies the workitem")
            problems.append(f"{name(tag)} may not be set by an Update: {why} (PS3.4 Table CC.2.5-3)")
    for tag in SET_TYPE_1:
        if _key(tag) in changes and not has_value(changes, tag):
            problems.append(f"{name(tag)} is Type 1 and may not be emptied")
    _check_values(changes, (PRIORITY, INPUT_READINESS, START_DATETIME), problems)
    if problems:
        raise InvalidRequest(
            "The update does not meet the N-SET requirements of PS3.4 Table CC.2.5-3: " + "; ".join(problems)
        )


def final_state_problems(attrs: Mapping[str, Any], target: State, /) -> list[str]:
    """What keeps a workitem from becoming ``target`` (COMPLETED or CANCELED); empty if nothing."""
    problems: list[str] = []
    for tag, states, nested in FINAL_STATE:
        if target not in states:
            continue
        if not has_value(attrs, tag):
            problems.append(f"{name(tag)} has no value")
            continue
        items = attrs[_key(tag)]["Value"] if nested else []
        for index, item in enumerate(items, 1):
            for inner, inner_states in nested:
                if target in inner_states and not (isinstance(item, Mapping) and has_value(item, inner)):
                    problems.append(f"{name(tag)} item {index}: {name(inner)} has no value")
    return problems
