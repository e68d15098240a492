"""`dicomweb-kit serve` as a user runs it: a real process, the tutorial's URL layout."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from conftest import free_port

from dicomweb_kit.testing import make_dataset, part10_bytes


@contextmanager
def serve(*options: str, cwd: Path | None = None) -> Iterator[tuple[int, list[str]]]:
    """Run `dicomweb-kit serve`; yields the port and, after exit, the captured output lines."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "dicomweb_kit.cli", "serve", "--port", str(port), *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        cwd=cwd,
    )
    output: list[str] = []
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
                break
            except httpx.TransportError:
                assert process.poll() is None, process.stdout.read().decode() if process.stdout else ""
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.1)
        yield port, output
    finally:
        process.terminate()
        output += process.communicate(timeout=15)[0].decode().splitlines()


def test_serve_on_memory_at_a_custom_root() -> None:
    with serve("--root", "/pacs/dicom-web", "--database-url", "memory") as (port, output):
        r = httpx.get(f"http://127.0.0.1:{port}/pacs/dicom-web/studies")
        assert (r.status_code, r.json()) == (200, [])
        assert httpx.get(f"http://127.0.0.1:{port}/dicom-web/studies").status_code == 404
    assert any("in memory" in line for line in output)  # it says where the data is


def test_default_is_sqlite_and_files_in_dicomweb_data_and_survives_a_restart(tmp_path: Path) -> None:
    ds = make_dataset()
    body = b"--b\r\nContent-Type: application/dicom\r\n\r\n" + part10_bytes(ds) + b"\r\n--b--"
    with serve(cwd=tmp_path) as (port, output):
        url = f"http://127.0.0.1:{port}/dicom-web"
        r = httpx.post(url + "/studies", content=body, headers={"Content-Type": "multipart/related; boundary=b"})
        assert r.status_code == 200
    assert any(str(tmp_path / "dicomweb-data" / "index.sqlite3") in line for line in output), output
    assert (tmp_path / "dicomweb-data" / "blobs").is_dir()
    with serve(cwd=tmp_path) as (port, _):
        [study] = httpx.get(f"http://127.0.0.1:{port}/dicom-web/studies").json()
        assert study["0020000D"]["Value"] == [ds.StudyInstanceUID]


def test_help_lists_the_options() -> None:
    out = subprocess.run([sys.executable, "-m", "dicomweb_kit.cli", "serve", "--help"], capture_output=True, text=True)
    for option in ("--host", "--port", "--root", "--workers", "--database-url", "--storage", "--data-dir"):
        assert option in out.stdout


def test_serve_with_tenants_by_path_then_import_and_check_one_tenant(tmp_path: Path) -> None:
    """`serve --tenant-path`: each tenant an archive of its own on SQLite + files; `import` and
    `check --tenant` work on one tenant's archive."""
    ds = make_dataset(patient_name="North^Pat")
    (tmp_path / "in").mkdir()
    ds.save_as(tmp_path / "in" / "one.dcm", enforce_file_format=True)
    cli = [sys.executable, "-m", "dicomweb_kit.cli"]
    done = subprocess.run([*cli, "import", "in", "--tenant", "north"], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0 and "imported 1 instances" in done.stdout, done.stdout + done.stderr
    with serve("--tenant-path", "/tenants/{tenant}/dicom-web", cwd=tmp_path) as (port, output):
        base = f"http://127.0.0.1:{port}/tenants"
        [study] = httpx.get(f"{base}/north/dicom-web/studies").json()
        assert study["00081190"]["Value"] == [f"{base}/north/dicom-web/studies/{ds.StudyInstanceUID}"]
        assert httpx.get(f"{base}/south/dicom-web/studies").json() == []
        r = httpx.get(f"http://127.0.0.1:{port}/dicom-web/studies")
        assert r.status_code == 404 and "/tenants/{tenant}/dicom-web" in r.text
    assert any("/tenants/{tenant}/dicom-web" in line for line in output), output
    done = subprocess.run([*cli, "check", "--tenant", "north"], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "dicomweb-data" / "tenants" / "north" / "index.sqlite3").is_file()


def test_serve_with_tenants_by_header() -> None:
    with serve("--tenant-header", "X-Tenant", "--tenants", "north,south", "--database-url", "memory") as (port, _):
        url = f"http://127.0.0.1:{port}/dicom-web/studies"
        assert httpx.get(url, headers={"X-Tenant": "north"}).json() == []
        r = httpx.get(url)
        assert r.status_code == 400 and "X-Tenant" in r.text
        r = httpx.get(url, headers={"X-Tenant": "west"})
        assert r.status_code == 404 and "no tenant 'west'" in r.text


def test_bad_tenant_options_are_refused_at_start() -> None:
    cli = [sys.executable, "-m", "dicomweb_kit.cli", "serve"]
    out = subprocess.run([*cli, "--tenant-path", "/tenants/dicom-web"], capture_output=True, text=True)
    assert out.returncode == 2 and "{tenant}" in out.stderr
    out = subprocess.run([*cli, "--tenant-header", "X-T", "--tenants", "ok,../bad"], capture_output=True, text=True)
    assert out.returncode == 2 and "'../bad' is not a tenant ID" in out.stderr
    out = subprocess.run([*cli, "--tenants", "north"], capture_output=True, text=True)
    assert out.returncode == 2 and "--tenant-path or --tenant-header" in out.stderr
