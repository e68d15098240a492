"""The reference QIDO-RS matcher: does one instance's DICOM JSON object match the terms?

The memory index matches with it and the SQL adapters are tested against it, so every rule
here is the definition of a match for the whole kit. Semantics (PS3.4 §C.2.2.2, PS3.18 §8.3.4):

* Universal Matching matches every entity, also one without the attribute (§C.2.2.2.3).
* Any other matcher needs a value: an attribute missing or zero length in the entity matches
  nothing but Universal. PS3.4 §C.2.2.2.1 says "only entities with values which match exactly
  the value specified in the request shall match", and the Query/Retrieve matching rules of
  §C.2.2.2 define no "zero length matches any key" rule, so a study with an empty PatientName
  is not found by ``PatientName=Doe`` (only by a universal or no PatientName key).
* A multi-valued attribute matches if any of its values matches.
* Single Value Matching is exact and case-sensitive (trailing padding ignored), except:
  PN is always case-insensitive, as PS3.4 §C.2.2.2.1 allows ("an application may perform literal
  matching that is ... insensitive to some or all aspects of case"), so ``PatientName=*PATCH*``
  finds both ``Patchett^Anna`` and ``PATCHWORK^QUILT``; IS/DS/numeric VRs compare as numbers
  (``+7`` and ``007`` match 7; CP-2305 leaves this to the implementation); DA/TM/DT compare
  normalised values.
* PN matches against each component group (Alphabetic, Ideographic, Phonetic): any group may
  match. A key with ``=`` gives one pattern per group, and every non-empty one must match its
  group. Trailing ``^`` separators are insignificant (PS3.5 §6.2).
* Wild Card Matching (§C.2.2.2.4): ``*`` any run, ``?`` any one character, on the whole value.
* ``fuzzymatching=true`` (PS3.18 §8.3.4.3), PN only: case and accents are ignored (Unicode NFKD
  with combining marks removed, then case-folded), and a single value matches if it is a prefix
  of any name component (components split on ``^`` and spaces); a value with ``^`` matches when
  each of its non-empty components is a prefix of the corresponding component. A wild card
  pattern matches the whole group or any single component.
* List of UID Matching: membership (§C.2.2.2.2). Range Matching: inclusive, on normalised text
  (§C.2.2.2.5; see :func:`~dicomweb_kit.query.qido_params.normalise_datetime`).
* Sequence Matching: some item matches every sub-term (§C.2.2.2.6).
* ModalitiesInStudy (0008,0061) is evaluated against the instance's Modality (0008,0060), and
  SOPClassesInStudy (0008,0062) against its SOP Class UID (0008,0016): a study matches when one
  of its instances does (PS3.4 §C.6.1.1.3.2 Note).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any, Final

from .qido_params import normalise_datetime
from .terms import RangeMatch, SequenceMatch, SingleValue, Term, UidList, Universal, Wildcard

__all__ = [
    "DATE_TIME_VRS",
    "NUMERIC_VRS",
    "as_number",
    "entity_matches",
    "fold",
    "instance_matches",
    "pn_groups",
    "pn_strip",
    "term_matches",
    "wildcard_regex",
]

# Study-level computed match keys evaluated on instance attributes.
_SOURCE_KEY: Final[Mapping[str, str]] = {"00080061": "00080060", "00080062": "00080016"}
DATE_TIME_VRS: Final = frozenset({"DA", "TM", "DT"})
# Values of these VRs compare as numbers: "+7", "007" and "7.0" are equal (CP-2305 leaves it open).
NUMERIC_VRS: Final = frozenset({"IS", "DS", "US", "SS", "UL", "SL", "UV", "SV", "FL", "FD"})
_PN_GROUPS = ("Alphabetic", "Ideographic", "Phonetic")


def instance_matches(terms: Sequence[Term], attrs: Mapping[str, Any], /, *, fuzzy: bool = False) -> bool:
    """Does the instance (its DICOM JSON object ``attrs``) match every one of ``terms``?"""
    return all(term_matches(term, attrs, fuzzy=fuzzy) for term in terms)


def entity_matches(terms: Sequence[Term], instances: Iterable[Mapping[str, Any]], /, *, fuzzy: bool = False) -> bool:
    """Does a study or series match: does one of its ``instances`` match every term?"""
    return any(instance_matches(terms, attrs, fuzzy=fuzzy) for attrs in instances)


def term_matches(term: Term, attrs: Mapping[str, Any], /, *, fuzzy: bool = False) -> bool:
    """Does the instance ``attrs`` match one term?"""
    matcher = term.matcher
    if isinstance(matcher, Universal):
        return True
    key = term.key
    element = attrs.get(_SOURCE_KEY.get(key, key))
    values = element.get("Value") if isinstance(element, Mapping) else None
    if not isinstance(values, list) or not values:
        return False  # missing or zero length: only Universal matches (module docstring)
    if isinstance(matcher, SequenceMatch):
        return any(isinstance(item, Mapping) and instance_matches(matcher.terms, item, fuzzy=fuzzy) for item in values)
    vr = term.vr
    if vr == "PN":
        return any(_pn_matches(matcher, value, fuzzy=fuzzy) for value in values if value is not None)
    return any(_value_matches(matcher, vr, value) for value in values if value is not None)


# --------------------------------------------------------------------------------------------
# Wild cards
# --------------------------------------------------------------------------------------------


def _literal(segment: str) -> str:
    return "".join("." if char == "?" else re.escape(char) for char in segment)


@lru_cache(maxsize=4096)
def wildcard_regex(pattern: str, /, *, ignore_case: bool = False) -> re.Pattern[str]:
    """A compiled regex equivalent to the PS3.4 §C.2.2.2.4 ``pattern``, for ``fullmatch``.

    Each middle segment is found leftmost inside an atomic group, which is always a correct
    choice for fixed-length segments, so matching never backtracks exponentially.
    """
    segments = re.split(r"\*+", pattern)
    if len(segments) == 1:
        regex = _literal(pattern)
    else:
        first, *middle, last = segments
        regex = _literal(first) + "".join(f"(?>.*?{_literal(m)})" for m in middle) + ".*" + _literal(last)
    return re.compile(regex, re.DOTALL | (re.IGNORECASE if ignore_case else 0))


# --------------------------------------------------------------------------------------------
# Non-PN values
# --------------------------------------------------------------------------------------------


def as_number(value: Any) -> Decimal | None:
    """The exact decimal value of a numeric attribute value, ``None`` if it is not a finite number."""
    if isinstance(value, bool):
        return None
    try:
        number = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None


def _value_matches(matcher: object, vr: str, value: Any) -> bool:
    if isinstance(matcher, UidList):
        return str(value).strip() in matcher.uids
    if isinstance(matcher, RangeMatch):
        text = normalise_datetime(str(value), vr) if vr in DATE_TIME_VRS else str(value).strip()
        if text is None:
            return False  # an invalid stored date never matches a range
        return (matcher.low is None or matcher.low <= text) and (matcher.high is None or text <= matcher.high)
    if isinstance(matcher, Wildcard):
        return wildcard_regex(matcher.pattern).fullmatch(str(value).rstrip(" ")) is not None
    if isinstance(matcher, SingleValue):
        if vr in NUMERIC_VRS:
            wanted, stored = as_number(matcher.value), as_number(value)
            return wanted is not None and wanted == stored
        if vr in DATE_TIME_VRS:
            stored_text = normalise_datetime(str(value), vr)
            return stored_text is not None and stored_text == normalise_datetime(matcher.value, vr)
        return str(value).strip(" ") == matcher.value.strip(" ")
    return False


# --------------------------------------------------------------------------------------------
# PN
# --------------------------------------------------------------------------------------------


@lru_cache(maxsize=8192)
def fold(text: str, accents: bool) -> str:
    """Case-fold ``text`` (and strip accents when ``accents`` is true) for PN comparison."""
    if accents:
        decomposed = unicodedata.normalize("NFKD", text)
        text = "".join(char for char in decomposed if not unicodedata.combining(char))
    return text.casefold()


def pn_strip(text: str) -> str:
    """Trailing ``^`` separators and space padding are insignificant (PS3.5 §6.2)."""
    return text.strip(" ").rstrip("^").rstrip(" ")


def pn_groups(value: Any) -> list[str]:
    """The Alphabetic, Ideographic and Phonetic groups of a DICOM JSON PN value."""
    if isinstance(value, Mapping):
        return [str(value.get(name) or "") for name in _PN_GROUPS]
    return (str(value).split("=") + ["", ""])[:3]  # lenient: a PN given as a string


def _pn_matches(matcher: object, value: Any, *, fuzzy: bool) -> bool:
    if isinstance(matcher, SingleValue | Wildcard):
        query = matcher.value if isinstance(matcher, SingleValue) else matcher.pattern
    else:
        return False  # UidList / RangeMatch never apply to PN
    groups = pn_groups(value)
    wildcard = isinstance(matcher, Wildcard)
    if "=" in query:
        wanted = (query.split("=") + ["", ""])[:3]
        pairs = [(w, g) for w, g in zip(wanted, groups, strict=True) if w]
        return bool(pairs) and all(_pn_group_matches(w, g, wildcard=wildcard, fuzzy=fuzzy) for w, g in pairs)
    return any(_pn_group_matches(query, group, wildcard=wildcard, fuzzy=fuzzy) for group in groups if group)


def _components(group: str) -> list[str]:
    return [part for part in re.split(r"[\^ ]+", group) if part]


def _pn_group_matches(query: str, group: str, *, wildcard: bool, fuzzy: bool) -> bool:
    query, group = fold(pn_strip(query), fuzzy), fold(pn_strip(group), fuzzy)
    if not group:
        return False
    if wildcard:
        regex = wildcard_regex(query)
        if regex.fullmatch(group):
            return True
        return fuzzy and any(regex.fullmatch(component) for component in _components(group))
    if query == group:
        return True
    if not fuzzy or not query:
        return False
    if "^" in query:
        wanted, have = query.split("^"), group.split("^")
        return len(wanted) <= len(have) and all(have[i].strip().startswith(w.strip()) for i, w in enumerate(wanted))
    return any(component.startswith(query) for component in _components(group))
