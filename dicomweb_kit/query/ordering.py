"""QIDO-RS result ordering (``orderby``): the sort key of an entity, for every index.

The memory index sorts with :func:`sort_key`; the SQL index pushes the same order down into
SQL and is tested against it, so the rules here define the order for the whole kit.

Query syntax (as dcm4chee offers it; PS3.18 defines no sorting): ``orderby`` is repeatable and
comma-separated; each key is a keyword or 8 hex digits, a ``-`` prefix sorts it descending:
``orderby=-StudyDate,PatientName``. Keys are most significant first, at most
:data:`~dicomweb_kit.query.terms.MAX_ORDER_KEYS` of them. An unknown attribute, an SQ or binary
VR, an attribute the server computes (``NumberOfStudyRelatedInstances``, ``ModalitiesInStudy``,
...), a key given twice or too many keys is an :class:`~dicomweb_kit.errors.InvalidQuery`.

Semantics:

* The sort value of an entity (study, series or instance) is the FIRST value of the attribute in
  its representative instance: the newest stored instance of the entity, the one
  :attr:`~dicomweb_kit.MatchRow.attributes` comes from (an instance is its own representative).
* Per VR (:func:`sort_value`):

  - DA/TM/DT: normalised as the matching code normalises them
    (:func:`~dicomweb_kit.query.qido_params.normalise_datetime`: ``YYYYMMDD``,
    ``HHMMSS.FFFFFF``, ``YYYYMMDDHHMMSS.FFFFFF`` with the time zone offset dropped), compared
    as text, which is chronological;
  - numeric VRs (IS, DS, US, UL, SS, SL, FL, FD, SV, UV): as exact decimal numbers
    (``10`` after ``9``, ``+7`` equal to ``7``);
  - PN: the Alphabetic component group (trailing ``^`` and padding removed), case-folded; when
    it is empty the Ideographic group, then the Phonetic one;
  - UI and every other text VR: the value with space padding stripped, compared by code point
    (case-sensitive).

* A missing attribute, a zero-length or ``null`` first value, an empty text, or a value that
  is not valid for its VR (a date that is not a date, a number that is not a number) has no
  sort value, and such entities come LAST, in ascending and in descending order alike.
* Ties (and a query without ``orderby``) keep the stable order: first insertion of study, then
  series, then instance, always ascending. The order is total and deterministic, so
  ``limit``/``offset`` paging under ``orderby`` has no gaps or duplicates while nothing is
  added.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any, TypeVar

from .matching import DATE_TIME_VRS, NUMERIC_VRS, as_number, pn_groups, pn_strip
from .qido_params import normalise_datetime
from .terms import OrderKey

__all__ = ["SortValue", "sort_entities", "sort_key", "sort_value"]

T = TypeVar("T")

SortValue = str | Decimal


def sort_value(attributes: Mapping[str, Any], key: OrderKey, /) -> SortValue | None:
    """The sort value of the instance ``attributes`` (a DICOM JSON object) for ``key``, or
    ``None`` when it has none (it then sorts last). Values of one key are all ``str`` or all
    :class:`~decimal.Decimal`."""
    element = attributes.get(key.key)
    values = element.get("Value") if isinstance(element, Mapping) else None
    if not isinstance(values, list) or not values or values[0] is None:
        return None
    value = values[0]
    vr = key.vr
    if vr in NUMERIC_VRS:
        return as_number(value)
    if vr in DATE_TIME_VRS:
        return normalise_datetime(str(value), vr)
    if vr == "PN":
        for group in pn_groups(value):
            stripped = pn_strip(group)
            if stripped:
                return stripped.casefold()
        return None
    text = str(value).strip(" ")
    return text or None


class _Descending:
    """A sort value in reverse order."""

    __slots__ = ("value",)

    def __init__(self, value: SortValue) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Descending) and self.value == other.value

    def __lt__(self, other: _Descending) -> bool:
        return other.value < self.value  # type: ignore[operator]

    def __hash__(self) -> int:
        return hash(self.value)


def sort_key(attributes: Mapping[str, Any], orderby: Sequence[OrderKey], /) -> tuple[Any, ...]:
    """A key for :func:`sorted` (which is stable) putting entities in ``orderby`` order.

    ``attributes`` is the entity's representative instance. Entities without a sort value for
    a key come after all others for that key, whatever its direction.
    """
    parts: list[tuple[Any, ...]] = []
    for key in orderby:
        value = sort_value(attributes, key)
        if value is None:
            parts.append((1,))
        else:
            parts.append((0, _Descending(value) if key.descending else value))
    return tuple(parts)


def sort_entities(
    items: Iterable[T], orderby: Sequence[OrderKey], attributes: Callable[[T], Mapping[str, Any]], /
) -> list[T]:
    """``items`` (given in the stable order) sorted by ``orderby``; ties keep their order.

    ``attributes`` gives an item's representative instance (e.g. ``lambda row: row.attributes``
    for :class:`~dicomweb_kit.MatchRow`).
    """
    listed = list(items)
    if not orderby:
        return listed
    return sorted(listed, key=lambda item: sort_key(attributes(item), orderby))
