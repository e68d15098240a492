"""Synthetic UPS workitems (DICOM JSON) that meet PS3.4 Table CC.2.5-3, for tests and demos."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..kit import DicomWeb

__all__ = ["cancellation_attributes", "code", "completion_attributes", "make_workitem", "workitem_in"]


def code(value: str, scheme: str, meaning: str) -> dict[str, Any]:
    """One Code Sequence item (PS3.3 Table 8.8-1)."""
    return {
        "00080100": {"vr": "SH", "Value": [value]},
        "00080102": {"vr": "SH", "Value": [scheme]},
        "00080104": {"vr": "LO", "Value": [meaning]},
    }


def make_workitem(
    *,
    label: str = "Lung nodule AI",
    priority: str = "MEDIUM",
    start: str = "20260101090000",
    patient_name: str = "Doe^Jane",
    patient_id: str = "P1",
    station: str | None = None,
    **extra: dict[str, Any],
) -> dict[str, Any]:
    """A workitem an N-CREATE accepts: its Type 1 and Type 2 attributes, SCHEDULED.

    ``extra`` adds or replaces elements by 8-hex-digit key.
    """
    item: dict[str, Any] = {
        "00741000": {"vr": "CS", "Value": ["SCHEDULED"]},  # Procedure Step State
        "00741200": {"vr": "CS", "Value": [priority]},  # Scheduled Procedure Step Priority
        "00741204": {"vr": "LO", "Value": [label]},  # Procedure Step Label
        "00404005": {"vr": "DT", "Value": [start]},  # Scheduled Procedure Step Start DateTime
        "00404041": {"vr": "CS", "Value": ["READY"]},  # Input Readiness State
        "00100010": {"vr": "PN", "Value": [{"Alphabetic": patient_name}]},
        "00100020": {"vr": "LO", "Value": [patient_id]},
        "00100030": {"vr": "DA"},
        "00100040": {"vr": "CS", "Value": ["F"]},
        "00404018": {"vr": "SQ", "Value": [code("CT", "DCM", "Computed Tomography")]},
        "00404025": {"vr": "SQ", "Value": [code(station, "99LOCAL", station)] if station else []},
    }
    item.update(extra)
    return item


def completion_attributes() -> dict[str, Any]:
    """What an Update must set before COMPLETED (Final State P: Unified Procedure Step
    Performed Procedure Sequence and its content)."""
    performed = {
        "00404028": {"vr": "SQ", "Value": [code("AI1", "99LOCAL", "AI node 1")]},
        "00404050": {"vr": "DT", "Value": ["20260101091000"]},
        "00404019": {"vr": "SQ", "Value": [code("CT", "DCM", "Computed Tomography")]},
        "00404051": {"vr": "DT", "Value": ["20260101092000"]},
        "00404033": {"vr": "SQ", "Value": [{"0020000D": {"vr": "UI", "Value": ["1.2.3.4"]}}]},
    }
    return {"00741216": {"vr": "SQ", "Value": [performed]}}


def cancellation_attributes() -> dict[str, Any]:
    """What an Update must set before CANCELED (Final State X: a discontinuation reason)."""
    progress = {"0074100E": {"vr": "SQ", "Value": [code("110514", "DCM", "Incorrect worklist entry selected")]}}
    return {"00741002": {"vr": "SQ", "Value": [progress]}}


async def workitem_in(kit: DicomWeb, state: str, /, *, transaction_uid: str = "1.2.826.0.1.1", **kw: Any) -> str:
    """Create a workitem and bring it to ``state`` through the service (claimed with
    ``transaction_uid`` unless SCHEDULED); an IN PROGRESS one already holds the attributes
    COMPLETED and CANCELED require. Returns its UID; ``kw`` go to :func:`make_workitem`."""
    from ..ups import service

    uid = (await service.create(kit, make_workitem(**kw))).workitem.uid
    if state == "SCHEDULED":
        return uid
    await service.change_state(kit, uid, "IN PROGRESS", transaction_uid=transaction_uid)
    final = {**completion_attributes(), **cancellation_attributes()}
    await service.update(kit, uid, final, transaction_uid=transaction_uid)
    if state != "IN PROGRESS":
        await service.change_state(kit, uid, state, transaction_uid=transaction_uid)
    return uid
