"""`dicomweb-kit serve` as a user runs it: a real process, the tutorial's URL layout."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
from conftest import free_port


def test_serve_starts_and_answers_at_dicom_web() -> None:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dicomweb_kit.cli",
            "serve",
            "--port",
            str(port),
            "--root",
            "/pacs/dicom-web",
            "--database-url",
            "memory",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/pacs/dicom-web/studies", timeout=2)
                break
            except httpx.TransportError:
                assert process.poll() is None, process.stdout.read().decode() if process.stdout else ""
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.1)
        assert (r.status_code, r.json()) == (200, [])
        assert httpx.get(f"http://127.0.0.1:{port}/dicom-web/studies").status_code == 404
    finally:
        process.terminate()
        output = process.communicate(timeout=15)[0].decode()
    assert "in memory" in output  # it says where the data is


def test_help_lists_the_options() -> None:
    out = subprocess.run([sys.executable, "-m", "dicomweb_kit.cli", "serve", "--help"], capture_output=True, text=True)
    for option in ("--host", "--port", "--root", "--workers"):
        assert option in out.stdout
