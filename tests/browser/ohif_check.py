"""Check that the OHIF viewer (v3, npm ``@ohif/app``) works against dicomweb-kit, in headless Chromium.

    python tests/browser/ohif_check.py                       # downloads @ohif/app once (~50 MB, npm)
    python tests/browser/ohif_check.py --ohif-dist DIR       # an unpacked ``package/dist``
    python tests/browser/ohif_check.py --screenshots out/    # keep the screenshots there

Not part of the default test run (it needs the 50 MB download, Debian's ``chromium`` and
``chromium-driver``, and ``selenium``). It serves OHIF's prebuilt ``dist/`` and the kit (files +
SQLite) from one uvicorn server, so no CORS is involved; stores a small CT corpus; opens the
study list and asserts the patient is listed; opens the study and asserts the viewport shows an
image (its screenshot is not blank); and fails on any 5xx (or unexpected 4xx) OHIF received.
Every request OHIF made is printed, with its Accept header and our status.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import uvicorn
from dicomweb_kit_adapters.filesystem import FileBlobStore
from dicomweb_kit_adapters.sql import SqlIndex
from PIL import Image, ImageStat
from pydicom.uid import generate_uid
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from dicomweb_kit import DicomWeb
from dicomweb_kit.testing import make_dataset, part10_bytes

OHIF_VERSION = "3.13.2"
CACHE = Path.home() / ".cache" / "dicomweb-kit"

APP_CONFIG = """window.config = {
  routerBasename: '/',
  extensions: [],
  modes: [],
  showStudyList: true,
  maxNumberOfWebWorkers: 2,
  showWarningMessageForCrossOrigin: false,
  showCPUFallbackMessage: false,
  showLoadingIndicator: true,
  defaultDataSourceName: 'dicomweb',
  dataSources: [{
    namespace: '@ohif/extension-default.dataSourcesModule.dicomweb',
    sourceName: 'dicomweb',
    configuration: {
      friendlyName: 'dicomweb-kit',
      name: 'dicomweb-kit',
      wadoUriRoot: '/dicom-web',
      qidoRoot: '/dicom-web',
      wadoRoot: '/dicom-web',
      qidoSupportsIncludeField: true,
      imageRendering: 'wadors',
      thumbnailRendering: 'wadors',
      enableStudyLazyLoad: true,
      supportsFuzzyMatching: false,
      supportsWildcard: true,
      staticWado: false,
      singlepart: 'bulkdata,video',
      bulkDataURI: { enabled: true },
      omitQuotationForMultipartRequest: true,
    },
  }],
};
"""


def ohif_dist(given: Path | None) -> Path:
    """OHIF's prebuilt ``dist/``: the given one, or ``npm pack`` it once into the cache."""
    if given is not None:
        return given
    target = CACHE / f"ohif-app-{OHIF_VERSION}"
    dist = target / "package" / "dist"
    if not (dist / "index.html").exists():
        target.mkdir(parents=True, exist_ok=True)
        print(f"downloading @ohif/app@{OHIF_VERSION} with npm ...", flush=True)
        out = subprocess.run(
            ["npm", "pack", f"@ohif/app@{OHIF_VERSION}", "--silent"],
            cwd=target, check=True, capture_output=True, text=True,
        )  # fmt: skip
        with tarfile.open(target / out.stdout.strip().splitlines()[-1]) as archive:
            archive.extractall(target, filter="data")
    return dist


def make_study(directory: Path) -> tuple[list[Path], dict[str, Any]]:
    """Two CT series of 8 slices each: a disc phantom with a bright insert (256 x 256, 12 bits),
    with slice geometry so OHIF sorts and displays them as a stack."""
    directory.mkdir(parents=True, exist_ok=True)
    study = {"StudyInstanceUID": generate_uid(), "PatientName": "Patchwork^Ohif", "PatientID": "OHIF-1"}
    yy, xx = np.mgrid[0:256, 0:256]
    files = []
    for series_number in (1, 2):
        series = generate_uid()
        for slice_number in range(1, 9):
            disc = ((xx - 128) ** 2 + (yy - 128) ** 2 < 100**2) * 1000
            insert = ((xx - 90 - 4 * slice_number) ** 2 + (yy - 150) ** 2 < 15**2) * 1500
            pixels = (disc + insert + 24).astype("<u2")
            ds = make_dataset(
                study=study["StudyInstanceUID"], series=series, patient_name=study["PatientName"],
                patient_id=study["PatientID"], rows=256, columns=256, SeriesNumber=series_number,
                InstanceNumber=slice_number, SeriesDescription=f"PHANTOM {series_number}",
                StudyDescription="OHIF CHECK", ImagePositionPatient=[0, 0, 5 * slice_number],
                ImageOrientationPatient=[1, 0, 0, 0, 1, 0], PixelSpacing=[1, 1], SliceThickness=5,
                RescaleIntercept=-1024, RescaleSlope=1, WindowCenter=40, WindowWidth=400,
            )  # fmt: skip
            ds.PixelData = pixels.tobytes()
            path = directory / f"{series_number}-{slice_number}.dcm"
            path.write_bytes(part10_bytes(ds))
            files.append(path)
    return files, study


class RequestLog:
    """ASGI middleware that records every DICOMweb request: method, target, Accept, status."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.entries: list[tuple[str, str, str, int]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 0

        async def record(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        await self.app(scope, receive, record)
        headers = dict(scope["headers"])
        target = scope["path"] + ("?" + scope["query_string"].decode() if scope["query_string"] else "")
        self.entries.append((scope["method"], target, headers.get(b"accept", b"").decode(), status))


def host_app(kit: DicomWeb, dist: Path, config_js: str, log: RequestLog) -> Starlette:
    index = dist / "index.html"

    async def app_config(_: Request) -> Response:
        return Response(config_js, media_type="application/javascript")

    async def spa(_: Request) -> FileResponse:  # OHIF's client-side routes (/viewer, ...) serve index.html
        return FileResponse(index)

    return Starlette(
        routes=[
            Mount("/dicom-web", app=log),
            Route("/app-config.js", app_config),
            Route("/viewer", spa),
            Route("/", spa),
            Mount("/", app=StaticFiles(directory=dist)),
        ],
        lifespan=kit.lifespan,
    )


@contextmanager
def serve(app: Starlette) -> Iterator[str]:
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise SystemExit("uvicorn did not start")
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def store(base: str, files: list[Path]) -> None:
    boundary = "ohifcheckboundary"
    body = b"".join(
        b"--%s\r\nContent-Type: application/dicom\r\n\r\n%s\r\n" % (boundary.encode(), f.read_bytes()) for f in files
    ) + b"--%s--\r\n" % boundary.encode()
    headers = {"Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}'}
    answer = httpx.post(f"{base}/dicom-web/studies", content=body, headers=headers, timeout=60)
    if answer.status_code != 200:
        raise SystemExit(f"STOW failed: {answer.status_code} {answer.text[:300]}")


def chromium(user_data: Path) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--enable-unsafe-swiftshader", "--window-size=1400,900", f"--user-data-dir={user_data}",
    ):  # fmt: skip
        options.add_argument(flag)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def wait_for(what: str, check: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            found = check()
        except Exception:  # the page is still building its DOM
            found = None
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def blank(png: bytes) -> bool:
    """A viewport that draws nothing is one flat colour; an image has contrast. Only the middle
    of the viewport counts: overlay text and pop-ups sit at its edges."""
    image = Image.open(io.BytesIO(png)).convert("L")
    w, h = image.size
    stats = ImageStat.Stat(image.crop((w // 4, h // 4, 3 * w // 4, 3 * h // 4)))
    return stats.stddev[0] < 8.0


def dismiss_popups(driver: Any) -> None:
    """Close OHIF's first-visit tour and notice, which cover the viewport."""
    from selenium.webdriver.common.by import By

    for label in ("Skip all", "Confirm and hide"):
        for button in driver.find_elements(By.XPATH, f"//*[normalize-space(text())='{label}']"):
            with contextlib.suppress(Exception):  # hidden or gone meanwhile
                button.click()


#: Exit status when OHIF could not be downloaded (no registry): not a failure of ours.
NO_DOWNLOAD = 3


def run(args: argparse.Namespace) -> int:
    try:
        dist = ohif_dist(args.ohif_dist)
    except (subprocess.CalledProcessError, OSError, tarfile.TarError) as exc:
        print(f"cannot get @ohif/app@{OHIF_VERSION}: {exc}", file=sys.stderr)
        return NO_DOWNLOAD
    work = Path(tempfile.mkdtemp(prefix="ohif-check-"))
    shots = args.screenshots or work / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    files, study = make_study(work / "study")
    kit = DicomWeb(blobs=FileBlobStore(work / "blobs"), index=SqlIndex(f"sqlite:///{work / 'index.sqlite3'}"))
    log = RequestLog(kit.app)
    failures: list[str] = []
    try:
        with serve(host_app(kit, dist, APP_CONFIG, log)) as base:
            store(base, files)
            family = study["PatientName"].split("^")[0]
            driver = chromium(work / "chromium")
            try:
                driver.get(base + "/")
                wait_for(f"the study list to show {family!r}", lambda: family in driver.page_source, args.timeout)
                driver.save_screenshot(str(shots / "ohif-study-list.png"))
                print(f"study list shows {family}")
                driver.get(f"{base}/viewer?StudyInstanceUIDs={study['StudyInstanceUID']}")
                from selenium.webdriver.common.by import By

                def painted_viewport() -> bytes | None:
                    dismiss_popups(driver)
                    for canvas in driver.find_elements(By.CSS_SELECTOR, ".cornerstone-viewport-element canvas, canvas"):
                        if canvas.size["width"] > 100 and canvas.size["height"] > 100:
                            png = canvas.screenshot_as_png
                            if not blank(png):
                                return bytes(png)
                    return None

                png = wait_for("the viewport to show an image", painted_viewport, args.timeout)
                (shots / "ohif-viewport.png").write_bytes(png)
                driver.save_screenshot(str(shots / "ohif-viewer.png"))
                print("viewport shows an image")
            except AssertionError as exc:
                failures.append(str(exc))
                driver.save_screenshot(str(shots / "ohif-failure.png"))
            finally:
                driver.quit()
    finally:
        if not args.keep:
            shutil.rmtree(work / "blobs", ignore_errors=True)
    print(f"\n{len(log.entries)} DICOMweb requests from OHIF:")
    for method, target, accept, status in log.entries:
        print(f"  {status} {method} {target[:150]}   Accept: {accept[:90]}")
        if status >= 400:  # everything OHIF asks for is stored: any 4xx is ours to fix
            failures.append(f"{status} for {method} {target}")
    print(f"screenshots in {shots}")
    for failure in failures:
        print(f"FAIL: {failure}", file=sys.stderr)
    return 1 if failures else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ohif-dist", type=Path, help="an unpacked @ohif/app package/dist (else npm pack it)")
    parser.add_argument("--screenshots", type=Path, help="folder for the screenshots")
    parser.add_argument("--timeout", type=float, default=90.0, help="seconds to wait for each page")
    parser.add_argument("--keep", action="store_true", help="keep the stored data")
    return run(parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
