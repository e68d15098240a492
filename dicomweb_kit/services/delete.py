"""DELETE of a study, series or instance: not part of PS3.18, offered (off by default) because
dcm4chee and Microsoft's server have it and archives need a way to correct mistakes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import changefeed
from ..errors import ResourceNotFound
from ..resources import ResourceKey

if TYPE_CHECKING:
    from ..kit import DicomWeb

__all__ = ["delete_resource"]


async def delete_resource(kit: DicomWeb, scope: ResourceKey, /) -> int:
    """Remove every instance under ``scope``; return how many. 404 when there is none.

    The index goes first: once the records are gone the instances are gone for every reader.
    A crash before the blobs are deleted leaves unreferenced blobs, which ``dicomweb-kit check``
    reports and ``--repair`` deletes.
    """
    blob_keys = await kit.index.remove(scope)
    if not blob_keys:
        raise ResourceNotFound(f"no {scope.level} {scope} is stored here")
    if kit.changefeed is not None:
        await changefeed.notify(kit)  # the index recorded the deletes in its change feed
    await kit.blobs.delete(blob_keys)
    return len(blob_keys)
