"""The cache of rendered thumbnails: a small protocol, and the in-memory LRU used by default.

Caching is an adapter concern: a host can pass any :class:`RenderCache` (on disk, in Redis...)
to :class:`~dicomweb_kit.DicomWeb`. Keys are opaque strings that the core builds from the
resource, the record's version and the rendering parameters, so a replaced instance is never
served from a stale entry; entries are never invalidated otherwise, only evicted.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Protocol, runtime_checkable

import anyio

__all__ = ["MemoryRenderCache", "RenderCache"]


@runtime_checkable
class RenderCache(Protocol):
    """A cache of rendered bytes. Misses are normal; a cache may drop anything at any time."""

    async def get(self, key: str, /) -> bytes | None:
        """The bytes stored under ``key``, or ``None``."""
        ...

    async def put(self, key: str, data: bytes, /) -> None:
        """Keep ``data`` under ``key`` (replacing what was there), if the cache has room for it."""
        ...


class MemoryRenderCache:
    """A least-recently-used cache bounded by the total size of its values.

    Args:
        max_bytes: the most bytes of values kept; 0 disables caching.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, bytes] = OrderedDict()
        self._size = 0
        self._lock = anyio.Lock()

    @property
    def size(self) -> int:
        """Bytes currently held."""
        return self._size

    async def get(self, key: str, /) -> bytes | None:
        async with self._lock:
            data = self._entries.get(key)
            if data is not None:
                self._entries.move_to_end(key)
            return data

    async def put(self, key: str, data: bytes, /) -> None:
        if len(data) > self.max_bytes:
            return
        async with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._size -= len(old)
            self._entries[key] = data
            self._size += len(data)
            while self._size > self.max_bytes:
                _, evicted = self._entries.popitem(last=False)
                self._size -= len(evicted)
