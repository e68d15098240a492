"""ModalitiesInStudy (0008,0061) and SOPClassesInStudy (0008,0062), kept on the study row.

PS3.18 Table 10.6.3-3 returns both with every study-level QIDO-RS result: the distinct values
over ALL the study's instances. Computed per query they are a ``DISTINCT`` over every instance
of every study on the page, the biggest part of a study search. Since schema version 8 the
``studies`` row keeps them (``modalities``, ``sop_classes``: a JSON array of the sorted distinct
values) and ``representative_id`` (the newest instance, whose metadata is the result's
attributes), all written in the transaction that changes the study:

* an add (the study row locked) unions the batch's values into the stored ones;
* a removal recomputes them from what is left (:func:`study_values`).

NULL means "not known": the search computes the values of such studies with
:func:`study_values` (studies stored before version 8 until ``db upgrade`` backfilled them, and
values a column cannot hold). Modality values are those of the match rows (``value``: the text
as Wild Card Matching sees it) and, for an irregular row, the stored metadata's strings, so the
kept and the computed values are the same.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final

import msgspec
from sqlalchemy import bindparam, literal, select, union_all
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import BindParameter

from .extract import ValueRow
from .schema import instance_values, instances
from .sqlite_direct import fetch

__all__ = ["MODALITY", "decode_values", "encode_values", "instance_modalities", "study_values"]

MODALITY: Final = 0x00080060
# Longer than this (a study of hundreds of SOP classes) is left NULL: MariaDB's TEXT holds 64 KB.
_MAX_CHARS: Final = 60_000
_STUDY_VALUES: Final = instance_values.alias("m")

Fetch = Callable[[Connection, Any, Mapping[str, Any]], Sequence[Any]]


def encode_values(values: Iterable[str]) -> str | None:
    """The column text of a set of values; ``None`` when a column cannot hold it."""
    try:
        text = msgspec.json.encode(sorted(str(value) for value in values)).decode()  # (str subclasses too)
    except (msgspec.EncodeError, UnicodeError):  # e.g. a lone surrogate
        return None
    return text if len(text) <= _MAX_CHARS else None


def decode_values(text: str) -> tuple[str, ...]:
    return tuple(msgspec.json.decode(text, type=list[str]))


def _metadata_modalities(attrs: Mapping[str, Any]) -> set[str]:
    element = attrs.get("00080060")
    values = element.get("Value") if isinstance(element, Mapping) else None
    return {value for value in values if isinstance(value, str)} if isinstance(values, list) else set()


def instance_modalities(rows: Sequence[ValueRow], attrs: Mapping[str, Any]) -> set[str]:
    """One instance's Modality values as :func:`study_values` reads them: its match rows'
    ``value``, or the stored strings when the attribute's row is irregular."""
    found: set[str] = set()
    for tag, _vidx, _grp, value, _key, irregular in rows:
        if tag != MODALITY:
            continue
        if irregular:
            return _metadata_modalities(attrs)
        if value is not None:
            found.add(value)
    return found


@functools.cache
def _study_values_statement() -> Any:
    v = _STUDY_VALUES
    study_ids: BindParameter[Any] = bindparam("study_ids", expanding=True)
    # Read from the covering scan index (tag, study, series, instance, value_key, value): only
    # irregular rows have no value (extract.py), and only they need their instance.
    return union_all(
        select(literal(0).label("what"), v.c.study_id.label("study_id"), v.c.value.label("value"))
        .distinct()
        .where(v.c.tag == MODALITY, v.c.study_id.in_(study_ids))
        .with_hint(v, "INDEXED BY dwk_values_scan", "sqlite"),
        select(literal(1), instances.c.study_id, instances.c.sop_class_uid)
        .distinct()
        .where(instances.c.study_id.in_(study_ids)),
    )


def study_values(
    conn: Connection, study_ids: list[int], *, run: Fetch = fetch
) -> tuple[dict[int, set[str]], dict[int, set[str]]]:
    """Distinct Modality values and distinct SOP Class UIDs per study, computed from the
    instances (one ``UNION ALL``; the stored metadata of instances with an irregular Modality)."""
    modalities: dict[int, set[str]] = {}
    sop_classes: dict[int, set[str]] = {}
    if not study_ids:
        return modalities, sop_classes
    v = _STUDY_VALUES
    irregular_study = False
    for row in run(conn, _study_values_statement(), {"study_ids": study_ids}):
        if row.value is None:
            irregular_study = irregular_study or row.what == 0
            continue
        (modalities if row.what == 0 else sop_classes).setdefault(int(row.study_id), set()).add(row.value)
    if irregular_study:
        found = conn.execute(
            select(v.c.instance_id, v.c.study_id).where(
                v.c.tag == MODALITY, v.c.study_id.in_(study_ids), v.c.value.is_(None)
            )
        )
        irregular = {int(row.instance_id): int(row.study_id) for row in found}
        for item in conn.execute(
            select(instances.c.id, instances.c.metadata).where(instances.c.id.in_(list(irregular)))
        ):
            decoded = msgspec.json.decode(bytes(item.metadata))
            if isinstance(decoded, dict):
                modalities.setdefault(irregular[item.id], set()).update(_metadata_modalities(decoded))
    return modalities, sop_classes
