"""A blob store of your own, checked by the shipped contract suite, then used by a kit.

Run the contract suite with ``pytest docs/examples/custom_adapter.py``; ``main()`` stores and
reads back an instance through it.
"""

from __future__ import annotations

import dbm
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import anyio
import pytest
from dicomweb_kit_adapters.memory import MemoryIndex

from dicomweb_kit import BlobInfo, DicomWeb, ResourceNotFound
from dicomweb_kit.testing import BlobStoreContract, make_dataset, part10_bytes


class DbmBlobStore:
    """Blobs as values of a stdlib ``dbm`` database: one file, no server.

    A blob becomes visible only once its stream has ended (one ``db[key] = data``), as the
    ``BlobStore`` contract asks; ranged reads slice the value, so this suits small archives.
    """

    def __init__(self, path: Path) -> None:
        self._db: Any = dbm.open(str(path), "c")  # noqa: SIM115 (open until aclose)
        self._lock = anyio.Lock()  # dbm objects are not thread-safe: one call at a time

    async def _call(self, function: Any, *args: Any) -> Any:
        async with self._lock:
            return await anyio.to_thread.run_sync(function, *args)  # never block the event loop

    async def put(self, key: str, chunks: AsyncIterable[bytes | memoryview], /, *, durable: bool = True) -> BlobInfo:
        data = b"".join([bytes(chunk) async for chunk in chunks])
        await self._call(self._db.__setitem__, key, data)
        return BlobInfo(key=key, size=len(data))

    async def sync(self, keys: Sequence[str], /) -> None:
        await self._call(getattr(self._db, "sync", lambda: None))

    async def get(self, key: str, /, *, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        data = await self._call(self._db.get, key)
        if data is None:
            raise ResourceNotFound(f"blob {key!r} is not stored")
        yield data[start:end]

    async def exists(self, key: str, /) -> bool:
        return bool(await self._call(self._db.__contains__, key))

    async def iter_keys(self) -> AsyncIterator[str]:
        for key in await self._call(self._db.keys):
            yield key.decode()

    async def delete(self, keys: Sequence[str], /) -> None:
        def remove() -> None:
            for key in keys:
                if key in self._db:
                    del self._db[key]

        await self._call(remove)

    async def aclose(self) -> None:
        await self._call(self._db.close)


class TestDbmBlobStore(BlobStoreContract):
    """The shipped contract suite, run against this store (``pytest`` collects it)."""

    pytestmark = pytest.mark.anyio

    @pytest.fixture
    async def blob_store(self, tmp_path: Path) -> AsyncIterator[DbmBlobStore]:
        store = DbmBlobStore(tmp_path / "blobs")
        yield store
        await store.aclose()


async def main() -> None:
    with TemporaryDirectory() as data:
        async with DicomWeb(blobs=DbmBlobStore(Path(data) / "blobs"), index=MemoryIndex()) as kit:
            ds = make_dataset()
            stored = await kit.store(ds)
            assert await kit.retrieve_instance(stored.record.key) == part10_bytes(ds)


if __name__ == "__main__":
    anyio.run(main)
