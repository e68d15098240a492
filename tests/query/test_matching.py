"""The reference matcher (PS3.4 §C.2.2.2)."""

from __future__ import annotations

import fnmatch
from datetime import date, timedelta
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from dicomweb_kit.query.matching import entity_matches, instance_matches, wildcard_regex
from dicomweb_kit.query.qido_params import parse_qido
from dicomweb_kit.query.terms import RangeMatch, SingleValue, Term, Universal, Wildcard
from dicomweb_kit.resources import Level, ResourceKey


def pn(alphabetic: str, ideographic: str | None = None) -> dict[str, Any]:
    value: dict[str, str] = {"Alphabetic": alphabetic}
    if ideographic is not None:
        value["Ideographic"] = ideographic
    return {"vr": "PN", "Value": [value]}


def instance(**elements: dict[str, Any]) -> dict[str, Any]:
    keys = {
        "name": "00100010",
        "pid": "00100020",
        "date": "00080020",
        "time": "00080030",
        "modality": "00080060",
        "sop_class": "00080016",
        "series_number": "00200011",
        "thickness": "00180050",
        "uid": "0020000D",
        "dt": "0008002A",
        "request": "00400275",
        "desc": "0008103E",
    }
    return {keys[name]: element for name, element in elements.items()}


def matches(params: list[tuple[str, str]], attrs: dict[str, Any], *, level: Level = Level.STUDY) -> bool:
    query = parse_qido(params, level, ResourceKey())
    return instance_matches(query.terms, attrs, fuzzy=query.fuzzy)


PATCHETT = instance(name=pn("Patchett^Anna"))
PATCHWORK = instance(name=pn("PATCHWORK^QUILT"))
DOE = instance(name=pn("Doe^Jane"))


def test_universal_matches_missing_attribute() -> None:
    assert matches([("PatientName", "")], {})
    assert matches([("PatientName", "*")], DOE)
    assert instance_matches([Term(0x00100010, "PN", Universal())], {})


def test_missing_or_empty_matches_only_universal() -> None:
    assert not matches([("PatientName", "Doe")], {})
    assert not matches([("PatientName", "D*")], instance(name={"vr": "PN"}))
    assert not matches([("PatientID", "1")], instance(pid={"vr": "LO", "Value": []}))
    assert not matches([("StudyDate", "20200101-")], instance(date={"vr": "DA"}))


def test_tutorial_patch_is_case_insensitive_for_pn() -> None:
    for attrs in (PATCHETT, PATCHWORK):
        assert matches([("PatientName", "*PATCH*")], attrs)
        assert matches([("PatientName", "*patch*")], attrs)
    assert not matches([("PatientName", "*PATCH*")], DOE)


def test_pn_single_value_case_insensitive_and_trailing_carets() -> None:
    assert matches([("PatientName", "doe^jane")], DOE)
    assert matches([("PatientName", "Doe^Jane^^")], DOE)
    assert matches([("PatientName", "Doe^Jane")], instance(name=pn("Doe^Jane^^^")))
    assert not matches([("PatientName", "Doe")], DOE)  # not fuzzy: whole name


def test_other_vrs_case_sensitive() -> None:
    attrs = instance(desc={"vr": "LO", "Value": ["SAG T1"]}, modality={"vr": "CS", "Value": ["MR"]})
    assert matches([("SeriesDescription", "SAG*")], attrs)
    assert not matches([("SeriesDescription", "sag*")], attrs)
    assert not matches([("Modality", "mr")], attrs)


def test_pn_component_groups() -> None:
    attrs = instance(name=pn("Yamada^Tarou", "山田^太郎"))
    assert matches([("PatientName", "山田*")], attrs)
    assert matches([("PatientName", "yamada^tarou")], attrs)
    assert matches([("PatientName", "Yamada*=山田*")], attrs)
    assert not matches([("PatientName", "Yamada*=Suzuki*")], attrs)


def test_fuzzy_pn() -> None:
    attrs = instance(name=pn("Müller^José"))
    assert not matches([("PatientName", "muller")], attrs)
    assert matches([("fuzzymatching", "true"), ("PatientName", "muller")], attrs)
    assert matches([("fuzzymatching", "true"), ("PatientName", "jos")], attrs)  # prefix of given name
    assert matches([("fuzzymatching", "true"), ("PatientName", "MUL^JO")], attrs)
    assert not matches([("fuzzymatching", "true"), ("PatientName", "JO^MUL")], attrs)
    assert matches([("fuzzymatching", "true"), ("PatientName", "jos?")], attrs)  # wildcard on a component
    assert not matches([("fuzzymatching", "true"), ("PatientName", "ller")], attrs)


def test_multi_valued_attribute_any_value() -> None:
    attrs = {"00080008": {"vr": "CS", "Value": ["ORIGINAL", "PRIMARY", "AXIAL"]}}
    assert matches([("ImageType", "AXIAL")], attrs)
    assert matches([("ImageType", "PRIM*")], attrs)
    assert not matches([("ImageType", "DERIVED")], attrs)


def test_uid_list() -> None:
    attrs = instance(uid={"vr": "UI", "Value": ["1.2.3"]})
    assert matches([("StudyInstanceUID", "1.2.4,1.2.3")], attrs)
    assert matches([("StudyInstanceUID", "1.2.3")], attrs)
    assert not matches([("StudyInstanceUID", "1.2.4\\1.2.5")], attrs)


def test_numbers_compare_numerically() -> None:
    attrs = instance(series_number={"vr": "IS", "Value": [7]}, thickness={"vr": "DS", "Value": [1.5]})
    assert matches([("SeriesNumber", "007")], attrs)
    assert matches([("SeriesNumber", "+7")], attrs)
    assert not matches([("SeriesNumber", "8")], attrs)
    assert matches([("SliceThickness", "1.50")], attrs)


def test_date_single_and_ranges() -> None:
    attrs = instance(date={"vr": "DA", "Value": ["20200615"]})
    assert matches([("StudyDate", "20200615")], attrs)
    assert not matches([("StudyDate", "20200616")], attrs)
    assert matches([("StudyDate", "20200101-20201231")], attrs)
    assert matches([("StudyDate", "-20200615")], attrs)
    assert matches([("StudyDate", "20200615-")], attrs)
    assert not matches([("StudyDate", "-20200614")], attrs)
    assert not matches([("StudyDate", "20200101-")], instance(date={"vr": "DA", "Value": ["garbage"]}))


def test_time_precision() -> None:
    attrs = instance(time={"vr": "TM", "Value": ["143015.123"]})
    assert matches([("StudyTime", "14")], attrs)
    assert matches([("StudyTime", "1430")], attrs)
    assert not matches([("StudyTime", "1431")], attrs)
    assert matches([("StudyTime", "1400-1500")], attrs)
    assert matches([("StudyTime", "-143015.123")], attrs)
    assert not matches([("StudyTime", "-143015.122")], attrs)


def test_datetime_ignores_offset() -> None:
    attrs = instance(dt={"vr": "DT", "Value": ["20200615143000+0200"]})
    assert matches([("AcquisitionDateTime", "2020")], attrs)
    assert matches([("AcquisitionDateTime", "20200615-20200615")], attrs)
    assert not matches([("AcquisitionDateTime", "20200616-")], attrs)


def test_sequence_matching_same_item() -> None:
    attrs = instance(
        request={
            "vr": "SQ",
            "Value": [
                {"00400009": {"vr": "SH", "Value": ["SPS1"]}, "00401001": {"vr": "SH", "Value": ["RP1"]}},
                {"00400009": {"vr": "SH", "Value": ["SPS2"]}, "00401001": {"vr": "SH", "Value": ["RP2"]}},
            ],
        }
    )
    key_sps, key_rp = (
        "RequestAttributesSequence.ScheduledProcedureStepID",
        "RequestAttributesSequence.RequestedProcedureID",
    )
    assert matches([(key_sps, "SPS2")], attrs)
    assert matches([(key_sps, "SPS1"), (key_rp, "RP1")], attrs)
    assert not matches([(key_sps, "SPS1"), (key_rp, "RP2")], attrs)  # must be one item
    assert not matches([(key_sps, "SPS3")], attrs)
    assert not matches([(key_sps, "SPS1")], {})


def test_modalities_and_sop_classes_in_study_use_instance_attributes() -> None:
    ct = instance(
        modality={"vr": "CS", "Value": ["CT"]}, sop_class={"vr": "UI", "Value": ["1.2.840.10008.5.1.4.1.1.2"]}
    )
    mr = instance(
        modality={"vr": "CS", "Value": ["MR"]}, sop_class={"vr": "UI", "Value": ["1.2.840.10008.5.1.4.1.1.4"]}
    )
    query = parse_qido([("ModalitiesInStudy", "MR")], Level.STUDY, ResourceKey())
    assert not instance_matches(query.terms, ct)
    assert entity_matches(query.terms, [ct, mr])
    assert not entity_matches(query.terms, [ct])
    assert matches([("SOPClassesInStudy", "1.2.840.10008.5.1.4.1.1.4,1.2.3")], mr)


def test_all_terms_must_match() -> None:
    attrs = {**DOE, **instance(modality={"vr": "CS", "Value": ["CT"]})}
    assert matches([("PatientName", "Doe*"), ("Modality", "CT")], attrs)
    assert not matches([("PatientName", "Doe*"), ("Modality", "MR")], attrs)


def test_wildcard_does_not_backtrack_exponentially() -> None:
    regex = wildcard_regex("*a*a*a*a*a*a*a*a*a*a*a*b")
    assert regex.fullmatch("a" * 5000) is None


# --- properties ----------------------------------------------------------------------------------

_TEXT = st.text(alphabet="ab?*.[]^\\", max_size=12)


@given(pattern=_TEXT, value=st.text(alphabet="ab.[]^\\?*", max_size=16))
def test_wildcard_equals_fnmatch(pattern: str, value: str) -> None:
    escaped = "".join("[[]" if char == "[" else char for char in pattern)
    expected = fnmatch.fnmatchcase(value, escaped)
    assert (wildcard_regex(pattern).fullmatch(value) is not None) == expected
    term = Term(0x0008103E, "LO", Wildcard(pattern) if "*" in pattern or "?" in pattern else SingleValue(pattern))
    if value and not value.endswith(" ") and pattern:
        assert instance_matches([term], {"0008103E": {"vr": "LO", "Value": [value]}}) == expected


_DAYS = st.integers(min_value=0, max_value=3000).map(lambda n: date(2000, 1, 1) + timedelta(days=n))


@given(stored=_DAYS, low=st.none() | _DAYS, high=st.none() | _DAYS)
def test_date_range_equals_brute_force(stored: date, low: date | None, high: date | None) -> None:
    if low is None and high is None:
        return
    if low is not None and high is not None and low > high:
        low, high = high, low
    text = f"{low:%Y%m%d}" if low else ""
    text += "-" + (f"{high:%Y%m%d}" if high else "")
    attrs = instance(date={"vr": "DA", "Value": [f"{stored:%Y%m%d}"]})
    expected = (low is None or low <= stored) and (high is None or stored <= high)
    assert matches([("StudyDate", text)], attrs) == expected


_TIMES = st.tuples(st.integers(0, 23), st.integers(0, 59), st.integers(0, 59), st.integers(0, 999999))


@given(stored=_TIMES, low=_TIMES, high=_TIMES, precision=st.integers(1, 4))
def test_time_range_equals_brute_force(
    stored: tuple[int, int, int, int], low: tuple[int, int, int, int], high: tuple[int, int, int, int], precision: int
) -> None:
    low, high = min(low, high), max(low, high)

    def text(t: tuple[int, int, int, int], parts: int) -> str:
        return "".join(f"{v:02d}" for v in t[: min(parts, 3)]) + (f".{t[3]:06d}" if parts == 4 else "")

    # Truncated bounds cover their whole precision: compare on the truncated prefix.
    def key(t: tuple[int, int, int, int], parts: int) -> tuple[int, ...]:
        return t[:parts]

    expected = key(low, precision) <= key(stored, precision) <= key(high, precision)
    term = parse_qido([("StudyTime", f"{text(low, precision)}-{text(high, precision)}")], Level.STUDY, ResourceKey())
    attrs = instance(time={"vr": "TM", "Value": [text(stored, 4)]})
    assert instance_matches(term.terms, attrs) == expected


@given(
    value=st.dates(min_value=date(1900, 1, 1), max_value=date(2100, 12, 31)),
    single=st.dates(min_value=date(1900, 1, 1), max_value=date(2100, 12, 31)),
)
def test_single_date_is_exact(value: date, single: date) -> None:
    attrs = instance(date={"vr": "DA", "Value": [f"{value:%Y%m%d}"]})
    assert matches([("StudyDate", f"{single:%Y%m%d}")], attrs) == (value == single)


def test_range_term_can_be_built_directly() -> None:
    term = Term(0x00080020, "DA", RangeMatch("20200101", None))
    assert instance_matches([term], instance(date={"vr": "DA", "Value": ["20200102"]}))
