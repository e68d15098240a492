"""Cross-origin settings: CORS for viewers on another origin (preflight with Authorization), and the
optional cross-origin isolation headers (COOP/COEP/CORP)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from conftest import host_app
from test_cli import serve

from dicomweb_kit import DicomWeb, Settings
from dicomweb_kit.cli import BackendConfig, build_kit
from dicomweb_kit.testing import make_dataset, part10_bytes

pytestmark = pytest.mark.anyio

VIEWER = "https://viewer.example.org"
OTHER = "https://evil.example.net"
ISOLATION_HEADERS = ("cross-origin-opener-policy", "cross-origin-embedder-policy", "cross-origin-resource-policy")


@asynccontextmanager
async def serving(make_kit: Callable[..., DicomWeb], settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with make_kit(settings) as kit:
        transport = httpx.ASGITransport(app=host_app(kit))
        async with httpx.AsyncClient(transport=transport, base_url="http://pacs.example/dicom-web") as client:
            yield client


def preflight(method: str, origin: str, headers: str = "authorization") -> dict[str, str]:
    return {"Origin": origin, "Access-Control-Request-Method": method, "Access-Control-Request-Headers": headers}


async def test_no_cors_headers_by_default(make_kit: Callable[..., DicomWeb]) -> None:
    async with serving(make_kit, Settings()) as client:
        r = await client.get("/studies", headers={"Origin": VIEWER})
        assert r.status_code == 200
        assert not [h for h in r.headers if h.startswith("access-control-")]
        r = await client.options("/studies", headers=preflight("GET", VIEWER))
        assert "access-control-allow-origin" not in r.headers
        assert not [h for h in r.headers if h in ISOLATION_HEADERS]


async def test_preflight_with_authorization_from_an_allowed_origin(make_kit: Callable[..., DicomWeb]) -> None:
    async with serving(make_kit, Settings(cors_origins=(VIEWER,))) as client:
        for method, path in (("GET", "/studies"), ("POST", "/studies"), ("GET", "/studies/1.2.3/series")):
            r = await client.options(path, headers=preflight(method, VIEWER, "authorization, accept"))
            assert r.status_code == 200, r.text
            assert r.headers["access-control-allow-origin"] == VIEWER
            assert r.headers["access-control-allow-headers"] == "authorization, accept"
            allowed = {m.strip() for m in r.headers["access-control-allow-methods"].split(",")}
            assert {"GET", "POST", "PUT", "DELETE", "OPTIONS"} <= allowed
            assert r.headers["access-control-max-age"] == "600"
            assert "Origin" in r.headers["vary"]
            assert "access-control-allow-credentials" not in r.headers


async def test_options_that_is_no_preflight_is_the_capabilities_service(make_kit: Callable[..., DicomWeb]) -> None:
    async with serving(make_kit, Settings(cors_origins=(VIEWER,))) as client:
        for headers in ({}, {"Origin": VIEWER}):
            r = await client.options("/studies", headers=headers)
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("application/vnd.sun.wadl+xml")
            assert "GET" in r.headers["allow"]
        assert r.headers["access-control-allow-origin"] == VIEWER


async def test_preflight_from_a_disallowed_origin_gets_no_permission(make_kit: Callable[..., DicomWeb]) -> None:
    async with serving(make_kit, Settings(cors_origins=(VIEWER,))) as client:
        r = await client.options("/studies", headers=preflight("GET", OTHER))
        assert r.status_code == 400
        assert "access-control-allow-origin" not in r.headers
        r = await client.get("/studies", headers={"Origin": OTHER, "Authorization": "Bearer x"})
        assert r.status_code == 200 and "access-control-allow-origin" not in r.headers


async def test_allowed_origin_reads_answers_and_errors(make_kit: Callable[..., DicomWeb]) -> None:
    ds = make_dataset()
    body = b"--b\r\nContent-Type: application/dicom\r\n\r\n" + part10_bytes(ds) + b"\r\n--b--\r\n"
    async with serving(make_kit, Settings(cors_origins=(VIEWER,))) as client:
        r = await client.post(
            "/studies",
            content=body,
            headers={"Origin": VIEWER, "Content-Type": 'multipart/related; type="application/dicom"; boundary=b'},
        )
        assert r.status_code == 200
        assert r.headers["access-control-allow-origin"] == VIEWER
        [study] = (await client.get("/studies", headers={"Origin": VIEWER})).json()
        assert study["0020000D"]["Value"] == [ds.StudyInstanceUID]
        # Errors too, so the viewer's script can read the status and the Warning header.
        r = await client.get("/studies/1.2.3/metadata", headers={"Origin": VIEWER})
        assert r.status_code == 404
        assert r.headers["access-control-allow-origin"] == VIEWER
        exposed = {h.strip() for h in r.headers["access-control-expose-headers"].split(",")}
        assert {"Warning", "Location", "Content-Location", "ETag", "Content-Range"} <= exposed


async def test_wildcard_origin_and_credentials(make_kit: Callable[..., DicomWeb]) -> None:
    async with serving(make_kit, Settings(cors_origins=("*",))) as client:
        r = await client.get("/studies", headers={"Origin": OTHER})
        assert r.headers["access-control-allow-origin"] == "*"
    # With credentials a browser refuses `*`: the origin is named instead.
    async with serving(make_kit, Settings(cors_origins=("*",), cors_allow_credentials=True)) as client:
        r = await client.options("/studies", headers=preflight("GET", OTHER))
        assert r.headers["access-control-allow-origin"] == OTHER
        assert r.headers["access-control-allow-credentials"] == "true"
        r = await client.get("/studies", headers={"Origin": OTHER, "Cookie": "session=1"})
        assert r.headers["access-control-allow-origin"] == OTHER
        assert r.headers["access-control-allow-credentials"] == "true"


async def test_origin_regex_and_explicit_headers(make_kit: Callable[..., DicomWeb]) -> None:
    settings = Settings(cors_origin_regex=r"https://.*\.hospital\.example", cors_allow_headers=("Authorization",))
    async with serving(make_kit, settings) as client:
        r = await client.options("/studies", headers=preflight("GET", "https://ward3.hospital.example"))
        assert r.status_code == 200
        assert r.headers["access-control-allow-origin"] == "https://ward3.hospital.example"
        r = await client.options("/studies", headers=preflight("GET", "https://ward3.hospital.example", "x-secret"))
        assert r.status_code == 400
        r = await client.options("/studies", headers=preflight("GET", "https://hospital.example.evil.net"))
        assert "access-control-allow-origin" not in r.headers


async def test_private_network_preflight(make_kit: Callable[..., DicomWeb]) -> None:
    headers = preflight("GET", VIEWER) | {"Access-Control-Request-Private-Network": "true"}
    async with serving(make_kit, Settings(cors_origins=(VIEWER,))) as client:
        assert (await client.options("/studies", headers=headers)).status_code == 400
    async with serving(make_kit, Settings(cors_origins=(VIEWER,), cors_allow_private_network=True)) as client:
        r = await client.options("/studies", headers=headers)
        assert r.status_code == 200 and r.headers["access-control-allow-private-network"] == "true"


async def test_isolation_headers_only_when_enabled(make_kit: Callable[..., DicomWeb]) -> None:
    async with serving(make_kit, Settings()) as client:
        for path in ("/studies", "/docs", "/studies/1.2.3/metadata"):
            r = await client.get(path)
            assert not [h for h in r.headers if h in ISOLATION_HEADERS], path
    async with serving(make_kit, Settings(cross_origin_isolation=True)) as client:
        for path, status in (("/studies", 200), ("/docs", 200), ("/studies/1.2.3/metadata", 404)):
            r = await client.get(path)
            assert r.status_code == status, path
            assert r.headers["cross-origin-opener-policy"] == "same-origin"
            assert r.headers["cross-origin-embedder-policy"] == "require-corp"
            assert r.headers["cross-origin-resource-policy"] == "same-origin"


async def test_resource_policy_alone_and_with_cors(make_kit: Callable[..., DicomWeb]) -> None:
    async with serving(make_kit, Settings(cross_origin_resource_policy="cross-origin")) as client:
        r = await client.get("/studies")
        assert r.headers["cross-origin-resource-policy"] == "cross-origin"
        assert "cross-origin-opener-policy" not in r.headers and "cross-origin-embedder-policy" not in r.headers
    settings = Settings(cors_origins=(VIEWER,), cross_origin_isolation=True, cross_origin_resource_policy="same-site")
    async with serving(make_kit, settings) as client:
        r = await client.get("/studies", headers={"Origin": VIEWER})
        assert r.headers["access-control-allow-origin"] == VIEWER
        assert r.headers["cross-origin-resource-policy"] == "same-site"
        assert r.headers["cross-origin-embedder-policy"] == "require-corp"


def test_serve_options(tmp_path: Path) -> None:
    script = tmp_path / "redoc.standalone.js"
    script.write_text("/* redoc */")
    options = ("--database-url", "memory", "--cors-origin", VIEWER, "--cors-origin", "https://b.example")
    with serve(*options, "--cross-origin-isolation", "--redoc-js", str(script)) as (port, _):
        root = f"http://127.0.0.1:{port}/dicom-web"
        r = httpx.options(root + "/studies", headers=preflight("GET", "https://b.example"))
        assert r.headers["access-control-allow-origin"] == "https://b.example"
        r = httpx.get(root + "/studies", headers={"Origin": VIEWER})
        assert r.headers["access-control-allow-origin"] == VIEWER
        assert r.headers["cross-origin-embedder-policy"] == "require-corp"
        assert httpx.get(root + "/docs/redoc.standalone.js").text == "/* redoc */"
        assert f'<script src="{root}/docs/redoc.standalone.js"' in httpx.get(root + "/docs").text


def test_serve_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DICOMWEB_KIT_CORS_ORIGINS", f"{VIEWER}, https://b.example")
    monkeypatch.setenv("DICOMWEB_KIT_CORS_ALLOW_CREDENTIALS", "true")
    monkeypatch.setenv("DICOMWEB_KIT_CROSS_ORIGIN_ISOLATION", "1")
    monkeypatch.setenv("DICOMWEB_KIT_REDOC_JS", "https://static.hospital.example/redoc.standalone.js")
    settings = build_kit(BackendConfig(database_url="memory")).settings
    assert settings.cors_origins == (VIEWER, "https://b.example")
    assert settings.cors_allow_credentials and settings.cross_origin_isolation
    assert settings.redoc_js_url == "https://static.hospital.example/redoc.standalone.js"
    assert settings.redoc_js_file is None
    monkeypatch.setenv("DICOMWEB_KIT_REDOC_JS", "/srv/redoc.standalone.js")
    assert build_kit(BackendConfig(database_url="memory")).settings.redoc_js_file == "/srv/redoc.standalone.js"


def test_serve_refuses_a_missing_redoc_file(tmp_path: Path) -> None:
    missing = tmp_path / "redoc.js"
    out = subprocess.run(
        [sys.executable, "-m", "dicomweb_kit.cli", "serve", "--database-url", "memory", "--redoc-js", str(missing)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 2
    assert f"--redoc-js {missing}: no such file" in out.stderr
