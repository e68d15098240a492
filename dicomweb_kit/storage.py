"""The blob store protocol: where the bytes of each stored instance live.

A blob store keeps opaque bytes under keys that the core chooses (random, URL-safe ASCII, at most
128 characters, ``[A-Za-z0-9_-]`` and ``/``). It never interprets the bytes.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Sequence
from typing import Protocol, runtime_checkable

import msgspec

__all__ = ["BlobInfo", "BlobStore", "exactly"]


class BlobInfo(msgspec.Struct, frozen=True):
    """What a completed :meth:`BlobStore.put` wrote."""

    key: str
    size: int


@runtime_checkable
class BlobStore(Protocol):
    """Streamed, atomic storage of instance bytes.

    Contract (checked by :class:`dicomweb_kit.testing.BlobStoreContract`):

    * ``put`` consumes ``chunks`` to the end and only then makes the blob visible, all at once.
      If iterating ``chunks`` raises (client went away, a limit was broken) or the task is
      cancelled, nothing is left visible under ``key`` and a previous blob under ``key``
      is untouched; the exception propagates.
    * ``put`` over an existing key replaces it atomically.
    * ``get`` streams ``[start, end)`` of the blob (``end=None``: to the end) in chunks of any
      size; a missing key raises :class:`dicomweb_kit.errors.ResourceNotFound` when iteration starts.
    * ``delete`` is idempotent: missing keys are ignored.
    * Blocking I/O must not run on the event loop (use ``anyio.to_thread``).
    * Backend failures surface as :class:`dicomweb_kit.errors.StorageUnavailable`.
    """

    async def put(self, key: str, chunks: AsyncIterable[bytes | memoryview], /, *, durable: bool = True) -> BlobInfo:
        """Store everything ``chunks`` yields under ``key``, atomically; return its size.

        With ``durable=False`` the blob need not survive a power loss until :meth:`sync` is
        called for it: the core writes a batch of blobs so, then syncs them together (group
        commit) before the index refers to any of them.
        """
        ...

    async def sync(self, keys: Sequence[str], /) -> None:
        """Make the blobs under ``keys`` durable; missing keys are ignored. A no-op for stores
        whose puts are always durable."""
        ...

    def get(self, key: str, /, *, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Stream the bytes ``[start, end)`` of the blob under ``key``."""
        ...

    async def exists(self, key: str, /) -> bool:
        """Whether a complete blob is stored under ``key``."""
        ...

    def iter_keys(self) -> AsyncIterator[str]:
        """Every key with a complete blob, in any order (for consistency checks and sweeps)."""
        ...

    async def delete(self, keys: Sequence[str], /) -> None:
        """Delete the blobs under ``keys``; missing ones are ignored."""
        ...

    async def aclose(self) -> None:
        """Release resources; called once from the kit's lifespan shutdown."""
        ...


async def exactly(chunks: AsyncIterable[bytes], /, *, key: str, size: int) -> AsyncIterator[bytes]:
    """The chunks of blob ``key``, checked to add up to ``size`` (what the index recorded).

    A response that promised a length (Content-Length, a ZIP64 decision) must not send more or
    fewer bytes: a mismatch, which only a blob edited behind the store's back or a wrong index
    can cause, raises instead, so the body is cut off and the client sees it broken.

    Raises:
        StorageUnavailable: the blob holds more or fewer bytes than ``size``.
    """
    from .errors import StorageUnavailable

    left = size
    async for chunk in chunks:
        left -= len(chunk)
        if left < 0:
            break
        yield chunk
    if left:
        raise StorageUnavailable(f"blob {key!r} does not hold the {size} bytes the index recorded for it")
