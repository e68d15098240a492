"""QIDO-RS query parameters → :class:`~dicomweb_kit.query.terms.Query` (PS3.18 §8.3.4, §10.6.1.2).

Every error is an :class:`~dicomweb_kit.errors.InvalidQuery` (400) naming the offending parameter.

Semantic choices (PS3.4 §C.2.2.2 as profiled by PS3.18 §8.3.4):

* Match keys are keywords (case-sensitive, ``PatientName``) or 8 hex digits (``00100010``, any
  case); a dotted path (``RequestAttributesSequence.ScheduledProcedureStepID`` or
  ``0040A370.00401001``) is Sequence Matching. Keys into the same sequence share one item: they
  must all match in one item (PS3.4 §C.2.2.2.6).
* Any dictionary attribute is a valid match key at any level (the index matches it against the
  level's instances). Attributes the server computes (``NumberOfStudyRelatedSeries``,
  ``RetrieveURL``, ...) are return keys only.
* Empty value or a lone ``*``: Universal Matching (§C.2.2.2.3).
* UI: ``\\``- or ``,``-separated lists are List of UID Matching (§C.2.2.2.2, PS3.18 §8.3.4.1);
  every UID is validated (PS3.5 §9.1).
* DA: a single value is an exact date; ``a-b``, ``-b``, ``a-`` are ranges (§C.2.2.2.5).
  TM and DT: a single value matches everything within its precision (``TM=14`` is 14:00:00 to
  14:59:59.999999, ``DT=2020`` the year 2020), so it becomes a range of its two padded bounds.
  DT time zone offsets are ignored (no time zone adjustment, PS3.18 §8.3.4.6 is not claimed).
* Wild cards ``*`` and ``?`` (§C.2.2.2.4) only on text VRs; on DA/TM/DT/UI and numeric VRs a
  ``*`` or ``?`` inside a value is an invalid value.
* Numeric VRs (IS, DS, US, SS, UL, SL, UV, SV, FL, FD) take one number, validated.
* Binary VRs and SQ take only Universal Matching.
* ``orderby`` (repeatable, comma-separated; keyword or 8 hex digits, ``-`` prefix descending)
  sorts the results: see :mod:`dicomweb_kit.query.ordering` for the syntax, what is rejected,
  and how values compare.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import date
from functools import cache
from typing import Final, Literal

from pydicom.datadict import dictionary_VR, keyword_dict, keyword_for_tag, tag_for_keyword

from ..errors import InvalidQuery, InvalidUid
from ..resources import Level, ResourceKey, validate_uid
from .terms import (
    ALL_FIELDS,
    DEFAULT_LIMIT,
    MAX_ORDER_KEYS,
    Matcher,
    OrderKey,
    Query,
    RangeMatch,
    SequenceMatch,
    SingleValue,
    Term,
    UidList,
    Universal,
    Wildcard,
)

__all__ = [
    "COMPUTED_ATTRIBUTES",
    "MODALITIES_IN_STUDY",
    "SOP_CLASSES_IN_STUDY",
    "normalise_datetime",
    "parse_qido",
    "resolve_attribute",
]

MODALITIES_IN_STUDY: Final = 0x00080061
SOP_CLASSES_IN_STUDY: Final = 0x00080062

# Return-only attributes the server computes (PS3.18 Tables 10.6.3-3..-5, PS3.4 §C.3.4):
# they are not stored per instance, so they cannot be match keys.
COMPUTED_ATTRIBUTES: Final[frozenset[int]] = frozenset(
    {
        0x00080054,  # RetrieveAETitle
        0x00080056,  # InstanceAvailability
        0x00081190,  # RetrieveURL
        0x00201200,  # NumberOfPatientRelatedStudies
        0x00201202,  # NumberOfPatientRelatedSeries
        0x00201204,  # NumberOfPatientRelatedInstances
        0x00201206,  # NumberOfStudyRelatedSeries
        0x00201208,  # NumberOfStudyRelatedInstances
        0x00201209,  # NumberOfSeriesRelatedInstances
        0x0040E010,  # RetrieveURI
    }
)

# PS3.18 §8.3.4: emptyvaluematching and multiplevaluematching are optional for the origin
# server; we accept them and, when asked for, say with a Warning that they were not performed.
_FLAGS = ("fuzzymatching", "emptyvaluematching", "multiplevaluematching")
_RESERVED = frozenset({"includefield", "limit", "offset", "orderby", "accept", "charset", *_FLAGS})
_HEX_TAG = re.compile(r"[0-9A-Fa-f]{8}")
_BINARY_VRS = frozenset({"OB", "OW", "OF", "OD", "OL", "OV", "UN"})
_INT_VRS = frozenset({"IS", "US", "SS", "UL", "SL", "UV", "SV"})
_UNSIGNED_VRS = frozenset({"US", "UL", "UV"})
_FLOAT_VRS = frozenset({"DS", "FL", "FD"})
_MAX_VALUE = 1024  # characters of one match value; every VR's limit is far below (PS3.5 §6.2)
_MAX_INT_DIGITS = 18

# PS3.5 §6.2: a fraction only after seconds; each part only after the one before it.
_DA = re.compile(r"\d{8}", re.ASCII)
_TM = re.compile(r"(\d{2})(?:(\d{2})(?:(\d{2})(?:\.(\d{1,6}))?)?)?", re.ASCII)
_DT = re.compile(
    r"(\d{4})(?:(\d{2})(?:(\d{2})(?:(\d{2})(?:(\d{2})(?:(\d{2})(?:\.(\d{1,6}))?)?)?)?)?)?([+-]\d{4})?", re.ASCII
)
_INT = re.compile(r"[+-]?\d{1,18}", re.ASCII)
_DECIMAL = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)


def _shown(value: str) -> str:
    return repr(value if len(value) <= 80 else value[:77] + "...")


@cache
def _keywords_by_lower() -> dict[str, str]:
    return {keyword.lower(): keyword for keyword in keyword_dict}


def resolve_attribute(name: str, /, *, param: str | None = None) -> tuple[int, str]:
    """The tag and VR of a keyword or 8-hex-digit tag from the DICOM dictionary (PS3.6).

    Raises InvalidQuery (naming ``param``, default ``name``) for unknown or private attributes.
    For VRs the dictionary gives as alternatives (``US or SS``) the first one is used.
    """
    param = name if param is None else param
    # pydicom's dictionary has entries without a keyword: "" must not resolve to one of them.
    tag = int(name, 16) if _HEX_TAG.fullmatch(name) else tag_for_keyword(name) if name else None
    vr: str | None = None
    if tag is not None:
        try:
            vr = dictionary_VR(tag)
        except KeyError:
            vr = None
    if tag is None or not vr:
        hint = _keywords_by_lower().get(name.lower())
        extra = f" (keywords are case-sensitive: did you mean {hint!r}?)" if hint and hint != name else ""
        raise InvalidQuery(f"Query parameter {_shown(param)}: {_shown(name)} is not a known DICOM attribute{extra}")
    return tag, vr.split(" or ")[0]


def _attribute_name(tag: int) -> str:
    return keyword_for_tag(tag) or f"{tag:08X}"


# --------------------------------------------------------------------------------------------
# DA / TM / DT
# --------------------------------------------------------------------------------------------


def _valid_tm(match: re.Match[str]) -> bool:
    hh, mm, ss = match.group(1), match.group(2), match.group(3)
    return int(hh) < 24 and (mm is None or int(mm) < 60) and (ss is None or int(ss) < 61)


def _valid_date(yyyy: str, mm: str | None, dd: str | None) -> bool:
    try:
        date(int(yyyy), int(mm or "1"), int(dd or "1"))
    except ValueError:
        return False
    return yyyy != "0000"


def normalise_datetime(value: str, vr: str, /, *, high: bool = False) -> str | None:
    """``value`` as text that compares correctly, or ``None`` if it is not a valid ``vr`` value.

    DA → ``YYYYMMDD``; TM → ``HHMMSS.FFFFFF``; DT → ``YYYYMMDDHHMMSS.FFFFFF`` (the time zone
    offset dropped). Missing trailing parts are padded with ``0`` (or ``9`` if ``high``), as
    :class:`~dicomweb_kit.query.terms.RangeMatch` documents. Stored values are normalised with
    ``high=False``. Trailing spaces (DICOM padding) are ignored.
    """
    value = value.strip()
    fill = "9" if high else "0"
    if vr == "DA":
        if not _DA.fullmatch(value) or not _valid_date(value[:4], value[4:6], value[6:8]):
            return None
        return value
    if vr == "TM":
        tm = _TM.fullmatch(value)
        if tm is None or not _valid_tm(tm):
            return None
        main = "".join(g for g in tm.groups()[:3] if g is not None)
        return main.ljust(6, fill) + "." + (tm.group(4) or "").ljust(6, fill)
    if vr == "DT":
        dt = _DT.fullmatch(value)
        if dt is None:
            return None
        yyyy, mo, dd, hh, mi, ss, frac, offset = dt.groups()
        if not _valid_date(yyyy, mo, dd):
            return None
        if offset is not None and (int(offset[1:3]) > 14 or int(offset[3:]) > 59):
            return None  # PS3.5 §6.2 DT: offset &ZZXX, -1200 to +1400
        if (hh is not None and int(hh) > 23) or (mi is not None and int(mi) > 59) or (ss is not None and int(ss) > 60):
            return None
        main = "".join(g for g in (yyyy, mo, dd, hh, mi, ss) if g is not None)
        return main.ljust(14, fill) + "." + (frac or "").ljust(6, fill)
    return None


def _date_time_matcher(param: str, value: str, vr: str) -> Matcher:
    def bound(text: str, *, high: bool) -> str:
        normalised = normalise_datetime(text, vr, high=high)
        if normalised is None:
            raise InvalidQuery(f"Query parameter {_shown(param)}: {_shown(text)} is not a valid {vr} (PS3.5 §6.2)")
        return normalised

    if vr != "DT" or normalise_datetime(value, vr) is None:
        # A DT may contain "-" in its offset: it is a range only if it is not a valid single value.
        positions = [i for i, char in enumerate(value) if char == "-"]
        for position in positions:
            low_text, high_text = value[:position].strip(), value[position + 1 :].strip()
            if (not low_text or normalise_datetime(low_text, vr) is not None) and (
                not high_text or normalise_datetime(high_text, vr) is not None
            ):
                if not low_text and not high_text:
                    return Universal()  # "-": both ends open
                low = bound(low_text, high=False) if low_text else None
                high = bound(high_text, high=True) if high_text else None
                if low is not None and high is not None and low > high:
                    raise InvalidQuery(f"Query parameter {_shown(param)}: range {_shown(value)} is empty (start > end)")
                return RangeMatch(low, high)
        if positions and vr != "DT":
            raise InvalidQuery(
                f"Query parameter {_shown(param)}: {_shown(value)} is not a valid {vr} range (PS3.4 §C.2.2.2.5)"
            )
    if vr == "DA":
        return SingleValue(bound(value, high=False))  # a single date is an exact date
    return RangeMatch(bound(value, high=False), bound(value, high=True))  # TM/DT: the value's precision


# --------------------------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------------------------


def _matcher(param: str, value: str, tag: int, vr: str) -> Matcher:
    # PS3.4 §C.2.2.2.3: zero length or a lone "*" is Universal Matching.
    if value == "" or value == "*":
        return Universal()
    if len(value) > _MAX_VALUE:
        raise InvalidQuery(f"Query parameter {_shown(param)}: value longer than {_MAX_VALUE} characters")
    if vr == "SQ" or vr in _BINARY_VRS:
        raise InvalidQuery(
            f"Query parameter {_shown(param)}: {_attribute_name(tag)} ({vr}) "
            "only supports universal matching (an empty value)"
        )
    if vr == "UI":
        uids = [uid.strip() for uid in re.split(r"[\\,]", value)]
        try:
            for uid in uids:
                validate_uid(uid, name=param)
        except InvalidUid as err:
            raise InvalidQuery(err.message) from None
        return UidList(tuple(dict.fromkeys(uids))) if len(uids) > 1 else SingleValue(uids[0])
    if vr in ("DA", "TM", "DT"):
        return _date_time_matcher(param, value.strip(), vr)
    if vr in _INT_VRS or vr in _FLOAT_VRS:
        text = value.strip()
        valid = _INT.fullmatch(text) if vr in _INT_VRS else _DECIMAL.fullmatch(text)
        if not valid or (vr in _UNSIGNED_VRS and text.startswith("-")):
            raise InvalidQuery(f"Query parameter {_shown(param)}: {_shown(value)} is not a valid {vr} number")
        return SingleValue(text)
    # Text VRs: PS3.4 §C.2.2.2.4 wild cards.
    if "*" in value or "?" in value:
        return Wildcard(value)
    return SingleValue(value)


def _non_negative(param: str, value: str) -> int:
    text = value.strip()
    if not text.isascii() or not text.isdigit() or len(text) > _MAX_INT_DIGITS:
        raise InvalidQuery(f"Query parameter {_shown(param)}: {_shown(value)} is not a non-negative integer")
    return int(text)


def _includefield(param: str, values: Iterable[str]) -> tuple[int, ...] | Literal["all"]:
    tags: dict[int, None] = {}
    everything = False
    for value in values:
        for item in value.split(","):
            name = item.strip()
            if not name:
                continue
            if name.lower() == ALL_FIELDS:
                everything = True
                continue
            top = name.split(".")[0]  # a sequence path returns its whole top-level sequence
            if _HEX_TAG.fullmatch(top):
                tags[int(top, 16)] = None  # any tag, private ones too: returned if present
            else:
                tags[resolve_attribute(top, param=f"{param}={name}")[0]] = None
    return ALL_FIELDS if everything else tuple(tags)


def _orderby(param: str, values: Iterable[str]) -> tuple[OrderKey, ...]:
    keys: dict[int, OrderKey] = {}
    for value in values:
        for item in value.split(","):
            text = item.strip()
            if not text:
                continue
            descending = text.startswith("-")
            name = text[1:].strip() if descending else text
            shown = f"{param}={text}"
            tag, vr = resolve_attribute(name, param=shown)
            if vr == "SQ" or vr in _BINARY_VRS:
                raise InvalidQuery(
                    f"Query parameter {_shown(shown)}: {_attribute_name(tag)} ({vr}) cannot be a sort key"
                )
            if tag in COMPUTED_ATTRIBUTES or tag in (MODALITIES_IN_STUDY, SOP_CLASSES_IN_STUDY):
                raise InvalidQuery(
                    f"Query parameter {_shown(shown)}: {_attribute_name(tag)} is computed by the server; "
                    "it cannot be a sort key"
                )
            if tag in keys:
                raise InvalidQuery(f"Query parameter {_shown(shown)}: {_attribute_name(tag)} is given more than once")
            if len(keys) == MAX_ORDER_KEYS:
                raise InvalidQuery(f"Query parameter {_shown(param)}: more than {MAX_ORDER_KEYS} sort keys")
            keys[tag] = OrderKey(tag, vr, descending)
    return tuple(keys.values())


class _Node:
    """Match keys under one attribute path, merged so keys into one sequence share an item."""

    __slots__ = ("children", "matcher", "vr")

    def __init__(self, vr: str) -> None:
        self.vr = vr
        self.matcher: Matcher | None = None
        self.children: dict[int, _Node] = {}


def _terms(nodes: dict[int, _Node]) -> tuple[Term, ...]:
    terms: list[Term] = []
    for tag, node in nodes.items():
        if node.children:
            terms.append(Term(tag, node.vr, SequenceMatch(_terms(node.children))))
        elif node.matcher is not None:
            terms.append(Term(tag, node.vr, node.matcher))
    return tuple(terms)


def parse_qido(
    params: Sequence[tuple[str, str]],
    level: Level,
    scope: ResourceKey,
    /,
    *,
    max_terms: int = 100,
    default_limit: int = DEFAULT_LIMIT,
    max_limit: int = DEFAULT_LIMIT,
) -> Query:
    """Parse already percent-decoded ``(name, value)`` pairs into a :class:`Query`.

    ``limit`` defaults to ``default_limit`` and is capped at ``max_limit``; ``accept`` and
    ``charset`` are the web layer's business and ignored here.
    """
    roots: dict[int, _Node] = {}
    seen_paths: set[tuple[int, ...]] = set()
    includefield: list[str] = []
    orderby: list[str] = []
    singles: dict[str, str] = {}
    term_count = 0

    for name, value in params:
        reserved = name.lower()
        if reserved in _RESERVED:
            if reserved == "includefield":
                includefield.append(value)
            elif reserved == "orderby":
                orderby.append(value)
            elif reserved in ("limit", "offset", *_FLAGS):
                if reserved in singles:
                    raise InvalidQuery(f"Query parameter {_shown(name)} is given more than once")
                singles[reserved] = value
            continue

        term_count += 1
        if term_count > max_terms:
            raise InvalidQuery(f"Query parameter {_shown(name)}: more than {max_terms} match keys")
        if "\x00" in value:
            # PS3.5 §6.1.2: NUL is not a character of any DICOM string value, so nothing could match.
            raise InvalidQuery(f"Query parameter {_shown(name)}: the value contains a NUL character")
        parts = name.split(".")
        path: list[tuple[int, str]] = [resolve_attribute(part, param=name) for part in parts]
        for tag, vr in path[:-1]:
            if vr != "SQ":
                raise InvalidQuery(
                    f"Query parameter {_shown(name)}: {_attribute_name(tag)} is not a sequence (VR {vr}), "
                    "so it cannot be followed by '.'"
                )
        for tag, _vr in path:
            if tag in COMPUTED_ATTRIBUTES:
                raise InvalidQuery(
                    f"Query parameter {_shown(name)}: {_attribute_name(tag)} is computed by the server; "
                    "it can be returned (includefield) but not matched"
                )
        key = tuple(tag for tag, _ in path)
        if key in seen_paths:
            raise InvalidQuery(
                f"Query parameter {_shown(name)}: attribute {_attribute_name(key[-1])} is given more than once"
            )
        seen_paths.add(key)

        nodes = roots
        node: _Node | None = None
        for tag, vr in path:
            node = nodes.setdefault(tag, _Node(vr))
            nodes = node.children
        assert node is not None
        leaf_tag, leaf_vr = path[-1]
        node.matcher = _matcher(name, value, leaf_tag, leaf_vr)

    # A sequence both matched as a whole (universally) and through its items: the items win.
    for tag in list(roots):
        if roots[tag].children:
            roots[tag].matcher = None

    flags = {flag: _flag(flag, singles[flag]) for flag in _FLAGS if flag in singles}
    limit = min(_non_negative("limit", singles["limit"]), max_limit) if "limit" in singles else default_limit
    limit = min(limit, max_limit)
    offset = _non_negative("offset", singles["offset"]) if "offset" in singles else 0

    return Query(
        level=level,
        scope=scope,
        terms=_terms(roots),
        includefield=_includefield("includefield", includefield),
        fuzzy=flags.get("fuzzymatching", False),
        limit=limit,
        offset=offset,
        orderby=_orderby("orderby", orderby),
        not_performed=tuple(flag for flag in _FLAGS[1:] if flags.get(flag)),
    )


def _flag(name: str, value: str) -> bool:
    text = value.strip().lower()
    if text not in ("true", "false"):
        raise InvalidQuery(f"Query parameter {name!r}: {_shown(value)} is not true or false")
    return text == "true"
