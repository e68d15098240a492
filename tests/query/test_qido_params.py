"""QIDO-RS query parameter parsing (PS3.18 §8.3.4, PS3.4 §C.2.2.2)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dicomweb_kit.errors import DicomWebError, InvalidQuery
from dicomweb_kit.query.qido_params import normalise_datetime, parse_qido
from dicomweb_kit.query.terms import (
    ALL_FIELDS,
    DEFAULT_LIMIT,
    MAX_ORDER_KEYS,
    OrderKey,
    RangeMatch,
    SequenceMatch,
    SingleValue,
    Term,
    UidList,
    Universal,
    Wildcard,
)
from dicomweb_kit.resources import Level, ResourceKey

ROOT = ResourceKey()


def terms(*params: tuple[str, str], level: Level = Level.STUDY) -> tuple[Term, ...]:
    return parse_qido(list(params), level, ROOT).terms


def one(name: str, value: str) -> Term:
    (term,) = terms((name, value))
    return term


def test_ohif_study_list() -> None:
    query = parse_qido(
        [
            ("limit", "101"),
            ("offset", "0"),
            ("fuzzymatching", "false"),
            ("includefield", "00081030,00080060,00080090,00100030"),
        ],
        Level.STUDY,
        ROOT,
    )
    assert query.terms == ()
    assert query.includefield == (0x00081030, 0x00080060, 0x00080090, 0x00100030)
    assert (query.limit, query.offset, query.fuzzy) == (101, 0, False)


def test_keyword_and_hex_tag() -> None:
    assert one("PatientID", "123") == Term(0x00100020, "LO", SingleValue("123"))
    assert one("00100020", "123") == Term(0x00100020, "LO", SingleValue("123"))
    assert one("0008103e", "x").tag == 0x0008103E  # lower-case hex
    assert one("0020000d", "1.2.3") == Term(0x0020000D, "UI", SingleValue("1.2.3"))


def test_keywords_are_case_sensitive_with_hint() -> None:
    with pytest.raises(InvalidQuery, match="PatientName"):
        parse_qido([("patientname", "x")], Level.STUDY, ROOT)


@pytest.mark.parametrize("name", ["NoSuchAttribute", "00091001", "1234567", "PatientName.PatientID", ""])
def test_unknown_attribute_names_parameter(name: str) -> None:
    with pytest.raises(InvalidQuery) as info:
        parse_qido([(name, "x")], Level.STUDY, ROOT)
    assert repr(name)[1:-1][:20] in info.value.message


def test_universal() -> None:
    assert one("PatientName", "").matcher == Universal()
    assert one("PatientName", "*").matcher == Universal()
    assert one("StudyDate", "").matcher == Universal()
    assert one("StudyInstanceUID", "").matcher == Universal()


def test_wildcards_on_text() -> None:
    assert one("PatientName", "*PATCH*").matcher == Wildcard("*PATCH*")
    assert one("SeriesDescription", "SAG?").matcher == Wildcard("SAG?")
    assert one("PatientName", "Doe^Jane").matcher == SingleValue("Doe^Jane")


@pytest.mark.parametrize(
    ("name", "value"),
    [("StudyInstanceUID", "1.2.*"), ("StudyDate", "2020*"), ("StudyTime", "12?"), ("SeriesNumber", "1*")],
)
def test_wildcards_rejected_where_not_allowed(name: str, value: str) -> None:
    with pytest.raises(InvalidQuery, match=name):
        parse_qido([(name, value)], Level.STUDY, ROOT)


def test_uid_lists() -> None:
    assert one("StudyInstanceUID", "1.2.3\\1.2.4").matcher == UidList(("1.2.3", "1.2.4"))
    assert one("SOPClassUID", "1.2.3,1.2.4,1.2.3").matcher == UidList(("1.2.3", "1.2.4"))


@pytest.mark.parametrize("value", ["1.02.3", "abc", "1.2.3,", "1..2", "1." + "1" * 70])
def test_invalid_uids_are_invalid_query(value: str) -> None:
    with pytest.raises(InvalidQuery, match="StudyInstanceUID"):
        parse_qido([("StudyInstanceUID", value)], Level.STUDY, ROOT)


def test_date_ranges() -> None:
    assert one("StudyDate", "20200101").matcher == SingleValue("20200101")
    assert one("StudyDate", "20200101-20201231").matcher == RangeMatch("20200101", "20201231")
    assert one("StudyDate", "-20200101").matcher == RangeMatch(None, "20200101")
    assert one("StudyDate", "20200101-").matcher == RangeMatch("20200101", None)


@pytest.mark.parametrize(
    "value", ["2020130", "20201301", "20200230", "2020-01-01", "20200101-2020", "20201231-20200101"]
)
def test_invalid_dates(value: str) -> None:
    with pytest.raises(InvalidQuery, match="StudyDate"):
        parse_qido([("StudyDate", value)], Level.STUDY, ROOT)


def test_time_values_cover_their_precision() -> None:
    assert one("StudyTime", "14").matcher == RangeMatch("140000.000000", "149999.999999")
    assert one("StudyTime", "1200-130000.5").matcher == RangeMatch("120000.000000", "130000.599999")
    assert one("StudyTime", "-0930").matcher == RangeMatch(None, "093099.999999")
    with pytest.raises(InvalidQuery):
        parse_qido([("StudyTime", "2500")], Level.STUDY, ROOT)
    with pytest.raises(InvalidQuery):
        parse_qido([("StudyTime", "12.5")], Level.STUDY, ROOT)


def test_datetime_ranges_and_offsets() -> None:
    term = one("AcquisitionDateTime", "2020-2021")
    assert term.matcher == RangeMatch("20200000000000.000000", "20219999999999.999999")
    # A "-" in a time zone offset is not a range.
    single = one("AcquisitionDateTime", "20200101120000-0500").matcher
    assert single == RangeMatch("20200101120000.000000", "20200101120000.999999")
    assert one("AcquisitionDateTime", "20200101-20200102+0100").matcher == RangeMatch(
        "20200101000000.000000", "20200102999999.999999"
    )


def test_normalise_datetime() -> None:
    assert normalise_datetime("20200101", "DA") == "20200101"
    assert normalise_datetime("20200101 ", "DA") == "20200101"
    assert normalise_datetime("1230", "TM") == "123000.000000"
    assert normalise_datetime("1230", "TM", high=True) == "123099.999999"
    assert normalise_datetime("٢٠٢٠٠١٠١", "DA") is None  # non-ASCII digits
    assert normalise_datetime("12:30", "TM") is None


def test_numbers() -> None:
    assert one("SeriesNumber", " 7 ").matcher == SingleValue("7")
    assert one("SliceThickness", "1.5e0").matcher == SingleValue("1.5e0")
    for name, value in [("SeriesNumber", "1.5"), ("Rows", "-1"), ("SliceThickness", "abc"), ("Rows", "١")]:
        with pytest.raises(InvalidQuery, match=name):
            parse_qido([(name, value)], Level.STUDY, ROOT)


def test_binary_and_sequence_only_universal() -> None:
    assert one("PixelData", "").matcher == Universal()
    with pytest.raises(InvalidQuery, match="PixelData"):
        parse_qido([("PixelData", "x")], Level.STUDY, ROOT)
    with pytest.raises(InvalidQuery, match="RequestAttributesSequence"):
        parse_qido([("RequestAttributesSequence", "x")], Level.STUDY, ROOT)


def test_sequence_matching_paths_share_one_item() -> None:
    found = terms(
        ("RequestAttributesSequence.ScheduledProcedureStepID", "SPS1"),
        ("0040A370.00401001", "RP1"),
        ("0040a370.00080050", "ACC*"),
    )
    assert found == (
        Term(0x00400275, "SQ", SequenceMatch((Term(0x00400009, "SH", SingleValue("SPS1")),))),
        Term(
            0x0040A370,
            "SQ",
            SequenceMatch((Term(0x00401001, "SH", SingleValue("RP1")), Term(0x00080050, "SH", Wildcard("ACC*")))),
        ),
    )


def test_dotted_path_through_non_sequence() -> None:
    with pytest.raises(InvalidQuery, match="not a sequence"):
        parse_qido([("PatientName.PatientID", "x")], Level.STUDY, ROOT)


def test_repeated_match_key() -> None:
    with pytest.raises(InvalidQuery, match="more than once"):
        parse_qido([("PatientID", "a"), ("00100020", "b")], Level.STUDY, ROOT)


def test_too_many_terms() -> None:
    params = [("PatientID", "a"), ("PatientName", "b"), ("StudyID", "c")]
    assert len(parse_qido(params, Level.STUDY, ROOT, max_terms=3).terms) == 3
    with pytest.raises(InvalidQuery, match="StudyID"):
        parse_qido(params, Level.STUDY, ROOT, max_terms=2)


@pytest.mark.parametrize(
    "name",
    [
        "NumberOfStudyRelatedSeries",
        "NumberOfStudyRelatedInstances",
        "NumberOfSeriesRelatedInstances",
        "RetrieveURL",
        "00081190",
    ],
)
def test_computed_attributes_are_not_match_keys(name: str) -> None:
    with pytest.raises(InvalidQuery, match="computed"):
        parse_qido([(name, "1")], Level.STUDY, ROOT)


def test_computed_attributes_can_be_included() -> None:
    query = parse_qido([("includefield", "NumberOfStudyRelatedSeries,00081190")], Level.STUDY, ROOT)
    assert query.includefield == (0x00201206, 0x00081190)


def test_modalities_in_study_is_a_match_key() -> None:
    assert one("ModalitiesInStudy", "MR") == Term(0x00080061, "CS", SingleValue("MR"))


def test_includefield_forms() -> None:
    query = parse_qido(
        [
            ("includefield", "PatientAge, 0008103e"),
            ("includefield", "00091001,,RequestAttributesSequence.AccessionNumber"),
        ],
        Level.SERIES,
        ROOT,
    )
    assert query.includefield == (0x00101010, 0x0008103E, 0x00091001, 0x00400275)
    assert parse_qido([("includefield", "all")], Level.STUDY, ROOT).includefield == ALL_FIELDS
    assert parse_qido([("includefield", "PatientAge,ALL")], Level.STUDY, ROOT).includefield == ALL_FIELDS
    with pytest.raises(InvalidQuery, match="Nope"):
        parse_qido([("includefield", "PatientAge,Nope")], Level.STUDY, ROOT)


def test_fuzzymatching() -> None:
    assert parse_qido([("fuzzymatching", "true")], Level.STUDY, ROOT).fuzzy
    assert parse_qido([("fuzzymatching", "True")], Level.STUDY, ROOT).fuzzy
    assert not parse_qido([("fuzzymatching", "false")], Level.STUDY, ROOT).fuzzy
    with pytest.raises(InvalidQuery, match="fuzzymatching"):
        parse_qido([("fuzzymatching", "yes")], Level.STUDY, ROOT)


def test_limit_and_offset() -> None:
    query = parse_qido([], Level.STUDY, ROOT)
    assert (query.limit, query.offset) == (DEFAULT_LIMIT, 0)
    assert parse_qido([("limit", "5000")], Level.STUDY, ROOT, max_limit=200).limit == 200
    assert parse_qido([], Level.STUDY, ROOT, default_limit=50).limit == 50
    assert parse_qido([("offset", "20")], Level.STUDY, ROOT).offset == 20
    assert parse_qido([("limit", "99999999999999999")], Level.STUDY, ROOT).limit == DEFAULT_LIMIT


@pytest.mark.parametrize("name", ["limit", "offset"])
@pytest.mark.parametrize("value", ["-1", "abc", "", "1.5", "+3", "١٢", "9" * 40])
def test_bad_limit_and_offset(name: str, value: str) -> None:
    with pytest.raises(InvalidQuery, match=name):
        parse_qido([(name, value)], Level.STUDY, ROOT)


def test_repeated_limit() -> None:
    with pytest.raises(InvalidQuery, match="limit"):
        parse_qido([("limit", "1"), ("limit", "2")], Level.STUDY, ROOT)


def test_accept_and_charset_are_ignored() -> None:
    query = parse_qido([("accept", "application/json"), ("charset", "utf-8")], Level.STUDY, ROOT)
    assert query.terms == ()


def test_scope_and_path_uid_as_term() -> None:
    scope = ResourceKey("1.2.3")
    query = parse_qido([("StudyInstanceUID", "1.2.3")], Level.SERIES, scope)
    assert query.scope == scope and query.level is Level.SERIES
    assert query.terms == (Term(0x0020000D, "UI", SingleValue("1.2.3")),)


_NAMES = st.sampled_from(
    ["PatientName", "StudyDate", "StudyTime", "AcquisitionDateTime", "StudyInstanceUID", "SeriesNumber", "limit",
     "offset", "includefield", "fuzzymatching", "RequestAttributesSequence.RequestedProcedureID", "0040A370.x",
     "PixelData", "Rows", "SliceThickness", "00100020", "zz", "orderby"]
)  # fmt: skip


@given(st.lists(st.tuples(_NAMES | st.text(max_size=12), st.text(max_size=30)), max_size=8))
def test_fuzz_only_invalid_query(params: list[tuple[str, str]]) -> None:
    try:
        parse_qido(params, Level.STUDY, ROOT)
    except InvalidQuery:
        pass
    except DicomWebError as err:  # pragma: no cover - would be a bug
        raise AssertionError(repr(err)) from err


# --------------------------------------------------------------------------------------------
# orderby
# --------------------------------------------------------------------------------------------


def orderby(*values: str) -> tuple[OrderKey, ...]:
    return parse_qido([("orderby", value) for value in values], Level.STUDY, ROOT).orderby


def test_orderby_default_is_empty() -> None:
    assert parse_qido([], Level.STUDY, ROOT).orderby == ()


def test_orderby_dcm4chee_syntax() -> None:
    assert orderby("-StudyDate,PatientName") == (
        OrderKey(0x00080020, "DA", descending=True),
        OrderKey(0x00100010, "PN", descending=False),
    )
    # Repeatable, hex tags in any case, spaces and empty items ignored; most significant first.
    assert orderby("00200011", " -0008103e ,", "StudyInstanceUID") == (
        OrderKey(0x00200011, "IS"),
        OrderKey(0x0008103E, "LO", descending=True),
        OrderKey(0x0020000D, "UI"),
    )
    assert orderby("") == ()
    # The name is reserved in any case; it is not a match key.
    query = parse_qido([("OrderBy", "StudyDate")], Level.STUDY, ROOT)
    assert query.terms == () and query.orderby == (OrderKey(0x00080020, "DA"),)


def test_orderby_with_terms_limit_and_offset() -> None:
    query = parse_qido(
        [("PatientID", "P1"), ("orderby", "-StudyTime"), ("limit", "5"), ("offset", "10")], Level.SERIES, ROOT
    )
    assert query.terms == (Term(0x00100020, "LO", SingleValue("P1")),)
    assert query.orderby == (OrderKey(0x00080030, "TM", descending=True),)
    assert (query.limit, query.offset) == (5, 10)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("Nope", "not a known DICOM attribute"),
        ("-studydate", "case-sensitive"),
        ("-", "not a known DICOM attribute"),
        ("--StudyDate", "not a known DICOM attribute"),
        ("StudyDate.PatientName", "not a known DICOM attribute"),
        ("00091001", "not a known DICOM attribute"),  # private
        ("RequestAttributesSequence", "(SQ) cannot be a sort key"),
        ("PixelData", "cannot be a sort key"),
        ("NumberOfStudyRelatedInstances", "computed by the server"),
        ("ModalitiesInStudy", "computed by the server"),
        ("StudyDate,-StudyDate", "more than once"),
        ("PatientName,00100010", "more than once"),
    ],
)
def test_orderby_errors_name_the_parameter(value: str, message: str) -> None:
    with pytest.raises(InvalidQuery, match="orderby") as caught:
        orderby(value)
    assert message in caught.value.message


def test_orderby_at_most_eight_keys() -> None:
    names = ["StudyDate", "StudyTime", "PatientName", "PatientID", "AccessionNumber", "StudyID", "Modality",
             "SeriesNumber", "InstanceNumber"]  # fmt: skip
    assert MAX_ORDER_KEYS == 8
    assert len(orderby(",".join(names[:8]))) == 8
    with pytest.raises(InvalidQuery, match="'orderby': more than 8 sort keys"):
        orderby(",".join(names[:5]), ",".join(names[5:]))


def test_an_empty_parameter_name_is_no_attribute() -> None:
    # pydicom's dictionary has keyword-less entries; "" must not resolve to one of them.
    with pytest.raises(InvalidQuery, match="not a known DICOM attribute"):
        parse_qido([("", "5")], Level.STUDY, ROOT)


def test_a_nul_character_in_a_value_is_rejected() -> None:
    with pytest.raises(InvalidQuery, match="PatientName.*NUL"):
        parse_qido([("PatientName", "*\x00*")], Level.STUDY, ResourceKey())
