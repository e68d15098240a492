"""The render caches: the in-memory LRU of the core and the adapters' file cache, one contract."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest
from dicomweb_kit_adapters.render_cache import FileRenderCache

from dicomweb_kit import MemoryRenderCache, RenderCache

pytestmark = pytest.mark.anyio

Factory = Callable[[int], RenderCache]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=["memory", "file"])
def make_cache(request: pytest.FixtureRequest, tmp_path: Path) -> Factory:
    if request.param == "memory":
        return MemoryRenderCache
    return lambda max_bytes: FileRenderCache(tmp_path / "cache", max_bytes)


async def tick() -> None:
    await anyio.sleep(0.01)  # distinct modification times for the file cache's LRU order


async def test_miss_put_get_replace(make_cache: Factory) -> None:
    cache = make_cache(100)
    assert isinstance(cache, RenderCache)
    assert await cache.get("a") is None
    await cache.put("a", b"one")
    assert await cache.get("a") == b"one"
    await cache.put("a", b"two!")
    assert await cache.get("a") == b"two!"


async def test_least_recently_used_go_first(make_cache: Factory) -> None:
    cache = make_cache(10)
    await cache.put("a", b"1234")
    await tick()
    await cache.put("b", b"5678")
    await tick()
    assert await cache.get("a") == b"1234"  # a is now the most recent
    await tick()
    await cache.put("c", b"90ab")
    assert await cache.get("b") is None
    assert await cache.get("a") == b"1234" and await cache.get("c") == b"90ab"
    await cache.put("big", b"x" * 11)  # larger than the whole cache: not kept
    assert await cache.get("big") is None and await cache.get("c") == b"90ab"


async def test_file_cache_survives_a_restart_and_counts_what_it_finds(tmp_path: Path) -> None:
    first = FileRenderCache(tmp_path, 10)
    await first.put("a", b"123456")
    (tmp_path / ".tmp-leftover").write_bytes(b"x" * 100)  # a crashed put: not an entry
    again = FileRenderCache(tmp_path, 10)
    assert await again.get("a") == b"123456"
    await tick()
    await again.put("b", b"7890")
    assert await again.get("a") == b"123456"  # 10 bytes: still within the limit
    await tick()
    await again.put("c", b"x")
    assert await again.get("b") is None and await again.get("a") == b"123456"  # b was the oldest
    names = [name for name in os.listdir(tmp_path) if not name.startswith(".")]
    assert sum((tmp_path / name).stat().st_size for name in names) <= 10
