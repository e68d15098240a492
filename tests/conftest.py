"""Shared fixtures: the kit over each adapter, an in-process client, and a live uvicorn server."""

from __future__ import annotations

import importlib.util
import os
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pydicom.data
import pytest
import uvicorn
from dicomweb_kit_adapters.filesystem import FileBlobStore
from dicomweb_kit_adapters.memory import MemoryBlobStore, MemoryIndex
from dicomweb_kit_adapters.sql import SqlIndex
from starlette.applications import Starlette
from starlette.routing import Mount

from dicomweb_kit import DicomWeb, Settings
from dicomweb_kit.ups import events as ups_events
from dicomweb_kit.ups.events import UpsEvent

PYDICOM_TEST_FILES = Path(pydicom.data.__file__).parent / "test_files"

# Each entry builds (blob store, index) for one adapter combination; the whole HTTP suite runs
# once per entry.
ADAPTERS: dict[str, Callable[[Path], tuple[object, object]]] = {
    "memory": lambda _tmp: (MemoryBlobStore(), MemoryIndex()),
    "files+sqlite": lambda tmp: (FileBlobStore(tmp / "blobs"), SqlIndex(f"sqlite:///{tmp / 'index.sqlite3'}")),
}


# The `codecs` extra's pixel plugins (pydicom's decoders and encoders use them by these names).
CODEC_PLUGINS = ("pylibjpeg", "libjpeg", "openjpeg", "rle", "jpeg_ls", "gdcm")


@pytest.fixture
def codecs() -> None:
    """The ``codecs`` extra is installed (skip without it; fail under CI, which installs it)."""
    missing = [name for name in CODEC_PLUGINS if importlib.util.find_spec(name) is None]
    if missing:
        reason = f"pixel codec plugins not installed ({', '.join(missing)}): pip install -e '.[codecs]'"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=sorted(ADAPTERS))
def adapter_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_kit(adapter_name: str, tmp_path: Path) -> Callable[..., DicomWeb]:
    def make(settings: Settings | None = None) -> DicomWeb:
        blobs, index = ADAPTERS[adapter_name](tmp_path)
        return DicomWeb(blobs=blobs, index=index, settings=settings)  # type: ignore[arg-type]

    return make


@pytest.fixture
async def kit(make_kit: Callable[..., DicomWeb]) -> AsyncIterator[DicomWeb]:
    async with make_kit() as k:
        yield k


def host_app(kit: DicomWeb, root: str = "/dicom-web") -> Starlette:
    return Starlette(routes=[Mount(root, app=kit.app)], lifespan=kit.lifespan)


@pytest.fixture
async def client(kit: DicomWeb) -> AsyncIterator[httpx.AsyncClient]:
    """An in-process client of the kit mounted at /dicom-web; base_url is the service root."""
    transport = httpx.ASGITransport(app=host_app(kit))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver/dicom-web") as c:
        yield c


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    """A real uvicorn server on loopback in a background thread."""

    def __init__(self, app: Starlette) -> None:
        self.port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://localhost:{self.port}/dicom-web"

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture
def live_server(make_kit: Callable[..., DicomWeb]) -> Iterator[LiveServer]:
    with LiveServer(host_app(make_kit())) as server:
        yield server


def pydicom_files_with_pixels() -> list[Path]:
    """pydicom's bundled test files that are Part 10 files with pixel data and read cleanly."""
    found = []
    for path in sorted(PYDICOM_TEST_FILES.rglob("*")):
        if not path.is_file() or path.suffix not in ("", ".dcm"):
            continue
        with path.open("rb") as f:
            head = f.read(132)
        if head[128:132] != b"DICM":
            continue
        found.append(path)
    return found


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> list[UpsEvent]:
    """Every UPS event report published during the test, in order (instead of delivering them)."""
    seen: list[UpsEvent] = []

    async def record(_kit: DicomWeb, event: UpsEvent, /) -> None:
        seen.append(event)

    monkeypatch.setattr(ups_events, "publish", record)
    return seen
