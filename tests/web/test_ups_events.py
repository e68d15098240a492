"""UPS-RS subscriptions over HTTP (PS3.18 §11.10-11.12 statuses) and the WebSocket notification
channel (PS3.18 §8.10) with a real client (``websockets``) against a real server: events in order,
what was missed while away sent on reconnect, bad input refused; and two ``dicomweb-kit serve``
processes on one PostgreSQL database, where a change through one reaches a channel on the other.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import msgspec
import pytest
import uvicorn
from conftest import free_port, host_app
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from dicomweb_kit import FILTERED_WORKLIST_UID, WORKLIST_UID, DicomWeb, Settings
from dicomweb_kit.testing.workitems import completion_attributes, make_workitem
from dicomweb_kit.ups import service

pytestmark = pytest.mark.anyio

JSON = {"Content-Type": "application/dicom+json"}
T = "1.2.826.0.1.3680043.8.498.1"
PG_URL = os.environ.get("DICOMWEB_KIT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


@contextlib.asynccontextmanager
async def serving(kit: DicomWeb) -> AsyncIterator[tuple[str, str]]:
    """uvicorn serving ``kit`` at /dicom-web on this test's event loop: (http base, ws base)."""
    port = free_port()
    config = uvicorn.Config(host_app(kit), host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    with anyio.fail_after(20):
        while not server.started:  # noqa: ASYNC110
            await anyio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}/dicom-web", f"ws://127.0.0.1:{port}/dicom-web"
    finally:
        server.should_exit = True
        await task


@pytest.fixture
async def server(make_kit: Callable[..., DicomWeb]) -> AsyncIterator[tuple[DicomWeb, str, str]]:
    kit = make_kit(Settings(ups_channel_poll_interval=30))  # the bus must wake channels, not the poll
    async with serving(kit) as (http, ws):
        yield kit, http, ws


async def _frames(ws: ClientConnection, n: int) -> list[dict[str, Any]]:
    got = []
    with anyio.fail_after(10):
        for _ in range(n):
            frame = await ws.recv()
            assert isinstance(frame, str)  # text frames (PS3.18 §8.10.5.1.1)
            got.append(msgspec.json.decode(frame))
    return got


async def _nothing_more(ws: ClientConnection) -> None:
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(ws.recv(), 0.3)


def _summary(report: dict[str, Any]) -> tuple[str, int, str | None, int]:
    state = report.get("00741000", {}).get("Value", [None])[0]
    return report["00001000"]["Value"][0], report["00001002"]["Value"][0], state, report["00000110"]["Value"][0]


# --------------------------------------------------------------------------------------------
# HTTP statuses (both adapters, in process)
# --------------------------------------------------------------------------------------------


async def test_subscription_statuses(kit: DicomWeb, client: httpx.AsyncClient) -> None:
    item = (await service.create(kit, make_workitem())).workitem
    w = f"/workitems/{item.uid}/subscribers"
    g = f"/workitems/{WORKLIST_UID}/subscribers"
    f = f"/workitems/{FILTERED_WORKLIST_UID}/subscribers"
    cases: list[tuple[str, str, int]] = [
        ("POST", f"{w}/ONE", 201),  # PS3.18 Table 11.10.3-1
        ("POST", f"{w}/ONE?deletionlock=true", 201),
        ("POST", f"{w}/ONE/", 201),  # trailing slash, as every resource
        ("POST", f"{g}/ALL?deletionlock=false", 201),
        ("POST", f"{f}/CT?filter=ScheduledStationNameCodeSequence.CodeValue%3DCT1", 201),
        ("POST", f"{f}/CT2?ProcedureStepLabel=Lung*", 201),  # the 2019 form: bare match keys
        ("POST", f"{f}/CT?filter=NoSuchAttribute%3D1", 400),
        ("POST", f"{f}/CT", 400),  # a filtered worklist subscription needs a filter
        ("POST", f"{g}/ALL?PatientID=1", 400),  # match keys on the unfiltered worklist
        ("POST", f"{w}/ONE?deletionlock=maybe", 400),
        ("POST", f"{w}/ONE?deletionlock=true&deletionlock=false", 400),
        ("POST", f"{w}/{'A' * 17}", 400),  # AE: at most 16 characters
        ("POST", f"{w}/BAD%5CAE", 400),  # no backslash in an AE
        ("POST", f"{w}/%20%20", 400),
        ("POST", "/workitems/1.2.3.404/subscribers/ONE", 404),
        ("POST", "/workitems/1.02.3/subscribers/ONE", 400),
        ("POST", "/workitems/not-a-uid/subscribers/ONE", 400),
        ("POST", f"{g}/ALL/suspend", 200),  # PS3.18 §11.12
        ("POST", f"{f}/CT/suspend", 200),
        ("POST", f"{w}/ONE/suspend", 400),  # suspend is for worklist subscriptions
        ("DELETE", f"{w}/ONE", 200),  # PS3.18 §11.11
        ("DELETE", f"{w}/ONE", 200),  # not subscribed any more: still the state asked for
        ("DELETE", f"{g}/ALL", 200),
        ("DELETE", f"{f}/CT", 200),
        ("DELETE", "/workitems/1.2.3.404/subscribers/ONE", 404),
        ("DELETE", f"{w}/{'A' * 17}", 400),
        ("POST", f"{g}/%00AE", 400),  # control characters, non-ASCII, bad UTF-8: never a 500
        ("POST", f"{g}/%C3%89CHO", 400),
        ("POST", f"{g}/%FF", 400),
        ("POST", f"{f}/CT?filter=", 400),
        ("POST", f"{f}/CT?filter=PatientID%3D1&filter=limit%3D3", 400),
        ("POST", f"{f}/CT?StudyDate=2020-13-45", 400),
        ("GET", f"{w}/ONE", 405),
        ("PUT", f"{g}/ALL/suspend", 405),
    ]
    for method, url, status in cases:
        response = await client.request(method, url)
        assert response.status_code == status, (method, url, response.text)
        if status >= 400:
            assert response.headers["Warning"].startswith("299 ")  # PS3.18 §8.6.1.2
    subs = {(s.ae_title, s.target) for s in await kit.subscriptions.subscriptions()}
    assert subs == {("CT2", FILTERED_WORKLIST_UID), ("CT2", item.uid)}


# --------------------------------------------------------------------------------------------
# The WebSocket channel (both adapters, real server, real client)
# --------------------------------------------------------------------------------------------


async def test_events_arrive_in_order_and_missed_ones_on_reconnect(
    server: tuple[DicomWeb, str, str], caplog: pytest.LogCaptureFixture
) -> None:
    kit, http, ws_base = server
    async with httpx.AsyncClient(base_url=http) as client:
        assert (await client.post(f"/workitems/{WORKLIST_UID}/subscribers/WS_AE")).status_code == 201
    async with connect(f"{ws_base}/subscribers/WS_AE") as ws:
        first = (await service.create(kit, make_workitem(label="first"))).workitem
        await service.change_state(kit, first.uid, "IN PROGRESS", transaction_uid="1.2.3.77")
        assert [_summary(r) for r in await _frames(ws, 2)] == [
            (first.uid, 1, "SCHEDULED", 1),
            (first.uid, 1, "IN PROGRESS", 2),
        ]
        await _nothing_more(ws)
    # Away: three changes happen; they are sent, in order, when the AE connects again.
    await service.update(kit, first.uid, completion_attributes(), transaction_uid="1.2.3.77")
    await service.change_state(kit, first.uid, "COMPLETED", transaction_uid="1.2.3.77")
    second = (await service.create(kit, make_workitem(label="second"))).workitem
    await service.request_cancellation(kit, second.uid)
    async with connect(f"{ws_base}/subscribers/WS_AE") as ws:
        reports = await _frames(ws, 5)
        assert [_summary(r) for r in reports] == [
            (first.uid, 1, "COMPLETED", 3),
            (second.uid, 1, "SCHEDULED", 4),
            (second.uid, 2, None, 5),  # UPS Cancel Requested
            (second.uid, 1, "IN PROGRESS", 6),
            (second.uid, 1, "CANCELED", 7),
        ]
        assert all(r["00000002"]["Value"] == ["1.2.840.10008.5.1.4.34.6.4"] for r in reports)
        assert all(r["00000100"]["Value"] == [0x0100] for r in reports)
        await _nothing_more(ws)  # nothing twice
    assert await kit.subscriptions.read("WS_AE", after=0, limit=100) == []  # sent reports are gone
    await anyio.sleep(0.1)
    assert "Exception in ASGI application" not in caplog.text  # a client leaving is no error


async def test_subscribe_while_connected_sends_the_initial_report(server: tuple[DicomWeb, str, str]) -> None:
    kit, http, ws_base = server
    item = (await service.create(kit, make_workitem())).workitem
    async with connect(f"{ws_base}/subscribers/EARLY") as ws, httpx.AsyncClient(base_url=http) as client:
        await _nothing_more(ws)
        assert (await client.post(f"/workitems/{item.uid}/subscribers/EARLY")).status_code == 201
        [report] = await _frames(ws, 1)
        assert _summary(report) == (item.uid, 1, "SCHEDULED", 1)
        assert report["00404041"] == {"vr": "CS", "Value": ["READY"]}


async def test_a_bad_ae_title_is_refused(server: tuple[DicomWeb, str, str]) -> None:
    _kit, _http, ws_base = server
    for title in ("A" * 17, "BAD%5CAE", "%00", "%FF", "%20"):
        with pytest.raises(InvalidStatus) as refused:
            async with connect(f"{ws_base}/subscribers/{title}"):
                pass
        assert refused.value.response.status_code == 400


async def test_channels_end_when_the_server_stops(make_kit: Callable[..., DicomWeb]) -> None:
    kit = make_kit()
    async with serving(kit) as (_http, ws_base):
        ws = await connect(f"{ws_base}/subscribers/STOP")
    with anyio.fail_after(10):
        await ws.wait_closed()
    assert ws.close_code in (1001, 1012)  # going away / service restart


# --------------------------------------------------------------------------------------------
# Two server processes on one PostgreSQL database
# --------------------------------------------------------------------------------------------


async def _pg_admin(sql: str) -> None:
    from dicomweb_kit_adapters.sql.dialects import create_engine
    from sqlalchemy import text

    _kind, engine = create_engine(PG_URL, schema=None, echo=False)
    try:
        async with engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text(sql))
    finally:
        await engine.dispose()


@pytest.fixture
async def pg_database() -> AsyncIterator[str]:
    """A fresh PostgreSQL database (the CLI takes a URL, not a schema)."""
    try:
        with anyio.fail_after(10):
            await _pg_admin("SELECT 1")
    except Exception as err:
        reason = f"PostgreSQL server not reachable: {type(err).__name__}: {err}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    name = f"dwk_{uuid.uuid4().hex[:12]}"
    await _pg_admin(f'CREATE DATABASE "{name}"')
    try:
        yield PG_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        await _pg_admin(f'DROP DATABASE "{name}" WITH (FORCE)')


@contextlib.contextmanager
def serve_process(database_url: str, storage: Path) -> Iterator[str]:
    """``dicomweb-kit serve`` in its own process; yields its service URL once it answers."""
    port = free_port()
    command = [sys.executable, "-m", "dicomweb_kit.cli", "serve", "--port", str(port)]
    command += ["--database-url", database_url, "--storage", str(storage), "--log-level", "warning"]
    log = storage.with_suffix(".log")
    storage.mkdir(parents=True)
    with log.open("wb") as stderr:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr)
    url = f"http://127.0.0.1:{port}/dicom-web"
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"serve exited: {log.read_text()}")
            try:
                if httpx.get(url + "/studies", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("serve did not start")
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def test_a_change_through_one_process_reaches_a_channel_on_another(pg_database: str, tmp_path: Path) -> None:
    from dicomweb_kit_adapters.filesystem import FileBlobStore
    from dicomweb_kit_adapters.sql import PostgresEventBus, SqlIndex

    with serve_process(pg_database, tmp_path / "a") as a, serve_process(pg_database, tmp_path / "b") as b:
        ws_b = b.replace("http://", "ws://")
        async with httpx.AsyncClient(base_url=a) as client, connect(f"{ws_b}/subscribers/FANOUT") as ws:
            assert (await client.post(f"/workitems/{WORKLIST_UID}/subscribers/FANOUT")).status_code == 201
            # Created through server A, reported on server B's channel: woken by NOTIFY, not by
            # the 5 s poll of the log.
            started = time.monotonic()
            r = await client.post("/workitems", content=msgspec.json.encode([make_workitem()]), headers=JSON)
            assert r.status_code == 201, r.text
            uid = r.headers["location"].rsplit("/", 1)[1]
            [report] = await _frames(ws, 1)
            assert time.monotonic() - started < 2.5
            assert _summary(report) == (uid, 1, "SCHEDULED", 1)
            state = {"00741000": _cs("IN PROGRESS"), "00081195": {"vr": "UI", "Value": [T]}}
            r = await client.put(f"/workitems/{uid}/state", content=msgspec.json.encode(state), headers=JSON)
            assert r.status_code == 200, r.text
            [report] = await _frames(ws, 1)
            assert _summary(report) == (uid, 1, "IN PROGRESS", 2)
            # A third process changes it through the Python API of its own kit.
            kit = DicomWeb(
                blobs=FileBlobStore(tmp_path / "c"), index=SqlIndex(pg_database), events=PostgresEventBus(pg_database)
            )
            async with kit:
                await service.request_cancellation(kit, uid)
            [report] = await _frames(ws, 1)
            assert _summary(report) == (uid, 2, None, 3)  # UPS Cancel Requested
            await _nothing_more(ws)


async def test_on_sqlite_another_process_polls_the_shared_log(tmp_path: Path) -> None:
    """Without a shared bus (SQLite), a report reaches a channel of another process at its next
    poll of the event log (``ups_channel_poll_interval``, 5 s for ``serve``)."""
    database = f"sqlite:///{tmp_path / 'index.sqlite3'}"
    with serve_process(database, tmp_path / "a") as a, serve_process(database, tmp_path / "b") as b:
        ws_b = b.replace("http://", "ws://")
        async with httpx.AsyncClient(base_url=a) as client, connect(f"{ws_b}/subscribers/POLLED") as ws:
            assert (await client.post(f"/workitems/{WORKLIST_UID}/subscribers/POLLED")).status_code == 201
            r = await client.post("/workitems", content=msgspec.json.encode([make_workitem()]), headers=JSON)
            uid = r.headers["location"].rsplit("/", 1)[1]
            [report] = await _frames(ws, 1)
            assert _summary(report) == (uid, 1, "SCHEDULED", 1)


# --------------------------------------------------------------------------------------------
# A whole workflow over HTTP, watched by three subscribers over real WebSockets
# --------------------------------------------------------------------------------------------

def _report(uid: str, event_type: int, message_id: int, **information: Any) -> dict[str, Any]:
    """The exact frame PS3.18 §8.10.5 / PS3.7 Table 10.3-1 / PS3.4 Table CC.2.4-2 call for."""
    report = {
        "00000002": {"vr": "UI", "Value": ["1.2.840.10008.5.1.4.34.6.4"]},
        "00000100": {"vr": "US", "Value": [0x0100]},
        "00000110": {"vr": "US", "Value": [message_id]},
        "00000800": {"vr": "US", "Value": [0]},
        "00001000": {"vr": "UI", "Value": [uid]},
        "00001002": {"vr": "US", "Value": [event_type]},
    }
    for key, element in information.items():
        report[key.removeprefix("x")] = element
    return report


def _cs(value: str) -> dict[str, Any]:
    return {"vr": "CS", "Value": [value]}


async def test_an_http_workflow_reaches_every_subscriber(server: tuple[DicomWeb, str, str]) -> None:
    _kit, http, ws_base = server
    station = {
        "vr": "SQ",
        "Value": [
            {
                "00080100": {"vr": "SH", "Value": ["CT1"]},
                "00080102": {"vr": "SH", "Value": ["99LOCAL"]},
                "00080104": {"vr": "LO", "Value": ["CT1"]},
            }
        ],
    }
    ready = _cs("READY")
    async with contextlib.AsyncExitStack() as stack, httpx.AsyncClient(base_url=http) as client:
        watcher = await stack.enter_async_context(connect(f"{ws_base}/subscribers/WATCHER"))
        ct = await stack.enter_async_context(connect(f"{ws_base}/subscribers/CT_NODE"))
        one = await stack.enter_async_context(connect(f"{ws_base}/subscribers/ONE"))
        assert (await client.post(f"/workitems/{WORKLIST_UID}/subscribers/WATCHER")).status_code == 201
        r = await client.post(
            f"/workitems/{FILTERED_WORKLIST_UID}/subscribers/CT_NODE",
            params={"filter": "ScheduledStationNameCodeSequence.CodeValue=CT1", "deletionlock": "true"},
        )
        assert r.status_code == 201, r.text

        # Create, scheduled on station CT1: UPS State Report + UPS Assigned (PS3.4 §CC.2.4.3).
        r = await client.post("/workitems", content=msgspec.json.encode([make_workitem(station="CT1")]), headers=JSON)
        assert r.status_code == 201, r.text
        uid = r.headers["location"].rsplit("/", 1)[1]
        created = [
            _report(uid, 1, 1, x00404041=ready, x00741000=_cs("SCHEDULED")),
            _report(uid, 5, 2, x00404025=station),
        ]
        assert await _frames(watcher, 2) == created
        assert await _frames(ct, 2) == created
        # A workitem subscription starts with the workitem's current state.
        assert (await client.post(f"/workitems/{uid}/subscribers/ONE")).status_code == 201
        assert await _frames(one, 1) == [_report(uid, 1, 1, x00404041=ready, x00741000=_cs("SCHEDULED"))]

        # Claim, report progress, complete.
        state = {"00741000": _cs("IN PROGRESS"), "00081195": {"vr": "UI", "Value": [T]}}
        r = await client.put(f"/workitems/{uid}/state", content=msgspec.json.encode(state), headers=JSON)
        assert r.status_code == 200, r.text
        progress = {"vr": "SQ", "Value": [{"00741004": {"vr": "DS", "Value": [50]}}]}
        r = await client.post(
            f"/workitems/{uid}?transaction={T}", content=msgspec.json.encode({"00741002": progress}), headers=JSON
        )
        assert r.status_code == 200, r.text
        r = await client.post(
            f"/workitems/{uid}?transaction={T}", content=msgspec.json.encode(completion_attributes()), headers=JSON
        )
        assert r.status_code == 200, r.text
        state["00741000"] = _cs("COMPLETED")
        r = await client.put(f"/workitems/{uid}/state", content=msgspec.json.encode(state), headers=JSON)
        assert r.status_code == 200, r.text

        def lifecycle(first_id: int) -> list[dict[str, Any]]:
            return [
                _report(uid, 1, first_id, x00404041=ready, x00741000=_cs("IN PROGRESS")),
                _report(uid, 3, first_id + 1, x00741002=progress),  # UPS Progress Report
                _report(uid, 1, first_id + 2, x00404041=ready, x00741000=_cs("COMPLETED")),
            ]

        assert await _frames(watcher, 3) == lifecycle(3)
        assert await _frames(ct, 3) == lifecycle(3)
        assert await _frames(one, 3) == lifecycle(2)

        # Another workitem, on no station, canceled while SCHEDULED: only the worklist watcher.
        r = await client.post("/workitems", content=msgspec.json.encode([make_workitem()]), headers=JSON)
        other = r.headers["location"].rsplit("/", 1)[1]
        r = await client.post(f"/workitems/{other}/cancelrequest")
        assert r.status_code == 202, r.text
        reports = await _frames(watcher, 4)
        assert [_summary(report) for report in reports] == [
            (other, 1, "SCHEDULED", 6),
            (other, 2, None, 7),  # UPS Cancel Requested
            (other, 1, "IN PROGRESS", 8),  # PS3.4 §CC.2.2.3: through IN PROGRESS to CANCELED
            (other, 1, "CANCELED", 9),
        ]
        assert reports[3]["00741000"] == _cs("CANCELED")
        for ws in (watcher, ct, one):
            await _nothing_more(ws)
        # The locked subscription keeps the completed workitem from deletion (PS3.4 §CC.2.1.3).
        assert await _kit.subscriptions.deletion_locked(uid)
        assert not await _kit.subscriptions.deletion_locked(other)
