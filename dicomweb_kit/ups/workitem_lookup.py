"""What subscribing reads of the workitems, over the kit's workitem store (``kit.workitems``,
a :class:`~dicomweb_kit.ups.store.WorkitemStore`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any, Final, Protocol, runtime_checkable

from ..query.terms import Query, SingleValue, Term
from ..resources import Level

if TYPE_CHECKING:
    from ..kit import DicomWeb
    from .subscribing import WorkitemLookup

__all__ = ["StoreLookup", "workitem_lookup"]

_PAGE: Final = 500
_ACTIVE_STATES: Final = ("SCHEDULED", "IN PROGRESS")  # PS3.4 Table CC.1.1-1: not final


class _Item(Protocol):
    @property
    def uid(self) -> str: ...
    @property
    def attributes(self) -> dict[str, Any]: ...


class _Page(Protocol):
    @property
    def items(self) -> list[Any]: ...
    @property
    def has_more(self) -> bool: ...


@runtime_checkable
class _Store(Protocol):
    """The part of :class:`~dicomweb_kit.ups.store.WorkitemStore` read here."""

    async def get(self, uid: str, /) -> Any: ...
    async def search(self, query: Query, /) -> Any: ...


class StoreLookup:
    """A :class:`~dicomweb_kit.ups.subscribing.WorkitemLookup` over a workitem store."""

    def __init__(self, store: _Store | None) -> None:
        self.store = store

    async def get(self, workitem_uid: str, /) -> Mapping[str, Any] | None:
        if self.store is None:
            return None
        item: _Item | None = await self.store.get(workitem_uid)
        return None if item is None else item.attributes

    async def active(self) -> AsyncIterator[tuple[str, Mapping[str, Any]]]:
        if self.store is None:
            return
        for state in _ACTIVE_STATES:
            terms = (Term(0x00741000, "CS", SingleValue(state)),)
            offset = 0
            while True:
                query = Query(level=Level.INSTANCE, terms=terms, limit=_PAGE, offset=offset)
                page: _Page = await self.store.search(query)
                for item in page.items:
                    yield item.uid, item.attributes
                if not page.has_more:
                    break
                offset += len(page.items)


def workitem_lookup(kit: DicomWeb, /) -> WorkitemLookup:
    """The lookup over ``kit``'s workitems (none if the kit has no workitem store)."""
    store = getattr(kit, "workitems", None)
    return StoreLookup(store if isinstance(store, _Store) else None)
