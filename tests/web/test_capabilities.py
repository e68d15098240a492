"""The Capabilities service (PS3.18 §8.9, Annex H): OPTIONS answers a WADL of what is served;
other methods a resource does not serve are 405 with Allow."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from xml.etree import ElementTree as ET

import httpx
import pytest
from conftest import host_app

from dicomweb_kit import DicomWeb, Settings
from dicomweb_kit.pixels.encode import image_media_types, video_media_types

pytestmark = pytest.mark.anyio

W = "{http://wadl.dev.java.net/2009/02}"
WADL = "application/vnd.sun.wadl+xml"

S = "studies/{study}"
R = S + "/series/{series}"
I = R + "/instances/{instance}"  # noqa: E741
F = I + "/frames/{frames}"
# What PS3.18 Table H-1 and the README promise, written out by hand: the WADL must say exactly this.
EXPECTED = {
    ("GET", "studies"),
    ("POST", "studies"),
    ("GET", "series"),
    ("GET", "instances"),
    ("POST", S),
    ("GET", S + "/series"),
    ("GET", S + "/instances"),
    ("GET", R + "/instances"),
    *{("GET", level + suffix) for level in (S, R, I) for suffix in ("", "/metadata", "/rendered", "/thumbnail")},
    *{("GET", level + suffix) for level in (S, R, I) for suffix in ("/pixeldata", "/bulkdata")},
    ("GET", F),
    ("GET", F + "/rendered"),
    ("GET", F + "/thumbnail"),
    ("GET", I + "/bulkdata/{path}"),
    ("POST", "workitems"),
    ("GET", "workitems"),
    ("GET", "workitems/{workitem}"),
    ("POST", "workitems/{workitem}"),
    ("PUT", "workitems/{workitem}/state"),
    ("POST", "workitems/{workitem}/cancelrequest"),
    ("POST", "workitems/{workitem}/subscribers/{ae_title}"),
    ("DELETE", "workitems/{workitem}/subscribers/{ae_title}"),
    ("POST", "workitems/{workitem}/subscribers/{ae_title}/suspend"),
}
DELETES = {("DELETE", S), ("DELETE", R), ("DELETE", I)}
# EXPECTED is the PS3.18 resource tree. Extensions outside it (e.g. a change feed) are in the WADL
# too, since it lists what is served; those are checked to be routed, not listed here.
DICOMWEB_ROOTS = frozenset({"studies", "series", "instances", "workitems"})


def dicomweb(operations: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """The operations under the PS3.18 resource roots."""
    return {(method, path) for method, path in operations if path.split("/")[0] in DICOMWEB_ROOTS}
VALUES = {
    "study": "1.2.3",
    "series": "1.2.3.4",
    "instance": "1.2.3.4.5",
    "frames": "1",
    "path": "7FE00010",
    "workitem": "1.2.3.9",
    "ae_title": "VIEWER",
}


def concrete(template: str) -> str:
    """A request path for a URI template, with made-up UIDs."""
    return re.sub(r"{(\w+)}", lambda m: VALUES[m.group(1)], template)


def methods(document: bytes) -> set[tuple[str, str]]:
    """(method, full resource path) pairs of a WADL document."""
    root = ET.fromstring(document)
    found: set[tuple[str, str]] = set()

    def walk(element: ET.Element, prefix: str) -> None:
        for resource in element.findall(f"{W}resource"):
            path = f"{prefix}/{resource.get('path')}".strip("/")
            for method in resource.findall(f"{W}method"):
                found.add((str(method.get("name")), path))
            walk(resource, path)

    [resources] = root.findall(f"{W}resources")
    walk(resources, "")
    return found


async def routed(client: httpx.AsyncClient, method: str, template: str) -> httpx.Response:
    """Send ``method`` to a concrete path of ``template``; the route must exist and take the method."""
    r = await client.request(method, "/" + concrete(template))
    assert r.status_code != 405, (method, template, r.text)
    assert not (r.status_code == 404 and "no DICOMweb resource" in r.text), (method, template)
    assert r.status_code < 500, (method, template, r.text)
    return r


@pytest.fixture
async def delete_client(make_kit: Callable[..., DicomWeb]) -> AsyncIterator[httpx.AsyncClient]:
    async with make_kit(Settings(allow_delete=True)) as kit:
        transport = httpx.ASGITransport(app=host_app(kit))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver/dicom-web") as c:
            yield c


async def test_the_service_wadl_lists_exactly_what_is_served(client: httpx.AsyncClient) -> None:
    r = await client.options("/")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith(WADL)
    assert r.headers["allow"] == "OPTIONS"
    root = ET.fromstring(r.content)
    assert root.tag == f"{W}application"
    [resources] = root.findall(f"{W}resources")  # Annex H: one resources element, base = the service
    assert resources.get("base") == "http://testserver/dicom-web"
    listed = methods(r.content)
    assert dicomweb(listed) == EXPECTED
    for method, template in sorted(listed):
        await routed(client, method, template)


async def test_allow_delete_adds_delete_to_the_wadl_and_the_routes(
    client: httpx.AsyncClient, delete_client: httpx.AsyncClient
) -> None:
    r = await delete_client.options("/")
    assert dicomweb(methods(r.content)) == EXPECTED | DELETES
    for method, template in sorted(DELETES):
        r = await routed(delete_client, method, template)
        assert r.status_code == 404  # nothing stored: the route exists, the study does not
    r = await delete_client.options("/studies/1.2.3")
    assert r.headers["allow"] == "DELETE, GET, HEAD, OPTIONS, POST"
    # Without the setting: 405, saying which setting serves it.
    r = await client.delete("/studies/1.2.3")
    assert r.status_code == 405
    assert r.headers["allow"] == "GET, HEAD, OPTIONS, POST"
    assert "allow_delete" in r.text


@pytest.mark.parametrize(
    ("path", "allow", "top"),
    [
        ("/studies", "GET, HEAD, OPTIONS, POST", "studies"),
        ("/studies/", "GET, HEAD, OPTIONS, POST", "studies"),
        ("/studies/1.2.3/series/4.5/instances/6.7/frames/1,2", "GET, HEAD, OPTIONS", F),
        ("/studies/1.2.3/series/4.5/instances/6.7/bulkdata/7FE00010", "GET, HEAD, OPTIONS", I + "/bulkdata/{path}"),
        ("/workitems/1.2.3/state", "OPTIONS, PUT", "workitems/{workitem}/state"),
        ("/workitems/1.2.3/subscribers/AE1", "DELETE, OPTIONS, POST", "workitems/{workitem}/subscribers/{ae_title}"),
    ],
)
async def test_options_on_a_resource_describes_it_and_its_children(
    client: httpx.AsyncClient, path: str, allow: str, top: str
) -> None:
    r = await client.options(path)
    assert r.status_code == 200, r.text
    assert r.headers["allow"] == allow
    root = ET.fromstring(r.content)
    [resources] = root.findall(f"{W}resources")
    [resource] = resources.findall(f"{W}resource")  # Annex H: the Target Resource
    assert resource.get("path") == top
    listed = methods(r.content)
    assert listed == {(method, t) for method, t in EXPECTED if t == top or t.startswith(top + "/")}
    declared = {p.get("name") for p in resource.findall(f"{W}param") if p.get("style") == "template"}
    assert declared == set(re.findall(r"{(\w+)}", top))


async def test_the_wadl_describes_parameters_media_types_and_statuses(client: httpx.AsyncClient) -> None:
    r = await client.options("/studies")
    root = ET.fromstring(r.content)
    [search] = [m for m in root.iter(f"{W}method") if m.get("id") == "SearchForStudies"]
    params = {p.get("name"): p for p in search.iter(f"{W}param")}
    assert params["limit"].get("type") == "xsd:int"
    assert params["fuzzymatching"].get("type") == "xsd:boolean"
    assert params["includefield"].get("repeating") == "true"
    assert {"PatientName", "StudyInstanceUID", "offset", "accept"} <= params.keys()
    accept = {o.get("value") for o in params["Accept"].findall(f"{W}option")}
    assert accept == {"application/dicom+json", "application/json", 'multipart/related; type="application/dicom+xml"'}
    statuses = {resp.get("status") for resp in search.findall(f"{W}response")}
    assert {"200", "400", "406"} <= statuses
    [store] = [m for m in root.iter(f"{W}method") if m.get("id") == "StoreInstances"]
    request_types = {rep.get("mediaType") for rep in store.find(f"{W}request").findall(f"{W}representation")}  # type: ignore[union-attr]
    assert request_types == {
        'multipart/related; type="application/dicom"',
        'multipart/related; type="application/dicom+json"',
        'multipart/related; type="application/dicom+xml"',
    }


async def test_rendered_media_types_follow_the_installed_encoders(client: httpx.AsyncClient) -> None:
    r = await client.options("/studies/1.2.3/series/4.5/instances/6.7/rendered")
    root = ET.fromstring(r.content)
    [rendered] = [m for m in root.iter(f"{W}method") if m.get("id") == "RetrieveRenderedInstance"]
    [accept] = [p for p in rendered.iter(f"{W}param") if p.get("name") == "Accept"]
    offered = {o.get("value") for o in accept.findall(f"{W}option")}
    assert set(image_media_types()) <= offered
    assert ("video/mp4" in offered) == ("video/mp4" in video_media_types())
    assert ("image/jp2" in offered) == ("image/jp2" in image_media_types())


async def test_public_url_is_the_wadl_base(make_kit: Callable[..., DicomWeb]) -> None:
    async with make_kit(Settings(public_url="https://pacs.example.org/dicom-web/")) as kit:
        transport = httpx.ASGITransport(app=host_app(kit))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver/dicom-web") as c:
            r = await c.options("/")
    [resources] = ET.fromstring(r.content).findall(f"{W}resources")
    assert resources.get("base") == "https://pacs.example.org/dicom-web"


@pytest.mark.parametrize(("accept", "status"), [("*/*", 200), ("application/xml", 200), ("application/json", 406)])
async def test_capabilities_media_types(client: httpx.AsyncClient, accept: str, status: int) -> None:
    r = await client.options("/", headers={"Accept": accept})
    assert r.status_code == status, r.text
    if status == 200:
        assert ET.fromstring(r.content).tag == f"{W}application"
    else:
        assert "http://testserver/dicom-web/openapi.json" in r.text


async def test_get_on_the_root_says_where_the_descriptions_are(client: httpx.AsyncClient) -> None:
    # PS3.18 §8.9.1 defines OPTIONS only.
    r = await client.get("/")
    assert r.status_code == 405
    assert "OPTIONS gives the Capabilities" in r.text and "openapi.json" in r.text


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("POST", "/series", "GET, HEAD, OPTIONS"),
        ("PUT", "/studies/1.2.3/metadata", "GET, HEAD, OPTIONS"),
        ("PATCH", "/workitems", "GET, HEAD, OPTIONS, POST"),
        ("GET", "/workitems/1.2.3/state", "OPTIONS, PUT"),
        ("DELETE", "/studies/", "GET, HEAD, OPTIONS, POST"),
        ("GET", "/", "OPTIONS"),
    ],
)
async def test_a_method_not_served_is_405_with_allow(
    client: httpx.AsyncClient, method: str, path: str, allow: str
) -> None:
    r = await client.request(method, path)
    assert r.status_code == 405
    assert r.headers["allow"] == allow
    assert r.headers["content-type"].startswith("text/plain")
    assert f"{method} is not allowed" in r.text and allow in r.text
    assert r.headers["warning"].startswith("299 ")


async def test_head_is_get_without_a_body(client: httpx.AsyncClient) -> None:
    r = await client.head("/studies")
    assert r.status_code == 200
    assert r.content == b""
