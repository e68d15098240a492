"""The pages for people: ``{root}/docs`` (ReDoc) and ``{root}/cheatsheet``, generated from the
OpenAPI document."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import AsyncIterator, Mapping
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import LiveServer
from dicomweb_kit_adapters.memory import MemoryBlobStore, MemoryIndex
from starlette.applications import Starlette
from starlette.routing import Mount

from dicomweb_kit import ConfigurationError, DicomWeb, Settings
from dicomweb_kit.testing import make_dataset, part10_bytes
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
        "/studies/{study}/bulkdata/{path}": {
            "get": {
                "summary": "A bulk data value",
                "parameters": [{"name": "path", "in": "path", "required": True}],
                "responses": {"200": {"description": "the value", "content": {"application/octet-stream": {}}}},
            }
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
    # A path parameter named `path` must not become the shell's PATH.
    assert "DICOMWEB_PATH=..." in setup_shell and not re.search(r"^PATH=", setup_shell, re.M)
    curl, python = examples[("GET", "/studies/{study}/bulkdata/{path}")]
    assert curl.startswith('curl "$ROOT/studies/$STUDY/bulkdata/$DICOMWEB_PATH"')
    assert 'httpx.get(f"{root}/studies/{study}/bulkdata/{path}", headers=' in python
    curl, python = examples[("PUT", "/workitems/{workitem}/state")]
    assert curl.startswith('curl -X PUT "$ROOT/workitems/$WORKITEM/state?transaction=..."')
    assert """--data-binary '{"00741000": {"vr": "CS"}}'""" in curl
    assert "params={'transaction': '...'}" in python and python.count("httpx.put(") == 1


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


async def test_cheatsheet_lists_every_operation_of_the_served_document(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    r = await client.get("/cheatsheet")
    assert r.status_code == 200
    sections = parse(r.text)
    assert sections.headings == operations(document)
    assert {path for _, path in sections.headings} == set(document["paths"])
    assert "ROOT=http://testserver/dicom-web" in r.text
    for python in sections.code[1::2]:
        compile(python, "<example>", "exec")


async def test_docs_page_of_the_kit(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    r = await client.get("/docs")
    assert r.status_code == 200
    assert f"<title>{document['info']['title']}</title>" in r.text
    assert '<redoc spec-url="http://testserver/dicom-web/openapi.json">' in r.text


def examples_of(page: str) -> tuple[str, str, dict[tuple[str, str], tuple[str, str]]]:
    """The shell and Python set-up blocks, and (curl, python) per (METHOD, path)."""
    code = parse(page).code
    return code[0], code[1], dict(zip(parse(page).headings, zip(code[2::2], code[3::2], strict=True), strict=True))


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
def test_the_examples_work_against_a_live_server(
    live_server: LiveServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The curl STOW-RS example stores a file; the Python examples search and retrieve it."""
    page = httpx.get(live_server.url + "/cheatsheet").text
    shell, python, examples = examples_of(page)
    ds = make_dataset()
    (tmp_path / "image.dcm").write_bytes(part10_bytes(ds))
    setup = shell.replace("STUDY=...", f"STUDY={ds.StudyInstanceUID}")
    curl, _ = examples[("POST", "/studies")]
    run = subprocess.run(["bash", "-c", f"{setup}\n{curl} -sS -o out.json -w '%{{http_code}}'"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert run.stdout == "200", run.stderr + (tmp_path / "out.json").read_text()
    curl, _ = examples[("GET", "/studies/{study}/metadata")]
    run = subprocess.run(["bash", "-c", f"{setup}\n{curl} -sS"], capture_output=True, text=True, timeout=60)
    assert json.loads(run.stdout)[0]["0020000D"]["Value"] == [ds.StudyInstanceUID]
    namespace: dict[str, Any] = {"print": lambda *_: None}
    exec(python.replace("study = '...'", f"study = {ds.StudyInstanceUID!r}"), namespace)
    exec(examples[("GET", "/studies")][1], namespace)
    assert namespace["r"].status_code == 200
    assert namespace["r"].json()[0]["0020000D"]["Value"] == [ds.StudyInstanceUID]
    exec(examples[("GET", "/studies/{study}")][1], namespace)
    assert namespace["r"].status_code == 200
    parts = namespace["r"].content.split(b"\r\n\r\n", 1)[1]
    assert part10_bytes(ds)[:200] in parts  # the stored instance, as sent
    (tmp_path / "image.dcm").write_bytes(part10_bytes(make_dataset(study=ds.StudyInstanceUID)))
    monkeypatch.chdir(tmp_path)
    exec(examples[("POST", "/studies")][1], namespace)
    assert namespace["r"].status_code == 200
    assert len(httpx.get(f"{live_server.url}/studies/{ds.StudyInstanceUID}/instances").json()) == 2


async def test_pages_answer_head_and_a_trailing_slash(client: httpx.AsyncClient) -> None:
    for page in ("/docs", "/cheatsheet"):
        r = await client.head(page)
        assert r.status_code == 200 and r.headers["content-type"] == "text/html; charset=utf-8"
        r = await client.get(page + "/", follow_redirects=True)
        assert r.status_code == 200 and str(r.url) == f"http://testserver/dicom-web{page}"
        r = await client.post(page)
        assert r.status_code == 405 and "GET" in r.headers["allow"]
