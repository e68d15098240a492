"""The study browser's page and files over HTTP: media types, headers, relative URLs that resolve
under any mount prefix, and no page at all when the setting is off (the library's default)."""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from urllib.parse import urljoin

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from dicomweb_kit import DicomWeb, Settings
from dicomweb_kit.web.study_browser import ASSETS, STATIC

pytestmark = pytest.mark.anyio

PREFIXES = ["/dicom-web", "/hospital/pacs/v1"]


@asynccontextmanager
async def browser_client(kit: DicomWeb, root: str) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=Starlette(routes=[Mount(root, app=kit.app)]))
    async with kit, httpx.AsyncClient(transport=transport, base_url=f"http://testserver{root}/") as client:
        yield client


@pytest.mark.parametrize("root", PREFIXES)
async def test_the_page_and_every_file_it_names_are_served_under_the_prefix(
    make_kit: Callable[..., DicomWeb], root: str
) -> None:
    async with browser_client(make_kit(Settings(study_browser=True)), root) as client:
        page = await client.get("browse")
        assert page.status_code == 200
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        assert page.headers["x-content-type-options"] == "nosniff"
        policy = page.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "default-src 'none'" in policy
        # Every URL in the page is relative: resolved against the page, it is under the prefix.
        references = re.findall(r'(?:src|href)="([^"#]+)"', page.text)
        assert sorted(set(references)) == ["browse/browser.css", "browse/browser.js", "browse/icon.svg"]
        expected = {"browser.css": "text/css; charset=utf-8", "browser.js": "text/javascript; charset=utf-8"}
        expected["icon.svg"] = "image/svg+xml"
        for reference in references:
            url = urljoin(str(page.url), reference)
            assert url.startswith(f"http://testserver{root}/browse/")
            answer = await client.get(url)
            assert answer.status_code == 200, url
            assert answer.headers["content-type"] == expected[reference.rsplit("/", 1)[1]]
            assert answer.headers["x-content-type-options"] == "nosniff"
            assert answer.content == (STATIC / reference.rsplit("/", 1)[1]).read_bytes()
        # The script calls the DICOMweb resources by relative URL too, never from the host's root.
        script = (await client.get("browse/browser.js")).text
        assert 'fetch("/' not in script and 'open("POST", "studies")' in script
        # HEAD, as for any GET resource.
        head = await client.head("browse")
        assert head.status_code == 200 and head.content == b""


@pytest.mark.parametrize("root", PREFIXES)
async def test_a_trailing_slash_is_sent_to_the_page_by_a_relative_redirect(
    make_kit: Callable[..., DicomWeb], root: str
) -> None:
    async with browser_client(make_kit(Settings(study_browser=True)), root) as client:
        answer = await client.get("browse/")
        assert answer.status_code == 308
        assert answer.headers["location"] == "../browse"
        assert urljoin(str(answer.url), answer.headers["location"]) == f"http://testserver{root}/browse"


async def test_only_the_shipped_files_are_served(make_kit: Callable[..., DicomWeb]) -> None:
    assert sorted(path.name for path in STATIC.iterdir()) == sorted([*ASSETS, "index.html"])
    async with browser_client(make_kit(Settings(study_browser=True)), "/dicom-web") as client:
        for name in ("index.html", "nope.js", "..%2Fstudy_browser.py", "%2E%2E%2Fapp.py"):
            answer = await client.get(f"browse/{name}")
            assert answer.status_code == 404, name
            assert answer.headers["content-type"].startswith("text/plain")
        assert (await client.post("browse")).status_code == 405
        # The DICOMweb resources beside it are unchanged.
        studies = await client.get("studies", headers={"Accept": "application/dicom+json"})
        assert studies.status_code == 200 and studies.json() == []


@pytest.mark.parametrize("root", PREFIXES)
async def test_no_browser_when_the_setting_is_off(make_kit: Callable[..., DicomWeb], root: str) -> None:
    assert Settings().study_browser is False
    async with browser_client(make_kit(), root) as client:
        for path in ("browse", "browse/", "browse/browser.js", "browse/browser.css"):
            answer = await client.get(path)
            assert answer.status_code == 404, path
            assert "no DICOMweb resource" in answer.text


@pytest.mark.parametrize(("environ", "served"), [({}, True), ({"DICOMWEB_KIT_STUDY_BROWSER": "0"}, False)])
async def test_serve_has_the_browser_unless_told_not_to(
    monkeypatch: pytest.MonkeyPatch, environ: dict[str, str], served: bool
) -> None:
    from dicomweb_kit import cli

    monkeypatch.setenv(cli.ENV_DATABASE_URL, "memory")
    monkeypatch.setenv(cli.ENV_ROOT, "/dicom-web")
    monkeypatch.delenv(cli.ENV_STUDY_BROWSER, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    app = cli.create_standalone_app()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as client:
        answer = await client.get("/dicom-web/browse")
    assert answer.status_code == (200 if served else 404)


def test_serve_no_browser_option_sets_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from dicomweb_kit import cli

    started: list[object] = []
    monkeypatch.setattr("uvicorn.run", lambda *args, **kwargs: started.append(kwargs))
    monkeypatch.setattr(os, "environ", os.environ.copy())  # serve exports its options there
    os.environ.pop(cli.ENV_STUDY_BROWSER, None)
    assert cli.main(["serve", "--database-url", "memory"]) == 0
    assert cli.ENV_STUDY_BROWSER not in os.environ  # on: the factory's default
    assert cli.main(["serve", "--database-url", "memory", "--no-browser"]) == 0
    assert os.environ[cli.ENV_STUDY_BROWSER] == "0"
    assert len(started) == 2
