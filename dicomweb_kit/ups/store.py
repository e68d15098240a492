"""Where workitems live: the :class:`WorkitemStore` protocol adapters implement.

A store keeps each workitem's DICOM JSON, its state, its Transaction UID (the claim lock, kept
apart because PS3.4 §CC.2.7.3 never lets it out) and a version number. Every change is a
compare-and-set on the version (:meth:`WorkitemStore.replace`), so when several workers change
one workitem at once exactly one change is made from each version: two claims of one
SCHEDULED workitem cannot both win. The state machine and the attribute rules are the
service's (:mod:`dicomweb_kit.ups.service`); a store only stores, matches and orders.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol, runtime_checkable

import msgspec

from ..query.matching import instance_matches
from ..query.ordering import sort_entities
from ..query.terms import Query

__all__ = ["Workitem", "WorkitemPage", "WorkitemStore", "search_workitems"]


class Workitem(msgspec.Struct, frozen=True):
    """One UPS instance as stored.

    Attributes:
        uid: its SOP Instance UID.
        state: Procedure Step State (0074,1000), also in ``attributes``.
        attributes: the DICOM JSON object, without Transaction UID (0008,1195).
        transaction_uid: the lock recorded when it was claimed (IN PROGRESS), else ``None``.
        version: 1 when created, incremented by every :meth:`WorkitemStore.replace`.
    """

    uid: str
    state: str
    attributes: dict[str, Any]
    transaction_uid: str | None = None
    version: int = 1


class WorkitemPage(msgspec.Struct, frozen=True):
    """A page of search results and whether more follow it."""

    items: list[Workitem]
    has_more: bool = False


@runtime_checkable
class WorkitemStore(Protocol):
    """Persistent UPS workitems.

    Contract (checked by :class:`dicomweb_kit.testing.WorkitemStoreContract`):

    * ``create`` stores a new workitem at version 1; it returns ``False`` (and stores nothing)
      if one with that UID exists.
    * ``replace`` stores ``item`` as version ``expected_version + 1`` only if the stored version
      is ``expected_version`` (atomically: of concurrent calls from one version, one wins);
      it returns whether it did.
    * ``search`` returns the workitems whose ``attributes`` match every ``query.terms`` as
      :func:`dicomweb_kit.query.matching.instance_matches` does (``query.fuzzy`` honoured), in
      ``query.orderby`` order, ties and unordered queries in creation order, paged by
      ``query.limit``/``query.offset``. ``query.level`` and ``query.scope`` are ignored.
    * Backend failures surface as :class:`dicomweb_kit.errors.StorageUnavailable`.
    """

    async def create(self, item: Workitem, /) -> bool:
        """Store a new workitem; ``False`` if its UID is taken."""
        ...

    async def get(self, uid: str, /) -> Workitem | None:
        """The workitem ``uid``, or ``None``."""
        ...

    async def replace(self, item: Workitem, /, *, expected_version: int) -> bool:
        """Replace ``item.uid`` if it is still at ``expected_version``; whether it was replaced."""
        ...

    async def search(self, query: Query, /) -> WorkitemPage:
        """The page of workitems matching ``query``."""
        ...

    async def aclose(self) -> None:
        """Release resources; called once from the kit's lifespan shutdown."""
        ...


def search_workitems(items: Iterable[Workitem], query: Query, /) -> WorkitemPage:
    """The reference answer to ``query`` over ``items`` given in creation order."""
    matched = [item for item in items if instance_matches(query.terms, item.attributes, fuzzy=query.fuzzy)]
    ordered = sort_entities(matched, query.orderby, lambda item: item.attributes)
    start = query.offset
    stop = None if query.limit is None else start + query.limit
    page = ordered[start:stop]
    return WorkitemPage(page, has_more=stop is not None and len(ordered) > stop)
