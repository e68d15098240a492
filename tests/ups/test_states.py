"""The UPS state table: complete, consistent with PS3.4, every outcome mapped to PS3.18 HTTP."""

from __future__ import annotations

import pytest

from dicomweb_kit.ups.states import (
    RESPONSES,
    TABLE,
    UNREACHABLE,
    Event,
    Outcome,
    State,
    Transaction,
    outcome,
    response,
    uid_event,
)

STATES: list[State | None] = [*State, None]


def test_every_cell_is_in_the_table_but_the_unreachable_ones() -> None:
    every = {(event, state) for event in Event for state in STATES}
    assert set(TABLE) == every - UNREACHABLE
    # Unreachable: "the correct Transaction UID" of a workitem that has none.
    assert {event for event, _ in UNREACHABLE} == {Event.SET_WITH_UID, Event.TO_COMPLETED, Event.TO_CANCELED}
    assert {state for _, state in UNREACHABLE} == {State.SCHEDULED, None}


@pytest.mark.parametrize(("event", "state"), sorted(TABLE, key=str))
def test_every_cell_has_its_http_answer(event: Event, state: State | None) -> None:
    cell = outcome(event, state)
    answer = response(Transaction.of(event), cell)
    assert answer.http_status in (200, 201, 202, 400, 404, 409)
    assert cell.failed == (answer.http_status >= 400)
    if answer.http_status >= 400:
        assert answer.warning  # PS3.18 §11.x: every refusal carries a Warning text
    if state is None and event is not Event.CREATE:
        assert (cell.status, answer.http_status) == (0xC307, 404)


@pytest.mark.parametrize(
    ("event", "state", "expected"),
    [
        # PS3.4 Table CC.1.1-2 and the status tables of CC.2.x, spot by spot.
        (Event.CREATE, None, Outcome(State.SCHEDULED, 0x0000)),
        (Event.CREATE, State.COMPLETED, Outcome(None, 0x0111)),
        (Event.TO_IN_PROGRESS, State.SCHEDULED, Outcome(State.IN_PROGRESS, 0x0000)),
        (Event.TO_IN_PROGRESS, State.IN_PROGRESS, Outcome(None, 0xC302)),
        (Event.TO_IN_PROGRESS, State.CANCELED, Outcome(None, 0xC300)),
        (Event.TO_SCHEDULED, State.IN_PROGRESS, Outcome(None, 0xC303)),
        (Event.TO_COMPLETED, State.IN_PROGRESS, Outcome(State.COMPLETED, 0x0000)),
        (Event.TO_COMPLETED, State.COMPLETED, Outcome(None, 0xB306)),
        (Event.TO_COMPLETED, State.CANCELED, Outcome(None, 0xC300)),
        (Event.TO_COMPLETED_WRONG_UID, State.SCHEDULED, Outcome(None, 0xC310)),
        (Event.TO_COMPLETED_WRONG_UID, State.IN_PROGRESS, Outcome(None, 0xC301, "incorrect")),
        (Event.TO_CANCELED, State.IN_PROGRESS, Outcome(State.CANCELED, 0x0000)),
        (Event.TO_CANCELED, State.CANCELED, Outcome(None, 0xB304)),
        (Event.TO_CANCELED_WITHOUT_UID, State.IN_PROGRESS, Outcome(None, 0xC301, "missing")),
        (Event.REQUEST_CANCELLATION, State.SCHEDULED, Outcome(State.CANCELED, 0x0000)),
        (Event.REQUEST_CANCELLATION, State.IN_PROGRESS, Outcome(None, 0x0000)),
        (Event.REQUEST_CANCELLATION, State.CANCELED, Outcome(None, 0xB304)),
        (Event.REQUEST_CANCELLATION, State.COMPLETED, Outcome(None, 0xC311)),
        (Event.SET_WITHOUT_UID, State.SCHEDULED, Outcome(None, 0x0000)),
        (Event.SET_WITHOUT_UID, State.IN_PROGRESS, Outcome(None, 0xC301, "missing")),
        (Event.SET_WITH_UID, State.COMPLETED, Outcome(None, 0xC300)),
        (Event.SET_WRONG_UID, State.SCHEDULED, Outcome(None, 0xC310)),
    ],
)
def test_cells_follow_ps3_4(event: Event, state: State | None, expected: Outcome) -> None:
    assert outcome(event, state) == expected


@pytest.mark.parametrize(
    ("transaction", "cell", "status", "warning"),
    [
        (Transaction.CHANGE_STATE, Outcome(None, 0xC301, "missing"), 400, "The Transaction UID is missing."),
        (Transaction.CHANGE_STATE, Outcome(None, 0xC301, "incorrect"), 400, "The Transaction UID is incorrect."),
        (
            Transaction.CHANGE_STATE,
            Outcome(None, 0xC302),
            409,
            "The submitted request is inconsistent with the state of the UPS Instance.",
        ),
        (
            Transaction.CHANGE_STATE,
            Outcome(None, 0xB306),
            200,
            "The UPS is already in the requested state of COMPLETED.",
        ),
        (Transaction.UPDATE, Outcome(None, 0xC310), 409, "The target URI did not reference a claimed Workitem."),
        (
            Transaction.UPDATE,
            Outcome(None, 0xC300),
            400,
            "The submitted request is inconsistent with the current state of the Workitem.",
        ),
        (Transaction.REQUEST_CANCELLATION, Outcome(None, 0xC311), 409, "The UPS is already COMPLETED."),
        (Transaction.REQUEST_CANCELLATION, Outcome(None, 0x0000), 202, None),
        (Transaction.CREATE, Outcome(None, 0x0111), 409, "The Target Workitem already exists."),
    ],
)
def test_ps3_18_answers(transaction: Transaction, cell: Outcome, status: int, warning: str | None) -> None:
    answer = response(transaction, cell)
    assert (answer.http_status, answer.warning) == (status, warning)


def test_every_response_row_is_used() -> None:
    used = {(Transaction.of(event), cell.status, cell.uid) for (event, _state), cell in TABLE.items()}
    used.add((Transaction.CHANGE_STATE, 0xC304, None))  # the final-state check, outside the table
    assert used == set(RESPONSES)


def test_uid_event() -> None:
    kw = {"without": Event.SET_WITHOUT_UID, "correct": Event.SET_WITH_UID, "wrong": Event.SET_WRONG_UID}
    assert uid_event(None, "1.2", **kw) is Event.SET_WITHOUT_UID
    assert uid_event("", "1.2", **kw) is Event.SET_WITHOUT_UID
    assert uid_event("1.2", "1.2", **kw) is Event.SET_WITH_UID
    assert uid_event("1.3", "1.2", **kw) is Event.SET_WRONG_UID
    assert uid_event("1.2", None, **kw) is Event.SET_WRONG_UID
