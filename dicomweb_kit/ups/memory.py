"""An in-memory UPS workitem store: lives and dies with the process (tests, demos, one worker).

The kit's default when neither ``workitems=`` nor the index provides a store (see ``kit.py``).
"""

from __future__ import annotations

from typing import Any

import msgspec

from ..query.terms import Query
from ..tenancy import validate_tenant
from .store import Workitem, WorkitemPage, search_workitems

__all__ = ["MemoryWorkitemStore"]

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(dict[str, Any]).decode


def _copy(item: Workitem, version: int) -> Workitem:
    # A private copy: callers may mutate the attributes they passed in or got back.
    return msgspec.structs.replace(item, attributes=_decode(_encode(item.attributes)), version=version)


class MemoryWorkitemStore:
    """A :class:`~dicomweb_kit.WorkitemStore` in a dict (insertion order is creation order).

    Each operation runs without awaiting, so on one event loop it is atomic.
    """

    def __init__(self) -> None:
        self._items: dict[str, Workitem] = {}
        self._tenants: dict[str, MemoryWorkitemStore] = {}

    def for_tenant(self, tenant: str, /) -> MemoryWorkitemStore:
        """The workitems of ``tenant``: a dict of their own (:class:`dicomweb_kit.tenancy.TenantScoped`)."""
        return self._tenants.setdefault(validate_tenant(tenant), MemoryWorkitemStore())

    async def create(self, item: Workitem, /) -> bool:
        if item.uid in self._items:
            return False
        self._items[item.uid] = _copy(item, 1)
        return True

    async def get(self, uid: str, /) -> Workitem | None:
        found = self._items.get(uid)
        return None if found is None else _copy(found, found.version)

    async def replace(self, item: Workitem, /, *, expected_version: int) -> bool:
        current = self._items.get(item.uid)
        if current is None or current.version != expected_version:
            return False
        self._items[item.uid] = _copy(item, expected_version + 1)
        return True

    async def search(self, query: Query, /) -> WorkitemPage:
        page = search_workitems(self._items.values(), query)
        return WorkitemPage([_copy(item, item.version) for item in page.items], page.has_more)

    async def aclose(self) -> None:
        pass
