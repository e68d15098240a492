"""The pages for people: ``{root}/docs`` (ReDoc) and ``{root}/cheatsheet``, generated from the
OpenAPI document."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest
from dicomweb_kit_adapters.memory import MemoryBlobStore, MemoryIndex
from starlette.applications import Starlette
from starlette.routing import Mount

from dicomweb_kit import ConfigurationError, DicomWeb, Settings
from dicomweb_kit.web.cheatsheet import cheatsheet_html
from dicomweb_kit.web.pages import page_routes

pytestmark = pytest.mark.anyio

# A small document in the OpenAPI 3.1 shape: path-level and $ref parameters, a multipart body,
# a JSON body with an example, a required query parameter, several response media types.
FIXTURE: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "dicomweb-kit DICOMweb API", "version": "0"},
    "paths": {
        "/studies": {
            "get": {
                "summary": "Search for studies",
                "parameters": [{"name": "PatientName", "in": "query", "schema": {"type": "string"}}],
                "responses": {
                    "200": {"description": "matches", "content": {"application/dicom+json": {}}},
                    "400": {"description": "bad query"},
                },
            },
            "post": {
                "summary": "Store instances",
                "requestBody": {"content": {'multipart/related; type="application/dicom"': {}}},
                "responses": {"200": {"description": "stored", "content": {"application/dicom+json": {}}}},
            },
        },
        "/studies/{study}/series/{series}": {
            "parameters": [{"$ref": "#/components/parameters/study"}, {"$ref": "#/components/parameters/series"}],
            "get": {
                "summary": "Retrieve a series",
                "responses": {
                    "200": {
                        "description": "the instances",
                        "content": {'multipart/related; type="application/dicom"': {}, "application/zip": {}},
                    },
                    "404": {"description": "no such series"},
                },
            },
        },
        "/workitems/{workitem}/state": {
            "put": {
                "summary": "Change a workitem's state",
                "parameters": [
                    {"name": "workitem", "in": "path", "required": True, "example": "1.2.3.4"},
                    {"name": "transaction", "in": "query", "required": True},
                ],
                "requestBody": {"content": {"application/dicom+json": {"example": {"00741000": {"vr": "CS"}}}}},
                "responses": {"200": {"description": "changed"}},
            }
        },
    },
    "components": {
        "parameters": {
            "study": {"name": "study", "in": "path", "required": True, "description": "Study Instance UID"},
            "series": {"name": "series", "in": "path", "required": True, "schema": {"example": "1.2.9"}},
        }
    },
}


def operations(document: Mapping[str, Any]) -> list[tuple[str, str]]:
    methods = ("get", "head", "post", "put", "patch", "delete", "options")
    return [(m.upper(), p) for p, item in document["paths"].items() for m in methods if m in item]


class Sections(HTMLParser):
    """The (method, path) heading of each section, and the text of each <pre>."""

    def __init__(self) -> None:
        super().__init__()
        self.headings: list[tuple[str, str]] = []
        self.code: list[str] = []
        self._stack: list[str] = []
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._stack.append(tag)
        if tag in ("h3", "pre"):
            self._text = []

    def handle_endtag(self, tag: str) -> None:
        self._stack.pop()
        if tag == "h3":
            method, path = "".join(self._text).split(maxsplit=1)
            self.headings.append((method, path))
        elif tag == "pre":
            self.code.append("".join(self._text))

    def handle_data(self, data: str) -> None:
        self._text.append(data)


def parse(page: str) -> Sections:
    parser = Sections()
    parser.feed(page)
    return parser


def test_cheatsheet_lists_every_operation_of_the_document() -> None:
    page = cheatsheet_html(FIXTURE, root="http://pacs/dicom-web", docs_url="/d", openapi_url="/o")
    assert parse(page).headings == operations(FIXTURE)


def test_cheatsheet_examples() -> None:
    page = cheatsheet_html(FIXTURE, root="http://pacs/dicom-web", docs_url="/d", openapi_url="/o")
    code = parse(page).code
    setup_shell, setup_python = code[0], code[1]
    assert "ROOT=http://pacs/dicom-web" in setup_shell
    assert "STUDY=... " in setup_shell and "# Study Instance UID" in setup_shell
    assert "SERIES=1.2.9" in setup_shell and "WORKITEM=1.2.3.4" in setup_shell
    assert "root = 'http://pacs/dicom-web'" in setup_python and "series = '1.2.9'" in setup_python
    examples = dict(zip(operations(FIXTURE), zip(code[2::2], code[3::2], strict=True), strict=True))
    curl, python = examples[("GET", "/studies/{study}/series/{series}")]
    assert curl.startswith('curl "$ROOT/studies/$STUDY/series/$SERIES"')
    assert """-H 'Accept: multipart/related; type="application/dicom"'""" in curl
    assert 'f"{root}/studies/{study}/series/{series}"' in python
    curl, python = examples[("POST", "/studies")]
    assert """-H 'Content-Type: multipart/related; type="application/dicom"'""" in curl
    assert "-F 'file=@image.dcm;type=application/dicom'" in curl
    assert "boundary=example" in python
    curl, python = examples[("PUT", "/workitems/{workitem}/state")]
    assert curl.startswith('curl -X PUT "$ROOT/workitems/$WORKITEM/state?transaction=..."')
    assert """--data-binary '{"00741000": {"vr": "CS"}}'""" in curl
    assert "params={'transaction': '...'}" in python


def test_cheatsheet_python_examples_compile() -> None:
    page = cheatsheet_html(FIXTURE, root="http://pacs/dicom-web", docs_url="/d", openapi_url="/o")
    code = parse(page).code
    for python in code[1::2]:
        compile(python, "<example>", "exec")


def test_cheatsheet_escapes_what_it_shows() -> None:
    document = {"info": {"title": "<b>x</b>"}, "paths": {"/a<b>": {"get": {"summary": "<script>", "responses": {}}}}}
    page = cheatsheet_html(document, root="http://h/<r>", docs_url="/d", openapi_url="/o")
    assert "<script>" not in page and "<b>" not in page and "<r>" not in page


def host(kit: DicomWeb) -> Starlette:
    return Starlette(
        routes=[Mount("/dicom-web", routes=page_routes(kit, document=lambda _kit, _root: FIXTURE))],
        lifespan=kit.lifespan,
    )


@pytest.fixture
async def pages() -> AsyncIterator[httpx.AsyncClient]:
    kit = DicomWeb(blobs=MemoryBlobStore(), index=MemoryIndex())
    transport = httpx.ASGITransport(app=host(kit))
    async with kit, httpx.AsyncClient(transport=transport, base_url="http://pacs.example/dicom-web") as c:
        yield c


async def test_docs_page_loads_redoc_from_the_cdn_by_default(pages: httpx.AsyncClient) -> None:
    r = await pages.get("/docs")
    assert r.status_code == 200 and r.headers["content-type"] == "text/html; charset=utf-8"
    assert '<redoc spec-url="http://pacs.example/dicom-web/openapi.json">' in r.text
    assert f'<script src="{Settings().redoc_js_url}"' in r.text
    assert "<title>dicomweb-kit DICOMweb API</title>" in r.text
    assert (await pages.get("/docs/redoc.standalone.js")).status_code == 404


async def test_docs_page_with_a_self_hosted_redoc(tmp_path: Path) -> None:
    script = tmp_path / "redoc.standalone.js"
    script.write_text("/* redoc */")
    kit = DicomWeb(blobs=MemoryBlobStore(), index=MemoryIndex(), settings=Settings(redoc_js_file=str(script)))
    transport = httpx.ASGITransport(app=host(kit))
    async with httpx.AsyncClient(transport=transport, base_url="http://pacs.example/dicom-web") as c:
        r = await c.get("/docs")
        assert '<script src="http://pacs.example/dicom-web/docs/redoc.standalone.js"' in r.text
        js = await c.get("/docs/redoc.standalone.js")
        assert js.status_code == 200 and js.text == "/* redoc */"
        assert js.headers["content-type"] == "text/javascript; charset=utf-8"


def test_a_missing_redoc_file_is_a_configuration_error(tmp_path: Path) -> None:
    kit = DicomWeb(
        blobs=MemoryBlobStore(), index=MemoryIndex(), settings=Settings(redoc_js_file=str(tmp_path / "nope.js"))
    )
    with pytest.raises(ConfigurationError, match="redoc_js_file"):
        page_routes(kit)


async def test_cheatsheet_page_uses_the_service_root(pages: httpx.AsyncClient) -> None:
    r = await pages.get("/cheatsheet")
    assert r.status_code == 200 and r.headers["content-type"] == "text/html; charset=utf-8"
    assert parse(r.text).headings == operations(FIXTURE)
    assert "ROOT=http://pacs.example/dicom-web" in r.text
    assert re.search(r'href="http://pacs.example/dicom-web/docs"', r.text)
