"""Kill -9 the server in the middle of a STOW-RS loop: nothing acknowledged is lost, nothing is half-stored.

Runs the real `dicomweb-kit serve` on the embedded default (SQLite + files) in a subprocess.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from conftest import free_port
from pydicom.uid import generate_uid

from dicomweb_kit.testing import make_dataset, part10_bytes

CT = 'multipart/related; type="application/dicom"; boundary=b'


def body_of(*blobs: bytes) -> bytes:
    return b"".join(b"--b\r\nContent-Type: application/dicom\r\n\r\n" + b + b"\r\n" for b in blobs) + b"--b--"


class Server:
    def __init__(self, data: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/dicom-web"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "dicomweb_kit.cli", "serve", "--port", str(self.port), "--data-dir", str(data)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(self.url + "/studies", timeout=2)
                return
            except httpx.TransportError:
                assert self.process.poll() is None, "server exited"
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.1)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dicomweb_kit.cli", *args], capture_output=True, text=True, timeout=120
    )


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_kill_9_during_stow_loses_nothing_acknowledged(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = Server(data)
    acknowledged: list[tuple[str, str, str]] = []
    stop = threading.Event()
    study = generate_uid()

    def stow_loop() -> None:
        with httpx.Client(timeout=30) as client:
            while not stop.is_set():
                batch = [make_dataset(study=study, rows=64, columns=64) for _ in range(5)]
                try:
                    r = client.post(
                        server.url + "/studies",
                        content=body_of(*map(part10_bytes, batch)),
                        headers={"Content-Type": CT},
                    )
                except httpx.TransportError:
                    return
                if r.status_code == 200:
                    acknowledged.extend((d.StudyInstanceUID, d.SeriesInstanceUID, d.SOPInstanceUID) for d in batch)

    def slow_large_stow() -> None:
        # A 16 MB instance sent in pieces: the kill lands while it is being written.
        big = part10_bytes(make_dataset(study=study, rows=2048, columns=4096))
        body = body_of(big)

        def pieces():
            for i in range(0, len(body), 1 << 20):
                yield body[i : i + (1 << 20)]
                time.sleep(0.05)

        with contextlib.suppress(httpx.TransportError):
            httpx.post(server.url + "/studies", content=pieces(), headers={"Content-Type": CT}, timeout=30)

    threads = [threading.Thread(target=stow_loop), threading.Thread(target=slow_large_stow)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 20
    while len(acknowledged) < 40 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    server.kill()
    stop.set()
    for t in threads:
        t.join(30)
    assert len(acknowledged) >= 40

    report = cli("check", "--deep", "--data-dir", str(data))
    assert report.returncode == 0, report.stdout + report.stderr
    assert " 0 missing, 0 corrupt" in report.stdout

    server = Server(data)
    try:
        with httpx.Client(timeout=30) as client:
            for s, r, i in acknowledged:
                got = client.get(f"{server.url}/studies/{s}/series/{r}/instances/{i}")
                assert got.status_code == 200, (i, got.status_code)
            [row] = client.get(server.url + "/studies", params={"StudyInstanceUID": study}).json()
            count = row["00201208"]["Value"][0]
            assert count >= len(acknowledged)  # the kill may land after a commit, before the 200
            assert len(client.get(f"{server.url}/studies/{study}/metadata").json()) == count
    finally:
        server.kill()
    repaired = cli("check", "--repair", "--data-dir", str(data))
    assert repaired.returncode == 0
    assert cli("check", "--data-dir", str(data)).stdout.rstrip().endswith("0 unreferenced blobs")
