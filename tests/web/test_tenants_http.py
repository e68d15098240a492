"""Tenancy over HTTP (``web/tenants.py``): the path, header and request resolvers route each
request to its tenant's archive, URLs in responses keep the tenant's prefix, bad or missing
tenants get 400/403/404 (never a 500), and the hooks know the tenant. On the memory and
files+SQLite adapters."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import ADAPTERS, LiveServer
from pydicom import Dataset
from pydicom.uid import generate_uid
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.types import Receive, Scope, Send

from dicomweb_kit import Access, DicomWeb, InstanceRecord, Settings, current_tenant
from dicomweb_kit.authorization import ALLOW, DENY
from dicomweb_kit.testing import make_dataset, part10_bytes
from dicomweb_kit.web.tenants import TenantFromHeader, TenantFromPath, TenantFromRequest, TenantResolver

pytestmark = pytest.mark.anyio

BOUNDARY = "TENANTS"
TEMPLATE = "/tenants/{tenant}/dicom-web"
PATIENT_NAME = "00100010"
RETRIEVE_URL = "00081190"


def multipart(*datasets: Dataset) -> tuple[bytes, dict[str, str]]:
    head = b"--" + BOUNDARY.encode() + b"\r\nContent-Type: application/dicom\r\n\r\n"
    body = b"".join(head + part10_bytes(ds) + b"\r\n" for ds in datasets) + b"--" + BOUNDARY.encode() + b"--\r\n"
    return body, {"Content-Type": f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'}


def same_uids_in(tenant: str, uids: tuple[str, str, str]) -> Dataset:
    study, series, instance = uids
    return make_dataset(study=study, series=series, instance=instance, patient_name=f"{tenant}^Pat")


@pytest.fixture
def make_tenant_kit(adapter_name: str, tmp_path: Path) -> Callable[..., DicomWeb]:
    def make(tenants: TenantResolver, **kw: Any) -> DicomWeb:
        blobs, index = ADAPTERS[adapter_name](tmp_path)
        return DicomWeb(blobs=blobs, index=index, tenants=tenants, **kw)  # type: ignore[arg-type]

    return make


@pytest.fixture
async def path_kit(make_tenant_kit: Callable[..., DicomWeb]) -> AsyncIterator[DicomWeb]:
    async with make_tenant_kit(TenantFromPath(TEMPLATE), settings=Settings(allow_delete=True)) as kit:
        yield kit


@pytest.fixture
async def path_client(path_kit: DicomWeb) -> AsyncIterator[httpx.AsyncClient]:
    app = Starlette(routes=[Mount("/", app=path_kit.app)])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as c:
        yield c


async def test_the_same_uids_in_two_tenants_by_path(path_client: httpx.AsyncClient) -> None:
    uids = (generate_uid(), generate_uid(), generate_uid())
    for tenant in ("north", "south"):
        body, headers = multipart(same_uids_in(tenant, uids))
        r = await path_client.post(f"/tenants/{tenant}/dicom-web/studies", content=body, headers=headers)
        assert r.status_code == 200, r.text
        assert r.json()[RETRIEVE_URL]["Value"] == [f"http://testserver/tenants/{tenant}/dicom-web/studies/{uids[0]}"]
    for tenant in ("north", "south"):
        r = await path_client.get(f"/tenants/{tenant}/dicom-web/studies")
        [study] = r.json()
        assert study[PATIENT_NAME]["Value"] == [{"Alphabetic": f"{tenant}^Pat"}]
        # Follow the RetrieveURL, as the DICOMweb tutorial does: it stays in the tenant.
        url = study[RETRIEVE_URL]["Value"][0]
        assert url.startswith(f"http://testserver/tenants/{tenant}/dicom-web/")
        metadata = (await path_client.get(url + "/metadata")).json()
        assert metadata[0][PATIENT_NAME]["Value"] == [{"Alphabetic": f"{tenant}^Pat"}]
        r = await path_client.get(
            f"{url}/series/{uids[1]}/instances/{uids[2]}",
            headers={"Accept": "multipart/related; type=application/dicom"},
        )
        assert r.status_code == 200 and f"{tenant}^Pat".encode() in r.content
    assert (await path_client.get("/tenants/east/dicom-web/studies")).json() == []


async def test_delete_and_change_feed_stay_in_their_tenant(path_client: httpx.AsyncClient) -> None:
    uids = (generate_uid(), generate_uid(), generate_uid())
    for tenant in ("north", "south"):
        body, headers = multipart(same_uids_in(tenant, uids))
        assert (
            await path_client.post(f"/tenants/{tenant}/dicom-web/studies", content=body, headers=headers)
        ).is_success
    assert (await path_client.delete(f"/tenants/north/dicom-web/studies/{uids[0]}")).status_code in (200, 204)
    assert (await path_client.get(f"/tenants/north/dicom-web/studies/{uids[0]}/metadata")).status_code == 404
    assert (await path_client.get(f"/tenants/south/dicom-web/studies/{uids[0]}/metadata")).status_code == 200
    north = [entry["Action"] for entry in (await path_client.get("/tenants/north/dicom-web/changefeed")).json()]
    south = [entry["Action"] for entry in (await path_client.get("/tenants/south/dicom-web/changefeed")).json()]
    assert (north, south) == (["create", "delete"], ["create"])


async def test_path_errors_are_clear(path_client: httpx.AsyncClient) -> None:
    r = await path_client.get("/studies")
    assert r.status_code == 404 and "/tenants/{tenant}/dicom-web" in r.text
    r = await path_client.get("/tenants/-bad/dicom-web/studies")
    assert r.status_code == 400 and "tenant ID" in r.text
    r = await path_client.get("/tenants/" + "x" * 65 + "/dicom-web/studies")
    assert r.status_code == 400
    # The service root itself, with and without its trailing slash: the Capabilities (WADL).
    for path in ("/tenants/north/dicom-web", "/tenants/north/dicom-web/"):
        r = await path_client.options(path)
        assert r.status_code == 200 and "application" in r.headers["content-type"], (path, r.text)


async def test_the_header_resolver(make_tenant_kit: Callable[..., DicomWeb]) -> None:
    resolver = TenantFromHeader("X-Tenant", known={"north", "south"})
    async with make_tenant_kit(resolver) as kit:
        app = Starlette(routes=[Mount("/dicom-web", app=kit.app)])
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver/dicom-web") as client:
            uids = (generate_uid(), generate_uid(), generate_uid())
            body, headers = multipart(same_uids_in("north", uids))
            r = await client.post("/studies", content=body, headers={**headers, "X-Tenant": "north"})
            assert r.status_code == 200, r.text
            north = (await client.get("/studies", headers={"X-Tenant": "north"})).json()
            assert [s[PATIENT_NAME]["Value"][0]["Alphabetic"] for s in north] == ["north^Pat"]
            assert (await client.get("/studies", headers={"X-Tenant": "south"})).json() == []
            r = await client.get("/studies")
            assert r.status_code == 400 and "X-Tenant" in r.text
            r = await client.get("/studies", headers={"X-Tenant": "west"})
            assert r.status_code == 404 and "no tenant 'west'" in r.text
            r = await client.get("/studies", headers=[("X-Tenant", "north"), ("X-Tenant", "south")])
            assert r.status_code == 400


class _User:
    def __init__(self, tenant: str | None) -> None:
        self.tenant = tenant


def _with_user(app: Any) -> Any:
    """A stand-in for the host's authentication middleware: ``X-User`` names the user's tenant."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(scope.get("headers", ()))
        claim = headers.get(b"x-user", b"").decode() or None
        await app({**scope, "user": _User(claim)}, receive, send)

    return wrapped


async def test_the_request_resolver_and_the_hooks_know_the_tenant(make_tenant_kit: Callable[..., DicomWeb]) -> None:
    seen: dict[str, list[str | None]] = {"authorize": [], "before": [], "after": []}

    async def authorize(identity: Any, access: Access) -> Any:
        seen["authorize"].append(current_tenant())
        return DENY if access.kind == "delete" else ALLOW

    async def before_store(incoming: Any) -> None:
        seen["before"].append(current_tenant())

    async def after_store(records: list[InstanceRecord]) -> None:
        seen["after"].append(current_tenant())

    resolver = TenantFromRequest(lambda conn: conn.user.tenant)
    kit = make_tenant_kit(resolver, authorize=authorize, before_store=before_store, after_store=after_store)
    async with kit:
        app = Starlette(routes=[Mount("/dicom-web", app=_with_user(kit.app))])
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver/dicom-web") as client:
            body, headers = multipart(make_dataset())
            r = await client.post("/studies", content=body, headers={**headers, "X-User": "south"})
            assert r.status_code == 200, r.text
            r = await client.get("/studies")  # a user without a tenant
            assert r.status_code == 403 and "no tenant" in r.text
        # The after-store hook runs in the background: the kit's shutdown drains it.
    assert seen["authorize"] == ["south"]
    assert seen["before"] == ["south"]
    assert seen["after"] == ["south"]


async def test_in_process_tenants_run_the_hooks_for_their_tenant(make_tenant_kit: Callable[..., DicomWeb]) -> None:
    seen: list[str | None] = []

    async def after_store(records: list[InstanceRecord]) -> None:
        seen.append(current_tenant())

    async with make_tenant_kit(TenantFromHeader(), after_store=after_store) as kit:
        await (await kit.tenant("north")).store(make_dataset())
        await kit.store(make_dataset())
    assert len(seen) == 2 and set(seen) == {"north", None}


def test_live_websocket_to_a_bad_tenant_is_refused(make_tenant_kit: Callable[..., DicomWeb]) -> None:
    import websockets.sync.client as ws_client
    from websockets.exceptions import InvalidStatus

    kit = make_tenant_kit(TenantFromPath(TEMPLATE, known=["north"]))
    app = Starlette(routes=[Mount("/", app=kit.app)], lifespan=kit.lifespan)
    with LiveServer(app) as live:
        base = f"ws://127.0.0.1:{live.port}"
        with pytest.raises(InvalidStatus) as refused:
            ws_client.connect(f"{base}/tenants/west/dicom-web/changefeed/ws", open_timeout=5)
        assert refused.value.response.status_code == 403
        with ws_client.connect(f"{base}/tenants/north/dicom-web/changefeed/ws", open_timeout=5) as socket:
            socket.send('{"after": 0}')  # the channel is open for a known tenant
        r = httpx.get(f"http://127.0.0.1:{live.port}/tenants/north/dicom-web/studies")
        assert r.status_code == 200 and r.json() == []


async def test_public_url_keeps_the_tenants_path(make_tenant_kit: Callable[..., DicomWeb]) -> None:
    """``Settings.public_url`` is where the kit's app is served; each tenant's URLs are below it."""
    settings = Settings(public_url="https://pacs.example.org/dicom-web")
    async with make_tenant_kit(TenantFromPath("/{tenant}"), settings=settings) as kit:
        app = Starlette(routes=[Mount("/dicom-web", app=kit.app)])
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://internal:8042/dicom-web") as client:
            ds = make_dataset()
            body, headers = multipart(ds)
            r = await client.post("/north/studies", content=body, headers=headers)
            assert r.json()[RETRIEVE_URL]["Value"] == [
                f"https://pacs.example.org/dicom-web/north/studies/{ds.StudyInstanceUID}"
            ]


async def test_cors_with_tenants_by_header(make_tenant_kit: Callable[..., DicomWeb]) -> None:
    """A browser's preflight carries no tenant header: it is answered before the resolver, and
    the resolver's own errors carry the CORS headers a viewer's script needs to read them."""
    settings = Settings(cors_origins=("https://viewer.example.org",))
    async with make_tenant_kit(TenantFromHeader("X-Tenant"), settings=settings) as kit:
        app = Starlette(routes=[Mount("/dicom-web", app=kit.app)])
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver/dicom-web") as client:
            origin = {"Origin": "https://viewer.example.org"}
            asks = {"Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "x-tenant"}
            preflight = await client.options("/studies", headers={**origin, **asks})
            assert preflight.status_code == 200
            assert preflight.headers["access-control-allow-origin"] == "https://viewer.example.org"
            missing = await client.get("/studies", headers=origin)
            assert missing.status_code == 400
            assert missing.headers["access-control-allow-origin"] == "https://viewer.example.org"
            found = await client.get("/studies", headers={**origin, "X-Tenant": "north"})
            assert found.status_code == 200
            assert found.headers.get_list("access-control-allow-origin") == ["https://viewer.example.org"]
