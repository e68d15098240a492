"""The core's side of tenancy (``dicomweb_kit/tenancy.py``, ``DicomWeb.tenant``): tenant kits are
opened once, what the core shares between tenants (event bus, render cache, blob stores
without ``for_tenant``) is kept apart by prefixes, and a kit that cannot hold tenants says so."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Sequence

import anyio
import numpy as np
import pytest
from dicomweb_kit_adapters.memory import MemoryBlobStore, MemoryIndex
from pydicom.uid import generate_uid

from dicomweb_kit import BlobInfo, ConfigurationError, DicomWeb, MemoryEventBus, ResourceKey
from dicomweb_kit.tenancy import PrefixedBlobStore, TenantEventBus
from dicomweb_kit.testing import make_dataset
from dicomweb_kit.web.tenants import TenantFromHeader

pytestmark = pytest.mark.anyio


async def test_concurrent_first_uses_open_a_tenant_once() -> None:
    opened: list[str] = []
    index = MemoryIndex()

    class CountingIndex(MemoryIndex):
        async def open(self) -> None:
            opened.append("index")

    child = CountingIndex()
    index.for_tenant = lambda tenant: child  # type: ignore[method-assign]
    async with DicomWeb(blobs=MemoryBlobStore(), index=index) as kit:
        found: list[DicomWeb] = []

        async def get() -> None:
            found.append(await kit.tenant("north"))

        async with anyio.create_task_group() as group:
            for _ in range(10):
                group.start_soon(get)
    assert len({id(k) for k in found}) == 1 and opened == ["index"]


async def test_a_tenant_kit_has_no_tenants_of_its_own() -> None:
    async with DicomWeb(blobs=MemoryBlobStore(), index=MemoryIndex()) as kit:
        with pytest.raises(ConfigurationError, match="do not nest"):
            await (await kit.tenant("north")).tenant("south")


async def test_tenants_need_an_index_that_holds_them() -> None:
    class NoTenants(MemoryIndex):
        for_tenant = None  # type: ignore[assignment]

    with pytest.raises(ConfigurationError, match="for_tenant"):
        DicomWeb(blobs=MemoryBlobStore(), index=NoTenants(), tenants=TenantFromHeader())


async def test_events_of_one_tenant_do_not_reach_another() -> None:
    bus = MemoryEventBus()
    north, south = TenantEventBus(bus, "north"), TenantEventBus(bus, "south")
    async with north.subscribe("topic") as north_inbox, south.subscribe("topic") as south_inbox:
        await south.publish("topic", b"for south")
        with anyio.fail_after(2):
            assert await anext(aiter(south_inbox)) == b"for south"
        with anyio.move_on_after(0.1) as waited:
            await anext(aiter(north_inbox))
        assert waited.cancelled_caught


async def test_thumbnails_of_the_same_uids_are_the_tenants_own() -> None:
    """The render cache is shared: keys built from UIDs and versions alone would collide."""
    key = ResourceKey(generate_uid(), generate_uid(), generate_uid())
    async with DicomWeb(blobs=MemoryBlobStore(), index=MemoryIndex()) as kit:
        thumbnails = []
        for tenant, pixels in (("north", np.zeros(16)), ("south", np.full(16, 4000))):
            ds = make_dataset(study=key.study, series=key.series, instance=key.instance, WindowCenter=2000)
            ds.WindowWidth = 4000
            ds.PixelData = pixels.astype("<u2").tobytes()
            tenant_kit = await kit.tenant(tenant)
            await tenant_kit.store(ds)
            thumbnails.append((await tenant_kit.thumbnail(key, media_type="image/png")).data)
        assert thumbnails[0] != thumbnails[1]
        assert (await (await kit.tenant("north")).thumbnail(key, media_type="image/png")).data == thumbnails[0]


class _KeyedOnly:
    """A blob store without for_tenant: the kit keeps tenants apart by key prefix."""

    def __init__(self) -> None:
        self.inner = MemoryBlobStore()

    async def put(self, key: str, chunks: AsyncIterable[bytes | memoryview], /, *, durable: bool = True) -> BlobInfo:
        return await self.inner.put(key, chunks, durable=durable)

    async def sync(self, keys: Sequence[str], /) -> None:
        await self.inner.sync(keys)

    def get(self, key: str, /, *, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        return self.inner.get(key, start=start, end=end)

    async def exists(self, key: str, /) -> bool:
        return await self.inner.exists(key)

    def iter_keys(self) -> AsyncIterator[str]:
        return self.inner.iter_keys()

    async def delete(self, keys: Sequence[str], /) -> None:
        await self.inner.delete(keys)

    async def aclose(self) -> None:
        pass


async def test_a_blob_store_without_tenants_gets_prefixed_keys() -> None:
    blobs = _KeyedOnly()
    async with DicomWeb(blobs=blobs, index=MemoryIndex()) as kit:  # type: ignore[arg-type]
        north = await kit.tenant("north")
        assert isinstance(north.blobs, PrefixedBlobStore)
        stored = await north.store(make_dataset(patient_name="North^Pat"))
        [raw_key] = [key async for key in blobs.iter_keys()]
        assert raw_key == "tenants/north/" + stored.record.blob_key
        assert b"North^Pat" in await north.retrieve_instance(stored.record.key)
        assert [key async for key in north.blobs.iter_keys()] == [stored.record.blob_key]
        assert [key async for key in (await kit.tenant("south")).blobs.iter_keys()] == []
