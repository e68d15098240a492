"""The attributes of one QIDO-RS result (PS3.18 §10.6.3.3, Tables 10.6.3-3, -4 and -5).

A result holds, all taken from the row's representative instance when present (omitted when
absent) or computed by the server:

1. the level's default attributes (the tables). PS3.18 §10.6.3.3.2/3: a search of All Series
   (``/series``) also returns the study attributes; a search of All Instances (``/instances``)
   returns the study and series attributes, and a Study's Instances the series attributes;
2. the entity's own UIDs (Study / Series / SOP Instance UID down to the level), from the row key;
3. every match key (PS3.4 §C.4.1.1.3.2: key attributes are returned); a match key without a
   value is returned zero length (``{"vr": ...}``);
4. the ``includefield`` attributes, or with ``includefield=all`` every stored attribute that is
   not bulk data plus every computed one, so ``all`` is a superset of any named list.

Bulk data (any element with a ``BulkDataURI``, ``InlineBinary`` of a binary VR, and the 7FE0
group) is never returned, named or not.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

from pydicom.datadict import dictionary_VR

from ..index import MatchRow
from ..resources import Level
from .terms import ALL_FIELDS, Query

__all__ = ["COMPUTED", "INSTANCE_ATTRIBUTES", "SERIES_ATTRIBUTES", "STUDY_ATTRIBUTES", "result_attributes"]

_SPECIFIC_CHARACTER_SET = 0x00080005
_TIMEZONE_OFFSET = 0x00080201
_RETRIEVE_URL = 0x00081190
_INSTANCE_AVAILABILITY = 0x00080056
_MODALITIES_IN_STUDY = 0x00080061
_SOP_CLASSES_IN_STUDY = 0x00080062
_STUDY_UID, _SERIES_UID, _SOP_UID = 0x0020000D, 0x0020000E, 0x00080018

# PS3.18 Table 10.6.3-3: Study's Returned Attributes.
STUDY_ATTRIBUTES: Final[tuple[int, ...]] = (
    _SPECIFIC_CHARACTER_SET,
    0x00080020,  # StudyDate
    0x00080030,  # StudyTime
    0x00080050,  # AccessionNumber
    _INSTANCE_AVAILABILITY,
    _MODALITIES_IN_STUDY,
    0x00080090,  # ReferringPhysicianName
    _TIMEZONE_OFFSET,
    _RETRIEVE_URL,
    0x00100010,  # PatientName
    0x00100020,  # PatientID
    0x00100030,  # PatientBirthDate
    0x00100040,  # PatientSex
    _STUDY_UID,
    0x00200010,  # StudyID
    0x00201206,  # NumberOfStudyRelatedSeries
    0x00201208,  # NumberOfStudyRelatedInstances
)

# PS3.18 Table 10.6.3-4: Series' Returned Attributes.
SERIES_ATTRIBUTES: Final[tuple[int, ...]] = (
    _SPECIFIC_CHARACTER_SET,
    0x00080060,  # Modality
    _TIMEZONE_OFFSET,
    0x0008103E,  # SeriesDescription
    _RETRIEVE_URL,
    _SERIES_UID,
    0x00200011,  # SeriesNumber
    0x00201209,  # NumberOfSeriesRelatedInstances
    0x00400244,  # PerformedProcedureStepStartDate
    0x00400245,  # PerformedProcedureStepStartTime
    0x00400275,  # RequestAttributesSequence (with its RequestedProcedureID, ScheduledProcedureStepID)
)

# PS3.18 Table 10.6.3-5: Instance's Returned Attributes.
INSTANCE_ATTRIBUTES: Final[tuple[int, ...]] = (
    _SPECIFIC_CHARACTER_SET,
    0x00080016,  # SOPClassUID
    _SOP_UID,
    _INSTANCE_AVAILABILITY,
    _TIMEZONE_OFFSET,
    _RETRIEVE_URL,
    0x00200013,  # InstanceNumber
    0x00280010,  # Rows
    0x00280011,  # Columns
    0x00280100,  # BitsAllocated
    0x00280008,  # NumberOfFrames
)

_BINARY_VRS = frozenset({"OB", "OW", "OF", "OD", "OL", "OV", "UN"})


def _element(vr: str, values: Iterable[Any]) -> dict[str, Any]:
    value_list = list(values)
    return {"vr": vr, "Value": value_list} if value_list else {"vr": vr}


def _modalities(row: MatchRow, _url: str) -> dict[str, Any] | None:
    values = row.modalities_in_study or _stored_values(row, "00080060")
    return _element("CS", values) if values else None


def _sop_classes(row: MatchRow, _url: str) -> dict[str, Any] | None:
    values = row.sop_classes_in_study or _stored_values(row, "00080016")
    return _element("UI", values) if values else None


def _count(get: Callable[[MatchRow], int], *, not_at: Level | None = None) -> Callable[[MatchRow, str], Any]:
    # Every study and series holds at least one instance: a count of 0 means "not computed".
    def compute(row: MatchRow, _url: str) -> dict[str, Any] | None:
        count = get(row)
        return _element("IS", [count]) if count > 0 and row.level != not_at else None

    return compute


# Attributes the server computes (they are never taken from the stored instance).
COMPUTED: Final[Mapping[int, Callable[[MatchRow, str], dict[str, Any] | None]]] = {
    _INSTANCE_AVAILABILITY: lambda row, url: _element("CS", ["ONLINE"]),  # PS3.4 §C.4.1.1.3.2: all stored online
    _MODALITIES_IN_STUDY: _modalities,
    _SOP_CLASSES_IN_STUDY: _sop_classes,
    _RETRIEVE_URL: lambda row, url: _element("UR", [url]),
    0x00201206: _count(lambda row: row.study_series),  # NumberOfStudyRelatedSeries
    0x00201208: _count(lambda row: row.study_instances),  # NumberOfStudyRelatedInstances
    0x00201209: _count(lambda row: row.series_instances, not_at=Level.STUDY),  # NumberOfSeriesRelatedInstances
}


def _stored_values(row: MatchRow, key: str) -> list[Any]:
    element = row.attributes.get(key)
    values = element.get("Value") if isinstance(element, Mapping) else None
    return sorted({str(v) for v in values if v is not None}) if isinstance(values, list) else []


def _is_computed(key: str) -> bool:
    try:
        return int(key, 16) in COMPUTED
    except ValueError:
        return False


def _is_bulk(key: str, element: Any) -> bool:
    if key.upper().startswith("7FE0") or not isinstance(element, Mapping):
        return True
    if "BulkDataURI" in element:
        return True
    return "InlineBinary" in element and element.get("vr") in _BINARY_VRS


def _default_tags(query: Query) -> list[int]:
    level, scope = query.level, query.scope
    tags: list[int] = []
    if level is Level.STUDY or scope.study is None:
        tags += STUDY_ATTRIBUTES  # PS3.18 §10.6.3.3.2-3: All Series / All Instances add study attributes
    if level is Level.SERIES or (level is Level.INSTANCE and scope.series is None):
        tags += SERIES_ATTRIBUTES  # a Study's Instances (or All Instances) add series attributes
    if level is Level.INSTANCE:
        tags += INSTANCE_ATTRIBUTES
    return tags


def _vr(tag: int) -> str:
    try:
        return dictionary_VR(tag).split(" or ")[0] or "UN"
    except KeyError:
        return "UN"


def result_attributes(row: MatchRow, query: Query, /, *, retrieve_url: str) -> dict[str, Any]:
    """The DICOM JSON object of one QIDO-RS result, keys sorted (PS3.18 §10.6.3.3, F.2)."""
    result: dict[str, Any] = {}

    def add(tag: int) -> None:
        key = f"{tag:08X}"
        if key in result:
            return
        compute = COMPUTED.get(tag)
        if compute is not None:
            element = compute(row, retrieve_url)
            if element is not None:
                result[key] = element
            return
        stored = row.attributes.get(key)
        if stored is not None and not _is_bulk(key, stored):
            result[key] = stored

    for tag in _default_tags(query):
        add(tag)
    if query.includefield == ALL_FIELDS:
        for tag in COMPUTED:
            add(tag)
        for key, stored in row.attributes.items():
            if key not in result and not _is_computed(key) and not _is_bulk(key, stored):
                result[key] = stored
    else:
        for tag in query.includefield:
            add(tag)
    for term in query.terms:
        add(term.tag)
        if term.key not in result:
            result[term.key] = {"vr": term.vr}  # a match key without a value is returned empty

    # The entity's own UIDs, authoritative from the row key.
    uids = [(_STUDY_UID, row.key.study)]
    if row.level is not Level.STUDY:
        uids.append((_SERIES_UID, row.key.series))
    if row.level is Level.INSTANCE:
        uids.append((_SOP_UID, row.key.instance))
    for tag, uid in uids:
        if uid is not None:
            result[f"{tag:08X}"] = _element("UI", [uid])
    return dict(sorted(result.items()))
