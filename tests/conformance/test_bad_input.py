"""Bad input on every endpoint: each gets its PS3.18 status and a message, never a 500."""

from __future__ import annotations

import httpx
import pytest
from pydicom.uid import generate_uid

from dicomweb_kit.testing import make_dataset, part10_bytes

pytestmark = pytest.mark.anyio

S, R, I = "1.2.3", "1.2.3.4", "1.2.3.4.5"  # noqa: E741
DICOM_CT = 'multipart/related; type="application/dicom"; boundary=b'
GOOD_PART = b"--b\r\nContent-Type: application/dicom\r\n\r\n"

# (method, path, headers, body) -> status
CASES: list[tuple[str, str, dict[str, str], bytes, int]] = [
    # malformed UIDs (PS3.5 §9.1) in every path position
    ("GET", "/studies/abc", {}, b"", 400),
    ("GET", "/studies/1..2/metadata", {}, b"", 400),
    ("GET", f"/studies/{S}/series/01.2", {}, b"", 400),
    ("GET", f"/studies/{S}/series/{R}/instances/" + "1" * 65, {}, b"", 400),
    ("GET", f"/studies/{S}/series/x/instances", {}, b"", 400),
    ("POST", "/studies/1.2.x", {"Content-Type": DICOM_CT}, b"--b--", 400),
    # unknown resources
    ("GET", f"/studies/{S}", {}, b"", 404),
    ("GET", f"/studies/{S}/series/{R}", {}, b"", 404),
    ("GET", f"/studies/{S}/series/{R}/instances/{I}", {}, b"", 404),
    ("GET", f"/studies/{S}/series/{R}/metadata", {}, b"", 404),
    ("GET", "/no-such-resource", {}, b"", 404),
    # wrong methods
    ("PUT", "/studies", {}, b"", 405),
    ("DELETE", f"/studies/{S}", {}, b"", 405),
    ("POST", "/series", {}, b"", 405),
    ("POST", f"/studies/{S}/metadata", {}, b"", 405),
    # bad query values
    ("GET", "/studies?PatientNam=x", {}, b"", 400),
    ("GET", "/studies?limit=-5", {}, b"", 400),
    ("GET", "/studies?limit=1e3", {}, b"", 400),
    ("GET", "/studies?offset=-1", {}, b"", 400),
    ("GET", "/studies?StudyDate=yesterday", {}, b"", 400),
    ("GET", "/studies?StudyDate=20200101-20191301", {}, b"", 400),
    ("GET", "/series?SeriesInstanceUID=1.2.3,abc", {}, b"", 400),
    ("GET", "/instances?includefield=NotAnAttribute", {}, b"", 400),
    ("GET", "/studies?fuzzymatching=yes", {}, b"", 400),
    ("GET", "/studies?" + "&".join(f"{k}=x" for k in ["PatientID"] * 2), {}, b"", 400),
    ("GET", "/studies?" + "&".join(f"0009{i:04X}=x" for i in range(0x10, 0x10 + 300)), {}, b"", 400),
    # unacceptable Accept
    ("GET", "/studies", {"Accept": "text/html"}, b"", 406),
    ("GET", "/studies", {"Accept": "image/jpeg"}, b"", 406),
    ("GET", "/studies", {"Accept": "application/dicom+json;q=0"}, b"", 406),
    ("POST", "/studies", {"Accept": "text/plain", "Content-Type": DICOM_CT}, b"--b--", 406),
    # wrong media types
    ("POST", "/studies", {"Content-Type": "application/json"}, b"{}", 415),
    ("POST", "/studies", {"Content-Type": "text/plain"}, b"hello", 415),
    ("POST", "/studies", {}, b"", 415),
    ("POST", "/studies", {"Content-Type": 'multipart/related; type="application/json"; boundary=b'}, b"", 415),
    # metadata + bulk data (PS3.18 §10.5.1.2) is accepted: an empty one is a malformed body
    ("POST", "/studies", {"Content-Type": 'multipart/related; type="application/dicom+xml"; boundary=b'}, b"", 400),
    # truncated and garbage multipart bodies
    ("POST", "/studies", {"Content-Type": DICOM_CT}, b"", 400),
    ("POST", "/studies", {"Content-Type": DICOM_CT}, b"--b--", 400),
    ("POST", "/studies", {"Content-Type": DICOM_CT}, b"\x00\xff" * 5000, 400),
    ("POST", "/studies", {"Content-Type": DICOM_CT}, GOOD_PART + b"DICM", 400),
    ("POST", "/studies", {"Content-Type": DICOM_CT}, b"--b\r\n" + b"X-Long: " + b"a" * 100_000 + b"\r\n\r\n", 413),
    ("POST", "/studies", {"Content-Type": DICOM_CT}, b"--b\r\nno colon here\r\n\r\nx\r\n--b--", 400),
    ("POST", "/studies", {"Content-Type": "multipart/related; boundary="}, b"", 400),
    # non-DICOM parts: well-formed body, nothing storable
    ("POST", "/studies", {"Content-Type": DICOM_CT}, GOOD_PART + b"not dicom\r\n--b--", 409),
    ("POST", "/studies", {"Content-Type": DICOM_CT}, GOOD_PART + b"\x00" * 132 + b"\r\n--b--", 409),
    ("POST", "/studies", {"Content-Type": DICOM_CT}, GOOD_PART + b"\r\n--b--", 409),
]


@pytest.mark.parametrize(
    ("method", "path", "headers", "body", "status"), CASES, ids=[f"{c[0]} {c[1][:60]} -> {c[4]}" for c in CASES]
)
async def test_bad_input(
    client: httpx.AsyncClient, method: str, path: str, headers: dict, body: bytes, status: int
) -> None:
    r = await client.request(method, path, headers=headers, content=body)
    assert r.status_code == status, r.text
    assert r.text.strip(), "an error needs a message"
    assert "Traceback" not in r.text


async def test_many_tiny_parts_hit_the_part_limit(make_kit) -> None:
    from conftest import host_app

    from dicomweb_kit import Settings

    async with make_kit(Settings(max_parts=50)) as kit:
        transport = httpx.ASGITransport(app=host_app(kit))
        async with httpx.AsyncClient(transport=transport, base_url="http://t/dicom-web") as c:
            body = (GOOD_PART + b"x\r\n") * 1000 + b"--b--"
            r = await c.post("/studies", content=body, headers={"Content-Type": DICOM_CT})
            assert r.status_code == 413


async def test_server_keeps_serving_after_bad_input(client: httpx.AsyncClient) -> None:
    for case in CASES:
        await client.request(case[0], case[1], headers=case[2], content=case[3])
    ds = make_dataset(study=generate_uid())
    r = await client.post(
        "/studies", content=GOOD_PART + part10_bytes(ds) + b"\r\n--b--", headers={"Content-Type": DICOM_CT}
    )
    assert r.status_code == 200
