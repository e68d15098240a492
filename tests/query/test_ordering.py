"""The shared ``orderby`` sort key (dicomweb_kit.query.ordering)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dicomweb_kit import OrderKey, sort_entities, sort_key, sort_value
from dicomweb_kit.query.qido_params import parse_qido
from dicomweb_kit.resources import Level, ResourceKey


def attrs(tag: str, vr: str, *values: Any) -> dict[str, Any]:
    element: dict[str, Any] = {"vr": vr}
    if values:
        element["Value"] = list(values)
    return {tag: element}


def key(name: str) -> OrderKey:
    (only,) = parse_qido([("orderby", name)], Level.STUDY, ResourceKey()).orderby
    return only


@pytest.mark.parametrize(
    ("name", "vr", "values", "expected"),
    [
        ("StudyDate", "DA", ["20200102 "], "20200102"),
        ("StudyDate", "DA", ["2020-01-02"], None),  # not a DA
        ("StudyTime", "TM", ["14"], "140000.000000"),
        ("StudyTime", "TM", ["101500.25"], "101500.250000"),
        ("AcquisitionDateTime", "DT", ["2020+0100"], "20200000000000.000000"),  # as matching pads; offset dropped
        ("SeriesNumber", "IS", [10], Decimal(10)),
        ("SeriesNumber", "IS", ["+007"], Decimal(7)),
        ("SeriesNumber", "IS", ["1A"], None),  # not a number
        ("SliceThickness", "DS", [2.5], Decimal("2.5")),
        ("SliceThickness", "DS", ["1e1"], Decimal(10)),
        ("PatientName", "PN", [{"Alphabetic": "Smith^John^^"}], "smith^john"),
        ("PatientName", "PN", [{"Alphabetic": "", "Ideographic": "山田^太郎"}], "山田^太郎"),
        ("PatientName", "PN", [{"Alphabetic": "^", "Phonetic": "YAMADA"}], "yamada"),
        ("PatientName", "PN", [{}], None),
        ("PatientName", "PN", ["Straße^X"], "strasse^x"),  # lenient string; casefold
        ("StudyInstanceUID", "UI", ["1.2.3 "], "1.2.3"),
        ("StudyDescription", "LO", ["  Head  "], "Head"),
        ("StudyDescription", "LO", ["   "], None),
        ("StudyDescription", "LO", [None, "second"], None),  # first value only
        ("StudyDescription", "LO", ["first", "second"], "first"),
    ],
)
def test_sort_value_per_vr(name: str, vr: str, values: list[Any], expected: Any) -> None:
    order = key(name)
    assert order.vr == vr
    assert sort_value(attrs(order.key, vr, *values), order) == expected


def test_missing_and_zero_length_have_no_value() -> None:
    order = key("StudyDate")
    assert sort_value({}, order) is None
    assert sort_value(attrs("00080020", "DA"), order) is None
    assert sort_value({"00080020": {"vr": "DA", "Value": []}}, order) is None


def _rows(tag: str, vr: str, values: list[Any]) -> list[tuple[int, dict[str, Any]]]:
    return [(n, attrs(tag, vr, value) if value is not None else {}) for n, value in enumerate(values)]


def test_numbers_sort_as_numbers_and_missing_last_both_ways() -> None:
    rows = _rows("00200011", "IS", [10, 9, None, 100, "+9", -1])
    up = sort_entities(rows, [key("SeriesNumber")], lambda row: row[1])
    assert [n for n, _ in up] == [5, 1, 4, 0, 3, 2]  # ties (9, +9) keep their order
    down = sort_entities(rows, [key("-SeriesNumber")], lambda row: row[1])
    assert [n for n, _ in down] == [3, 0, 1, 4, 5, 2]


def test_text_compares_by_code_point_and_pn_ignores_case() -> None:
    text = _rows("00081030", "LO", ["b", "B", "a", "Ä", ""])
    assert [n for n, _ in sort_entities(text, [key("StudyDescription")], lambda row: row[1])] == [1, 2, 0, 3, 4]
    names = _rows("00100010", "PN", [{"Alphabetic": "b"}, {"Alphabetic": "B"}, {"Alphabetic": "a"}])
    assert [n for n, _ in sort_entities(names, [key("PatientName")], lambda row: row[1])] == [2, 0, 1]


def test_several_keys() -> None:
    rows = [
        (0, {**attrs("00080060", "CS", "CT"), **attrs("00080020", "DA", "20200101")}),
        (1, {**attrs("00080060", "CS", "MR"), **attrs("00080020", "DA", "20210101")}),
        (2, {**attrs("00080060", "CS", "CT"), **attrs("00080020", "DA", "20220101")}),
        (3, attrs("00080020", "DA", "20230101")),
    ]
    orderby = parse_qido([("orderby", "Modality,-StudyDate")], Level.STUDY, ResourceKey()).orderby
    got = sort_entities(rows, orderby, lambda row: row[1])
    assert [n for n, _ in got] == [2, 0, 1, 3]


def test_no_orderby_keeps_the_order() -> None:
    rows = _rows("00200011", "IS", [3, 2, 1])
    assert sort_entities(rows, [], lambda row: row[1]) == rows
    assert sort_key(rows[0][1], []) == ()


_VALUES = st.one_of(st.none(), st.integers(-50, 50), st.sampled_from(["7", "+7", "1e1", "x", "0.5", "-0"]))


@given(st.lists(_VALUES, max_size=20), st.booleans())
def test_missing_values_are_always_last_and_order_is_monotonic(values: list[Any], descending: bool) -> None:
    order = OrderKey(0x00200011, "IS", descending)
    rows = _rows("00200011", "IS", values)
    ordered = sort_entities(rows, [order], lambda row: row[1])
    found = [sort_value(row[1], order) for row in ordered]
    present = [value for value in found if value is not None]
    assert found[: len(present)] == present  # every missing value after every present one
    assert present == sorted(present, reverse=descending)
    # ties keep the input order
    for a, b in zip(ordered, ordered[1:], strict=False):
        if sort_value(a[1], order) == sort_value(b[1], order):
            assert a[0] < b[0]
