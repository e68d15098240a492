"""QIDO-RS result attributes (PS3.18 §10.6.3.3)."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from dicomweb_kit.index import MatchRow
from dicomweb_kit.query.qido_params import parse_qido
from dicomweb_kit.query.return_keys import result_attributes
from dicomweb_kit.resources import Level, ResourceKey

STUDY, SERIES, SOP = "1.2.3", "1.2.3.4", "1.2.3.4.5"
URL = "http://h/dicom-web/studies/1.2.3"


def e(vr: str, *values: Any) -> dict[str, Any]:
    return {"vr": vr, "Value": list(values)} if values else {"vr": vr}


ATTRS: dict[str, Any] = {
    "00080005": e("CS", "ISO_IR 192"),
    "00080016": e("UI", "1.2.840.10008.5.1.4.1.1.4"),
    "00080018": e("UI", SOP),
    "00080020": e("DA", "20200615"),
    "00080030": e("TM", "120000"),
    "00080050": e("SH", "ACC1"),
    "00080060": e("CS", "MR"),
    "00080090": e("PN", {"Alphabetic": "Ref^Doc"}),
    "0008103E": e("LO", "SAG T1"),
    "00081030": e("LO", "BRAIN"),
    "00100010": e("PN", {"Alphabetic": "Doe^Jane"}),
    "00100020": e("LO", "PID1"),
    "00100030": e("DA", "19700101"),
    "00100040": e("CS", "F"),
    "00101010": e("AS", "050Y"),
    "0020000D": e("UI", STUDY),
    "0020000E": e("UI", SERIES),
    "00200010": e("SH", "S1"),
    "00200011": e("IS", 3),
    "00200013": e("IS", 1),
    "00280010": e("US", 256),
    "00280011": e("US", 256),
    "00280100": e("US", 16),
    "00400275": e("SQ", {"00400009": e("SH", "SPS1")}),
    "00091010": e("LO", "private"),
    "00082112": e("SQ", {"00081150": e("UI", "1.2")}),
    "00880200": {"vr": "SQ", "Value": [{"7FE00010": {"vr": "OW", "BulkDataURI": "x"}}]},
    "00420011": {"vr": "OB", "BulkDataURI": "http://h/bulk/1"},
    "00281201": {"vr": "OW", "InlineBinary": "AAAA"},
    "7FE00010": {"vr": "OW", "BulkDataURI": "http://h/bulk/2"},
    "00201206": e("IS", 999),  # stored value of a computed attribute: never returned
}


def row(level: Level, **counts: Any) -> MatchRow:
    key = {
        Level.STUDY: ResourceKey(STUDY),
        Level.SERIES: ResourceKey(STUDY, SERIES),
        Level.INSTANCE: ResourceKey(STUDY, SERIES, SOP),
    }[level]
    defaults: dict[str, Any] = {
        "study_series": 2,
        "study_instances": 5,
        "series_instances": 0 if level is Level.STUDY else 3,
        "modalities_in_study": ("CT", "MR"),
        "sop_classes_in_study": ("1.2.840.10008.5.1.4.1.1.4",),
    }
    return MatchRow(level=level, key=key, attributes=ATTRS, **(defaults | counts))


def result(
    level: Level, params: list[tuple[str, str]] | None = None, scope: ResourceKey | None = None
) -> dict[str, Any]:
    query = parse_qido(params or [], level, ResourceKey() if scope is None else scope)
    return result_attributes(row(level), query, retrieve_url=URL)


def test_study_defaults() -> None:
    found = result(Level.STUDY)
    assert set(found) == {
        "00080005", "00080020", "00080030", "00080050", "00080056", "00080061", "00080090", "00081190",
        "00100010", "00100020", "00100030", "00100040", "0020000D", "00200010", "00201206", "00201208",
    }  # fmt: skip
    assert found["00080056"] == e("CS", "ONLINE")
    assert found["00080061"] == e("CS", "CT", "MR")
    assert found["00081190"] == e("UR", URL)
    assert found["00201206"] == e("IS", 2)
    assert found["00201208"] == e("IS", 5)
    assert list(found) == sorted(found)


def test_series_defaults_in_study() -> None:
    found = result(Level.SERIES, scope=ResourceKey(STUDY))
    assert set(found) == {
        "00080005", "00080060", "0008103E", "00081190", "0020000D", "0020000E", "00200011", "00201209", "00400275",
    }  # fmt: skip
    assert found["00201209"] == e("IS", 3)


def test_all_series_include_study_attributes() -> None:
    found = result(Level.SERIES)
    assert {"00100010", "00080061", "00201206", "0008103E", "00201209"} <= set(found)


def test_instance_defaults() -> None:
    in_series = result(Level.INSTANCE, scope=ResourceKey(STUDY, SERIES))
    assert set(in_series) == {
        "00080005", "00080016", "00080018", "00080056", "00081190", "0020000D", "0020000E", "00200013",
        "00280010", "00280011", "00280100",
    }  # fmt: skip
    in_study = result(Level.INSTANCE, scope=ResourceKey(STUDY))
    assert "0008103E" in in_study and "00100010" not in in_study
    everywhere = result(Level.INSTANCE)
    assert {"0008103E", "00100010", "00201206"} <= set(everywhere)


def test_match_keys_are_returned() -> None:
    found = result(Level.STUDY, [("PatientAge", "050Y"), ("AcquisitionDateTime", ""), ("Modality", "MR")])
    assert found["00101010"] == e("AS", "050Y")
    assert found["0008002A"] == {"vr": "DT"}  # matched universally, no value: returned empty
    assert found["00080060"] == e("CS", "MR")


def test_sequence_match_key_returns_sequence() -> None:
    found = result(Level.STUDY, [("ReferencedStudySequence.ReferencedSOPClassUID", "1.2")])
    assert found["00081110"] == {"vr": "SQ"}
    found = result(Level.STUDY, [("RequestAttributesSequence.ScheduledProcedureStepID", "SPS1")])
    assert found["00400275"] == ATTRS["00400275"]


def test_includefield_named() -> None:
    found = result(Level.STUDY, [("includefield", "00081030,00080060,NumberOfSeriesRelatedInstances,00091010")])
    assert found["00081030"] == e("LO", "BRAIN")
    assert found["00080060"] == e("CS", "MR")
    assert found["00091010"] == e("LO", "private")
    assert "00201209" not in found  # not meaningful for a study


def test_includefield_bulk_data_never_returned() -> None:
    found = result(Level.STUDY, [("includefield", "00420011,00281201,7FE00010")])
    assert not {"00420011", "00281201", "7FE00010"} & set(found)


def test_includefield_all() -> None:
    found = result(Level.SERIES, [("includefield", "all")], scope=ResourceKey(STUDY))
    assert not {"00420011", "00281201", "7FE00010"} & set(found)
    assert found["00201206"] == e("IS", 2)  # computed, not the stored 999
    assert found["00080062"] == e("UI", "1.2.840.10008.5.1.4.1.1.4")
    assert found["00091010"] == e("LO", "private")
    assert found["00880200"] == ATTRS["00880200"]  # sequences are returned whole
    assert list(found) == sorted(found)


def test_missing_counts_are_omitted() -> None:
    query = parse_qido([], Level.INSTANCE, ResourceKey())
    found = result_attributes(
        row(Level.INSTANCE, study_series=0, study_instances=0, modalities_in_study=()), query, retrieve_url=URL
    )
    assert "00201206" not in found and "00201208" not in found
    assert found["00080061"] == e("CS", "MR")  # falls back to the instance's Modality


def test_uids_come_from_the_row_key() -> None:
    query = parse_qido([], Level.SERIES, ResourceKey(STUDY))
    other = MatchRow(level=Level.SERIES, key=ResourceKey("9.8", "9.8.7"), attributes={})
    found = result_attributes(other, query, retrieve_url=URL)
    assert found["0020000D"] == e("UI", "9.8") and found["0020000E"] == e("UI", "9.8.7")


_NAMES = sorted(
    set(ATTRS)
    | {"00080056", "00080061", "00080062", "00081190", "00201206", "00201208", "00201209", "00101010", "00080021"}
)


@given(
    level=st.sampled_from(list(Level)),
    scoped=st.booleans(),
    named=st.lists(st.sampled_from(_NAMES), max_size=12),
)
def test_all_is_a_superset_of_any_named_includefield(level: Level, scoped: bool, named: list[str]) -> None:
    scope = ResourceKey(STUDY) if scoped else ResourceKey()
    params = [("includefield", ",".join(named))] if named else []
    with_named = result(level, params, scope=scope)
    with_all = result(level, [("includefield", "all")], scope=scope)
    for key, value in with_named.items():
        assert with_all.get(key) == value, key
