"""The parsed form of a QIDO-RS query: what adapters receive instead of a query string.

Matching semantics are those of PS3.4 §C.2.2.2 as profiled by PS3.18 §8.3.4; the reference
evaluator is :mod:`dicomweb_kit.query.matching`. Result ordering (``orderby``) is defined by
:mod:`dicomweb_kit.query.ordering`.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from ..resources import Level, ResourceKey

__all__ = [
    "ALL_FIELDS",
    "DEFAULT_LIMIT",
    "MAX_ORDER_KEYS",
    "Matcher",
    "OrderKey",
    "Query",
    "RangeMatch",
    "SequenceMatch",
    "SingleValue",
    "Term",
    "UidList",
    "Universal",
    "Wildcard",
]

DEFAULT_LIMIT = 1000
MAX_ORDER_KEYS = 8
ALL_FIELDS: Literal["all"] = "all"


class Universal(msgspec.Struct, frozen=True, tag="universal"):
    """Empty value or a lone ``*``: every entity matches (PS3.4 §C.2.2.2.3); the attribute is returned."""


class SingleValue(msgspec.Struct, frozen=True, tag="single"):
    """Exact match of one value (PS3.4 §C.2.2.2.1); for PN, case per ``Query.fuzzy``."""

    value: str


class Wildcard(msgspec.Struct, frozen=True, tag="wildcard"):
    """``*`` matches any run of characters, ``?`` any one character (PS3.4 §C.2.2.2.4)."""

    pattern: str


class UidList(msgspec.Struct, frozen=True, tag="uid_list"):
    """Any of several UIDs, sent ``\\``- or comma-separated (PS3.4 §C.2.2.2.2, PS3.18 §8.3.4.1)."""

    uids: tuple[str, ...]


class RangeMatch(msgspec.Struct, frozen=True, tag="range"):
    """An inclusive DA/TM/DT range; either end may be open (PS3.4 §C.2.2.2.5).

    Bounds are normalised strings that compare correctly as text: DA ``YYYYMMDD``,
    TM ``HHMMSS.FFFFFF`` (missing parts padded: low with 0, high with 9), DT the concatenation.
    """

    low: str | None
    high: str | None


class SequenceMatch(msgspec.Struct, frozen=True, tag="sequence"):
    """Some item of the sequence matches every one of ``terms`` (PS3.4 §C.2.2.2.6)."""

    terms: tuple[Term, ...]


Matcher = Universal | SingleValue | Wildcard | UidList | RangeMatch | SequenceMatch


class Term(msgspec.Struct, frozen=True):
    """One match key: the attribute ``tag`` with value representation ``vr`` and how to match it."""

    tag: int
    vr: str
    matcher: Matcher

    @property
    def key(self) -> str:
        """The DICOM JSON key of the attribute: 8 upper-case hex digits."""
        return f"{self.tag:08X}"


class OrderKey(msgspec.Struct, frozen=True):
    """One ``orderby`` sort key: the attribute ``tag`` with value representation ``vr``.

    ``descending`` reverses the order of the values; entities without a value still come last.
    See :mod:`dicomweb_kit.query.ordering` for how values compare.
    """

    tag: int
    vr: str
    descending: bool = False

    @property
    def key(self) -> str:
        """The DICOM JSON key of the attribute: 8 upper-case hex digits."""
        return f"{self.tag:08X}"


class Query(msgspec.Struct, frozen=True):
    """A QIDO-RS search (PS3.18 §10.6).

    Result order: by ``orderby`` (if any), then the stable order (study, series, instance
    first-insertion order), which also breaks ties. Each key's value is the first value of the
    attribute in the entity's representative instance (its newest stored instance, the one
    :attr:`~dicomweb_kit.MatchRow.attributes` comes from), compared per VR: DA/TM/DT
    normalised, numbers as numbers, PN by the case-folded Alphabetic group (else Ideographic,
    else Phonetic), other text by code point with padding stripped. Missing, empty or invalid
    values come last, ascending or descending. The order is applied before ``offset``/``limit``,
    so paging stays gapless. :func:`dicomweb_kit.query.ordering.sort_key` is the definition.

    Attributes:
        level: what the result rows are (studies, series or instances).
        scope: the path's UIDs: ``/studies/{s}/series`` has ``scope.study == s``.
        terms: all must match (logical AND).
        includefield: extra attribute tags to return, or ``"all"``.
        fuzzy: ``fuzzymatching=true``: PN matches ignore case and accents, any name component may match.
        limit: at most this many rows (``None``: the server's own maximum applies).
        offset: skip this many rows of the result order (see above).
        orderby: sort keys, most significant first (``orderby=-StudyDate,PatientName``), at most
            :data:`MAX_ORDER_KEYS`; empty: the stable order alone.
        not_performed: optional matching the client asked for that is not performed
            (``emptyvaluematching``, ``multiplevaluematching``, PS3.18 §8.3.4.5-6); the response
            says so in a Warning header.
    """

    level: Level
    scope: ResourceKey = ResourceKey()
    terms: tuple[Term, ...] = ()
    includefield: tuple[int, ...] | Literal["all"] = ()
    fuzzy: bool = False
    limit: int | None = None
    offset: int = 0
    orderby: tuple[OrderKey, ...] = ()
    not_performed: tuple[str, ...] = ()
