"""Fixtures for tests in a real browser: Debian's headless chromium driven by selenium, a live
kit (files + SQLite, uvicorn on loopback) with a stored study, and a folder for screenshots.

Without ``/usr/bin/chromium``, ``/usr/bin/chromedriver`` or selenium the browser tests skip with
the reason; with ``CI=true`` they fail instead (``.ci/run`` installs them). Screenshots go to
``$DICOMWEB_KIT_SCREENSHOTS`` if set, else to a temporary folder; the run's summary prints where.

``tests/browser`` is a package (``__init__.py``) so that this module is ``browser.conftest``: a
second top-level ``conftest`` module would shadow ``tests/conftest.py`` for the test modules that
``from conftest import ...``.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import httpx
import numpy as np
import pytest
from conftest import LiveServer
from dicomweb_kit_adapters.filesystem import FileBlobStore
from dicomweb_kit_adapters.sql import SqlIndex
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from starlette.applications import Starlette
from starlette.routing import BaseRoute, Mount

from dicomweb_kit import DicomWeb, Settings
from dicomweb_kit.testing import make_dataset, part10_bytes

if TYPE_CHECKING:
    from selenium.webdriver.chrome.webdriver import WebDriver

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
# Flags that work in containers without a display, GPU or network (as tests/browser/ohif_check.py).
CHROMIUM_FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--enable-unsafe-swiftshader", "--window-size=1280,900",
)  # fmt: skip
SCREENSHOTS_ENV = "DICOMWEB_KIT_SCREENSHOTS"
_SCREENSHOTS = pytest.StashKey[Path]()


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: browser tests must run)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    """One headless chromium for the whole run (a fresh profile), driven by selenium."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        _unavailable(f"browser tests need Debian's chromium and chromium-driver; missing: {', '.join(missing)}")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _unavailable("browser tests need selenium (pip install -e '.[test]')")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="session")
def screenshot_dir(tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config) -> Path:
    """Where screenshots go: ``$DICOMWEB_KIT_SCREENSHOTS``, else a temporary folder."""
    given = os.environ.get(SCREENSHOTS_ENV)
    folder = Path(given) if given else tmp_path_factory.mktemp("screenshots", numbered=True)
    folder.mkdir(parents=True, exist_ok=True)
    pytestconfig.stash[_SCREENSHOTS] = folder
    return folder


@pytest.fixture
def screenshot(browser: WebDriver, screenshot_dir: Path) -> Callable[[str], Path]:
    """``screenshot("name")`` saves the browser's window as ``<folder>/name.png``."""

    def take(name: str) -> Path:
        path = screenshot_dir / f"{name}.png"
        assert browser.save_screenshot(str(path)), f"could not write {path}"
        return path

    return take


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    folder = config.stash.get(_SCREENSHOTS, None)
    if folder is not None:
        terminalreporter.write_line(f"browser screenshots: {folder}")


@dataclass
class KitServer:
    """A live kit: ``url`` is the service root (``http://127.0.0.1:port/dicom-web``)."""

    kit: DicomWeb
    origin: str
    root: str
    stored: list[Dataset] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.origin + self.root

    def store(self, datasets: Sequence[Dataset]) -> httpx.Response:
        """STOW-RS ``datasets`` in one request; asserts that all were stored."""
        boundary = uuid.uuid4().hex
        body = b"".join(
            b"--%s\r\nContent-Type: application/dicom\r\n\r\n%s\r\n" % (boundary.encode(), part10_bytes(ds))
            for ds in datasets
        ) + b"--%s--\r\n" % boundary.encode()
        headers = {"Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}'}
        answer = httpx.post(self.url + "/studies", content=body, headers=headers, timeout=60)
        assert answer.status_code == 200, answer.text[:500]
        self.stored.extend(datasets)
        return answer


@pytest.fixture(scope="session")
def serve_kit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., KitServer]]:
    """A factory: ``serve_kit(Settings(...), root="/dicom-web", routes=[...])`` starts uvicorn on
    loopback with a kit on files + SQLite mounted at ``root``; ``routes`` are extra host routes
    (before the mount), e.g. static files. Servers stop at the end of the session."""
    with contextlib.ExitStack() as stack:
        def start(
            settings: Settings | None = None, *, root: str = "/dicom-web", routes: Sequence[BaseRoute] = ()
        ) -> KitServer:
            data = tmp_path_factory.mktemp("kit")
            kit = DicomWeb(
                blobs=FileBlobStore(data / "blobs"),
                index=SqlIndex(f"sqlite:///{data / 'index.sqlite3'}"),
                settings=settings,
            )
            app = Starlette(routes=[*routes, Mount(root, app=kit.app)], lifespan=kit.lifespan)
            server = stack.enter_context(LiveServer(app))
            # 127.0.0.1, not localhost: chromium may try ::1 first.
            return KitServer(kit=kit, origin=f"http://127.0.0.1:{server.port}", root=root.rstrip("/"))

        yield start


def phantom_study(
    *, patient_name: str = "Browser^Bea", patient_id: str = "BRW-1", slices: int = 4, frames: int = 6
) -> list[Dataset]:
    """One CT study: a series of ``slices`` single-frame 64 x 64 slices (a disc with a moving bright
    insert, Hounsfield units through RescaleIntercept) and a series with one ``frames``-frame
    instance."""
    study = generate_uid()
    yy, xx = np.mgrid[0:64, 0:64]

    def image(k: int) -> bytes:
        disc = ((xx - 32) ** 2 + (yy - 32) ** 2 < 26**2) * 1000
        insert = ((xx - 18 - 4 * k) ** 2 + (yy - 38) ** 2 < 6**2) * 1500
        return bytes((disc + insert + 24).astype("<u2").tobytes())

    common: dict[str, Any] = dict(
        study=study, patient_name=patient_name, patient_id=patient_id, rows=64, columns=64,
        StudyDescription="BROWSER CHECK", RescaleIntercept=-1024, RescaleSlope=1,
        WindowCenter=40, WindowWidth=400, PixelSpacing=[1, 1],
    )  # fmt: skip
    series = generate_uid()
    datasets = []
    for k in range(1, slices + 1):
        ds = make_dataset(series=series, SeriesNumber=1, InstanceNumber=k, SeriesDescription="AXIAL", **common)
        ds.PixelData = image(k)
        datasets.append(ds)
    multi = make_dataset(SeriesNumber=2, InstanceNumber=1, SeriesDescription="CINE", NumberOfFrames=frames, **common)
    multi.PixelData = b"".join(image(k) for k in range(frames))
    datasets.append(multi)
    return datasets


@pytest.fixture(scope="session")
def study_server(serve_kit: Callable[..., KitServer]) -> KitServer:
    """A live kit with the study browser on and one stored :func:`phantom_study`."""
    server = serve_kit(Settings(study_browser=True))
    server.store(phantom_study())
    return server
