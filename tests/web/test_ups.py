"""UPS-RS over HTTP (PS3.18 §11) on both adapters: every cell of the state table with its
status and Warning, whole workflows, XML, search, and bad input (never a 500)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from pydicom import Dataset

from dicomweb_kit import DicomWeb
from dicomweb_kit.codecs import dicom_json, dicom_xml
from dicomweb_kit.testing.workitems import cancellation_attributes, completion_attributes, make_workitem, workitem_in
from dicomweb_kit.ups import events
from dicomweb_kit.ups.events import UpsEvent
from dicomweb_kit.ups.states import TABLE, Event, State, Transaction, outcome, response

pytestmark = pytest.mark.anyio

T = "1.2.826.0.1.1"
OTHER = "1.2.826.0.1.2"
NEW = "1.2.826.0.1.3"
JSON = {"Content-Type": "application/dicom+json"}
BASE = "http://testserver/dicom-web"


def body(obj: Any) -> bytes:
    return dicom_json.encode(obj)


def state_body(state: str, transaction: str | None = None) -> bytes:
    dataset: dict[str, Any] = {"00741000": {"vr": "CS", "Value": [state]}}
    if transaction is not None:
        dataset["00081195"] = {"vr": "UI", "Value": [transaction]}
    return body(dataset)


async def send(client: httpx.AsyncClient, event: Event, uid: str) -> httpx.Response:
    name = event.name
    uid_given = None if name.endswith("WITHOUT_UID") else OTHER if name.endswith("WRONG_UID") else T
    if event is Event.CREATE:
        created = body(make_workitem())
        return await client.post(f"/workitems?AffectedSOPInstanceUID={uid}", content=created, headers=JSON)
    if event is Event.GET:
        return await client.get(f"/workitems/{uid}")
    if event is Event.REQUEST_CANCELLATION:
        return await client.post(f"/workitems/{uid}/cancelrequest")
    if name.startswith("SET_"):
        query = f"?transaction={uid_given}" if uid_given else ""
        label = {"00741204": {"vr": "LO", "Value": ["renamed"]}}
        return await client.post(f"/workitems/{uid}{query}", content=body(label), headers=JSON)
    if event in (Event.TO_IN_PROGRESS, Event.TO_IN_PROGRESS_WITHOUT_UID):
        claim = state_body("IN PROGRESS", uid_given and NEW)
        return await client.put(f"/workitems/{uid}/state", content=claim, headers=JSON)
    state = next(s for s in ("COMPLETED", "CANCELED", "SCHEDULED") if s in name)
    return await client.put(f"/workitems/{uid}/state", content=state_body(state, uid_given), headers=JSON)


@pytest.mark.parametrize(("event", "state"), sorted(TABLE, key=str))
async def test_every_cell(client: httpx.AsyncClient, kit: DicomWeb, event: Event, state: State | None) -> None:
    uid = "1.2.826.0.1.3680043.9.999" if state is None else await workitem_in(kit, str(state), transaction_uid=T)
    cell = outcome(event, state)
    answer = response(Transaction.of(event), cell)
    r = await send(client, event, uid)
    assert r.status_code == answer.http_status, r.text
    warning = r.headers.get("warning")
    if answer.warning is not None:
        assert warning == f"299 {BASE}: {answer.warning}"
    elif answer.http_status < 300:
        assert warning is None
    if cell.failed and answer.http_status != 404:
        assert f"PS3.4 status {cell.status:04X}" in r.text and uid in r.text
    after = await client.get(f"/workitems/{uid}")
    if state is not None or cell.state is not None:
        got = after.json()[0]["00741000"]["Value"][0]
        assert got == str(cell.state or state)


async def test_workflow_complete(client: httpx.AsyncClient, published: list[UpsEvent]) -> None:
    r = await client.post("/workitems", content=body([make_workitem(label="Lung AI")]), headers=JSON)
    assert r.status_code == 201, r.text
    location = r.headers["location"]
    assert location.startswith(f"{BASE}/workitems/") and r.headers["content-location"] == location
    uid = location.rsplit("/", 1)[1]
    path = f"/workitems/{uid}"

    # Claim it: the Transaction UID goes in the payload (PS3.18 §11.7.2).
    r = await client.put(path + "/state", content=state_body("IN PROGRESS", T), headers=JSON)
    assert r.status_code == 200, r.text
    # Another performer cannot claim it now.
    r = await client.put(path + "/state", content=state_body("IN PROGRESS", OTHER), headers=JSON)
    assert r.status_code == 409 and "C302" in r.text
    # Progress, with each spelling of the transaction parameter.
    for n, spelling in enumerate(("transaction", "transaction-uid", "Transaction-uid")):
        progress = {"00741002": {"vr": "SQ", "Value": [{"00741004": {"vr": "DS", "Value": [30 * (n + 1)]}}]}}
        r = await client.post(f"{path}?{spelling}={T}", content=body(progress), headers=JSON)
        assert r.status_code == 200, (spelling, r.text)
    r = await client.post(path, content=body(completion_attributes()), headers=JSON)
    assert r.status_code == 400
    assert r.headers["warning"] == f"299 {BASE}: The target URI did not reference a claimed Workitem."
    r = await client.post(f"{path}?transaction={T}", content=body(completion_attributes()), headers=JSON)
    assert r.status_code == 200
    # Complete it; again: 200 with the "already" warning.
    r = await client.put(path + "/state", content=state_body("COMPLETED", T), headers=JSON)
    assert r.status_code == 200 and "warning" not in r.headers
    r = await client.put(path + "/state", content=state_body("COMPLETED", T), headers=JSON)
    assert r.status_code == 200
    assert r.headers["warning"] == f"299 {BASE}: The UPS is already in the requested state of COMPLETED."
    item = (await client.get(path)).json()[0]
    assert item["00741000"]["Value"] == ["COMPLETED"] and "00081195" not in item
    assert item["00741002"]["Value"][0]["00741004"]["Value"] == [90]
    assert [e.event_type for e in published] == [
        events.STATE_REPORT,  # created
        events.STATE_REPORT,  # IN PROGRESS
        events.PROGRESS_REPORT,
        events.PROGRESS_REPORT,
        events.PROGRESS_REPORT,
        events.STATE_REPORT,  # COMPLETED
    ]
    assert {e.workitem_uid for e in published} == {uid}
    assert published[-1].information["00741000"]["Value"] == ["COMPLETED"]


async def test_workflow_cancel(client: httpx.AsyncClient, published: list[UpsEvent]) -> None:
    uid = "1.2.826.0.1.3680043.9.77"
    r = await client.post(f"/workitems?workitem={uid}", content=body(make_workitem()), headers=JSON)
    assert r.status_code == 201 and r.headers["location"] == f"{BASE}/workitems/{uid}"
    path = f"/workitems/{uid}"
    await client.put(path + "/state", content=state_body("IN PROGRESS", T), headers=JSON)
    published.clear()
    reason = {"00741238": {"vr": "LT", "Value": ["wrong patient"]}}
    r = await client.post(path + "/cancelrequest", content=body(reason), headers=JSON)
    assert r.status_code == 202, r.text
    assert [(e.event_type, e.information) for e in published] == [(events.CANCEL_REQUESTED, reason)]
    # The performer honours it: a reason, then CANCELED with the Transaction UID as a query parameter.
    await client.post(f"{path}?transaction={T}", content=body(cancellation_attributes()), headers=JSON)
    r = await client.put(f"{path}/state?transaction-uid={T}", content=state_body("CANCELED"), headers=JSON)
    assert r.status_code == 200, r.text
    r = await client.post(path + "/cancelrequest")
    assert r.status_code == 202
    assert r.headers["warning"] == f"299 {BASE}: The UPS is already in the requested state of CANCELED."
    assert published[-1].information["00741000"]["Value"] == ["CANCELED"]


async def test_xml_in_and_out(client: httpx.AsyncClient) -> None:
    xml = dicom_xml.json_dict_to_xml(make_workitem(label="XML item", patient_name="Yamada^Tarou"))
    r = await client.post("/workitems", content=xml, headers={"Content-Type": "application/dicom+xml"})
    assert r.status_code == 201, r.text
    uid = r.headers["location"].rsplit("/", 1)[1]
    r = await client.get(f"/workitems/{uid}", headers={"Accept": "application/dicom+xml"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/dicom+xml")
    attrs = dicom_xml.xml_to_json_dict(r.content)
    ds = Dataset.from_json(attrs)
    assert (ds.ProcedureStepLabel, str(ds.PatientName), ds.ProcedureStepState) == (
        "XML item",
        "Yamada^Tarou",
        "SCHEDULED",
    )
    r = await client.get("/workitems", headers={"Accept": "multipart/related; type=\"application/dicom+xml\""})
    assert r.status_code == 200 and b"XML item" in r.content


async def test_search(client: httpx.AsyncClient, kit: DicomWeb) -> None:
    first = await workitem_in(kit, "SCHEDULED", label="CT lungs", priority="HIGH", patient_name="Smith^John")
    second = await workitem_in(kit, "IN PROGRESS", label="MR brain", priority="LOW", patient_name="Muller^Anna")
    third = await workitem_in(kit, "SCHEDULED", label="CT head", priority="LOW", patient_name="Smith^Jo")

    async def uids(query: str) -> list[str]:
        r = await client.get(f"/workitems{query}")
        assert r.status_code == 200, r.text
        return [item["00080018"]["Value"][0] for item in r.json()]

    assert await uids("") == [first, second, third]
    assert await uids("?ProcedureStepState=SCHEDULED") == [first, third]
    assert await uids("?ProcedureStepLabel=CT*&ScheduledProcedureStepPriority=LOW") == [third]
    assert await uids("?PatientName=smith*") == [first, third]
    assert await uids("?PatientName=muller&fuzzymatching=true") == [second]
    assert await uids("?orderby=ProcedureStepLabel") == [third, first, second]
    assert await uids("?limit=1&offset=1") == [second]
    r = await client.get("/workitems?limit=1")
    assert "Additional results can be requested" in r.headers["warning"]
    assert await uids("?ProcedureStepState=COMPLETED") == []
    r = await client.get("/workitems?includefield=all")
    assert all("00081195" not in item for item in r.json())


@pytest.mark.parametrize(
    ("method", "path", "content", "headers", "status", "text"),
    [
        ("POST", "/workitems", b"{", JSON, 400, "malformed JSON"),
        ("POST", "/workitems", b"[]", JSON, 400, "holds 0 datasets"),
        ("POST", "/workitems", b"", JSON, 400, "has no payload"),
        ("POST", "/workitems", b'"x"', JSON, 400, "not a DICOM JSON object"),
        ("POST", "/workitems", b'{"00741204": "x"}', JSON, 400, "not an object with a two-letter"),
        ("POST", "/workitems", b"{}", {"Content-Type": "text/plain"}, 415, "application/dicom+json"),
        ("POST", "/workitems", b"<x/>", {"Content-Type": "application/dicom+xml"}, 400, "NativeDicomModel"),
        ("POST", "/workitems?AffectedSOPInstanceUID=1.2.x", b"{}", JSON, 400, "not a valid UID"),
        ("POST", "/workitems", b"{}", JSON, 400, "ProcedureStepLabel (0074,1204) is required"),
        ("GET", "/workitems/1.2.3", b"", {}, 404, "Workitem 1.2.3 does not exist"),
        ("GET", "/workitems/abc", b"", {}, 400, "not a valid UID"),
        ("GET", "/workitems?Foo=1", b"", {}, 400, "'Foo' is not a known DICOM attribute"),
        ("GET", "/workitems?limit=-1", b"", {}, 400, "not a non-negative integer"),
        ("PUT", "/workitems/1.2.3/state", b"{}", JSON, 400, "no Procedure Step State"),
        ("PUT", "/workitems/1.2.3/state", state_body("DONE", T), JSON, 400, "'DONE' is not one of"),
        ("PUT", f"/workitems/1.2.3/state?transaction={OTHER}", state_body("COMPLETED", T), JSON, 400, "differs"),
        ("PUT", "/workitems/1.2.3/state", state_body("COMPLETED", T), JSON, 404, "does not exist"),
        ("POST", "/workitems/1.2.3?transaction=1.2&transaction-uid=1.3", b"{}", JSON, 400, "different values"),
        ("POST", "/workitems/1.2.3/cancelrequest", b"[1]", JSON, 400, "not a DICOM JSON object"),
        ("DELETE", "/workitems/1.2.3", b"", {}, 405, "DELETE is not allowed"),
    ],
)
async def test_bad_input(
    client: httpx.AsyncClient, method: str, path: str, content: bytes, headers: dict[str, str], status: int, text: str
) -> None:
    r = await client.request(method, path, content=content, headers=headers)
    assert r.status_code == status, r.text
    assert text in r.text


async def test_final_state_refusal_names_the_attributes(client: httpx.AsyncClient, kit: DicomWeb) -> None:
    uid = (await client.post("/workitems", content=body(make_workitem()), headers=JSON)).headers["location"]
    path = "/workitems/" + uid.rsplit("/", 1)[1]
    await client.put(path + "/state", content=state_body("IN PROGRESS", T), headers=JSON)
    r = await client.put(path + "/state", content=state_body("COMPLETED", T), headers=JSON)
    assert r.status_code == 409
    inconsistent = "The submitted request is inconsistent with the state of the UPS Instance."
    assert r.headers["warning"] == f"299 {BASE}: {inconsistent}"
    assert "C304" in r.text and "UnifiedProcedureStepPerformedProcedureSequence (0074,1216) has no value" in r.text


async def test_a_large_body_is_refused(client: httpx.AsyncClient) -> None:
    big = body({"00741204": {"vr": "LO", "Value": ["x" * (9 << 20)]}})
    r = await client.post("/workitems", content=big, headers=JSON)
    assert r.status_code == 413


@pytest.mark.parametrize("form", ["AffectedSOPInstanceUID={uid}", "workitem={uid}", "{uid}"])
async def test_create_takes_the_uid_in_every_edition_s_form(client: httpx.AsyncClient, form: str) -> None:
    uid = "1.2.826.0.1.3680043.8.498.77" + str(len(form))
    body = dicom_json.encode([make_workitem()])
    r = await client.post("/workitems?" + form.format(uid=uid), content=body, headers=JSON)
    assert r.status_code == 201, r.text
    assert r.headers["location"].endswith(f"/workitems/{uid}")
    assert (await client.get(f"/workitems/{uid}")).status_code == 200
