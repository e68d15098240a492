"""The change feed over HTTP (``web/changefeed.py``): pages, latest, filters, bad parameters;
ordering under concurrent STOW-RS; replace and delete entries; the in-process iterator; and
the live streams (Server-Sent Events with httpx, WebSocket with ``websockets``) resuming
without gaps. On the memory and files+SQLite adapters."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import httpx
import pytest
import websockets
from conftest import LiveServer, host_app
from dicomweb_kit_adapters.memory import MemoryBlobStore, MemoryIndex
from pydicom import Dataset

from dicomweb_kit import ChangeFilter, ConfigurationError, DicomWeb, Settings
from dicomweb_kit.testing import make_dataset, part10_bytes

pytestmark = pytest.mark.anyio

BOUNDARY = "FEED"
SETTINGS = Settings(on_duplicate="replace", allow_delete=True)


def multipart(*parts: bytes) -> tuple[bytes, dict[str, str]]:
    head = b"--" + BOUNDARY.encode() + b"\r\nContent-Type: application/dicom\r\n\r\n"
    body = b"".join(head + p + b"\r\n" for p in parts) + b"--" + BOUNDARY.encode() + b"--\r\n"
    return body, {"Content-Type": f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'}


async def stow(client: httpx.AsyncClient, *datasets: Dataset) -> None:
    body, headers = multipart(*(part10_bytes(ds) for ds in datasets))
    r = await client.post("/studies", content=body, headers=headers)
    assert r.status_code == 200, r.text


@pytest.fixture
async def kit(make_kit: Callable[..., DicomWeb]) -> AsyncIterator[DicomWeb]:
    async with make_kit(SETTINGS) as k:
        yield k


@pytest.fixture
async def client(kit: DicomWeb) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=host_app(kit))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver/dicom-web") as c:
        yield c


async def feed(client: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    r = await client.get("/changefeed", params=params)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    entries: list[dict[str, Any]] = r.json()
    return entries


async def test_entries_for_create_replace_delete(client: httpx.AsyncClient) -> None:
    assert await feed(client) == []
    assert (await client.get("/changefeed/latest")).json() == {"Sequence": 0}
    a = make_dataset(modality="MR")
    b = make_dataset(study=a.StudyInstanceUID, series=a.SeriesInstanceUID, modality="MR")
    await stow(client, a, b)
    await stow(client, a)  # on_duplicate="replace"
    path = f"/studies/{a.StudyInstanceUID}/series/{a.SeriesInstanceUID}/instances/{a.SOPInstanceUID}"
    assert (await client.delete(path)).status_code == 204
    entries = await feed(client)
    assert [(e["Sequence"], e["Action"], e["State"], e["SopInstanceUid"]) for e in entries] == [
        (1, "create", "replaced", a.SOPInstanceUID),
        (2, "create", "current", b.SOPInstanceUID),
        (3, "replace", "deleted", a.SOPInstanceUID),
        (4, "delete", "deleted", a.SOPInstanceUID),
    ]
    first = entries[0]
    assert first["StudyInstanceUid"] == a.StudyInstanceUID
    assert first["SeriesInstanceUid"] == a.SeriesInstanceUID
    assert first["Modality"] == "MR"
    assert first["Timestamp"].endswith("Z")
    assert entries[3]["Version"] == entries[2]["Sequence"]  # the stored version it deleted
    assert (await client.get("/changefeed/latest")).json()["Sequence"] == 4
    assert [e["Sequence"] for e in await feed(client, offset=1, limit=2)] == [2, 3]
    assert await feed(client, Modality="CT") == []
    assert len(await feed(client, StudyInstanceUID=a.StudyInstanceUID)) == 4


@pytest.mark.parametrize(
    "query",
    [
        "offset=-1",
        "offset=x",
        "limit=0",
        "limit=1001",
        "Modality=ct",
        "StudyInstanceUID=1.2.x",
        "bogus=1",
        "offset=1&offset=2",
    ],
)
async def test_bad_parameters_are_400(client: httpx.AsyncClient, query: str) -> None:
    r = await client.get("/changefeed?" + query)
    assert r.status_code == 400
    assert r.text.strip()


async def test_concurrent_stow_gives_a_contiguous_ordered_feed(client: httpx.AsyncClient) -> None:
    uploads = [[make_dataset() for _ in range(3)] for _ in range(8)]
    async with anyio.create_task_group() as tasks:
        for datasets in uploads:
            tasks.start_soon(stow, client, *datasets)
    entries = await feed(client, limit=1000)
    assert [e["Sequence"] for e in entries] == list(range(1, 25))
    assert sorted(e["SopInstanceUid"] for e in entries) == sorted(ds.SOPInstanceUID for d in uploads for ds in d)
    assert all(e["Action"] == "create" and e["State"] == "current" for e in entries)
    # Each request's instances keep their order (one request commits in body order).
    for datasets in uploads:
        sequence = {e["SopInstanceUid"]: e["Sequence"] for e in entries}
        positions = [sequence[ds.SOPInstanceUID] for ds in datasets]
        assert positions == sorted(positions)


async def test_in_process_subscribers_replay_then_follow(kit: DicomWeb, client: httpx.AsyncClient) -> None:
    first, ct, mr = make_dataset(), make_dataset(modality="CT"), make_dataset(modality="MR")
    await stow(client, first)
    got: list[tuple[int, str]] = []
    async with anyio.create_task_group() as tasks:

        async def listen() -> None:
            async for change in kit.changes(after=0, filter=ChangeFilter(modality="MR")):
                got.append((change.sequence, change.instance_uid))
                return

        tasks.start_soon(listen)
        await anyio.sleep(0.05)
        await stow(client, ct, mr)
    assert got == [(3, mr.SOPInstanceUID)]


async def test_head_of_the_event_stream_answers_at_once(client: httpx.AsyncClient) -> None:
    with anyio.fail_after(5):
        r = await client.head("/changefeed/events")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")


def _sse_events(lines: list[str]) -> list[dict[str, str]]:
    events: list[dict[str, str]] = []
    current: dict[str, str] = {}
    for line in lines:
        if not line:
            if "data" in current:
                events.append(current)
            current = {}
        elif not line.startswith(":") and ":" in line:
            key, _, value = line.partition(":")
            current[key] = value.removeprefix(" ")
    return events


async def _read_sse(client: httpx.AsyncClient, count: int, **kw: Any) -> list[dict[str, str]]:
    lines: list[str] = []
    with anyio.fail_after(15):
        async with client.stream("GET", "/changefeed/events", **kw) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            async for line in response.aiter_lines():
                lines.append(line)
                if len(_sse_events([*lines, ""])) >= count and line == "":
                    break
    return _sse_events(lines)


@pytest.fixture
def live(make_kit: Callable[..., DicomWeb]) -> Any:
    with LiveServer(host_app(make_kit(SETTINGS))) as server:
        yield server


async def test_server_sent_events_resume_from_last_event_id(live: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=live.url, timeout=10) as client:
        datasets = [make_dataset(modality="CT") for _ in range(5)]
        await stow(client, *datasets[:2])
        events = await _read_sse(client, 2)
        assert [e["id"] for e in events] == ["1", "2"]
        assert all(e["event"] == "change" for e in events)
        assert json.loads(events[1]["data"])["SopInstanceUid"] == datasets[1].SOPInstanceUID
        # Disconnected: two more changes happen; the reconnect gets them, then a live one.
        await stow(client, *datasets[2:4])
        async with anyio.create_task_group() as tasks:
            resumed: list[dict[str, str]] = []

            async def reconnect() -> None:
                resumed.extend(await _read_sse(client, 3, headers={"Last-Event-ID": "2"}))

            tasks.start_soon(reconnect)
            await anyio.sleep(0.3)
            await stow(client, datasets[4])
        assert [e["id"] for e in resumed] == ["3", "4", "5"]
        assert [json.loads(e["data"])["SopInstanceUid"] for e in resumed] == [d.SOPInstanceUID for d in datasets[2:]]
        # A filtered first connection with after=.
        mr = make_dataset(modality="MR")
        await stow(client, mr)
        only_mr = await _read_sse(client, 1, params={"after": "0", "Modality": "MR"})
        assert [json.loads(e["data"])["SopInstanceUid"] for e in only_mr] == [mr.SOPInstanceUID]


async def test_websocket_resumes_without_gaps_and_filters(live: LiveServer) -> None:
    ws_url = live.url.replace("http://", "ws://") + "/changefeed/ws"
    async with httpx.AsyncClient(base_url=live.url, timeout=10) as client:
        study = make_dataset()
        ct = [make_dataset(study=study.StudyInstanceUID, modality="CT") for _ in range(3)]
        mr = make_dataset(study=study.StudyInstanceUID, modality="MR")
        other = make_dataset(modality="CT")
        await stow(client, ct[0])
        received: list[dict[str, Any]] = []
        with anyio.fail_after(15):
            async with websockets.connect(f"{ws_url}?after=0&StudyInstanceUID={study.StudyInstanceUID}") as ws:
                received.append(json.loads(await ws.recv()))
                await stow(client, other, ct[1])  # other study: filtered out
                received.append(json.loads(await ws.recv()))
            # Gone; changes meanwhile; resume from the last sequence seen.
            await stow(client, ct[2], mr)
            last = received[-1]["Sequence"]
            async with websockets.connect(f"{ws_url}?after={last}&StudyInstanceUID={study.StudyInstanceUID}") as ws:
                received.append(json.loads(await ws.recv()))
                received.append(json.loads(await ws.recv()))
            async with websockets.connect(f"{ws_url}?Modality=MR") as ws:
                only_mr = json.loads(await ws.recv())
    assert [e["SopInstanceUid"] for e in received] == [d.SOPInstanceUID for d in (*ct, mr)]
    assert [e["Sequence"] for e in received] == [1, 3, 4, 5]
    assert only_mr["SopInstanceUid"] == mr.SOPInstanceUID


async def test_websocket_with_bad_parameters_is_refused(live: LiveServer) -> None:
    ws_url = live.url.replace("http://", "ws://") + "/changefeed/ws?after=-3"
    with anyio.fail_after(10), pytest.raises(websockets.exceptions.InvalidStatus) as refused:
        async with websockets.connect(ws_url):
            pass
    assert refused.value.response.status_code == 400


class _IndexWithoutFeed(MemoryIndex):
    change_feed = None  # type: ignore[assignment]  # a third-party index that keeps no feed


async def test_a_kit_without_a_feed_answers_404() -> None:
    async with DicomWeb(blobs=MemoryBlobStore(), index=_IndexWithoutFeed()) as kit:
        assert kit.changefeed is None
        with pytest.raises(ConfigurationError):
            kit.changes()
        transport = httpx.ASGITransport(app=host_app(kit))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver/dicom-web") as client:
            for path in ("/changefeed", "/changefeed/latest", "/changefeed/events"):
                assert (await client.get(path)).status_code == 404
            await stow(client, make_dataset())  # storing works as ever
