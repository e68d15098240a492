"""Subscription stores (PS3.4 Table CC.2.3-2 semantics, per-AE event logs): the shipped contract
(``dicomweb_kit.testing.event_contracts``) on the memory store and the SQL store on SQLite,
PostgreSQL and MariaDB (servers as in
``tests/adapters/test_sql.py``: unreachable skips with the reason, ``CI=true`` fails); and the
subscription persisting across a kit restart."""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from dicomweb_kit_adapters.memory import MemoryBlobStore
from dicomweb_kit_adapters.sql import SqlIndex, SqlSubscriptionStore

from dicomweb_kit import WORKLIST_UID, DicomWeb, MemorySubscriptionStore, Subscription, SubscriptionStore
from dicomweb_kit.testing.event_contracts import SubscriptionStoreContract

pytestmark = pytest.mark.anyio

A = "1.2.3.100"


def _sql_tests() -> ModuleType:
    path = Path(__file__).parents[1] / "adapters" / "test_sql.py"
    spec = importlib.util.spec_from_file_location("_dwk_sql_engines", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ENGINES: dict[str, Callable[..., AsyncIterator[SqlIndex]]] = _sql_tests().ENGINES


class TestMemorySubscriptionStore(SubscriptionStoreContract):
    @pytest.fixture
    async def subscription_store(self) -> AsyncIterator[SubscriptionStore]:
        store = MemorySubscriptionStore()
        yield store
        await store.aclose()


async def _sql_store(engine: str, tmp_path: Path) -> AsyncIterator[SubscriptionStore]:
    async for index in ENGINES[engine](tmp_path):
        store = index.ups_subscriptions()
        assert isinstance(store, SqlSubscriptionStore)
        yield store


class TestSqliteSubscriptionStore(SubscriptionStoreContract):
    @pytest.fixture
    async def subscription_store(self, tmp_path: Path) -> AsyncIterator[SubscriptionStore]:
        async for store in _sql_store("sqlite", tmp_path):
            yield store


class TestPostgresSubscriptionStore(SubscriptionStoreContract):
    @pytest.fixture
    async def subscription_store(self, tmp_path: Path) -> AsyncIterator[SubscriptionStore]:
        async for store in _sql_store("postgresql", tmp_path):
            yield store


class TestMariadbSubscriptionStore(SubscriptionStoreContract):
    @pytest.fixture
    async def subscription_store(self, tmp_path: Path) -> AsyncIterator[SubscriptionStore]:
        async for store in _sql_store("mariadb", tmp_path):
            yield store


# --------------------------------------------------------------------------------------------
# Persistence across a kit restart
# --------------------------------------------------------------------------------------------


async def test_subscriptions_and_logs_survive_a_kit_restart(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'index.sqlite3'}"

    def make() -> DicomWeb:
        return DicomWeb(blobs=MemoryBlobStore(), index=SqlIndex(url))

    async with make() as kit:
        assert isinstance(kit.subscriptions, SqlSubscriptionStore)  # the index's store by default
        await kit.subscriptions.subscribe(Subscription(ae_title="KEEP", target=WORKLIST_UID, deletion_lock=True))
        await kit.subscriptions.record(A, b"while away", matches=lambda _sub: False, keep=10)
    async with make() as kit:
        subs: Any = await kit.subscriptions.subscriptions("KEEP")
        assert [(s.target, s.deletion_lock, s.origin) for s in subs] == [
            (A, True, "worklist"),
            (WORKLIST_UID, True, "workitem"),
        ]
        assert [e.message for e in await kit.subscriptions.read("KEEP", after=0, limit=10)] == [b"while away"]
