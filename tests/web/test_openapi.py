"""The OpenAPI 3.1 document at {root}/openapi.json: valid, generated from the route table (the
same operations as the Capabilities WADL), every path served; and schemathesis against a live
server with a stored study finds no 5xx and no response the document does not describe."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from conftest import ADAPTERS, LiveServer, host_app
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from openapi_spec_validator import validate
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance
from test_capabilities import DELETES, EXPECTED, dicomweb, methods, routed

from dicomweb_kit import DicomWeb, Settings
from dicomweb_kit.testing import make_dataset, part10_bytes
from dicomweb_kit.testing.workitems import make_workitem
from dicomweb_kit.web.openapi import TITLE, openapi_document

pytestmark = pytest.mark.anyio


def operations(document: dict[str, Any]) -> set[tuple[str, str]]:
    """(METHOD, path without the leading slash) of every operation, the capabilities one aside."""
    return {
        (method.upper(), path.strip("/"))
        for path, item in document["paths"].items()
        for method in item
        if path != "/"
    }


async def test_the_document_is_valid_openapi_3_1(client: httpx.AsyncClient) -> None:
    r = await client.get("/openapi.json")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    document = r.json()
    validate(document)  # raises on an invalid document
    assert document["openapi"] == "3.1.0"
    assert document["info"]["title"] == TITLE == "dicomweb-kit DICOMweb API"
    assert document["servers"] == [{"url": "http://testserver/dicom-web"}]
    ids = [op["operationId"] for item in document["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))


async def test_the_document_lists_what_the_wadl_lists(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    wadl = (await client.options("/")).content
    assert operations(document) == methods(wadl)  # one table, two renderings
    assert dicomweb(operations(document)) == EXPECTED
    assert document["paths"]["/"]["options"]["operationId"] == "RetrieveCapabilities"
    for method, path in sorted(operations(document)):
        await routed(client, method, path)


async def test_allow_delete_and_public_url(make_kit: Callable[..., DicomWeb]) -> None:
    settings = Settings(allow_delete=True, public_url="https://pacs.example.org/dicom-web")
    async with make_kit(settings) as kit:
        transport = httpx.ASGITransport(app=host_app(kit))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver/dicom-web") as c:
            document = (await c.get("/openapi.json")).json()
    validate(document)
    assert dicomweb(operations(document)) == EXPECTED | DELETES
    assert document["servers"] == [{"url": "https://pacs.example.org/dicom-web"}]
    assert "allow_delete" in document["paths"]["/studies/{study}"]["delete"]["description"]


async def test_operations_describe_parameters_bodies_and_statuses(kit: DicomWeb) -> None:
    document = openapi_document(kit, "http://h/dicom-web")
    search = document["paths"]["/studies"]["get"]
    params = {p["name"]: p for p in search["parameters"]}
    assert params["limit"]["schema"] == {"type": "integer", "minimum": 0}
    assert params["includefield"]["schema"]["type"] == "array"
    assert "application/dicom+json" in search["responses"]["200"]["content"]
    assert "text/plain" in search["responses"]["400"]["content"]
    store = document["paths"]["/studies"]["post"]
    assert 'multipart/related; type="application/dicom+json"' in store["requestBody"]["content"]
    assert "description" in search and "any attribute keyword" in search["description"]
    assert {"200", "202", "409", "415"} <= store["responses"].keys()
    frames = document["paths"]["/studies/{study}/series/{series}/instances/{instance}/frames/{frames}"]["get"]
    path_params = [p for p in frames["parameters"] if p["in"] == "path"]
    assert [p["name"] for p in path_params] == ["study", "series", "instance", "frames"]
    assert all(p["required"] for p in path_params)
    assert "video/mp4" not in frames["responses"]["200"]["content"]
    assert search["externalDocs"]["url"].endswith("/part18/sect_10.6.html")


# ----------------------------------------------------------------------------- schemathesis
# Through schemathesis's Python API (`APIOperation.as_strategy` under a bounded Hypothesis run):
# its pytest plugin (`schemathesis.pytest.from_fixture`) reads a private attribute pytest 9 no
# longer has.


def _live(adapter: str, tmp: Path) -> Iterator[tuple[Any, dict[str, str]]]:
    """A live server on ``adapter`` holding one study; its OpenAPI document as a schemathesis schema,
    and the path parameters of that study (to hit real resources, not only 400s and 404s)."""
    blobs, index = ADAPTERS[adapter](tmp)
    kit = DicomWeb(blobs=blobs, index=index)  # type: ignore[arg-type]
    ds = make_dataset(rows=8, columns=8)
    with LiveServer(host_app(kit)) as server, httpx.Client(base_url=server.url) as http:
        body = b"--b\r\nContent-Type: application/dicom\r\n\r\n" + part10_bytes(ds) + b"\r\n--b--"
        r = http.post("/studies", content=body, headers={"Content-Type": "multipart/related; boundary=b"})
        assert r.status_code == 200, r.text
        metadata = http.get(f"/studies/{ds.StudyInstanceUID}/metadata").text
        bulk = re.search(r'/bulkdata/([^"]+)"', metadata)
        assert bulk is not None
        workitem = "1.2.826.0.1.3680043.8.498.4242"
        r = http.post(
            f"/workitems?AffectedSOPInstanceUID={workitem}",
            content=json.dumps([make_workitem()]),
            headers={"Content-Type": "application/dicom+json"},
        )
        assert r.status_code == 201, r.text
        stored = {
            "study": ds.StudyInstanceUID,
            "series": ds.SeriesInstanceUID,
            "instance": ds.SOPInstanceUID,
            "frames": "1",
            "path": bulk.group(1),
            "workitem": workitem,
            "ae_title": "VIEWER",
        }
        document = http.get("/openapi.json").json()
        for item in document["paths"].values():
            for method in [m for m, op in item.items() if _streams(op)]:
                del item[method]  # an endless stream (Server-Sent Events) is no request/response case
        schema = schemathesis.openapi.from_dict(document)
        schema.config.update(base_url=server.url)
        yield schema, stored


# STOW-RS bodies: schemathesis has no multipart/related writer; generated bytes go as they are
# (and get a 400 or 415, as documented).
for _kind in ("application/dicom", "application/dicom+json", "application/dicom+xml"):
    schemathesis.serializer.alias(f'multipart/related; type="{_kind}"', "application/octet-stream")

def _streams(operation: dict[str, Any]) -> bool:
    return any("text/event-stream" in r.get("content", {}) for r in operation["responses"].values())


# Bounded: a few examples per operation and mode; the whole run is well under a minute.
_BOUNDED = settings(
    max_examples=3,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)


@pytest.mark.parametrize("adapter", sorted(ADAPTERS))
def test_schemathesis_finds_no_server_error_and_no_undocumented_response(adapter: str, tmp_path: Path) -> None:
    failures: list[str] = []
    statuses: dict[str, set[int]] = {}
    for schema, stored in _live(adapter, tmp_path):
        found = [result.ok() for result in schema.get_all_operations()]
        assert len(found) > len(EXPECTED)  # and OPTIONS on the root
        for operation in found:
            names = {p.name for p in operation.path_parameters}
            real = {name: value for name, value in stored.items() if name in names}
            strategies = [
                operation.as_strategy(),
                operation.as_strategy(path_parameters=real),
                operation.as_strategy(GenerationMode.NEGATIVE),
            ]
            for strategy in strategies:

                @given(case=strategy)
                @_BOUNDED
                def check(case: Any) -> None:
                    # Not positive_data_acceptance: a schema-valid string may still be a bad DICOM
                    # value (a UID with a NUL, a malformed date range), which is a 400 by design.
                    response = case.call_and_validate(excluded_checks=[positive_data_acceptance])
                    label = f"{case.operation.method.upper()} {case.operation.path}"
                    statuses.setdefault(label, set()).add(response.status_code)

                try:
                    check()
                except Unsatisfiable:
                    pass  # no negative case exists (OPTIONS on the root takes nothing)
                except (Exception, BaseExceptionGroup) as exc:  # collect all, to see every operation that fails
                    failures.append(f"{operation.method.upper()} {operation.path}: {exc}")
    assert not failures, "\n\n".join(failures)
    # The stored study and workitem were reached: every retrieve answered 2xx at least once.
    missed = [
        label
        for label, codes in statuses.items()
        if label.startswith(("GET /studies/", "GET /workitems/")) and not any(200 <= code < 300 for code in codes)
    ]
    assert not missed, statuses
