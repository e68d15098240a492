"""Tenancy: one kit serving several archives that never see each other's data.

A *tenant* is an archive of its own: the same Study/Series/SOP Instance UIDs can be stored in
two tenants without collision (as in Microsoft's DICOM service data partitions). The kit gets a
tenant's view with ``await kit.tenant("acme")``; over HTTP a resolver picks the tenant of each
request (``dicomweb_kit.web.tenants``: a path segment, a header, or the host's own claim).

How data is partitioned is the adapters' business: each adapter that can hold several tenants
implements :class:`TenantScoped` — ``for_tenant(tenant)`` returns the adapter of that tenant,
keyed by the tenant (a directory of its own, a database schema of its own, a dict of its own).
The parent adapter owns what it hands out: its ``aclose()`` closes its tenants' adapters too.
The core wraps what holds no tenant data of its own: the event bus (topics get a tenant
prefix), the render cache (keys get one) and, for blob stores that do not implement
``for_tenant``, the blob keys (random keys cannot collide; the prefix keeps them apart for
listing and clean-up).

Hooks (before/after store, authorization) learn the tenant they act for from
:func:`current_tenant`.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import AsyncIterable, AsyncIterator, Iterator, Sequence
from contextvars import ContextVar
from typing import Final, Protocol, Self, runtime_checkable

from .errors import InvalidRequest
from .events import EventBus
from .render_cache import RenderCache
from .storage import BlobInfo, BlobStore

__all__ = [
    "TENANT_ID",
    "InvalidTenant",
    "PrefixedBlobStore",
    "TenantEventBus",
    "TenantRenderCache",
    "TenantScoped",
    "acting_for",
    "current_tenant",
    "tenant_identifier",
    "validate_tenant",
]

#: A tenant ID: 1-64 letters, digits, ``_`` and ``-``, starting with a letter or digit. Safe in a
#: path segment, a header, a file name and (through :func:`tenant_identifier`) a SQL identifier.
TENANT_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")

_current: ContextVar[str | None] = ContextVar("dicomweb_kit_tenant", default=None)


class InvalidTenant(InvalidRequest):
    """A tenant ID that is not one (400)."""


def validate_tenant(tenant: object, /) -> str:
    """``tenant`` if it is a valid tenant ID (:data:`TENANT_ID`); raises :class:`InvalidTenant`."""
    if not isinstance(tenant, str) or not TENANT_ID.fullmatch(tenant):
        shown = repr(tenant) if len(repr(tenant)) <= 80 else repr(tenant)[:77] + "..."
        raise InvalidTenant(
            f"{shown} is not a tenant ID: 1-64 letters, digits, '_' or '-', starting with a letter or digit"
        )
    return tenant


def current_tenant() -> str | None:
    """The tenant the running operation acts for (``None``: the kit's own, untenanted archive).

    Set for every HTTP request a tenant resolver routed, and around the hooks a tenant's kit
    calls (before-store, after-store), so a hook can tell tenants apart.
    """
    return _current.get()


@contextlib.contextmanager
def acting_for(tenant: str | None, /) -> Iterator[None]:
    """Run the block with :func:`current_tenant` = ``tenant``."""
    token = _current.set(tenant)
    try:
        yield
    finally:
        _current.reset(token)


def tenant_identifier(base: str, tenant: str, /, *, max_length: int = 63) -> str:
    """A SQL identifier (schema, database) for ``tenant`` beside ``base``: ``{base}_t_{tenant}``
    when the tenant ID is lower-case letters, digits and ``_`` and the name fits in
    ``max_length`` (PostgreSQL's 63, MariaDB's 64); else ``{base}_h_`` and a hash of the ID, so
    that IDs differing only in case or ``-``/``_`` never share one (nor a hash a plain name)."""
    validate_tenant(tenant)
    plain = f"{base}_t_{tenant}"
    if re.fullmatch(r"[a-z0-9_]+", tenant) and len(plain) <= max_length:
        return plain
    digest = hashlib.sha256(tenant.encode()).hexdigest()[:16]
    return f"{base[: max_length - 19]}_h_{digest}"


@runtime_checkable
class TenantScoped(Protocol):
    """An adapter that can hold several tenants' data apart."""

    def for_tenant(self, tenant: str, /) -> Self:
        """This adapter for ``tenant``: same kind, same settings, only that tenant's data.

        Returns the same object for the same tenant. The kit calls the returned adapter's
        ``open()`` (if it has one) before first use, never its ``aclose()``: closing the parent
        closes it.
        """
        ...


class PrefixedBlobStore:
    """A blob store's view of one tenant, by key prefix (for stores without ``for_tenant``)."""

    def __init__(self, store: BlobStore, tenant: str) -> None:
        self._store = store
        self._prefix = f"tenants/{validate_tenant(tenant)}/"

    async def put(self, key: str, chunks: AsyncIterable[bytes | memoryview], /, *, durable: bool = True) -> BlobInfo:
        info = await self._store.put(self._prefix + key, chunks, durable=durable)
        return BlobInfo(key=key, size=info.size)

    async def sync(self, keys: Sequence[str], /) -> None:
        await self._store.sync([self._prefix + key for key in keys])

    def get(self, key: str, /, *, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        return self._store.get(self._prefix + key, start=start, end=end)

    async def exists(self, key: str, /) -> bool:
        return await self._store.exists(self._prefix + key)

    async def iter_keys(self) -> AsyncIterator[str]:
        async for key in self._store.iter_keys():
            if key.startswith(self._prefix):
                yield key[len(self._prefix) :]

    async def delete(self, keys: Sequence[str], /) -> None:
        await self._store.delete([self._prefix + key for key in keys])

    async def aclose(self) -> None:
        pass  # the store is the root kit's, closed with it


def _namespace(tenant: str) -> str:
    """The prefix of a tenant's topics and cache keys in what the tenants share."""
    return f"tenant:{validate_tenant(tenant)}:"


class TenantEventBus:
    """The kit's event bus seen by one tenant: its topics are the tenant's own."""

    def __init__(self, bus: EventBus, tenant: str) -> None:
        self._bus, self._prefix = bus, _namespace(tenant)

    async def publish(self, topic: str, message: bytes, /) -> None:
        await self._bus.publish(self._prefix + topic, message)

    def subscribe(self, topic: str, /) -> contextlib.AbstractAsyncContextManager[AsyncIterator[bytes]]:
        return self._bus.subscribe(self._prefix + topic)

    async def aclose(self) -> None:
        pass  # the bus is the root kit's, closed with it


class TenantRenderCache:
    """The kit's render cache seen by one tenant: its keys are the tenant's own."""

    def __init__(self, cache: RenderCache, tenant: str) -> None:
        self._cache, self._prefix = cache, _namespace(tenant)

    async def get(self, key: str, /) -> bytes | None:
        return await self._cache.get(self._prefix + key)

    async def put(self, key: str, data: bytes, /) -> None:
        await self._cache.put(self._prefix + key, data)
