"""The UPS state machine as one table, and what each outcome is over HTTP.

:data:`TABLE` is PS3.4 Table CC.1.1-2 (State Transition Table) with the statuses of PS3.4
Tables CC.2.1-2 (N-ACTION Change State), CC.2.2-2 (N-ACTION Request Cancellation), CC.2.6-1
(N-SET) and CC.2.5-1 (N-CREATE): ``(event, current state) -> (new state or None, status)``.
The current state ``None`` is "no such workitem". An event says whether a Transaction UID came
with the request and whether it is the workitem's own (:func:`uid_event`); the lock UID of an IN
PROGRESS workitem is the one recorded when it was claimed (PS3.4 §CC.2.1.3).

:data:`RESPONSES` maps each status to the HTTP status and Warning text of the UPS-RS
transaction it answers (PS3.18 §11.4.3 Create, §11.5.3 Retrieve, §11.6.3 Update, §11.7.3
Change State, §11.8.3 Request Cancellation).

Cells PS3.4 leaves to us (documented choices):

* Request Cancellation of a SCHEDULED workitem cancels it at once: PS3.4 §CC.2.2.3 has the SCP
  move it to IN PROGRESS and then CANCELED itself (two State Reports).
* Request Cancellation of an IN PROGRESS workitem is acknowledged (0000, 202) and only reported
  (UPS Cancel Requested): the performer decides. C312/C313 ("cannot be contacted", "chooses not
  to cancel") are the performer's to send; this SCP never performs workitems itself.
* N-SET of a SCHEDULED workitem needs no Transaction UID (PS3.18 §11.6.1: the transaction
  parameter is for a claimed workitem); one given anyway is refused with C310, "The target URI
  did not reference a claimed Workitem".
* Change State without a Transaction UID is C301 in every state (PS3.18 Table 11.7.3-1: 400,
  "The Transaction UID is missing"); to COMPLETED/CANCELED with another workitem's UID also C301.
"""

from __future__ import annotations

import enum
from typing import Final, Literal

import msgspec

__all__ = [
    "RESPONSES",
    "TABLE",
    "UNREACHABLE",
    "Event",
    "Outcome",
    "Response",
    "State",
    "Transaction",
    "UidCheck",
    "outcome",
    "response",
    "uid_event",
]


class State(enum.StrEnum):
    """Procedure Step State (0074,1000) values (PS3.4 Table CC.1.1-1)."""

    SCHEDULED = "SCHEDULED"
    IN_PROGRESS = "IN PROGRESS"
    CANCELED = "CANCELED"
    COMPLETED = "COMPLETED"


class Event(enum.StrEnum):
    """The rows of PS3.4 Table CC.1.1-2, split by what came with the request."""

    CREATE = "N-CREATE"
    SET_WITHOUT_UID = "N-SET without Transaction UID"
    SET_WITH_UID = "N-SET with the correct Transaction UID"
    SET_WRONG_UID = "N-SET with another Transaction UID"
    TO_SCHEDULED = "N-ACTION Change State to SCHEDULED"
    TO_IN_PROGRESS = "N-ACTION Change State to IN PROGRESS with a Transaction UID"
    TO_IN_PROGRESS_WITHOUT_UID = "N-ACTION Change State to IN PROGRESS without Transaction UID"
    TO_COMPLETED = "N-ACTION Change State to COMPLETED with the correct Transaction UID"
    TO_COMPLETED_WITHOUT_UID = "N-ACTION Change State to COMPLETED without Transaction UID"
    TO_COMPLETED_WRONG_UID = "N-ACTION Change State to COMPLETED with another Transaction UID"
    TO_CANCELED = "N-ACTION Change State to CANCELED with the correct Transaction UID"
    TO_CANCELED_WITHOUT_UID = "N-ACTION Change State to CANCELED without Transaction UID"
    TO_CANCELED_WRONG_UID = "N-ACTION Change State to CANCELED with another Transaction UID"
    REQUEST_CANCELLATION = "N-ACTION Request Cancellation"
    GET = "N-GET"


class Transaction(enum.StrEnum):
    """The UPS-RS transactions (PS3.18 §11.4-11.8) whose responses the statuses map to."""

    CREATE = "Create"
    RETRIEVE = "Retrieve"
    UPDATE = "Update"
    CHANGE_STATE = "Change State"
    REQUEST_CANCELLATION = "Request Cancellation"

    @classmethod
    def of(cls, event: Event, /) -> Transaction:
        """The UPS-RS transaction that carries ``event`` (the response table it answers from)."""
        if event is Event.CREATE:
            return cls.CREATE
        if event is Event.GET:
            return cls.RETRIEVE
        if event.name.startswith("SET_"):
            return cls.UPDATE
        if event is Event.REQUEST_CANCELLATION:
            return cls.REQUEST_CANCELLATION
        return cls.CHANGE_STATE


UidCheck = Literal["missing", "incorrect"] | None


class Outcome(msgspec.Struct, frozen=True):
    """One cell: the state after the event (``None``: unchanged) and the DIMSE status.

    ``uid`` tells apart the two C301 cases, which PS3.18 words differently.
    """

    state: State | None
    status: int
    uid: UidCheck = None

    @property
    def failed(self) -> bool:
        """PS3.7 Annex C: Cxxx (and 0111, a duplicate) are failures; Bxxx warnings; 0000 success."""
        return self.status >= 0xC000 or self.status == 0x0111


# DIMSE statuses (PS3.4 Tables CC.2.1-2, CC.2.2-2, CC.2.5-1, CC.2.6-1, CC.2.7-1; PS3.7 C.4).
SUCCESS: Final = 0x0000
DUPLICATE: Final = 0x0111  # Duplicate SOP Instance (PS3.7 §C.4.1: N-CREATE)
ALREADY_CANCELED: Final = 0xB304
ALREADY_COMPLETED: Final = 0xB306
NO_LONGER_UPDATABLE: Final = 0xC300
WRONG_TRANSACTION_UID: Final = 0xC301
ALREADY_IN_PROGRESS: Final = 0xC302
SCHEDULED_ONLY_BY_CREATE: Final = 0xC303
FINAL_STATE_NOT_MET: Final = 0xC304
NO_SUCH_WORKITEM: Final = 0xC307
NOT_IN_PROGRESS: Final = 0xC310
CANCEL_BUT_COMPLETED: Final = 0xC311

MEANINGS: Final[dict[int, str]] = {
    SUCCESS: "Success",
    DUPLICATE: "Failed: Duplicate SOP Instance",
    ALREADY_CANCELED: "Warning: The UPS is already in the requested state of CANCELED",
    ALREADY_COMPLETED: "Warning: The UPS is already in the requested state of COMPLETED",
    NO_LONGER_UPDATABLE: "Refused: The UPS may no longer be updated",
    WRONG_TRANSACTION_UID: "Refused: The correct Transaction UID was not provided",
    ALREADY_IN_PROGRESS: "Refused: The UPS is already IN PROGRESS",
    SCHEDULED_ONLY_BY_CREATE: "Refused: The UPS may only become SCHEDULED via N-CREATE, not N-SET or N-ACTION",
    FINAL_STATE_NOT_MET: "Refused: The UPS has not met final state requirements for the requested state change",
    NO_SUCH_WORKITEM: "Specified SOP Instance UID does not exist or is not a UPS Instance managed by this SCP",
    NOT_IN_PROGRESS: "Refused: The UPS is not yet in the IN PROGRESS state",
    CANCEL_BUT_COMPLETED: "Refused: The UPS is already COMPLETED",
}

_S, _P, _X, _C = State.SCHEDULED, State.IN_PROGRESS, State.CANCELED, State.COMPLETED
_MISSING = Outcome(None, WRONG_TRANSACTION_UID, "missing")
_INCORRECT = Outcome(None, WRONG_TRANSACTION_UID, "incorrect")
_GONE = Outcome(None, NO_SUCH_WORKITEM)
_LOCKED = Outcome(None, NO_LONGER_UPDATABLE)
_ASIS = Outcome(None, SUCCESS)


def _row(
    scheduled: Outcome, in_progress: Outcome, canceled: Outcome, completed: Outcome, absent: Outcome = _GONE
) -> dict[State | None, Outcome]:
    return {_S: scheduled, _P: in_progress, _X: canceled, _C: completed, None: absent}


_DUPLICATE = Outcome(None, DUPLICATE)
_ONLY_CREATE = Outcome(None, SCHEDULED_ONLY_BY_CREATE)


# PS3.4 Table CC.1.1-2 (columns: SCHEDULED, IN PROGRESS, CANCELED, COMPLETED, no such workitem).
# A SCHEDULED (or absent) workitem has no Transaction UID, so "with the correct Transaction UID"
# cannot happen there (any UID given is another one): those are not cells (UNREACHABLE).
_WITH_UID = (Event.SET_WITH_UID, Event.TO_COMPLETED, Event.TO_CANCELED)
UNREACHABLE: Final = frozenset((event, state) for event in _WITH_UID for state in (_S, None))
TABLE: Final[dict[tuple[Event, State | None], Outcome]] = {
    (event, state): cell
    for event, row in {
        Event.CREATE: _row(_DUPLICATE, _DUPLICATE, _DUPLICATE, _DUPLICATE, Outcome(_S, SUCCESS)),
        Event.SET_WITHOUT_UID: _row(_ASIS, _MISSING, _LOCKED, _LOCKED),
        Event.SET_WITH_UID: _row(Outcome(None, NOT_IN_PROGRESS), _ASIS, _LOCKED, _LOCKED),
        Event.SET_WRONG_UID: _row(Outcome(None, NOT_IN_PROGRESS), _INCORRECT, _LOCKED, _LOCKED),
        Event.TO_SCHEDULED: _row(_ONLY_CREATE, _ONLY_CREATE, _ONLY_CREATE, _ONLY_CREATE),
        Event.TO_IN_PROGRESS: _row(
            Outcome(_P, SUCCESS), Outcome(None, ALREADY_IN_PROGRESS), _LOCKED, _LOCKED
        ),
        Event.TO_IN_PROGRESS_WITHOUT_UID: _row(_MISSING, _MISSING, _MISSING, _MISSING),
        Event.TO_COMPLETED: _row(
            Outcome(None, NOT_IN_PROGRESS), Outcome(_C, SUCCESS), _LOCKED, Outcome(None, ALREADY_COMPLETED)
        ),
        Event.TO_COMPLETED_WITHOUT_UID: _row(_MISSING, _MISSING, _MISSING, _MISSING),
        Event.TO_COMPLETED_WRONG_UID: _row(Outcome(None, NOT_IN_PROGRESS), _INCORRECT, _INCORRECT, _INCORRECT),
        Event.TO_CANCELED: _row(
            Outcome(None, NOT_IN_PROGRESS), Outcome(_X, SUCCESS), Outcome(None, ALREADY_CANCELED), _LOCKED
        ),
        Event.TO_CANCELED_WITHOUT_UID: _row(_MISSING, _MISSING, _MISSING, _MISSING),
        Event.TO_CANCELED_WRONG_UID: _row(Outcome(None, NOT_IN_PROGRESS), _INCORRECT, _INCORRECT, _INCORRECT),
        Event.REQUEST_CANCELLATION: _row(
            Outcome(_X, SUCCESS), _ASIS, Outcome(None, ALREADY_CANCELED), Outcome(None, CANCEL_BUT_COMPLETED)
        ),
        Event.GET: _row(_ASIS, _ASIS, _ASIS, _ASIS),
    }.items()
    for state, cell in row.items()
    if (event, state) not in UNREACHABLE
}


def outcome(event: Event, state: State | None, /) -> Outcome:
    """The cell of :data:`TABLE` for ``event`` in ``state`` (``None``: no such workitem)."""
    return TABLE[event, state]


def uid_event(
    given: str | None, recorded: str | None, *, without: Event, correct: Event, wrong: Event
) -> Event:
    """Which of three events a request is, from the Transaction UID it ``given`` and the one the
    workitem has ``recorded`` (PS3.4 §CC.2.1.3: only the claimer's UID unlocks a workitem)."""
    if not given:
        return without
    return correct if recorded is not None and given == recorded else wrong


# --------------------------------------------------------------------------------------------
# HTTP: PS3.18 §11.4-11.8 status code and Warning header tables
# --------------------------------------------------------------------------------------------


class Response(msgspec.Struct, frozen=True):
    """The HTTP status and (if any) the Warning text PS3.18 prescribes for one outcome."""

    http_status: int
    warning: str | None = None


_INCONSISTENT_UPDATE = "The submitted request is inconsistent with the current state of the Workitem."
_NOT_CLAIMED = "The target URI did not reference a claimed Workitem."
_INCONSISTENT_STATE = "The submitted request is inconsistent with the state of the UPS Instance."
_NOT_FOUND = Response(404, "The Target Workitem was not found.")

RESPONSES: Final[dict[tuple[Transaction, int, UidCheck], Response]] = {
    # §11.4.3: 201, or 409 "The Target Workitem already exists" (400 for the attribute checks).
    (Transaction.CREATE, SUCCESS, None): Response(201),
    (Transaction.CREATE, DUPLICATE, None): Response(409, "The Target Workitem already exists."),
    # §11.5.3
    (Transaction.RETRIEVE, SUCCESS, None): Response(200),
    (Transaction.RETRIEVE, NO_SUCH_WORKITEM, None): _NOT_FOUND,
    # §11.6.3: 400 for a COMPLETED/CANCELED workitem and a missing or incorrect Transaction UID
    # (Table 11.6.3-1), 409 for the rest; the Warning texts of Table 11.6.3-2.
    (Transaction.UPDATE, SUCCESS, None): Response(200),
    (Transaction.UPDATE, NO_LONGER_UPDATABLE, None): Response(400, _INCONSISTENT_UPDATE),
    (Transaction.UPDATE, WRONG_TRANSACTION_UID, "missing"): Response(400, _NOT_CLAIMED),
    (Transaction.UPDATE, WRONG_TRANSACTION_UID, "incorrect"): Response(400, _NOT_CLAIMED),
    (Transaction.UPDATE, NOT_IN_PROGRESS, None): Response(409, _NOT_CLAIMED),
    (Transaction.UPDATE, NO_SUCH_WORKITEM, None): _NOT_FOUND,
    # §11.7.3: Tables 11.7.3-1 (400: Transaction UID missing or incorrect; 409: inconsistent with
    # the state) and 11.7.3-2 (the Warning texts, B304/B306 included).
    (Transaction.CHANGE_STATE, SUCCESS, None): Response(200),
    (Transaction.CHANGE_STATE, ALREADY_CANCELED, None): Response(
        200, "The UPS is already in the requested state of CANCELED."
    ),
    (Transaction.CHANGE_STATE, ALREADY_COMPLETED, None): Response(
        200, "The UPS is already in the requested state of COMPLETED."
    ),
    (Transaction.CHANGE_STATE, WRONG_TRANSACTION_UID, "missing"): Response(400, "The Transaction UID is missing."),
    (Transaction.CHANGE_STATE, WRONG_TRANSACTION_UID, "incorrect"): Response(
        400, "The Transaction UID is incorrect."
    ),
    (Transaction.CHANGE_STATE, NO_LONGER_UPDATABLE, None): Response(409, _INCONSISTENT_STATE),
    (Transaction.CHANGE_STATE, ALREADY_IN_PROGRESS, None): Response(409, _INCONSISTENT_STATE),
    (Transaction.CHANGE_STATE, SCHEDULED_ONLY_BY_CREATE, None): Response(409, _INCONSISTENT_STATE),
    (Transaction.CHANGE_STATE, NOT_IN_PROGRESS, None): Response(409, _INCONSISTENT_STATE),
    (Transaction.CHANGE_STATE, FINAL_STATE_NOT_MET, None): Response(409, _INCONSISTENT_STATE),
    (Transaction.CHANGE_STATE, NO_SUCH_WORKITEM, None): _NOT_FOUND,
    # §11.8.3: 202 (the request is acknowledged, not necessarily honoured), Table 11.8.3-2 texts.
    (Transaction.REQUEST_CANCELLATION, SUCCESS, None): Response(202),
    (Transaction.REQUEST_CANCELLATION, ALREADY_CANCELED, None): Response(
        202, "The UPS is already in the requested state of CANCELED."
    ),
    (Transaction.REQUEST_CANCELLATION, CANCEL_BUT_COMPLETED, None): Response(409, "The UPS is already COMPLETED."),
    (Transaction.REQUEST_CANCELLATION, NO_SUCH_WORKITEM, None): _NOT_FOUND,
}


def response(transaction: Transaction, cell: Outcome, /) -> Response:
    """The HTTP status and Warning text of ``cell`` answering ``transaction``."""
    return RESPONSES[transaction, cell.status, cell.uid]
