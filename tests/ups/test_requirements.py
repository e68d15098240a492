"""PS3.4 Table CC.2.5-3 requirements: N-CREATE, N-SET and Final State, with messages naming attributes."""

from __future__ import annotations

from typing import Any

import pytest

from dicomweb_kit import InvalidRequest
from dicomweb_kit.testing.workitems import cancellation_attributes, completion_attributes, make_workitem
from dicomweb_kit.ups.requirements import check_create, check_dataset, check_set, final_state_problems
from dicomweb_kit.ups.states import State


@pytest.mark.parametrize(
    ("key", "keyword"),
    [
        ("00741200", "ScheduledProcedureStepPriority (0074,1200)"),
        ("00741204", "ProcedureStepLabel (0074,1204)"),
        ("00404005", "ScheduledProcedureStepStartDateTime (0040,4005)"),
        ("00404041", "InputReadinessState (0040,4041)"),
        ("00741000", "ProcedureStepState (0074,1000)"),
    ],
)
@pytest.mark.parametrize("how", ["absent", "empty"])
def test_type_1_at_creation(key: str, keyword: str, how: str) -> None:
    item = make_workitem()
    if how == "absent":
        del item[key]
    else:
        item[key] = {"vr": item[key]["vr"]}
    with pytest.raises(InvalidRequest) as err:
        check_create(item)
    assert f"{keyword} is required (Type 1) and has no value" in err.value.message
    assert "PS3.4 Table CC.2.5-3" in err.value.message


def test_every_problem_is_named_at_once() -> None:
    item = make_workitem(priority="SOON")
    item["00741000"] = {"vr": "CS", "Value": ["IN PROGRESS"]}
    item["00081195"] = {"vr": "UI", "Value": ["1.2.3"]}
    item["00080016"] = {"vr": "UI", "Value": ["1.2.840.10008.5.1.4.1.1.2"]}
    item["00404041"] = {"vr": "CS", "Value": ["MAYBE"]}
    with pytest.raises(InvalidRequest) as err:
        check_create(item)
    message = err.value.message
    for part in (
        "ProcedureStepState (0074,1000) is 'IN PROGRESS': a workitem is created SCHEDULED",
        "TransactionUID (0008,1195) must be empty at creation",
        "SOPClassUID (0008,0016) is '1.2.840.10008.5.1.4.1.1.2', not UPS Push",
        "ScheduledProcedureStepPriority (0074,1200) is 'SOON', not one of HIGH, LOW, MEDIUM",
        "InputReadinessState (0040,4041) is 'MAYBE', not one of INCOMPLETE, READY, UNAVAILABLE",
    ):
        assert part in message


def test_creation_adds_missing_type_2_empty_and_drops_an_empty_transaction_uid() -> None:
    item = make_workitem()
    item["00081195"] = {"vr": "UI"}
    del item["00100030"]
    check_create(item)
    assert "00081195" not in item
    assert item["00100030"] == {"vr": "DA"} and item["0040A370"] == {"vr": "SQ"}


def test_set_rules() -> None:
    current = make_workitem()
    current["00080018"] = {"vr": "UI", "Value": ["1.2.3"]}
    check_set({"00741204": {"vr": "LO", "Value": ["x"]}, "00080018": {"vr": "UI", "Value": ["1.2.3"]}}, current)
    with pytest.raises(InvalidRequest, match=r"SOPInstanceUID \(0008,0018\) may not be set by an Update"):
        check_set({"00080018": {"vr": "UI", "Value": ["1.2.4"]}}, current)


def test_final_state() -> None:
    item = make_workitem()
    for tag, vr, value in (
        ("00080016", "UI", "1.2.840.10008.5.1.4.34.6.1"),
        ("00080018", "UI", "1.2.3"),
        ("00404010", "DT", "20260101"),
    ):
        item[tag] = {"vr": vr, "Value": [value]}
    assert final_state_problems(item, State.COMPLETED) == [
        "UnifiedProcedureStepPerformedProcedureSequence (0074,1216) has no value"
    ]
    assert final_state_problems(item, State.CANCELED) == [
        "ProcedureStepProgressInformationSequence (0074,1002) has no value"
    ]
    completed = {**item, **completion_attributes()}
    assert final_state_problems(completed, State.COMPLETED) == []
    performed = completed["00741216"]["Value"][0]
    del performed["00404033"]
    assert final_state_problems(completed, State.COMPLETED) == [
        "UnifiedProcedureStepPerformedProcedureSequence (0074,1216) item 1: "
        "OutputInformationSequence (0040,4033) has no value"
    ]
    canceled: dict[str, Any] = {**item, **cancellation_attributes()}
    assert final_state_problems(canceled, State.CANCELED) == [
        "ProcedureStepProgressInformationSequence (0074,1002) item 1: "
        "ProcedureStepCancellationDateTime (0040,4052) has no value"
    ]
    del item["00741200"]
    assert "ScheduledProcedureStepPriority (0074,1200) has no value" in final_state_problems(item, State.CANCELED)


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ([], "is not a DICOM JSON object"),
        ({"zz": {"vr": "CS"}}, "'zz' is not an attribute tag of 8 hex digits"),
        ({"00100010": []}, r"PatientName \(0010,0010\) is not an object with a two-letter"),
        ({"00100010": {"vr": "PN", "Value": "Doe"}}, r"the \"Value\" of PatientName \(0010,0010\) is not an array"),
        ({"0040A370": {"vr": "SQ", "Value": ["x"]}}, r"ReferencedRequestSequence \(0040,A370\) item is not a DICOM"),
        ({"00100010": {"vr": "PN", "Value": [5]}}, r"'5' is not a valid PN value of PatientName"),
        ({"00100010": {"vr": "PN", "Value": [{"Alphabetic": 5}]}}, "not a valid PN value"),
        ({"00741204": {"vr": "LO", "Value": [[1]]}}, r"'\[1\]' is not a valid LO value"),
        ({"00741004": {"vr": "DS", "Value": [True]}}, "'True' is not a valid DS value"),
    ],
)
def test_dataset_shape(obj: Any, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        check_dataset(obj)


def test_dataset_keys_are_upper_cased() -> None:
    assert check_dataset({"0040a370": {"vr": "SQ", "Value": [{"0008103e": {"vr": "LO"}}]}}) == {
        "0040A370": {"vr": "SQ", "Value": [{"0008103E": {"vr": "LO"}}]}
    }
