"""The UPS-RS operations as the kit's Python API (PS3.18 §11, semantics of PS3.4 Annex CC).

Each operation reads the workitem, looks its event up in the state table
(:mod:`dicomweb_kit.ups.states`), checks the attribute rules (:mod:`dicomweb_kit.ups.requirements`)
and writes with a compare-and-set on the workitem's version; when another writer got there
first it starts over from the new version, so of two concurrent claims exactly one wins and
the other gets the table's answer for the new state (C302). After every committed change it
hands the event reports of PS3.4 §CC.2.4.3 to :func:`dicomweb_kit.ups.events.publish`.

Refusals raise :class:`~dicomweb_kit.errors.WorkitemRefused` (400 or 409, with the DIMSE
status and the PS3.18 Warning text) or :class:`~dicomweb_kit.errors.ResourceNotFound` (404).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

import msgspec
from pydicom.uid import generate_uid

from ..errors import InvalidRequest, StorageUnavailable, WorkitemConflict, WorkitemInvalid, WorkitemNotFound
from ..query.terms import Query
from ..resources import validate_uid
from . import events, requirements
from .events import UpsEvent
from .requirements import (
    CANCELLATION_DATETIME,
    DISCONTINUATION_REASONS,
    HUMAN_PERFORMERS,
    INPUT_READINESS,
    MODIFICATION_DATETIME,
    PROGRESS_SEQUENCE,
    REASON_FOR_CANCELLATION,
    SOP_CLASS_UID,
    SOP_INSTANCE_UID,
    STATE,
    STATION_NAMES,
    UPS_PUSH_SOP_CLASS,
    WORKLIST_LABEL,
)
from .states import (
    FINAL_STATE_NOT_MET,
    MEANINGS,
    Event,
    Outcome,
    Response,
    State,
    Transaction,
    outcome,
    response,
    uid_event,
)
from .store import Workitem, WorkitemPage, WorkitemStore

if TYPE_CHECKING:
    from ..kit import DicomWeb

__all__ = [
    "DEFAULT_WORKLIST_LABEL",
    "Result",
    "change_state",
    "create",
    "request_cancellation",
    "retrieve",
    "search",
    "update",
]

DEFAULT_WORKLIST_LABEL: Final = "dicomweb-kit"  # PS3.4 Table CC.2.5-3: the SCP's own when none is given
_ATTEMPTS: Final = 50
# PS3.16 CID 9300: what the SCP records when it cancels a SCHEDULED workitem without a reason.
_UNSPECIFIED_REASON: Final = {
    "00080100": {"vr": "SH", "Value": ["110513"]},
    "00080102": {"vr": "SH", "Value": ["DCM"]},
    "00080104": {"vr": "LO", "Value": ["Discontinued for unspecified reason"]},
}
# Event Information of UPS Cancel Requested (PS3.4 Table CC.2.4-2): what a request may carry.
_CANCEL_INFORMATION: Final = (
    0x00741236,  # Requesting AE
    REASON_FOR_CANCELLATION,
    DISCONTINUATION_REASONS,
    0x0074100A,  # Contact URI
    0x0074100C,  # Contact Display Name
)


class Result(msgspec.Struct, frozen=True):
    """A workitem after an operation, and the HTTP status and Warning text PS3.18 gives it."""

    workitem: Workitem
    response: Response


def _key(tag: int) -> str:
    return f"{tag:08X}"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y%m%d%H%M%S.%f+0000")


def _store(kit: DicomWeb) -> WorkitemStore:
    return kit.workitems


def _uid(uid: str, what: str = "Workitem SOP Instance UID") -> str:
    return validate_uid(uid.strip(), name=what)


def _refuse(transaction: Transaction, cell: Outcome, uid: str, detail: str = "") -> Exception:
    answer = response(transaction, cell)
    meaning = MEANINGS[cell.status]
    if cell.uid == "missing":
        meaning = "no Transaction UID was given"
    elif cell.uid == "incorrect":
        meaning = "the Transaction UID is not the one this workitem was claimed with"
    message = f"{transaction} of workitem {uid} refused: {meaning} (PS3.4 status {cell.status:04X})"
    if detail:
        message += f": {detail}"
    if answer.http_status == 404:
        return WorkitemNotFound(f"Workitem {uid} does not exist", status=cell.status, warning=answer.warning)
    error = WorkitemInvalid if answer.http_status == 400 else WorkitemConflict
    return error(message, status=cell.status, warning=answer.warning)


def _state(item: Workitem | None) -> State | None:
    return None if item is None else State(item.state)


async def _publish(kit: DicomWeb, item: Workitem, *reports: tuple[int, dict[str, Any]]) -> None:
    for event_type, information in reports:
        await events.publish(
            kit,
            UpsEvent(
                workitem_uid=item.uid, event_type=event_type, information=information, workitem=item.attributes
            ),
        )


def _pick(attrs: Mapping[str, Any], *tags: int) -> dict[str, Any]:
    return {_key(tag): attrs[_key(tag)] for tag in tags if _key(tag) in attrs}


def _state_report(item: Workitem) -> tuple[int, dict[str, Any]]:
    # PS3.4 Table CC.2.4-2: Procedure Step State and Input Readiness State.
    return events.STATE_REPORT, _pick(item.attributes, STATE, INPUT_READINESS)


def _assigned(item: Workitem) -> tuple[int, dict[str, Any]]:
    # PS3.4 Table CC.2.4-2: Scheduled Station Name Code Sequence, Scheduled Human Performers Sequence.
    return events.ASSIGNED, _pick(item.attributes, STATION_NAMES, HUMAN_PERFORMERS)


def _is_assigned(attrs: Mapping[str, Any]) -> bool:
    return requirements.has_value(attrs, STATION_NAMES) or requirements.has_value(attrs, HUMAN_PERFORMERS)


async def _change(
    kit: DicomWeb,
    uid: str,
    transaction: Transaction,
    decide: Callable[[Workitem | None], Event],
    apply: Callable[[Workitem, Outcome], Workitem | None],
) -> tuple[Workitem, Workitem, Outcome]:
    """Read, decide, write with compare-and-set; start over if another writer changed it."""
    store = _store(kit)
    for _attempt in range(_ATTEMPTS):
        current = await store.get(uid)
        cell = outcome(decide(current), _state(current))
        if cell.failed:
            raise _refuse(transaction, cell, uid)
        assert current is not None
        changed = apply(current, cell)
        if changed is None:  # a success or warning that changes nothing
            return current, current, cell
        if await store.replace(changed, expected_version=current.version):
            return current, msgspec.structs.replace(changed, version=current.version + 1), cell
    raise StorageUnavailable(f"Workitem {uid} kept changing under {transaction}; try again")


def _with_state(item: Workitem, state: State, **changes: Any) -> Workitem:
    attributes = dict(item.attributes)
    attributes[_key(STATE)] = {"vr": "CS", "Value": [str(state)]}
    return msgspec.structs.replace(item, state=str(state), attributes=attributes, **changes)


def _cancellation_recorded(attrs: dict[str, Any], reason: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``attrs`` with the Procedure Step Progress Information Sequence item a CANCELED workitem
    needs (PS3.4 Table CC.2.5-3 Final State X): the cancellation date and time, which the SCP
    records, and the discontinuation reason (from ``reason`` if the SCP cancels it itself)."""
    attrs = dict(attrs)
    element = attrs.get(_key(PROGRESS_SEQUENCE)) or {}
    items = [dict(item) for item in element.get("Value") or []] or [{}]
    item = items[0]
    if not requirements.has_value(item, CANCELLATION_DATETIME):
        item[_key(CANCELLATION_DATETIME)] = {"vr": "DT", "Value": [_now()]}
    if reason is not None:
        for tag in (REASON_FOR_CANCELLATION, DISCONTINUATION_REASONS):
            if _key(tag) in reason and not requirements.has_value(item, tag):
                item[_key(tag)] = reason[_key(tag)]
        if not requirements.has_value(item, DISCONTINUATION_REASONS):
            item[_key(DISCONTINUATION_REASONS)] = {"vr": "SQ", "Value": [_UNSPECIFIED_REASON]}
    attrs[_key(PROGRESS_SEQUENCE)] = {"vr": "SQ", "Value": items}
    return attrs


# --------------------------------------------------------------------------------------------
# Operations
# --------------------------------------------------------------------------------------------


async def create(kit: DicomWeb, attributes: Mapping[str, Any], /, *, uid: str | None = None) -> Result:
    """Create Workitem (PS3.18 §11.4, PS3.4 §CC.2.5 N-CREATE).

    ``uid`` (the AffectedSOPInstanceUID parameter) wins; else the dataset's SOP Instance UID;
    else a new UID. The workitem is checked against the N-CREATE requirements (400 naming
    every problem), completed with what the SCP sets (SOP Class/Instance UID, Scheduled
    Procedure Step Modification DateTime, Worklist Label) and stored SCHEDULED.
    """
    attrs = requirements.check_dataset(attributes)
    in_dataset = requirements.value(attrs, SOP_INSTANCE_UID)
    if uid is not None and in_dataset is not None and str(in_dataset).strip() != uid.strip():
        raise InvalidRequest(
            f"The AffectedSOPInstanceUID {uid!r} differs from the dataset's SOPInstanceUID (0008,0018) {in_dataset!r}"
        )
    uid = _uid(uid if uid is not None else str(in_dataset) if in_dataset is not None else generate_uid())
    requirements.check_create(attrs)
    attrs[_key(SOP_CLASS_UID)] = {"vr": "UI", "Value": [UPS_PUSH_SOP_CLASS]}
    attrs[_key(SOP_INSTANCE_UID)] = {"vr": "UI", "Value": [uid]}
    attrs[_key(MODIFICATION_DATETIME)] = {"vr": "DT", "Value": [_now()]}
    if not requirements.has_value(attrs, WORKLIST_LABEL):
        attrs[_key(WORKLIST_LABEL)] = {"vr": "LO", "Value": [DEFAULT_WORKLIST_LABEL]}
    item = Workitem(uid=uid, state=str(State.SCHEDULED), attributes=dict(sorted(attrs.items())))
    if not await _store(kit).create(item):
        raise _refuse(Transaction.CREATE, outcome(Event.CREATE, State.SCHEDULED), uid)
    created = outcome(Event.CREATE, None)
    reports = [_state_report(item)]
    if _is_assigned(item.attributes):
        reports.append(_assigned(item))  # PS3.4 §CC.2.4.3: created with a performer or station
    await _publish(kit, item, *reports)
    return Result(item, response(Transaction.CREATE, created))


async def retrieve(kit: DicomWeb, uid: str, /) -> Workitem:
    """Retrieve Workitem (PS3.18 §11.5, PS3.4 §CC.2.7 N-GET); never with its Transaction UID."""
    uid = _uid(uid)
    item = await _store(kit).get(uid)
    cell = outcome(Event.GET, _state(item))
    if cell.failed or item is None:
        raise _refuse(Transaction.RETRIEVE, cell, uid)
    return item


async def search(kit: DicomWeb, query: Query, /) -> WorkitemPage:
    """Search for Workitems (PS3.18 §11.9, PS3.4 §CC.2.8 C-FIND) with a parsed QIDO-style query."""
    return await _store(kit).search(query)


async def update(
    kit: DicomWeb, uid: str, changes: Mapping[str, Any], /, *, transaction_uid: str | None = None
) -> Result:
    """Update Workitem (PS3.18 §11.6, PS3.4 §CC.2.6 N-SET).

    A SCHEDULED workitem is updated without a Transaction UID; an IN PROGRESS one only with the
    UID it was claimed with; a COMPLETED or CANCELED one never.
    """
    uid = _uid(uid)
    given = None if transaction_uid is None else _uid(transaction_uid, "Transaction UID")
    changes = requirements.check_dataset(changes, what="The update")

    def decide(current: Workitem | None) -> Event:
        recorded = None if current is None else current.transaction_uid
        return uid_event(
            given, recorded, without=Event.SET_WITHOUT_UID, correct=Event.SET_WITH_UID, wrong=Event.SET_WRONG_UID
        )

    def apply(current: Workitem, _cell: Outcome) -> Workitem:
        requirements.check_set(changes, current.attributes)
        attrs = dict(current.attributes)
        attrs.update(changes)
        attrs[_key(MODIFICATION_DATETIME)] = {"vr": "DT", "Value": [_now()]}  # the SCP keeps it
        return msgspec.structs.replace(current, attributes=dict(sorted(attrs.items())))

    before, after, cell = await _change(kit, uid, Transaction.UPDATE, decide, apply)
    reports = []
    for tag, report in (
        (INPUT_READINESS, _state_report),  # PS3.4 §CC.2.4.3: Input Readiness State changed
        (PROGRESS_SEQUENCE, lambda item: (events.PROGRESS_REPORT, _pick(item.attributes, PROGRESS_SEQUENCE))),
    ):
        if before.attributes.get(_key(tag)) != after.attributes.get(_key(tag)):
            reports.append(report(after))
    assignment = (STATION_NAMES, HUMAN_PERFORMERS)
    moved = any(before.attributes.get(_key(t)) != after.attributes.get(_key(t)) for t in assignment)
    if moved and _is_assigned(after.attributes):
        reports.append(_assigned(after))
    await _publish(kit, after, *reports)
    return Result(after, response(Transaction.UPDATE, cell))


_TO: Final[dict[State, tuple[Event, Event, Event]]] = {
    State.IN_PROGRESS: (Event.TO_IN_PROGRESS_WITHOUT_UID, Event.TO_IN_PROGRESS, Event.TO_IN_PROGRESS),
    State.COMPLETED: (Event.TO_COMPLETED_WITHOUT_UID, Event.TO_COMPLETED, Event.TO_COMPLETED_WRONG_UID),
    State.CANCELED: (Event.TO_CANCELED_WITHOUT_UID, Event.TO_CANCELED, Event.TO_CANCELED_WRONG_UID),
    State.SCHEDULED: (Event.TO_SCHEDULED, Event.TO_SCHEDULED, Event.TO_SCHEDULED),
}


async def change_state(
    kit: DicomWeb, uid: str, state: str, /, *, transaction_uid: str | None = None
) -> Result:
    """Change Workitem State (PS3.18 §11.7, PS3.4 §CC.2.1 N-ACTION Change UPS State).

    IN PROGRESS claims a SCHEDULED workitem and records ``transaction_uid`` as its lock;
    COMPLETED and CANCELED need that UID and the Final State requirements (C304 naming what is
    missing; the SCP itself records the cancellation date and time).
    """
    uid = _uid(uid)
    try:
        target = State(state.strip())
    except ValueError:
        raise InvalidRequest(
            f"Procedure Step State (0074,1000) {state!r} is not one of {', '.join(s.value for s in State)}"
        ) from None
    given = None if transaction_uid is None else _uid(transaction_uid, "Transaction UID")
    without, correct, wrong = _TO[target]

    def decide(current: Workitem | None) -> Event:
        if target is State.IN_PROGRESS:
            return without if not given else correct  # any UID claims (and locks) a SCHEDULED one
        recorded = None if current is None else current.transaction_uid
        return uid_event(given, recorded, without=without, correct=correct, wrong=wrong)

    def apply(current: Workitem, cell: Outcome) -> Workitem | None:
        if cell.state is None:
            return None
        if cell.state is State.IN_PROGRESS:
            return _with_state(current, State.IN_PROGRESS, transaction_uid=given)
        attrs = current.attributes
        if cell.state is State.CANCELED:
            attrs = _cancellation_recorded(attrs)
        changed = _with_state(msgspec.structs.replace(current, attributes=attrs), cell.state)
        problems = requirements.final_state_problems(changed.attributes, cell.state)
        if problems:
            refused = Outcome(None, FINAL_STATE_NOT_MET)
            raise _refuse(
                Transaction.CHANGE_STATE,
                refused,
                uid,
                f"to become {cell.state}, PS3.4 Table CC.2.5-3 requires: " + "; ".join(problems),
            )
        return changed

    _before, after, cell = await _change(kit, uid, Transaction.CHANGE_STATE, decide, apply)
    if cell.state is not None:
        await _publish(kit, after, _state_report(after))
    return Result(after, response(Transaction.CHANGE_STATE, cell))


async def request_cancellation(
    kit: DicomWeb, uid: str, /, reason: Mapping[str, Any] | None = None
) -> Result:
    """Request Cancellation (PS3.18 §11.8, PS3.4 §CC.2.2 N-ACTION Request UPS Cancel).

    ``reason`` may carry Reason For Cancellation, a Procedure Step Discontinuation Reason Code
    Sequence, Contact URI / Display Name: they go into the UPS Cancel Requested report. A
    SCHEDULED workitem is canceled at once (PS3.4 §CC.2.2.3: IN PROGRESS, then CANCELED, with
    the reason recorded); an IN PROGRESS one is left to its performer.
    """
    uid = _uid(uid)
    reason = requirements.check_dataset(reason or {}, what="The cancellation request")

    def apply(current: Workitem, cell: Outcome) -> Workitem | None:
        if cell.state is None:
            return None
        attrs = _cancellation_recorded(current.attributes, reason)
        return _with_state(msgspec.structs.replace(current, attributes=attrs), State.CANCELED)

    before, after, cell = await _change(
        kit, uid, Transaction.REQUEST_CANCELLATION, lambda _item: Event.REQUEST_CANCELLATION, apply
    )
    if cell.status == 0:
        information = _pick(reason, *_CANCEL_INFORMATION)
        reports: list[tuple[int, dict[str, Any]]] = [(events.CANCEL_REQUESTED, information)]
        if cell.state is State.CANCELED:
            # PS3.4 §CC.2.2.3: the SCP moves it through IN PROGRESS, so both states are reported.
            claimed = {_key(STATE): {"vr": "CS", "Value": [str(State.IN_PROGRESS)]}}
            reports.append((events.STATE_REPORT, {**_state_report(before)[1], **claimed}))
            reports.append(_state_report(after))
        await _publish(kit, after, *reports)
    return Result(after, response(Transaction.REQUEST_CANCELLATION, cell))

