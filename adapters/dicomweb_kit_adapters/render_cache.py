"""A cache of rendered thumbnails in a directory: survives restarts, shared by worker processes.

Built only on dicomweb-kit's public API (:class:`dicomweb_kit.RenderCache`). Each entry is one
file named by ``blake2s(key)``, written to a temp file and renamed into place, so a reader never
sees half an entry and concurrent writers of one key simply race to the same content. Entries
are not fsynced: a cache may lose anything. The total size is bounded: when a put takes it over
``max_bytes``, the least recently used files (by modification time, refreshed on every hit) are
deleted. The size is counted in memory, from a scan of the directory at the first use, so
several processes sharing a directory each bound what they see; together they stay within a
few entries of the limit.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import threading
import time
from pathlib import Path

import anyio.to_thread

__all__ = ["FileRenderCache"]


class FileRenderCache:
    """Rendered bytes as files under ``directory``, at most ``max_bytes`` in all.

    Args:
        directory: where entries live (created if missing); use it for nothing else.
        max_bytes: the most bytes kept; older entries are deleted past it.
    """

    def __init__(self, directory: str | os.PathLike[str], max_bytes: int) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._size: int | None = None

    def _path(self, key: str) -> Path:
        return self.directory / hashlib.blake2s(key.encode(), digest_size=16).hexdigest()

    async def get(self, key: str, /) -> bytes | None:
        return await anyio.to_thread.run_sync(self._get, key)

    async def put(self, key: str, data: bytes, /) -> None:
        if len(data) <= self.max_bytes:
            await anyio.to_thread.run_sync(self._put, key, data)

    def _get(self, key: str) -> bytes | None:
        path = self._path(key)
        try:
            data = path.read_bytes()
            _touch(path)  # recently used: evicted last
        except OSError:
            return None
        return data

    def _put(self, key: str, data: bytes) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self._path(key)
        fd, temp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            _touch(temp)
            with self._lock:
                size = self._scanned()
                with contextlib.suppress(OSError):
                    size -= path.stat().st_size  # replacing an entry
                os.replace(temp, path)
                self._size = size + len(data)
                if self._size > self.max_bytes:
                    self._evict()
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise

    def _entries(self) -> list[os.DirEntry[str]]:
        with os.scandir(self.directory) as entries:
            return [entry for entry in entries if not entry.name.startswith(".") and entry.is_file()]

    def _scanned(self) -> int:
        if self._size is None:
            self._size = sum(entry.stat().st_size for entry in self._entries())
        return self._size

    def _evict(self) -> None:
        assert self._size is not None
        by_age = sorted(self._entries(), key=lambda entry: entry.stat().st_mtime_ns)
        for entry in by_age:
            if self._size <= self.max_bytes:
                break
            with contextlib.suppress(OSError):
                size = entry.stat().st_size
                os.unlink(entry.path)
                self._size -= size


def _touch(path: str | Path) -> None:
    # The clock, not the filesystem's coarser timestamp tick, so recent uses order correctly.
    now = time.time_ns()
    os.utime(path, ns=(now, now))
