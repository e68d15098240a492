"""UPS event reports (PS3.4 §CC.2.4) and their hand-off to delivery.

The workitem operations call :func:`publish` after every change they commit, whatever path made
the change (HTTP or the kit's Python API); delivery to subscribers (filtering, persistence,
WebSocket channels, fan-out across workers) lives behind it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

if TYPE_CHECKING:
    from ..kit import DicomWeb

__all__ = [
    "ASSIGNED",
    "CANCEL_REQUESTED",
    "PROGRESS_REPORT",
    "SCP_STATUS_CHANGE",
    "STATE_REPORT",
    "UpsEvent",
    "publish",
]

# Event Type ID (0000,1002) values of N-EVENT-REPORT for the UPS Push/Watch SOP Classes
# (PS3.4 Table CC.2.4-1).
STATE_REPORT = 1
CANCEL_REQUESTED = 2
PROGRESS_REPORT = 3
SCP_STATUS_CHANGE = 4
ASSIGNED = 5


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


async def publish(kit: DicomWeb, event: UpsEvent, /) -> None:
    """Hand ``event`` to delivery. Placeholder until delivery lands: events are dropped."""
    del kit, event
