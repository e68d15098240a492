"""The authorization hook over HTTP, on both adapters: two users who see disjoint studies through
every operation of the route table (iterated, so a new endpoint cannot escape), QIDO counts and
paging after narrowing, 403 and hidden 404, deny-all, failing hooks, the live channels."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import websockets
from conftest import ADAPTERS, LiveServer, host_app
from pydicom.uid import generate_uid
from starlette.applications import Starlette
from starlette.authentication import AuthCredentials, AuthenticationBackend, BaseUser, SimpleUser
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import HTTPConnection
from starlette.routing import Mount

from dicomweb_kit import DicomWeb, Settings, StorageUnavailable
from dicomweb_kit.authorization import ALLOW, DENY, STUDY_KINDS, Access, Decision, Narrow
from dicomweb_kit.testing import make_dataset, part10_bytes
from dicomweb_kit.web.authorization import access_kind
from dicomweb_kit.web.route_table import RESOURCES, served

pytestmark = pytest.mark.anyio

#: north sees the North institution's studies, south the studies of patients PB/PB2: disjoint.
POLICIES: dict[str | None, Decision] = {
    "admin": ALLOW,
    "north": Narrow.where(InstitutionName="North"),
    "south": Narrow.where(PatientID=["PB", "PB2"]),
    "nobody": DENY,
}
WORKITEM = "1.2.826.0.1.3680043.8.498.1"
NUMBER_OF_STUDY_RELATED_INSTANCES = "00201208"
NUMBER_OF_STUDY_RELATED_SERIES = "00201206"


@dataclass(frozen=True)
class Study:
    study: str
    series: str
    instances: tuple[str, ...]


@dataclass
class World:
    kit: DicomWeb
    client: httpx.AsyncClient
    north: list[Study]
    south: list[Study]
    asked: list[tuple[Any, Access]] = field(default_factory=list)

    async def request(self, user: str, method: str, url: str, **kwargs: Any) -> httpx.Response:
        headers = {"X-User": user, **kwargs.pop("headers", {})}
        return await self.client.request(method, url, headers=headers, **kwargs)


def multipart(*blobs: bytes) -> tuple[bytes, dict[str, str]]:
    body = b"".join(b"--b\r\nContent-Type: application/dicom\r\n\r\n" + b + b"\r\n" for b in blobs) + b"--b--\r\n"
    return body, {"Content-Type": 'multipart/related; type="application/dicom"; boundary=b'}


def make_study(institution: str, patient: str) -> tuple[Study, list[bytes]]:
    study, series = generate_uid(), generate_uid()
    datasets = [
        make_dataset(study=study, series=series, patient_id=patient, InstitutionName=institution, InstanceNumber=n)
        for n in (1, 2)
    ]
    return Study(study, series, tuple(ds.SOPInstanceUID for ds in datasets)), [part10_bytes(ds) for ds in datasets]


WorldFactory = Callable[..., Awaitable[World]]


@pytest.fixture
async def make_world(adapter_name: str, tmp_path: Path) -> AsyncIterator[WorldFactory]:
    """Build a kit with the hook (``POLICIES`` by the X-User header), store 3 North studies
    (patient PA) and 2 South ones (patient PB) as admin."""
    opened: list[tuple[DicomWeb, httpx.AsyncClient]] = []

    async def make(
        *,
        hide_denied: bool = False,
        authorize: Callable[[Any, Access], Awaitable[Decision]] | None = None,
        identify: Callable[[Any], Any] | None = None,
        settings: Settings | None = None,
    ) -> World:
        asked: list[tuple[Any, Access]] = []

        async def policy(identity: Any, access: Access) -> Decision:
            asked.append((identity, access))
            return POLICIES.get(identity, DENY)

        blobs, index = ADAPTERS[adapter_name](tmp_path / str(len(opened)))
        kit = DicomWeb(
            blobs=blobs,  # type: ignore[arg-type]
            index=index,  # type: ignore[arg-type]
            settings=settings,
            authorize=authorize or policy,
            identify=identify or (lambda request: request.headers.get("x-user")),
            hide_denied=hide_denied,
        )
        await kit.__aenter__()
        transport = httpx.ASGITransport(app=host_app(kit))
        client = httpx.AsyncClient(transport=transport, base_url="http://testserver/dicom-web")
        opened.append((kit, client))
        world = World(kit, client, [], [], asked)
        for institution, patient, into in [("North", "PA", world.north)] * 3 + [("South", "PB", world.south)] * 2:
            study, blobs_ = make_study(institution, patient)
            body, headers = multipart(*blobs_)
            if authorize is None and identify is None:
                r = await world.request("admin", "POST", "/studies", content=body, headers=headers)
                assert r.status_code == 200, r.text
            else:  # a custom hook or resolver: store behind its back, through the ingest path
                from dicomweb_kit.services.ingest import ingest_instance

                for blob in blobs_:
                    await ingest_instance(kit, _once(blob))
            into.append(study)
        asked.clear()
        return world

    yield make
    for kit, client in opened:
        await client.aclose()
        await kit.aclose()


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


@pytest.fixture
async def world(make_world: WorldFactory) -> World:
    return await make_world(settings=Settings(allow_delete=True))


_PARAM = re.compile(r"{(\w+)(?::\w+)?}")


def concrete(path: str, study: Study) -> str:
    values = {
        "study": study.study,
        "series": study.series,
        "instance": study.instances[0],
        "frames": "1",
        "path": "7FE00010",
        "workitem": WORKITEM,
        "ae_title": "AE1",
    }
    return _PARAM.sub(lambda m: values[m[1]], path)


def uids_in(response: httpx.Response) -> set[str]:
    return {uid for row in response.json() for uid in row.get("0020000D", {}).get("Value", [])}


def operations(kit: DicomWeb) -> list[tuple[str, str, str]]:
    """(path, method, operation name) of every operation the kit serves."""
    return [(resource.path, op.method, op.name) for resource in served(kit) for op in resource.operations]


def test_every_operation_of_the_table_has_an_access_kind() -> None:
    missing = [op.name for resource in RESOURCES for op in resource.operations if access_kind(op) is None]
    assert missing == []


def test_access_kinds_of_some_operations() -> None:
    kinds = {op.name: access_kind(op) for resource in RESOURCES for op in resource.operations}
    assert kinds["SearchForStudySeries"] == "search"
    assert kinds["RetrieveRenderedFrames"] == "rendered"
    assert kinds["RetrieveFramesThumbnail"] == "thumbnail"
    assert kinds["RetrieveStudyMetadata"] == "metadata"
    assert kinds["RetrieveSeriesPixelData"] == "pixeldata"
    assert kinds["RetrieveBulkdata"] == "bulkdata"
    assert kinds["RetrieveFrames"] == "frames"
    assert kinds["RetrieveInstance"] == "retrieve"
    assert kinds["StoreStudyInstances"] == "store"
    assert kinds["DeleteSeries"] == "delete"
    assert kinds["ChangeWorkitemState"] == "workitem-state"
    assert kinds["ReadLatestChange"] == "changefeed"


async def test_every_endpoint_keeps_the_two_users_apart(world: World) -> None:
    """Iterate the route table: south is denied each North resource, north gets it; searches
    show each only their own studies; what cannot be narrowed is denied to both."""
    north_uids = {s.study for s in world.north}
    south_uids = {s.study for s in world.south}
    served_ops = operations(world.kit)
    assert len(served_ops) > 30
    for path, method, name in served_ops:
        kind = access_kind(next(op for r in RESOURCES if r.path == path for op in r.operations if op.name == name))
        assert kind is not None
        url = concrete(path, world.north[0])
        scoped = "{study}" in path
        # south asks for a North resource (the trailing-slash copy of the route too)
        if kind in STUDY_KINDS and scoped:
            r = await world.request("south", method, url + "/")
            assert r.status_code == 403, (name, r.status_code, r.text)
        world.asked.clear()
        r = await world.request("south", method, url)
        assert [(who, a.kind, a.operation) for who, a in world.asked] == [("south", kind, name)]
        if kind in STUDY_KINDS and scoped:
            assert r.status_code == 403, (name, r.status_code, r.text)
            assert world.asked[0][1].key.study == world.north[0].study
        elif kind == "search":
            assert r.status_code == 200, (name, r.text)
            assert not uids_in(r) & north_uids, name
        else:  # store, workitems, change feed: a narrowing fails closed
            assert r.status_code == 403, (name, r.status_code, r.text)
        # north asks for its own resource
        if method == "GET" and kind in STUDY_KINDS:
            accept = {"Accept": "application/zip"} if name == "RetrieveStudy" else {}
            r = await world.request("north", method, url, headers=accept)
            assert r.status_code in (200, 206), (name, r.status_code, r.text)
            if kind == "search":
                assert r.json(), name
                assert not uids_in(r) & south_uids, name
        # deny-all: nothing for anybody else
        r = await world.request("nobody", method, url)
        assert r.status_code == 403, (name, r.status_code)


async def test_searches_at_each_level_are_narrowed(world: World) -> None:
    for user, own, other in [("north", world.north, world.south), ("south", world.south, world.north)]:
        r = await world.request(user, "GET", "/studies")
        assert uids_in(r) == {s.study for s in own}
        r = await world.request(user, "GET", "/series")
        assert {row["0020000E"]["Value"][0] for row in r.json()} == {s.series for s in own}
        r = await world.request(user, "GET", "/instances")
        assert {row["00080018"]["Value"][0] for row in r.json()} == {i for s in own for i in s.instances}
        r = await world.request(user, "GET", f"/studies/{own[0].study}/instances")
        assert {row["00080018"]["Value"][0] for row in r.json()} == set(own[0].instances)
        # the client's own keys are ANDed with the narrowing, never widen it
        r = await world.request(user, "GET", "/studies", params={"StudyInstanceUID": other[0].study})
        assert r.json() == []
        r = await world.request(user, "GET", f"/studies/{other[0].study}/series")
        assert r.status_code == 403


async def test_qido_counts_paging_and_warning_come_after_narrowing(world: World) -> None:
    # 5 studies stored, north sees 3: two pages of 2
    r = await world.request("north", "GET", "/studies", params={"limit": "2"})
    assert len(r.json()) == 2
    assert "Additional results can be requested" in r.headers["warning"]
    first = uids_in(r)
    r = await world.request("north", "GET", "/studies", params={"limit": "2", "offset": "2"})
    assert len(r.json()) == 1
    assert "warning" not in r.headers
    assert first | uids_in(r) == {s.study for s in world.north}
    # exactly the visible number: no "more" although 5 studies are stored
    r = await world.request("north", "GET", "/studies", params={"limit": "3"})
    assert len(r.json()) == 3
    assert "warning" not in r.headers
    r = await world.request("south", "GET", "/studies", params={"limit": "2"})
    assert len(r.json()) == 2
    assert "warning" not in r.headers
    for row in r.json():
        assert row[NUMBER_OF_STUDY_RELATED_INSTANCES]["Value"] == [2]
        assert row[NUMBER_OF_STUDY_RELATED_SERIES]["Value"] == [1]


async def test_retrieve_metadata_and_zip_of_the_own_study(world: World) -> None:
    mine = world.north[0]
    r = await world.request("north", "GET", f"/studies/{mine.study}/metadata")
    assert {item["00080018"]["Value"][0] for item in r.json()} == set(mine.instances)
    r = await world.request("north", "GET", f"/studies/{mine.study}", headers={"Accept": "application/zip"})
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/zip"
    for user in ("south", "nobody"):
        r = await world.request(user, "GET", f"/studies/{mine.study}", headers={"Accept": "application/zip"})
        assert r.status_code == 403
        assert r.headers["content-type"].startswith("text/plain")


async def test_hide_denied_answers_404_as_for_a_study_that_is_not_stored(make_world: WorldFactory) -> None:
    world = await make_world(hide_denied=True)
    absent = generate_uid()
    for user in ("south", "nobody"):
        for suffix in ("", "/metadata", "/series", "/thumbnail"):
            hidden = await world.request(user, "GET", f"/studies/{world.north[0].study}{suffix}")
            missing = await world.request(user, "GET", f"/studies/{absent}{suffix}")
            assert hidden.status_code == missing.status_code == 404, (user, suffix)
            assert hidden.text.replace(world.north[0].study, "X") == missing.text.replace(absent, "X")
    # the admin gets the real 404 for the absent study, with the same words
    r = await world.request("admin", "GET", f"/studies/{absent}/metadata")
    assert r.status_code == 404
    assert r.text == missing.text
    # nothing to hide: what names no resource is still 403
    assert (await world.request("nobody", "GET", "/studies")).status_code == 403
    assert (await world.request("nobody", "GET", f"/workitems/{WORKITEM}")).status_code == 404
    assert (await world.request("north", "POST", "/studies")).status_code == 403


async def test_store_is_the_hooks_to_deny(world: World) -> None:
    study, blobs = make_study("North", "PA")
    body, headers = multipart(*blobs)
    for user in ("north", "nobody"):
        r = await world.request(user, "POST", "/studies", content=body, headers=headers)
        assert r.status_code == 403
    r = await world.request("admin", "GET", f"/studies/{study.study}/metadata")
    assert r.status_code == 404  # nothing was stored
    r = await world.request("admin", "POST", "/studies", content=body, headers=headers)
    assert r.status_code == 200
    assert (await world.request("north", "GET", f"/studies/{study.study}/metadata")).status_code == 200


async def test_delete_only_what_one_sees(world: World) -> None:
    target = world.north[0]
    r = await world.request("south", "DELETE", f"/studies/{target.study}")
    assert r.status_code == 403
    assert (await world.request("admin", "GET", f"/studies/{target.study}/metadata")).status_code == 200
    r = await world.request("north", "DELETE", f"/studies/{target.study}")
    assert r.status_code == 204
    assert (await world.request("admin", "GET", f"/studies/{target.study}/metadata")).status_code == 404


async def test_a_hook_that_raises_is_a_bare_500(make_world: WorldFactory) -> None:
    async def broken(identity: Any, access: Access) -> Decision:
        raise RuntimeError("secret policy detail")

    world = await make_world(authorize=broken)
    r = await world.request("north", "GET", f"/studies/{world.north[0].study}/metadata")
    assert r.status_code == 500
    assert "secret" not in r.text
    assert "secret" not in r.headers.get("warning", "")


async def test_a_dicomweb_error_of_the_hook_passes_through(make_world: WorldFactory) -> None:
    async def down(identity: Any, access: Access) -> Decision:
        raise StorageUnavailable("the policy service is unavailable")

    world = await make_world(authorize=down)
    r = await world.request("north", "GET", "/studies")
    assert r.status_code == 503
    assert "the policy service is unavailable" in r.text


async def test_a_hook_that_returns_no_decision_fails_closed(make_world: WorldFactory) -> None:
    async def sloppy(identity: Any, access: Access) -> Any:
        return True

    world = await make_world(authorize=sloppy)
    r = await world.request("north", "GET", f"/studies/{world.north[0].study}")
    assert r.status_code == 500


async def test_a_failing_identity_resolver_is_a_500(make_world: WorldFactory) -> None:
    def identify(request: Any) -> Any:
        raise KeyError("no token")

    world = await make_world(identify=identify)
    r = await world.request("north", "GET", "/studies")
    assert r.status_code == 500
    assert "token" not in r.text


async def test_a_slow_hook_delays_only_its_own_request(make_world: WorldFactory) -> None:
    gate = anyio.Event()

    async def slow(identity: Any, access: Access) -> Decision:
        if identity == "slow":
            await gate.wait()
        return ALLOW

    world = await make_world(authorize=slow)
    statuses: list[int] = []

    async def slow_request() -> None:
        statuses.append((await world.request("slow", "GET", "/studies")).status_code)

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(slow_request)
        with anyio.fail_after(5):
            r = await world.request("fast", "GET", "/studies")
        assert r.status_code == 200
        assert statuses == []
        gate.set()
    assert statuses == [200]


async def test_the_access_describes_the_resource_and_the_query(world: World) -> None:
    study = world.north[0]
    await world.request("north", "GET", f"/studies/{study.study}/series/{study.series}/instances/{study.instances[1]}")
    await world.request("north", "GET", "/series", params={"Modality": "CT", "limit": "5", "offset": "1"})
    (_, retrieve), (_, search) = world.asked
    assert (retrieve.kind, retrieve.operation, retrieve.method) == ("retrieve", "RetrieveInstance", "GET")
    assert (retrieve.key.study, retrieve.key.series, retrieve.key.instance) == (
        study.study,
        study.series,
        study.instances[1],
    )
    assert retrieve.level == "instance"
    assert search.query is not None
    assert (search.level, search.query.limit, search.query.offset) == ("series", 5, 1)
    assert [t.key for t in search.query.terms] == ["00080060"]


async def test_the_default_identity_is_starlettes_request_user(adapter_name: str, tmp_path: Path) -> None:
    class Backend(AuthenticationBackend):
        async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, BaseUser] | None:
            name = conn.headers.get("x-user")
            return (AuthCredentials(["authenticated"]), SimpleUser(name)) if name else None

    seen: list[Any] = []

    async def authorize(identity: Any, access: Access) -> Decision:
        seen.append(identity)
        return ALLOW if identity.is_authenticated else DENY

    blobs, index = ADAPTERS[adapter_name](tmp_path)
    kit = DicomWeb(blobs=blobs, index=index, authorize=authorize)  # type: ignore[arg-type]
    app = Starlette(
        routes=[Mount("/dicom-web", app=kit.app)],
        middleware=[Middleware(AuthenticationMiddleware, backend=Backend())],
        lifespan=kit.lifespan,
    )
    async with kit, httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t/dicom-web") as c:
        assert (await c.get("/studies", headers={"X-User": "ann"})).status_code == 200
        assert (await c.get("/studies")).status_code == 403
    assert seen[0].username == "ann"
    assert not seen[1].is_authenticated


async def test_the_live_change_feed_and_ups_channels_ask_the_hook(make_world: WorldFactory) -> None:
    world = await make_world()
    r = await world.request("north", "GET", "/changefeed/events")  # Server-Sent Events
    assert r.status_code == 403
    assert world.asked[-1][1].kind == "changefeed"
    with LiveServer(host_app(world.kit)) as live:
        base = live.url.replace("http://", "ws://")
        for path in ("/changefeed/ws", "/subscribers/AE1"):
            with anyio.fail_after(10), pytest.raises(websockets.exceptions.InvalidStatus) as refused:
                async with websockets.connect(base + path, additional_headers={"X-User": "nobody"}):
                    pass
            assert refused.value.response.status_code == 403, path
        assert {a.kind for _, a in world.asked[-2:]} == {"changefeed", "workitem-events"}
        async with websockets.connect(base + "/changefeed/ws", additional_headers={"X-User": "admin"}) as ws:
            await ws.close()


async def test_the_study_is_the_unit_of_a_narrowing(world: World) -> None:
    """A study with a North and an East series: north sees the study and, inside it, the East
    series too (study resources); series and instance searches match the terms per entity."""
    study = world.north[0].study
    east = make_dataset(study=study, patient_id="PA", InstitutionName="East")
    body, headers = multipart(part10_bytes(east))
    assert (await world.request("admin", "POST", "/studies", content=body, headers=headers)).status_code == 200
    r = await world.request("north", "GET", f"/studies/{study}/series/{east.SeriesInstanceUID}/metadata")
    assert r.status_code == 200
    r = await world.request("north", "GET", "/studies", params={"StudyInstanceUID": study})
    assert r.json()[0][NUMBER_OF_STUDY_RELATED_SERIES]["Value"] == [2]  # the whole study's counts
    r = await world.request("north", "GET", f"/studies/{study}/series")
    assert [row["0020000E"]["Value"][0] for row in r.json()] == [world.north[0].series]


async def test_openapi_documents_403_when_a_hook_is_set(world: World) -> None:
    document = (await world.request("nobody", "GET", "/openapi.json")).json()
    for item in document["paths"].values():
        for method, operation in item.items():
            if method != "options":
                assert "403" in operation["responses"], operation["operationId"]
