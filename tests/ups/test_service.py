"""The UPS operations through the kit's Python API: every cell of the state table, the
attribute rules, concurrent claims, and the events handed to publish()."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from dicomweb_kit_adapters.memory import MemoryBlobStore, MemoryIndex
from dicomweb_kit_adapters.sql import SqlIndex

from dicomweb_kit import DicomWeb, InvalidRequest, InvalidUid, ResourceNotFound, WorkitemRefused
from dicomweb_kit.query.qido_params import parse_qido
from dicomweb_kit.resources import Level, ResourceKey
from dicomweb_kit.testing.workitems import (
    cancellation_attributes,
    code,
    completion_attributes,
    make_workitem,
    workitem_in,
)
from dicomweb_kit.ups import events, service
from dicomweb_kit.ups.events import UpsEvent
from dicomweb_kit.ups.states import TABLE, Event, State, Transaction, outcome, response

pytestmark = pytest.mark.anyio

T = "1.2.826.0.1.1"  # the claimer's Transaction UID
OTHER = "1.2.826.0.1.2"
NEW = "1.2.826.0.1.3"


@pytest.fixture(params=["memory", "sqlite"])
async def kit(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[DicomWeb]:
    index = MemoryIndex() if request.param == "memory" else SqlIndex(f"sqlite:///{tmp_path / 'i.db'}")
    async with DicomWeb(blobs=MemoryBlobStore(), index=index) as k:
        yield k


async def run_event(kit: DicomWeb, event: Event, uid: str) -> service.Result | Any:
    """Do ``event`` to workitem ``uid`` through the service."""
    label = {"00741204": {"vr": "LO", "Value": ["renamed"]}}
    target = {"COMPLETED": "COMPLETED", "CANCELED": "CANCELED", "SCHEDULED": "SCHEDULED"}
    name = event.name
    if event is Event.CREATE:
        return await service.create(kit, make_workitem(), uid=uid)
    if event is Event.GET:
        return await service.retrieve(kit, uid)
    if event is Event.REQUEST_CANCELLATION:
        return await service.request_cancellation(kit, uid)
    uid_given = None if name.endswith("WITHOUT_UID") else OTHER if name.endswith("WRONG_UID") else T
    if name.startswith("SET_"):
        return await service.update(kit, uid, label, transaction_uid=uid_given)
    if event in (Event.TO_IN_PROGRESS, Event.TO_IN_PROGRESS_WITHOUT_UID):
        return await service.change_state(kit, uid, "IN PROGRESS", transaction_uid=uid_given and NEW)
    state = next(value for key, value in target.items() if key in name)
    return await service.change_state(kit, uid, state, transaction_uid=uid_given)


async def setup(kit: DicomWeb, state: State | None) -> str:
    if state is None:
        return "1.2.826.0.1.3680043.9.999"
    return await workitem_in(kit, str(state), transaction_uid=T)


@pytest.mark.parametrize(("event", "state"), sorted(TABLE, key=str))
async def test_every_cell(kit: DicomWeb, event: Event, state: State | None, published: list[UpsEvent]) -> None:
    uid = await setup(kit, state)
    cell = outcome(event, state)
    answer = response(Transaction.of(event), cell)
    published.clear()
    if answer.http_status == 404:
        with pytest.raises(ResourceNotFound, match=uid):
            await run_event(kit, event, uid)
        return
    if cell.failed:
        with pytest.raises(WorkitemRefused) as refused:
            await run_event(kit, event, uid)
        assert (refused.value.http_status, refused.value.status, refused.value.warning) == (
            answer.http_status,
            cell.status,
            answer.warning,
        )
        assert uid in refused.value.message and f"{cell.status:04X}" in refused.value.message
        assert published == []  # nothing changed, nothing reported
        after = await service.retrieve(kit, uid)
        assert after.state == str(state)
        return
    result = await run_event(kit, event, uid)
    if isinstance(result, service.Result):
        assert result.response == answer
    after = await service.retrieve(kit, uid)
    assert after.state == str(cell.state or state)
    if cell.state is not None:
        assert published and published[-1].event_type == events.STATE_REPORT
        assert published[-1].information["00741000"]["Value"] == [str(cell.state)]
    if cell.state is State.IN_PROGRESS:
        assert after.transaction_uid == NEW


async def test_the_transaction_uid_never_leaves(kit: DicomWeb) -> None:
    uid = await workitem_in(kit, "IN PROGRESS", transaction_uid=T)
    item = await service.retrieve(kit, uid)
    assert item.transaction_uid == T and "00081195" not in item.attributes
    page = await service.search(kit, parse_qido([], Level.INSTANCE, ResourceKey()))
    assert all("00081195" not in i.attributes for i in page.items)


async def test_concurrent_claims_exactly_one_wins(kit: DicomWeb) -> None:
    uid = await workitem_in(kit, "SCHEDULED")
    won: list[str] = []
    lost: list[WorkitemRefused] = []

    async def claim(n: int) -> None:
        try:
            await service.change_state(kit, uid, "IN PROGRESS", transaction_uid=f"1.2.3.{n}")
            won.append(f"1.2.3.{n}")
        except WorkitemRefused as refusal:
            lost.append(refusal)

    async with anyio.create_task_group() as tg:
        for n in range(6):
            tg.start_soon(claim, n)
    assert len(won) == 1 and len(lost) == 5
    assert {refusal.status for refusal in lost} == {0xC302}
    assert (await service.retrieve(kit, uid)).transaction_uid == won[0]


async def test_concurrent_complete_and_cancel_one_wins(kit: DicomWeb) -> None:
    uid = await workitem_in(kit, "IN PROGRESS", transaction_uid=T)
    outcomes: list[str] = []

    async def to(state: str) -> None:
        try:
            await service.change_state(kit, uid, state, transaction_uid=T)
            outcomes.append(state)
        except WorkitemRefused as refusal:
            outcomes.append(f"{refusal.status:04X}")

    async with anyio.create_task_group() as tg:
        tg.start_soon(to, "COMPLETED")
        tg.start_soon(to, "CANCELED")
    final = (await service.retrieve(kit, uid)).state
    assert sorted(outcomes) == sorted([final, "C300"])


async def test_create_fills_in_what_the_scp_sets(kit: DicomWeb, published: list[UpsEvent]) -> None:
    result = await service.create(kit, make_workitem(station="CT-AI-1"))
    attrs = result.workitem.attributes
    assert attrs["00080016"]["Value"] == ["1.2.840.10008.5.1.4.34.6.1"]  # UPS Push
    assert attrs["00080018"]["Value"] == [result.workitem.uid]
    assert attrs["00404010"]["Value"][0][:8].isdigit()  # Scheduled Procedure Step Modification DateTime
    assert attrs["00741202"]["Value"] == ["dicomweb-kit"]  # Worklist Label
    assert attrs["00380010"] == {"vr": "LO"}  # a missing Type 2 attribute, present and empty
    assert [e.event_type for e in published] == [events.STATE_REPORT, events.ASSIGNED]
    assert published[0].information == {
        "00404041": {"vr": "CS", "Value": ["READY"]},
        "00741000": {"vr": "CS", "Value": ["SCHEDULED"]},
    }
    assert published[1].information["00404025"]["Value"][0]["00080100"]["Value"] == ["CT-AI-1"]
    assert published[0].workitem_uid == result.workitem.uid and published[0].workitem == attrs


async def test_create_uid_sources(kit: DicomWeb) -> None:
    given = make_workitem()
    given["00080018"] = {"vr": "UI", "Value": ["1.2.3.4.5"]}
    assert (await service.create(kit, given)).workitem.uid == "1.2.3.4.5"
    assert (await service.create(kit, make_workitem(), uid="1.2.3.4.6")).workitem.uid == "1.2.3.4.6"
    with pytest.raises(InvalidRequest, match="differs"):
        await service.create(kit, given, uid="1.2.3.4.7")
    with pytest.raises(InvalidUid):
        await service.create(kit, make_workitem(), uid="1.2.x")
    generated = (await service.create(kit, make_workitem())).workitem.uid
    assert generated.startswith("1.2.826.0.1.3680043.8.498.")


async def test_update_events(kit: DicomWeb, published: list[UpsEvent]) -> None:
    uid = await workitem_in(kit, "SCHEDULED")
    published.clear()
    await service.update(kit, uid, {"00404041": {"vr": "CS", "Value": ["INCOMPLETE"]}})
    assert [e.event_type for e in published] == [events.STATE_REPORT]
    assert published[0].information["00404041"]["Value"] == ["INCOMPLETE"]
    published.clear()
    performer = {"00404009": {"vr": "SQ", "Value": [code("jd", "99LOCAL", "Jane Doe")]}}
    await service.update(kit, uid, {"00404034": {"vr": "SQ", "Value": [performer]}})
    assert [e.event_type for e in published] == [events.ASSIGNED]
    assert "00404034" in published[0].information
    await service.change_state(kit, uid, "IN PROGRESS", transaction_uid=T)
    published.clear()
    progress = {"00741004": {"vr": "DS", "Value": [50]}}  # Procedure Step Progress
    await service.update(kit, uid, {"00741002": {"vr": "SQ", "Value": [progress]}}, transaction_uid=T)
    assert [e.event_type for e in published] == [events.PROGRESS_REPORT]
    assert published[0].information == {"00741002": {"vr": "SQ", "Value": [progress]}}
    published.clear()
    await service.update(kit, uid, {"00741204": {"vr": "LO", "Value": ["x"]}}, transaction_uid=T)
    assert published == []  # nothing an event reports changed


async def test_final_state_requirements(kit: DicomWeb, published: list[UpsEvent]) -> None:
    uid = (await service.create(kit, make_workitem())).workitem.uid
    await service.change_state(kit, uid, "IN PROGRESS", transaction_uid=T)
    published.clear()
    with pytest.raises(WorkitemRefused) as refused:
        await service.change_state(kit, uid, "COMPLETED", transaction_uid=T)
    assert (refused.value.status, refused.value.http_status) == (0xC304, 409)
    assert "UnifiedProcedureStepPerformedProcedureSequence (0074,1216) has no value" in refused.value.message
    with pytest.raises(WorkitemRefused) as refused:
        await service.change_state(kit, uid, "CANCELED", transaction_uid=T)
    assert refused.value.status == 0xC304
    assert "ProcedureStepDiscontinuationReasonCodeSequence (0074,100E) has no value" in refused.value.message
    assert published == [] and (await service.retrieve(kit, uid)).state == "IN PROGRESS"
    await service.update(kit, uid, cancellation_attributes(), transaction_uid=T)
    result = await service.change_state(kit, uid, "CANCELED", transaction_uid=T)
    progress = result.workitem.attributes["00741002"]["Value"][0]
    assert progress["00404052"]["Value"][0][:8].isdigit()  # the SCP recorded when
    assert completion_attributes()  # (used by workitem_in for COMPLETED)


async def test_request_cancellation_of_a_scheduled_workitem(kit: DicomWeb, published: list[UpsEvent]) -> None:
    uid = await workitem_in(kit, "SCHEDULED")
    published.clear()
    reason = {
        "00741238": {"vr": "LT", "Value": ["patient left"]},
        "0074100C": {"vr": "PN", "Value": [{"Alphabetic": "Doe"}]},
    }
    result = await service.request_cancellation(kit, uid, reason)
    assert result.response.http_status == 202 and result.workitem.state == "CANCELED"
    assert [(e.event_type, e.information.get("00741000")) for e in published] == [
        (events.CANCEL_REQUESTED, None),
        (events.STATE_REPORT, {"vr": "CS", "Value": ["IN PROGRESS"]}),
        (events.STATE_REPORT, {"vr": "CS", "Value": ["CANCELED"]}),
    ]
    assert published[0].information == reason
    progress = result.workitem.attributes["00741002"]["Value"][0]
    assert progress["00741238"]["Value"] == ["patient left"]
    assert progress["0074100E"]["Value"][0]["00080100"]["Value"] == ["110513"]  # unspecified reason


async def test_request_cancellation_of_an_in_progress_workitem_is_reported(
    kit: DicomWeb, published: list[UpsEvent]
) -> None:
    uid = await workitem_in(kit, "IN PROGRESS", transaction_uid=T)
    published.clear()
    result = await service.request_cancellation(kit, uid)
    assert result.response.http_status == 202 and result.workitem.state == "IN PROGRESS"
    assert [e.event_type for e in published] == [events.CANCEL_REQUESTED]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"00741000": {"vr": "CS", "Value": ["COMPLETED"]}}, "ProcedureStepState (0074,1000) may not be set"),
        ({"00081195": {"vr": "UI", "Value": ["1.2"]}}, "TransactionUID (0008,1195) may not be set"),
        ({"00080018": {"vr": "UI", "Value": ["1.2"]}}, "SOPInstanceUID (0008,0018) may not be set"),
        ({"00741200": {"vr": "CS"}}, "ScheduledProcedureStepPriority (0074,1200) is Type 1"),
        ({"00741200": {"vr": "CS", "Value": ["URGENT"]}}, "'URGENT', not one of HIGH, LOW, MEDIUM"),
        ({"00404005": {"vr": "DT", "Value": ["yesterday"]}}, "not a valid DT"),
        ({"0074": {"vr": "CS"}}, "not an attribute tag"),
        ({"00741200": "HIGH"}, "not an object with a two-letter"),
    ],
)
async def test_bad_updates(kit: DicomWeb, changes: dict[str, Any], message: str) -> None:
    uid = await workitem_in(kit, "SCHEDULED")
    with pytest.raises(InvalidRequest, match=message.replace("(", r"\(").replace(")", r"\)")):
        await service.update(kit, uid, changes)


async def test_an_update_may_repeat_identity(kit: DicomWeb) -> None:
    uid = await workitem_in(kit, "SCHEDULED")
    item = await service.retrieve(kit, uid)
    changed = dict(item.attributes)
    changed["00741204"] = {"vr": "LO", "Value": ["new label"]}
    result = await service.update(kit, uid, changed)  # SOP Instance UID, state: unchanged values
    assert result.workitem.attributes["00741204"]["Value"] == ["new label"]


async def test_bad_state_name(kit: DicomWeb) -> None:
    uid = await workitem_in(kit, "SCHEDULED")
    with pytest.raises(InvalidRequest, match="'DONE' is not one of SCHEDULED, IN PROGRESS, CANCELED, COMPLETED"):
        await service.change_state(kit, uid, "DONE", transaction_uid=T)
    with pytest.raises(InvalidUid, match="Transaction UID"):
        await service.change_state(kit, uid, "IN PROGRESS", transaction_uid="not-a-uid")
