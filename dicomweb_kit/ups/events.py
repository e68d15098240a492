"""UPS event reports (PS3.4 §CC.2.4) and their delivery to subscribers.

The workitem operations call :func:`publish` after every change they commit, whatever path made
the change (HTTP or the kit's Python API). :func:`publish` records the report in the event log
of every subscribed AE (:mod:`dicomweb_kit.ups.subscriptions`), then wakes those AEs'
notification channels through the kit's event bus (:mod:`dicomweb_kit.events`), in this
process or, with a bus that crosses processes, in any worker. The channel
(``web/ups_events.py``) sends the log in order, so an AE that reconnects gets what it missed.

The message (PS3.18 §8.10.5): a text WebSocket frame holding a DICOM JSON dataset with the
N-EVENT-REPORT attributes of PS3.7 Table 10.3-1 and the Event Information of PS3.4 Table
CC.2.4-2::

    (0000,0002) UI Affected SOP Class UID      1.2.840.10008.5.1.4.34.6.4 (UPS Event SOP Class)
    (0000,0100) US Command Field               0x0100 (N-EVENT-REPORT-RQ)
    (0000,0110) US Message ID                  the report's number in the AE's log, 1..65535 cyclic
    (0000,0800) US Command Data Set Type       0x0000 (Event Information follows; as PS3.18's example)
    (0000,1000) UI Affected SOP Instance UID   the workitem
    (0000,1002) US Event Type ID               1 State Report, 2 Cancel Requested, 3 Progress, 5 Assigned
    ...         Event Information              e.g. (0074,1000) Procedure Step State, (0040,4041) Input Readiness State
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from functools import lru_cache, partial
from typing import TYPE_CHECKING, Any, Final

import msgspec

from ..errors import DicomWebError, InvalidQuery
from ..query.matching import instance_matches
from ..query.qido_params import parse_qido
from ..query.terms import Term
from ..resources import Level, ResourceKey
from .subscriptions import Subscription

if TYPE_CHECKING:
    from ..kit import DicomWeb

__all__ = [
    "ASSIGNED",
    "CANCEL_REQUESTED",
    "PROGRESS_REPORT",
    "SCP_STATUS_CHANGE",
    "STATE_REPORT",
    "UPS_EVENT_SOP_CLASS_UID",
    "UpsEvent",
    "encode_report",
    "filter_terms",
    "publish",
    "report_for_channel",
    "state_report",
    "subscriber_topic",
]

log = logging.getLogger("dicomweb_kit.ups")

# Event Type ID (0000,1002) values of N-EVENT-REPORT for the UPS Push/Watch SOP Classes
# (PS3.4 Table CC.2.4-1).
STATE_REPORT = 1
CANCEL_REQUESTED = 2
PROGRESS_REPORT = 3
SCP_STATUS_CHANGE = 4
ASSIGNED = 5

UPS_EVENT_SOP_CLASS_UID: Final = "1.2.840.10008.5.1.4.34.6.4"  # PS3.4 §CC.3.1, PS3.6 Annex A
N_EVENT_REPORT_RQ: Final = 0x0100  # Command Field (0000,0100), PS3.7 §E.1
DATA_SET_PRESENT: Final = 0x0000  # Command Data Set Type (0000,0800): anything but 0x0101
PROCEDURE_STEP_STATE: Final = "00741000"
INPUT_READINESS_STATE: Final = "00404041"
MESSAGE_ID: Final = "00000110"


class UpsEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One event report about one workitem.

    Attributes:
        workitem_uid: the workitem's SOP Instance UID (Affected SOP Instance UID of the report).
        event_type: Event Type ID, one of the constants above.
        information: the Event Information attributes (PS3.4 Table CC.2.4-2), DICOM JSON.
        workitem: the workitem's attributes after the change, DICOM JSON: what filtered
            (global) subscriptions are matched against.
    """

    workitem_uid: str
    event_type: int
    information: dict[str, Any]
    workitem: dict[str, Any]


def state_report(workitem_uid: str, workitem: Mapping[str, Any], /) -> UpsEvent:
    """The UPS State Report of a workitem as it is now: what a subscribe sends first
    (PS3.4 Table CC.2.3-2, "initial event"; Event Information per Table CC.2.4-2)."""
    information = {key: workitem[key] for key in (INPUT_READINESS_STATE, PROCEDURE_STEP_STATE) if key in workitem}
    return UpsEvent(
        workitem_uid=workitem_uid, event_type=STATE_REPORT, information=information, workitem=dict(workitem)
    )


_encode = msgspec.json.Encoder().encode


def encode_report(event: UpsEvent, /) -> bytes:
    """The event report as DICOM JSON, without its Message ID (given when it is sent)."""
    report: dict[str, Any] = {
        "00000002": {"vr": "UI", "Value": [UPS_EVENT_SOP_CLASS_UID]},
        "00000100": {"vr": "US", "Value": [N_EVENT_REPORT_RQ]},
        "00000800": {"vr": "US", "Value": [DATA_SET_PRESENT]},
        "00001000": {"vr": "UI", "Value": [event.workitem_uid]},
        "00001002": {"vr": "US", "Value": [event.event_type]},
    }
    for key, element in event.information.items():
        if not key.upper().startswith("0000"):  # command elements are ours to set
            report[key.upper()] = element
    return _encode(dict(sorted(report.items())))


def report_for_channel(message: bytes, seq: int, /) -> str:
    """The WebSocket text frame of a logged report: its Message ID is its log number, which a
    DIMSE N-EVENT-REPORT would carry (US, 1..65535, wrapping)."""
    report: dict[str, Any] = msgspec.json.decode(message)
    report[MESSAGE_ID] = {"vr": "US", "Value": [(seq - 1) % 0xFFFF + 1]}
    return _encode(dict(sorted(report.items()))).decode()


def subscriber_topic(ae_title: str, /) -> str:
    """The event bus topic that wakes ``ae_title``'s notification channels."""
    return f"ups.subscriber.{ae_title}"


@lru_cache(maxsize=256)
def filter_terms(pairs: tuple[tuple[str, str], ...], /) -> tuple[Term, ...]:
    """The match terms of a filtered worklist subscription's keys (QIDO-RS syntax and matching,
    PS3.18 §8.3.4; raises :class:`~dicomweb_kit.errors.InvalidQuery`)."""
    for name, _value in pairs:
        if name.lower() in ("limit", "offset", "includefield", "orderby", "fuzzymatching"):
            raise InvalidQuery(f"Filter key {name!r} is a search parameter, not a match key")
    return parse_qido(list(pairs), Level.INSTANCE, ResourceKey()).terms


def _filter_matches(workitem: Mapping[str, Any], subscription: Subscription) -> bool:
    try:
        return instance_matches(filter_terms(subscription.filter), workitem)
    except InvalidQuery:  # stored by an older version with other rules: match nothing
        return False


def _final(information: Mapping[str, Any]) -> bool:
    element = information.get(PROCEDURE_STEP_STATE)
    values = element.get("Value") if isinstance(element, Mapping) else None
    return isinstance(values, list) and bool(values) and values[0] in ("COMPLETED", "CANCELED")


async def publish(kit: DicomWeb, event: UpsEvent, /) -> None:
    """Deliver ``event`` to every subscriber whose subscription covers it.

    Called after the change is committed, so a delivery failure cannot undo it: it is logged
    and not raised (the caller's change stands; the subscribers miss this report). The State
    Report of a final state (COMPLETED, CANCELED) is the workitem's last event: its subscriptions
    without a Deletion Lock are dropped after it, so they do not pile up.
    """
    message = encode_report(event)
    try:
        recipients = await kit.subscriptions.record(
            event.workitem_uid,
            message,
            matches=partial(_filter_matches, event.workitem),
            keep=kit.settings.ups_event_log_limit,
        )
        for ae_title in recipients:
            await kit.events.publish(subscriber_topic(ae_title), b"")
        if event.event_type == STATE_REPORT and _final(event.information):
            await kit.subscriptions.release(event.workitem_uid)
    except DicomWebError:
        log.exception("UPS event %d of workitem %s not delivered", event.event_type, event.workitem_uid)
