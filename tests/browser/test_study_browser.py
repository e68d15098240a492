"""The study browser (``{root}/browse``) in headless chromium against a live kit (files + SQLite):
the list, a study's thumbnails, the viewer (window presets, frames, stepping) and upload by
STOW-RS. A screenshot of each page goes to the run's screenshot folder."""

from __future__ import annotations

import functools
import io
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image
from pydicom.dataset import Dataset

from dicomweb_kit import Settings
from dicomweb_kit.testing import make_dataset, part10_bytes

from .conftest import KitServer, phantom_study

pytest.importorskip("selenium", reason="browser tests need selenium (pip install -e '.[test]')")

from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webelement import WebElement

TIMEOUT = 30.0


def wait_for(what: str, check: Callable[[], Any], timeout: float = TIMEOUT) -> Any:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            found = check()
        except Exception as exc:  # the page is still building its DOM
            found, last = None, exc
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last error: {last!r})")


def open_page(browser: WebDriver, url: str) -> None:
    browser.get("about:blank")  # a new document even if only the #fragment differs
    browser.get(url)
    wait_for("the page's script", lambda: browser.execute_script("return document.readyState") == "complete")


def loaded(browser: WebDriver, image: WebElement) -> bool:
    return bool(browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", image))


def natural_size(browser: WebDriver, image: WebElement) -> tuple[int, int]:
    width, height = browser.execute_script("return [arguments[0].naturalWidth, arguments[0].naturalHeight]", image)
    return int(width), int(height)


def decoded(png: bytes) -> np.ndarray[Any, Any]:
    return np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.int16)


def uid(ds: Dataset, keyword: str) -> str:
    return str(getattr(ds, keyword))


def test_the_study_list_shows_the_stored_patient(
    browser: WebDriver, study_server: KitServer, screenshot: Callable[[str], Path]
) -> None:
    open_page(browser, study_server.url + "/browse")
    table = browser.find_element(By.ID, "studies")
    wait_for("the patient in the study list", lambda: "Browser, Bea" in table.text)
    row = table.find_element(By.XPATH, ".//tbody/tr[th[normalize-space()='Browser, Bea']]")
    cells = [cell.text for cell in row.find_elements(By.CSS_SELECTOR, "th, td")]
    assert cells == ["Browser, Bea", "BRW-1", "2024-01-02", "BROWSER CHECK", "CT", "2", "5"]
    screenshot("study-list")


def test_the_search_box_queries_qido(
    browser: WebDriver, study_server: KitServer, screenshot: Callable[[str], Path]
) -> None:
    open_page(browser, study_server.url + "/browse")
    table = browser.find_element(By.ID, "studies")
    wait_for("the study list", lambda: "Browser, Bea" in table.text)
    form = browser.find_element(By.ID, "search")
    name = form.find_element(By.NAME, "PatientName")
    name.send_keys("Nobody")
    name.send_keys(Keys.ENTER)
    wait_for("no match", lambda: "No studies match." in browser.find_element(By.ID, "list-status").text)
    assert table.find_elements(By.CSS_SELECTOR, "tbody tr") == []
    name.clear()
    name.send_keys("browser")  # prefix, any case: the name is searched as "browser*" with fuzzymatching
    form.find_element(By.NAME, "PatientID").send_keys("BRW-1")
    form.find_element(By.NAME, "ModalitiesInStudy").send_keys("ct")
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait_for("the match", lambda: "Browser, Bea" in table.text)
    screenshot("study-list-search")


def test_the_list_pages_with_limit_and_offset(
    browser: WebDriver, serve_kit: Callable[..., KitServer], screenshot: Callable[[str], Path]
) -> None:
    server = serve_kit(Settings(study_browser=True))
    server.store([make_dataset(patient_name=f"Page^P{k:02d}", patient_id=f"P{k:02d}") for k in range(27)])
    open_page(browser, server.url + "/browse")
    status, rows = browser.find_element(By.ID, "list-status"), "#studies tbody tr"
    wait_for("the first page", lambda: status.text == "Studies 1–25")
    assert len(browser.find_elements(By.CSS_SELECTOR, rows)) == 25
    previous, following = browser.find_element(By.ID, "prev"), browser.find_element(By.ID, "next")
    assert not previous.is_enabled() and following.is_enabled()
    first_page = {row.text for row in browser.find_elements(By.CSS_SELECTOR, rows)}
    following.click()
    wait_for("the second page", lambda: status.text == "Studies 26–27 of 27")
    second_page = {row.text for row in browser.find_elements(By.CSS_SELECTOR, rows)}
    assert len(second_page) == 2 and not first_page & second_page
    assert previous.is_enabled() and not following.is_enabled()
    assert browser.find_element(By.ID, "page-info").text == "Page 2"
    screenshot("study-list-page-2")
    previous.click()
    wait_for("the first page again", lambda: status.text == "Studies 1–25")


def test_a_study_shows_its_series_with_thumbnails_and_zip_links(
    browser: WebDriver, study_server: KitServer, screenshot: Callable[[str], Path]
) -> None:
    study = uid(study_server.stored[0], "StudyInstanceUID")
    open_page(browser, study_server.url + "/browse")
    wait_for("the study link", lambda: browser.find_element(By.LINK_TEXT, "Browser, Bea")).click()
    cards = wait_for("two series", lambda: len(browser.find_elements(By.CSS_SELECTOR, "#series .card")) == 2 or None)
    assert cards
    thumbnails = browser.find_elements(By.CSS_SELECTOR, "#series img.thumb")
    assert len(thumbnails) == 2
    for image in thumbnails:
        wait_for("a thumbnail to load", functools.partial(loaded, browser, image))
        width, height = natural_size(browser, image)
        assert width > 0 and height > 0
        assert "/thumbnail" in str(image.get_attribute("src"))
    titles = [h.text for h in browser.find_elements(By.CSS_SELECTOR, "#series h2")]
    assert titles == ["Series 1 · AXIAL", "Series 2 · CINE"]
    # The zip links are the kit's own resources, by URL relative to the page: they download.
    study_zip = str(browser.find_element(By.ID, "study-zip").get_attribute("href"))
    assert study_zip == f"{study_server.url}/studies/{study}?accept=application/zip"
    series_zips = [str(a.get_attribute("href")) for a in browser.find_elements(By.LINK_TEXT, "Download zip")]
    for url in [study_zip, *series_zips]:
        answer = httpx.get(url, timeout=30)
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "application/zip"
        assert answer.content[:4] == b"PK\x03\x04"
    screenshot("study")


def test_the_viewer_shows_a_rendered_image_and_applies_window_presets(
    browser: WebDriver, study_server: KitServer, screenshot: Callable[[str], Path]
) -> None:
    slices = [ds for ds in study_server.stored if "NumberOfFrames" not in ds]
    study, series = uid(slices[0], "StudyInstanceUID"), uid(slices[0], "SeriesInstanceUID")
    open_page(browser, f"{study_server.url}/browse#/study/{study}")
    wait_for("the View button", lambda: browser.find_element(By.CSS_SELECTOR, "#series .card a.primary")).click()
    image = browser.find_element(By.ID, "image")
    wait_for("the rendered image", lambda: loaded(browser, image))
    assert natural_size(browser, image) == (64, 64)
    assert browser.find_element(By.ID, "viewer-title").text == "Series 1 · AXIAL"
    default_src = str(image.get_attribute("src"))
    assert default_src.startswith(f"{study_server.url}/studies/{study}/series/{series}/instances/")
    assert "/rendered" in default_src and "window=" not in default_src
    assert browser.find_element(By.ID, "instance-info").text == "1 / 4"
    default_png = image.screenshot_as_png
    screenshot("viewer")

    browser.find_element(By.XPATH, "//div[@id='presets']/button[normalize-space()='Lung']").click()
    wait_for("the lung window", lambda: "window=-600,1500" in str(image.get_attribute("src")))
    wait_for("the windowed image", lambda: loaded(browser, image))
    lung_src = str(image.get_attribute("src"))
    lung = browser.find_element(By.XPATH, "//div[@id='presets']/button[normalize-space()='Lung']")
    assert lung.get_attribute("aria-pressed") == "true"
    # The page shows what the kit renders for that window, and it is not the default rendering.
    assert not np.array_equal(decoded(default_png), decoded(image.screenshot_as_png))
    served_default, served_lung = (decoded(httpx.get(url, timeout=30).content) for url in (default_src, lung_src))
    assert served_default.shape == served_lung.shape == (64, 64)
    # The disc (0 HU) is mid-grey in a 40/400 window and brighter in a -600/1500 one.
    assert served_lung[32, 48] > served_default[32, 48]
    screenshot("viewer-lung")

    browser.find_element(By.ID, "next-instance").click()
    wait_for("the second instance", lambda: browser.find_element(By.ID, "instance-info").text == "2 / 4")
    wait_for("its image", lambda: str(image.get_attribute("src")) != lung_src and loaded(browser, image))
    assert "window=-600,1500" in str(image.get_attribute("src"))  # the preset stays
    assert uid(slices[1], "SOPInstanceUID") in str(image.get_attribute("src"))
    browser.find_element(By.TAG_NAME, "body").send_keys(Keys.ARROW_LEFT)
    wait_for("the first instance again", lambda: browser.find_element(By.ID, "instance-info").text == "1 / 4")


def test_the_frame_slider_shows_each_frame_of_a_multiframe_instance(
    browser: WebDriver, study_server: KitServer, screenshot: Callable[[str], Path]
) -> None:
    multi = next(ds for ds in study_server.stored if "NumberOfFrames" in ds)
    study, series, instance = (uid(multi, k) for k in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"))
    open_page(browser, f"{study_server.url}/browse#/view/{study}/{series}")
    image = browser.find_element(By.ID, "image")
    slider = wait_for("the frame slider", lambda: (s := browser.find_element(By.ID, "frame")).is_displayed() and s)
    assert slider.get_attribute("max") == "6"
    wait_for("frame 1", lambda: f"{instance}/frames/1/rendered" in str(image.get_attribute("src")))
    wait_for("frame 1's image", lambda: loaded(browser, image))
    first = image.screenshot_as_png
    slider.send_keys(Keys.ARROW_RIGHT, Keys.ARROW_RIGHT)
    wait_for("frame 3", lambda: f"{instance}/frames/3/rendered" in str(image.get_attribute("src")))
    wait_for("frame 3's image", lambda: loaded(browser, image))
    assert browser.find_element(By.ID, "frame-info").text == "3 / 6"
    assert not np.array_equal(decoded(first), decoded(image.screenshot_as_png))  # the insert moved
    assert browser.current_url.endswith(f"#/view/{study}/{series}/{instance}/3")  # a link to this frame
    screenshot("viewer-frames")


def test_uploading_a_file_through_the_page_stores_it(
    browser: WebDriver, study_server: KitServer, screenshot: Callable[[str], Path], tmp_path: Path
) -> None:
    ds = make_dataset(patient_name="Upload^Ulla", patient_id="UPL-1", StudyDescription="UPLOADED")
    path = tmp_path / "upload.dcm"
    path.write_bytes(part10_bytes(ds))
    junk = tmp_path / "notes.txt"
    junk.write_text("not a DICOM file")
    open_page(browser, study_server.url + "/browse")
    wait_for("the study list", lambda: "Browser, Bea" in browser.find_element(By.ID, "studies").text)
    browser.find_element(By.ID, "files").send_keys(str(path))
    result = browser.find_element(By.ID, "upload-result")
    wait_for("the STOW-RS result", lambda: "Stored 1 of 1 file." in result.text)
    assert browser.find_element(By.ID, "upload-bar").get_attribute("value") == "1"
    found = httpx.get(
        study_server.url + "/studies", params={"PatientID": "UPL-1"}, headers={"Accept": "application/dicom+json"}
    ).json()
    assert [row["0020000D"]["Value"] for row in found] == [[ds.StudyInstanceUID]]
    # The list is searched again after an upload: the new patient is in it.
    wait_for("the uploaded patient in the list", lambda: "Upload, Ulla" in browser.find_element(By.ID, "studies").text)
    screenshot("upload")

    # A file that is not DICOM: the page says which failed and why (PS3.18 §10.5.3, 0xC000).
    browser.find_element(By.ID, "files").send_keys(f"{path}\n{junk}")
    wait_for("the partial result", lambda: "Stored 1 of 2 files; 1 failed." in result.text)
    assert "0xC000" in result.find_element(By.CSS_SELECTOR, ".failures").text
    screenshot("upload-failure")


def test_data_is_shown_as_text_never_as_markup(
    browser: WebDriver, serve_kit: Callable[..., KitServer], screenshot: Callable[[str], Path]
) -> None:
    server = serve_kit(Settings(study_browser=True), root="/pacs/v1")
    evil = '<img src=x onerror="document.title=1">'
    # PN cannot hold "=" (the component group delimiter, PS3.5 §6.2): markup without it there.
    datasets = phantom_study(patient_name="<i>Eve</i>^<u>E</u>", patient_id="<b>X</b>", slices=1, frames=2)
    for ds in datasets:
        ds.StudyDescription = evil
    server.store(datasets)
    open_page(browser, server.url + "/browse")
    table = browser.find_element(By.ID, "studies")
    wait_for("the study", lambda: "<b>X</b>" in table.text)
    assert "<i>Eve</i>, <u>E</u>" in table.text and evil in table.text
    assert table.find_elements(By.CSS_SELECTOR, "tbody img, tbody b, tbody i, tbody u") == []
    browser.find_element(By.CSS_SELECTOR, "#studies tbody a").click()
    wait_for("the study page", lambda: evil in browser.find_element(By.ID, "study-title").text)
    assert browser.find_elements(By.CSS_SELECTOR, "#study-view h1 img, #study-view h1 i") == []
    assert browser.title != "1"
    screenshot("escaping")


def console(browser: WebDriver) -> list[dict[str, Any]]:
    """The page's console since the last call (what ``get_log("browser")`` does, typed)."""
    return list(browser.execute("getLog", {"type": "browser"})["value"])


@pytest.fixture(autouse=True)
def _no_console_errors(browser: WebDriver) -> Iterator[None]:
    """No script error and no failed request (4xx, 5xx) in the page's console."""
    console(browser)  # drop what came before
    yield
    errors = [entry for entry in console(browser) if entry["level"] == "SEVERE"]
    assert errors == [], errors
