"""UPS event reports: the message form (PS3.18 §8.10.5, PS3.7 Table 10.3-1, PS3.4 Table CC.2.4-2)
and delivery to the subscribers whose subscriptions match (per workitem, worklist, filtered
worklist, PS3.4 Table CC.2.3-2), for changes made through the kit's Python API, on both adapters."""

from __future__ import annotations

import logging
from typing import Any

import msgspec
import pytest

from dicomweb_kit import (
    FILTERED_WORKLIST_UID,
    WORKLIST_UID,
    DicomWeb,
    InvalidQuery,
    InvalidRequest,
    MemorySubscriptionStore,
    ResourceNotFound,
    StorageUnavailable,
    Subscription,
)
from dicomweb_kit.testing.workitems import cancellation_attributes, completion_attributes, make_workitem
from dicomweb_kit.ups import service, subscribing
from dicomweb_kit.ups.events import (
    ASSIGNED,
    CANCEL_REQUESTED,
    STATE_REPORT,
    UpsEvent,
    encode_report,
    publish,
    report_for_channel,
    state_report,
)
from dicomweb_kit.ups.workitem_lookup import workitem_lookup

pytestmark = pytest.mark.anyio

STATION = "00404025"


def _station(name: str) -> dict[str, Any]:
    return {
        STATION: {
            "vr": "SQ",
            "Value": [
                {
                    "00080100": {"vr": "SH", "Value": [name]},
                    "00080102": {"vr": "SH", "Value": ["99LOCAL"]},
                    "00080104": {"vr": "LO", "Value": [name]},
                }
            ],
        }
    }


async def _reports(kit: DicomWeb, ae: str) -> list[dict[str, Any]]:
    """The AE's queued reports as its channel would send them, and mark them sent."""
    entries = await kit.subscriptions.read(ae, after=await kit.subscriptions.cursor(ae), limit=1000)
    if entries:
        await kit.subscriptions.acknowledge(ae, entries[-1].seq)
    return [msgspec.json.decode(report_for_channel(e.message, e.seq)) for e in entries]


def _summary(report: dict[str, Any]) -> tuple[str, int, str | None]:
    state = report.get("00741000", {}).get("Value", [None])[0]
    return report["00001000"]["Value"][0], report["00001002"]["Value"][0], state


async def _subscribe(kit: DicomWeb, target: str, ae: str, **kw: Any) -> None:
    await subscribing.subscribe(kit, target, ae, **kw)


# --------------------------------------------------------------------------------------------
# The message
# --------------------------------------------------------------------------------------------


def test_the_event_report_message() -> None:
    event = UpsEvent(
        workitem_uid="1.2.3",
        event_type=STATE_REPORT,
        information={
            "00741000": {"vr": "CS", "Value": ["IN PROGRESS"]},
            "00404041": {"vr": "CS", "Value": ["READY"]},
            "00000110": {"vr": "US", "Value": [99]},  # command elements are the channel's, not the caller's
        },
        workitem={},
    )
    frame = report_for_channel(encode_report(event), 7)
    assert msgspec.json.decode(frame) == {
        "00000002": {"vr": "UI", "Value": ["1.2.840.10008.5.1.4.34.6.4"]},  # UPS Event SOP Class
        "00000100": {"vr": "US", "Value": [0x0100]},  # N-EVENT-REPORT-RQ
        "00000110": {"vr": "US", "Value": [7]},  # Message ID: the report's number in the AE's log
        "00000800": {"vr": "US", "Value": [0]},  # a data set (the Event Information) follows
        "00001000": {"vr": "UI", "Value": ["1.2.3"]},  # Affected SOP Instance UID
        "00001002": {"vr": "US", "Value": [1]},  # Event Type ID: UPS State Report
        "00404041": {"vr": "CS", "Value": ["READY"]},
        "00741000": {"vr": "CS", "Value": ["IN PROGRESS"]},
    }
    keys = list(msgspec.json.decode(frame))
    assert keys == sorted(keys)  # tag order


@pytest.mark.parametrize(("seq", "message_id"), [(1, 1), (65535, 65535), (65536, 1), (65537, 2)])
def test_message_id_stays_in_range(seq: int, message_id: int) -> None:
    event = UpsEvent(workitem_uid="1.2.3", event_type=STATE_REPORT, information={}, workitem={})
    assert msgspec.json.decode(report_for_channel(encode_report(event), seq))["00000110"]["Value"] == [message_id]


def test_state_report_of_a_workitem() -> None:
    item = make_workitem()
    event = state_report("1.2.3", item)
    assert event.event_type == STATE_REPORT
    assert event.information == {"00404041": item["00404041"], "00741000": item["00741000"]}


# --------------------------------------------------------------------------------------------
# Delivery through the Python API
# --------------------------------------------------------------------------------------------


async def test_a_workflow_reaches_every_matching_subscriber(kit: DicomWeb) -> None:
    await _subscribe(kit, WORKLIST_UID, "WATCHER")
    await _subscribe(kit, FILTERED_WORKLIST_UID, "CT", filter=[("ScheduledStationNameCodeSequence.CodeValue", "CT1")])
    await _subscribe(kit, FILTERED_WORKLIST_UID, "MR", filter=[("ScheduledStationNameCodeSequence.CodeValue", "MR1")])
    assert await _reports(kit, "WATCHER") == []  # nothing exists yet: no initial reports

    ct = (await service.create(kit, make_workitem(**_station("CT1")))).workitem
    plain = (await service.create(kit, make_workitem())).workitem
    # PS3.4 §CC.2.4.3: created SCHEDULED, and Assigned when created with a station.
    assert [_summary(r) for r in await _reports(kit, "WATCHER")] == [
        (ct.uid, STATE_REPORT, "SCHEDULED"),
        (ct.uid, ASSIGNED, None),
        (plain.uid, STATE_REPORT, "SCHEDULED"),
    ]
    ct_reports = await _reports(kit, "CT")
    assert [_summary(r) for r in ct_reports] == [(ct.uid, STATE_REPORT, "SCHEDULED"), (ct.uid, ASSIGNED, None)]
    assert ct_reports[1][STATION] == _station("CT1")[STATION]  # Assigned carries the station
    assert ct_reports[0]["00404041"] == {"vr": "CS", "Value": ["READY"]}
    assert await _reports(kit, "MR") == []

    await _subscribe(kit, ct.uid, "ONE", deletion_lock=True)
    assert [_summary(r) for r in await _reports(kit, "ONE")] == [(ct.uid, STATE_REPORT, "SCHEDULED")]  # initial
    assert await kit.subscriptions.deletion_locked(ct.uid)

    transaction = "1.2.3.999"
    await service.change_state(kit, ct.uid, "IN PROGRESS", transaction_uid=transaction)
    await service.update(kit, ct.uid, completion_attributes(), transaction_uid=transaction)
    await service.change_state(kit, ct.uid, "COMPLETED", transaction_uid=transaction)
    expected = [(ct.uid, STATE_REPORT, "IN PROGRESS"), (ct.uid, STATE_REPORT, "COMPLETED")]
    for ae in ("WATCHER", "CT", "ONE"):
        reports = await _reports(kit, ae)
        assert [_summary(r) for r in reports] == expected, ae
        assert all(transaction not in msgspec.json.encode(r).decode() for r in reports)  # never the lock
    assert await _reports(kit, "MR") == []
    # COMPLETED was its last event: only the subscription with a Deletion Lock stays.
    assert [(s.ae_title, s.deletion_lock) for s in await kit.subscriptions.subscriptions() if s.target == ct.uid] == [
        ("ONE", True)
    ]

    await service.request_cancellation(kit, plain.uid)
    assert [_summary(r) for r in await _reports(kit, "WATCHER")] == [
        (plain.uid, CANCEL_REQUESTED, None),
        (plain.uid, STATE_REPORT, "IN PROGRESS"),  # PS3.4 §CC.2.2.3: through IN PROGRESS
        (plain.uid, STATE_REPORT, "CANCELED"),
    ]
    assert await _reports(kit, "ONE") == []


async def test_a_worklist_subscription_starts_with_the_active_workitems(kit: DicomWeb) -> None:
    scheduled = (await service.create(kit, make_workitem(label="a"))).workitem
    running = (await service.create(kit, make_workitem(label="b"))).workitem
    done = (await service.create(kit, make_workitem(label="c"))).workitem
    await service.change_state(kit, running.uid, "IN PROGRESS", transaction_uid="1.2.3.1")
    await service.change_state(kit, done.uid, "IN PROGRESS", transaction_uid="1.2.3.2")
    await service.update(kit, done.uid, cancellation_attributes(), transaction_uid="1.2.3.2")
    await service.change_state(kit, done.uid, "CANCELED", transaction_uid="1.2.3.2")

    await _subscribe(kit, WORKLIST_UID, "LATE")
    # PS3.4 Table CC.2.3-2: an initial State Report per workitem; final ones never change again.
    assert sorted(_summary(r) for r in await _reports(kit, "LATE")) == sorted(
        [(scheduled.uid, STATE_REPORT, "SCHEDULED"), (running.uid, STATE_REPORT, "IN PROGRESS")]
    )
    targets = {s.target: s.origin for s in await kit.subscriptions.subscriptions("LATE")}
    assert targets == {WORKLIST_UID: "workitem", scheduled.uid: "worklist", running.uid: "worklist"}

    await _subscribe(kit, FILTERED_WORKLIST_UID, "LABEL", filter=[("ProcedureStepLabel", "b")])
    assert [_summary(r) for r in await _reports(kit, "LABEL")] == [(running.uid, STATE_REPORT, "IN PROGRESS")]

    # A workitem subscription to a final workitem is allowed: its initial report says so.
    await _subscribe(kit, done.uid, "AUDIT")
    assert [_summary(r) for r in await _reports(kit, "AUDIT")] == [(done.uid, STATE_REPORT, "CANCELED")]


async def test_suspend_keeps_existing_workitems_and_stops_new_ones(kit: DicomWeb) -> None:
    first = (await service.create(kit, make_workitem())).workitem
    await _subscribe(kit, WORKLIST_UID, "SUSP")
    await _reports(kit, "SUSP")
    await subscribing.suspend(kit, WORKLIST_UID, "SUSP")
    second = (await service.create(kit, make_workitem())).workitem
    await service.change_state(kit, first.uid, "IN PROGRESS", transaction_uid="1.2.3.3")
    await service.change_state(kit, second.uid, "IN PROGRESS", transaction_uid="1.2.3.4")
    assert [_summary(r) for r in await _reports(kit, "SUSP")] == [(first.uid, STATE_REPORT, "IN PROGRESS")]
    # Subscribing again resumes new workitems (and sends the active ones' current state).
    await _subscribe(kit, WORKLIST_UID, "SUSP")
    third = (await service.create(kit, make_workitem())).workitem
    assert (third.uid, STATE_REPORT, "SCHEDULED") in [_summary(r) for r in await _reports(kit, "SUSP")]


async def test_unsubscribe(kit: DicomWeb) -> None:
    item = (await service.create(kit, make_workitem())).workitem
    lookup = workitem_lookup(kit)  # explicit, as a caller with its own view of the workitems may
    await _subscribe(kit, item.uid, "GONE")
    await _subscribe(kit, WORKLIST_UID, "ALL")
    await subscribing.unsubscribe(kit, item.uid, "GONE", workitems=lookup)
    await subscribing.unsubscribe(kit, item.uid, "GONE", workitems=lookup)  # again: still fine
    await subscribing.unsubscribe(kit, WORKLIST_UID, "ALL", workitems=lookup)
    await _reports(kit, "GONE")
    await _reports(kit, "ALL")
    await service.change_state(kit, item.uid, "IN PROGRESS", transaction_uid="1.2.3.5")
    await service.create(kit, make_workitem())
    assert await _reports(kit, "GONE") == []
    assert await _reports(kit, "ALL") == []
    with pytest.raises(ResourceNotFound):
        await subscribing.unsubscribe(kit, "1.2.3.404", "GONE")


async def test_bad_subscriptions(kit: DicomWeb) -> None:
    with pytest.raises(ResourceNotFound):
        await _subscribe(kit, "1.2.3.404", "AE")
    for ae in ("", "   ", "A" * 17, "BACK\\SLASH", "TAB\tAE", "ÉCHO"):
        with pytest.raises(InvalidRequest, match="AE title"):
            await _subscribe(kit, WORKLIST_UID, ae)
    with pytest.raises(InvalidRequest, match="UID"):
        await _subscribe(kit, "1.2.03", "AE")
    with pytest.raises(InvalidRequest, match="needs a filter"):
        await _subscribe(kit, FILTERED_WORKLIST_UID, "AE")
    with pytest.raises(InvalidRequest, match="Filtered Worklist"):
        await _subscribe(kit, WORKLIST_UID, "AE", filter=[("PatientID", "1")])
    with pytest.raises(InvalidQuery):
        await _subscribe(kit, FILTERED_WORKLIST_UID, "AE", filter=[("NoSuchKeyword", "1")])
    with pytest.raises(InvalidRequest, match="Suspend"):
        await subscribing.suspend(kit, "1.2.3.4", "AE")
    assert await kit.subscriptions.subscriptions() == []


def test_filter_forms() -> None:
    # PS3.18 §11.10.1.2 `filter=` (comma-separated; a comma inside a UID list stays in its value)
    # and the 2019 CreateSubscription form (bare match keys).
    assert subscribing.parse_filter([("filter", "PatientID=1,ProcedureStepLabel=a*")]) == (
        ("PatientID", "1"),
        ("ProcedureStepLabel", "a*"),
    )
    assert subscribing.parse_filter([("filter", "SOPInstanceUID=1.2.3,1.2.4,PatientID=7")]) == (
        ("SOPInstanceUID", "1.2.3,1.2.4"),
        ("PatientID", "7"),
    )
    assert subscribing.parse_filter([("deletionlock", "true"), ("PatientID", "1")]) == (("PatientID", "1"),)
    with pytest.raises(InvalidRequest, match="filter"):
        subscribing.parse_filter([("filter", "garbage")])
    with pytest.raises(InvalidQuery):
        subscribing.parse_filter([("filter", "limit=3")])


async def test_a_failing_store_does_not_fail_the_change(kit: DicomWeb, caplog: pytest.LogCaptureFixture) -> None:
    class Broken(MemorySubscriptionStore):
        async def record(self, *args: Any, **kw: Any) -> list[str]:
            raise StorageUnavailable("the subscription store is down")

    kit.subscriptions = Broken()
    await kit.subscriptions.subscribe(Subscription(ae_title="X", target=WORKLIST_UID))
    with caplog.at_level(logging.ERROR, logger="dicomweb_kit.ups"):
        event = UpsEvent(workitem_uid="1.2.3", event_type=STATE_REPORT, information={}, workitem={})
        await publish(kit, event)  # logged, not raised: the workitem change is committed already
    assert "not delivered" in caplog.text


async def test_a_change_during_subscribe_ends_on_the_newest_state(kit: DicomWeb) -> None:
    """The workitem changes between the read for the initial report and its queueing: the
    newer state is reported after it (the change's own report may have gone first)."""
    seen = [make_workitem(), make_workitem()]
    running = make_workitem()
    running["00741000"] = {"vr": "CS", "Value": ["IN PROGRESS"]}

    class Changing:
        async def get(self, _uid: str, /) -> dict[str, Any] | None:
            return seen.pop(0) if seen else running

        def active(self) -> Any:
            raise AssertionError("not a worklist subscription")

    await subscribing.subscribe(kit, "1.2.3.5", "RACE", workitems=Changing())
    assert [_summary(r)[2] for r in await _reports(kit, "RACE")] == ["SCHEDULED", "IN PROGRESS"]
