"""Subscription stores (PS3.4 Table CC.2.3-2 semantics, per-AE event logs): one contract run on the
memory store and the SQL store on SQLite, PostgreSQL and MariaDB (servers as in
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

from dicomweb_kit import (
    FILTERED_WORKLIST_UID,
    WORKLIST_UID,
    DicomWeb,
    MemorySubscriptionStore,
    Subscription,
    SubscriptionStore,
)

pytestmark = pytest.mark.anyio

A, B = "1.2.3.100", "1.2.3.200"


def _sql_tests() -> ModuleType:
    path = Path(__file__).parents[1] / "adapters" / "test_sql.py"
    spec = importlib.util.spec_from_file_location("_dwk_sql_engines", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ENGINES: dict[str, Callable[..., AsyncIterator[SqlIndex]]] = _sql_tests().ENGINES


@pytest.fixture(params=["memory", *sorted(ENGINES)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SubscriptionStore]:
    if request.param == "memory":
        yield MemorySubscriptionStore()
        return
    async for index in ENGINES[str(request.param)](tmp_path):
        made = index.ups_subscriptions()
        assert isinstance(made, SqlSubscriptionStore)
        yield made


def _never(_sub: Subscription) -> bool:
    return False


def _always(_sub: Subscription) -> bool:
    return True


async def _targets(store: SubscriptionStore, ae: str) -> dict[str, tuple[bool, str]]:
    return {sub.target: (sub.deletion_lock, sub.origin) for sub in await store.subscriptions(ae)}


async def test_store_implements_the_protocol(store: SubscriptionStore) -> None:
    assert isinstance(store, SubscriptionStore)


async def test_workitem_subscription_receives_only_its_workitem(store: SubscriptionStore) -> None:
    await store.subscribe(Subscription(ae_title="ONE", target=A, deletion_lock=True))
    assert await store.record(A, b"a1", matches=_never, keep=100) == ["ONE"]
    assert await store.record(B, b"b1", matches=_never, keep=100) == []
    assert [(e.seq, e.message) for e in await store.read("ONE", after=0, limit=10)] == [(1, b"a1")]
    assert await store.deletion_locked(A)
    assert not await store.deletion_locked(B)


async def test_worklist_subscription_subscribes_to_each_new_workitem(store: SubscriptionStore) -> None:
    await store.subscribe(Subscription(ae_title="ALL", target=WORKLIST_UID), workitems=[A])
    assert await _targets(store, "ALL") == {WORKLIST_UID: (False, "workitem"), A: (False, "worklist")}
    assert await store.record(B, b"b1", matches=_never, keep=100) == ["ALL"]  # B is new: subscribed
    assert (await _targets(store, "ALL"))[B] == (False, "worklist")
    # Suspend: no more new workitems, the existing workitem subscriptions stay (PS3.4 §CC.2.3).
    assert await store.suspend("ALL", WORKLIST_UID)
    assert set(await _targets(store, "ALL")) == {A, B}
    assert await store.record("1.2.3.300", b"c1", matches=_always, keep=100) == []
    assert await store.record(A, b"a1", matches=_never, keep=100) == ["ALL"]
    assert not await store.suspend("ALL", WORKLIST_UID)  # nothing left to suspend


async def test_unsubscribe_from_the_worklist_removes_everything(store: SubscriptionStore) -> None:
    await store.subscribe(Subscription(ae_title="ALL", target=WORKLIST_UID), workitems=[A])
    await store.subscribe(Subscription(ae_title="ALL", target=B, deletion_lock=True))
    await store.subscribe(Subscription(ae_title="OTHER", target=A))
    assert await store.unsubscribe("ALL", WORKLIST_UID)
    assert await store.subscriptions("ALL") == []
    assert [sub.ae_title for sub in await store.subscriptions()] == ["OTHER"]
    assert not await store.unsubscribe("ALL", WORKLIST_UID)


async def test_filtered_subscription_subscribes_matching_workitems(store: SubscriptionStore) -> None:
    keys = (("ScheduledStationNameCodeSequence.CodeValue", "CT1"),)
    sub = Subscription(ae_title="CT", target=FILTERED_WORKLIST_UID, filter=keys)
    await store.subscribe(sub, workitems=[A])
    seen: list[Subscription] = []

    def matches(candidate: Subscription) -> bool:
        seen.append(candidate)
        return False

    assert await store.record(B, b"b1", matches=matches, keep=100) == []
    assert seen == [sub]  # the stored keys come back as given
    assert await store.record(B, b"b2", matches=_always, keep=100) == ["CT"]
    assert await _targets(store, "CT") == {
        FILTERED_WORKLIST_UID: (False, "workitem"),
        A: (False, "filtered"),
        B: (False, "filtered"),
    }
    # Once subscribed, a workitem's events arrive whether or not it still matches.
    assert await store.record(B, b"b3", matches=_never, keep=100) == ["CT"]
    # Unsubscribing from the filtered worklist removes what it subscribed to, not the rest.
    await store.subscribe(Subscription(ae_title="CT", target="1.2.3.400"))
    assert await store.unsubscribe("CT", FILTERED_WORKLIST_UID)
    assert set(await _targets(store, "CT")) == {"1.2.3.400"}


async def test_explicit_subscription_takes_precedence(store: SubscriptionStore) -> None:
    await store.subscribe(Subscription(ae_title="ALL", target=A, deletion_lock=True))
    await store.subscribe(Subscription(ae_title="ALL", target=WORKLIST_UID), workitems=[A, B])
    targets = await _targets(store, "ALL")
    assert targets[A] == (True, "workitem")  # not replaced by the worklist's unlocked one
    assert targets[B] == (False, "worklist")
    await store.subscribe(Subscription(ae_title="ALL", target=B, deletion_lock=True))
    assert (await _targets(store, "ALL"))[B] == (True, "workitem")


async def test_one_report_per_ae_whatever_the_paths(store: SubscriptionStore) -> None:
    await store.subscribe(Subscription(ae_title="X", target=A))
    await store.subscribe(Subscription(ae_title="X", target=WORKLIST_UID))
    await store.subscribe(Subscription(ae_title="X", target=FILTERED_WORKLIST_UID, filter=(("PatientID", "1"),)))
    assert await store.record(A, b"once", matches=_always, keep=100) == ["X"]
    assert [e.message for e in await store.read("X", after=0, limit=10)] == [b"once"]


async def test_log_order_cursor_and_trimming(store: SubscriptionStore) -> None:
    await store.subscribe(Subscription(ae_title="LOG", target=A))
    for i in range(5):
        await store.record(A, f"m{i}".encode(), matches=_never, keep=100)
    await store.append("LOG", [b"x", b"y"], keep=100)
    entries = await store.read("LOG", after=0, limit=100)
    assert [(e.seq, e.message) for e in entries] == [
        (1, b"m0"), (2, b"m1"), (3, b"m2"), (4, b"m3"), (5, b"m4"), (6, b"x"), (7, b"y")
    ]  # fmt: skip
    assert [e.seq for e in await store.read("LOG", after=2, limit=2)] == [3, 4]
    assert await store.cursor("LOG") == 0
    await store.acknowledge("LOG", 4)
    assert await store.cursor("LOG") == 4
    assert [e.seq for e in await store.read("LOG", after=0, limit=100)] == [5, 6, 7]
    await store.acknowledge("LOG", 2)  # never backwards
    assert await store.cursor("LOG") == 4
    # The bound: only the newest `keep` entries stay for an AE that does not read them.
    for i in range(10):
        await store.record(A, f"n{i}".encode(), matches=_never, keep=3)
    assert [e.message for e in await store.read("LOG", after=0, limit=100)] == [b"n7", b"n8", b"n9"]
    assert await store.read("NOBODY", after=0, limit=10) == []
    assert await store.cursor("NOBODY") == 0


async def test_release_keeps_only_locked_subscriptions(store: SubscriptionStore) -> None:
    await store.subscribe(Subscription(ae_title="LOCK", target=A, deletion_lock=True))
    await store.subscribe(Subscription(ae_title="FREE", target=A))
    await store.subscribe(Subscription(ae_title="FREE", target=B))
    await store.subscribe(Subscription(ae_title="ALL", target=WORKLIST_UID), workitems=[A])
    await store.release(A)
    assert [(s.ae_title, s.target) for s in await store.subscriptions()] == [
        ("ALL", WORKLIST_UID),
        ("FREE", B),
        ("LOCK", A),
    ]
    assert await store.deletion_locked(A)


async def test_unsubscribe_one_workitem(store: SubscriptionStore) -> None:
    await store.subscribe(Subscription(ae_title="ONE", target=A))
    await store.subscribe(Subscription(ae_title="ONE", target=B))
    assert await store.unsubscribe("ONE", A)
    assert not await store.unsubscribe("ONE", A)
    assert set(await _targets(store, "ONE")) == {B}
    assert await store.record(A, b"gone", matches=_never, keep=10) == []


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
        await kit.subscriptions.record(A, b"while away", matches=_never, keep=10)
    async with make() as kit:
        subs: Any = await kit.subscriptions.subscriptions("KEEP")
        assert [(s.target, s.deletion_lock, s.origin) for s in subs] == [
            (A, True, "worklist"),
            (WORKLIST_UID, True, "workitem"),
        ]
        assert [e.message for e in await kit.subscriptions.read("KEEP", after=0, limit=10)] == [b"while away"]
