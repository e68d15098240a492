"""The shipped contract suites, run against every adapter we ship."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from dicomweb_kit_adapters.memory import MemoryBlobStore, MemoryIndex

from dicomweb_kit.testing import BlobStoreContract, InstanceIndexContract


class TestMemoryBlobStore(BlobStoreContract):
    @pytest.fixture
    async def blob_store(self) -> AsyncIterator[MemoryBlobStore]:
        store = MemoryBlobStore()
        yield store
        await store.aclose()


class TestMemoryIndex(InstanceIndexContract):
    @pytest.fixture
    async def instance_index(self) -> AsyncIterator[MemoryIndex]:
        index = MemoryIndex()
        yield index
        await index.aclose()
