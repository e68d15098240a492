"""The pages for people in headless chromium against a live kit: ReDoc (``{root}/docs``) with the
self-hosted script renders the API's title, the cheatsheet shows its endpoints; and the
cross-origin settings as a browser applies them (a preflight with Authorization from another origin,
cross-origin isolation). A screenshot of each page goes to the run's screenshot folder.

ReDoc comes from npm (``npm pack redoc@2``, cached in ``~/.cache/dicomweb-kit``); without npm or a
registry these tests skip, unless ``CI=true``.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import tarfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest
from conftest import LiveServer
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from dicomweb_kit import Settings
from dicomweb_kit.testing import make_dataset
from dicomweb_kit.web.cross_origin import cross_origin

from .conftest import KitServer

pytest.importorskip("selenium", reason="browser tests need selenium (pip install -e '.[test]')")

from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By

REDOC = "redoc@2"
CACHE = Path.home() / ".cache" / "dicomweb-kit"
TITLE = "dicomweb-kit DICOMweb API"
TIMEOUT = 30.0


def wait_for(what: str, check: Callable[[], Any], timeout: float = TIMEOUT) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            found = check()
        except Exception:  # the page is still building its DOM
            found = None
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.fixture(scope="session")
def redoc_js() -> Path:
    """ReDoc's ``bundles/redoc.standalone.js`` from the npm package, fetched once into the cache."""
    target = CACHE / "redoc-2"
    script = target / "package" / "bundles" / "redoc.standalone.js"
    if script.is_file():
        return script
    reason = None
    if shutil.which("npm") is None:
        reason = "npm is not installed (Debian: npm)"
    else:
        target.mkdir(parents=True, exist_ok=True)
        try:
            out = subprocess.run(
                ["npm", "pack", REDOC, "--silent"], cwd=target, check=True, capture_output=True, text=True, timeout=300
            )
            with tarfile.open(target / out.stdout.strip().splitlines()[-1]) as archive:
                archive.extractall(target, filter="data")
        except (subprocess.SubprocessError, OSError, tarfile.TarError, IndexError) as exc:
            reason = f"npm could not fetch {REDOC}: {exc}"
    if reason is not None or not script.is_file():
        reason = reason or f"{REDOC} has no bundles/redoc.standalone.js"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} (CI=true: the ReDoc page must be checked)")
        pytest.skip(reason)
    return script


@pytest.fixture(scope="module")
def docs_server(serve_kit: Callable[..., KitServer], redoc_js: Path) -> KitServer:
    """A live kit serving its own copy of ReDoc, as on a network without internet access."""
    return serve_kit(Settings(redoc_js_file=str(redoc_js)))


def test_redoc_page_renders_the_api_title(
    browser: WebDriver, docs_server: KitServer, screenshot: Callable[[str], Path]
) -> None:
    document = httpx.get(docs_server.url + "/openapi.json").json()
    assert document["info"]["title"] == TITLE
    browser.get(docs_server.url + "/docs")
    heading = wait_for(
        "ReDoc to render the API title",
        lambda: next((h for h in browser.find_elements(By.CSS_SELECTOR, "h1") if TITLE in h.text), None),
    )
    assert heading.is_displayed()
    # ReDoc has rendered the operations too: the menu lists the document's tags.
    wait_for("ReDoc's menu", lambda: "QIDO-RS" in browser.find_element(By.TAG_NAME, "body").text)
    screenshot("docs-redoc")
    # What the page needs came from the kit itself: the script and the document. (ReDoc's sidebar
    # asks cdn.redoc.ly for its "API docs by Redocly" logo and hides it when that fails.)
    resources = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert docs_server.url + "/docs/redoc.standalone.js" in resources
    assert docs_server.url + "/openapi.json" in resources
    logo = "https://cdn.redoc.ly/redoc/logo-mini.svg"
    assert all(url.startswith(docs_server.origin) or url == logo for url in resources), resources
    assert not browser.find_element(By.ID, "redoc-error").is_displayed()


def test_redoc_page_explains_an_unreachable_script(
    browser: WebDriver, serve_kit: Callable[..., KitServer], screenshot: Callable[[str], Path]
) -> None:
    """Without internet access the CDN default fails to load: the page says what to set."""
    server = serve_kit(Settings(redoc_js_url="http://127.0.0.1:9/redoc.standalone.js"))
    browser.get(server.url + "/docs")
    error = wait_for("the error note", lambda: (e := browser.find_element(By.ID, "redoc-error")).is_displayed() and e)
    assert "redoc_js_file" in error.text
    screenshot("docs-redoc-unreachable")


def test_cheatsheet_shows_its_endpoints(
    browser: WebDriver, docs_server: KitServer, screenshot: Callable[[str], Path], screenshot_dir: Path
) -> None:
    document = httpx.get(docs_server.url + "/openapi.json").json()
    expected = [
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in ("get", "head", "post", "put", "patch", "delete", "options")
        if method in item
    ]
    browser.get(docs_server.url + "/cheatsheet")
    headings = wait_for("the cheatsheet's sections", lambda: browser.find_elements(By.CSS_SELECTOR, "section h3"))
    shown = [tuple(h.get_attribute("textContent").split(maxsplit=1)) for h in headings]
    assert shown == expected
    assert headings[0].is_displayed()
    # The table of contents links to each section.
    links = browser.find_elements(By.CSS_SELECTOR, "nav a")
    assert len(links) == len(expected)
    screenshot("cheatsheet")
    # The whole page too, for a person to read (Chromium's DevTools protocol: beyond the viewport).
    shot = browser.execute_cdp_cmd("Page.captureScreenshot", {"captureBeyondViewport": True, "format": "png"})
    (screenshot_dir / "cheatsheet-full.png").write_bytes(base64.b64decode(shot["data"]))
    links[-1].click()
    wait_for("the last section in view", lambda: browser.execute_script("return window.scrollY") > 0)
    screenshot("cheatsheet-last-section")


@pytest.fixture(scope="module")
def viewer_origin() -> Iterator[str]:
    """Another origin (another port), standing in for a viewer such as OHIF."""

    async def page(_: Request) -> HTMLResponse:
        return HTMLResponse("<!DOCTYPE html><title>viewer</title><p>a viewer on another origin</p>")

    with LiveServer(Starlette(routes=[Route("/", page)])) as server:
        yield f"http://127.0.0.1:{server.port}"


FETCH = """
const done = arguments[arguments.length - 1];
fetch(arguments[0], {headers: {Authorization: 'Bearer token', Accept: 'application/dicom+json'}})
  .then(async r => done({status: r.status, warning: r.headers.get('Warning'), body: await r.text()}))
  .catch(e => done({error: String(e)}));
"""


def test_a_viewer_on_another_origin_calls_with_authorization(
    browser: WebDriver, serve_kit: Callable[..., KitServer], viewer_origin: str
) -> None:
    """The browser sends a preflight (Authorization is not a safelisted header) and then the GET;
    with the viewer's origin allowed both pass and the answer (and an error's Warning) is
    readable, without it the browser refuses."""
    allowed = serve_kit(Settings(cors_origins=(viewer_origin,)))
    refused = serve_kit()
    allowed.store([make_dataset(patient_name="Cross^Origin")])
    browser.set_script_timeout(TIMEOUT)
    browser.get(viewer_origin + "/")
    answer = browser.execute_async_script(FETCH, allowed.url + "/studies")
    assert answer.get("status") == 200, answer
    assert '"0020000D"' in answer["body"]
    answer = browser.execute_async_script(FETCH, allowed.url + "/studies/1.2.3/metadata")
    assert answer.get("status") == 404 and "1.2.3" in (answer.get("warning") or ""), answer
    answer = browser.execute_async_script(FETCH, refused.url + "/studies")
    assert "error" in answer and "Failed to fetch" in answer["error"], answer


def test_cross_origin_isolation_in_the_browser(browser: WebDriver, serve_kit: Callable[..., KitServer]) -> None:
    """With ``cross_origin_isolation`` the kit's pages are cross-origin isolated (what OHIF's
    decoders need for SharedArrayBuffer); without it they are not."""
    for settings, isolated in ((Settings(), False), (Settings(cross_origin_isolation=True), True)):
        server = serve_kit(settings)
        browser.get(server.url + "/cheatsheet")
        wait_for("the cheatsheet", lambda: browser.find_elements(By.CSS_SELECTOR, "section h3"))
        assert browser.execute_script("return self.crossOriginIsolated") is isolated
        assert browser.execute_script("return typeof SharedArrayBuffer") == ("function" if isolated else "undefined")



IMAGE = """
const done = arguments[arguments.length - 1];
const img = new Image();
img.onload = () => done({width: img.naturalWidth});
img.onerror = () => done({error: 'blocked'});
img.src = arguments[0];
"""


@pytest.mark.parametrize(("policy", "loads"), [(None, False), ("cross-origin", True)])
def test_an_isolated_viewer_on_another_origin_loads_our_images(
    browser: WebDriver,
    serve_kit: Callable[..., KitServer],
    policy: Literal["same-origin", "same-site", "cross-origin"] | None,
    loads: bool,
) -> None:
    """A cross-origin-isolated viewer page (COEP require-corp; served by a host app through
    ``cross_origin``, as README shows) may load a thumbnail without CORS only when our answer's
    ``Cross-Origin-Resource-Policy`` lets it: not with the default ``same-origin``, yes with
    ``cross-origin``."""
    kit_server = serve_kit(Settings(cross_origin_isolation=True, cross_origin_resource_policy=policy))
    ds = make_dataset(rows=32, columns=32)
    kit_server.store([ds])

    async def page(_: Request) -> HTMLResponse:
        return HTMLResponse("<!DOCTYPE html><title>isolated viewer</title><p>viewer</p>")

    viewer = cross_origin(Starlette(routes=[Route("/", page)]), Settings(cross_origin_isolation=True))
    with LiveServer(viewer) as server:  # type: ignore[arg-type]
        browser.set_script_timeout(TIMEOUT)
        browser.get(f"http://127.0.0.1:{server.port}/")
        assert browser.execute_script("return self.crossOriginIsolated") is True
        thumbnail = f"{kit_server.url}/studies/{ds.StudyInstanceUID}/thumbnail"
        assert httpx.get(thumbnail).status_code == 200
        answer = browser.execute_async_script(IMAGE, thumbnail)
        assert (answer.get("width", 0) > 0) is loads, answer
