"""The contract suites of :class:`~dicomweb_kit.SubscriptionStore` and
:class:`~dicomweb_kit.EventBus`: subclass and provide the fixture the class names.

``SubscriptionStoreContract`` needs ``subscription_store`` (a fresh, empty, opened store per
test). ``EventBusContract`` needs ``event_buses``: a ``(publisher, listener)`` pair of opened
buses; the same bus twice for a one-process bus, two instances ("two processes") for a bus
that crosses processes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest

from ..events import EventBus
from ..ups.subscriptions import FILTERED_WORKLIST_UID, WORKLIST_UID, Subscription, SubscriptionStore

__all__ = ["EventBusContract", "SubscriptionStoreContract"]

A, B = "1.2.3.100", "1.2.3.200"
Buses = tuple[EventBus, EventBus]


def _never(_sub: Subscription) -> bool:
    return False


def _always(_sub: Subscription) -> bool:
    return True


async def _targets(store: SubscriptionStore, ae: str) -> dict[str, tuple[bool, str]]:
    return {sub.target: (sub.deletion_lock, sub.origin) for sub in await store.subscriptions(ae)}


@pytest.mark.anyio
class SubscriptionStoreContract:
    """What every :class:`~dicomweb_kit.SubscriptionStore` does (PS3.4 Table CC.2.3-2 and the
    per-AE event log of :mod:`dicomweb_kit.ups.subscriptions`)."""

    async def test_store_implements_the_protocol(self, subscription_store: SubscriptionStore) -> None:
        assert isinstance(subscription_store, SubscriptionStore)


    async def test_workitem_subscription_gets_its_workitem(self, subscription_store: SubscriptionStore) -> None:
        await subscription_store.subscribe(Subscription(ae_title="ONE", target=A, deletion_lock=True))
        assert await subscription_store.record(A, b"a1", matches=_never, keep=100) == ["ONE"]
        assert await subscription_store.record(B, b"b1", matches=_never, keep=100) == []
        assert [(e.seq, e.message) for e in await subscription_store.read("ONE", after=0, limit=10)] == [(1, b"a1")]
        assert await subscription_store.deletion_locked(A)
        assert not await subscription_store.deletion_locked(B)


    async def test_worklist_subscription_adds_new_workitems(self, subscription_store: SubscriptionStore) -> None:
        await subscription_store.subscribe(Subscription(ae_title="ALL", target=WORKLIST_UID), workitems=[A])
        assert await _targets(subscription_store, "ALL") == {WORKLIST_UID: (False, "workitem"), A: (False, "worklist")}
        assert await subscription_store.record(B, b"b1", matches=_never, keep=100) == ["ALL"]  # B is new: subscribed
        assert (await _targets(subscription_store, "ALL"))[B] == (False, "worklist")
        # Suspend: no more new workitems, the existing workitem subscriptions stay (PS3.4 §CC.2.3).
        assert await subscription_store.suspend("ALL", WORKLIST_UID)
        assert set(await _targets(subscription_store, "ALL")) == {A, B}
        assert await subscription_store.record("1.2.3.300", b"c1", matches=_always, keep=100) == []
        assert await subscription_store.record(A, b"a1", matches=_never, keep=100) == ["ALL"]
        assert not await subscription_store.suspend("ALL", WORKLIST_UID)  # nothing left to suspend


    async def test_unsubscribe_from_worklist_removes_all(self, subscription_store: SubscriptionStore) -> None:
        await subscription_store.subscribe(Subscription(ae_title="ALL", target=WORKLIST_UID), workitems=[A])
        await subscription_store.subscribe(Subscription(ae_title="ALL", target=B, deletion_lock=True))
        await subscription_store.subscribe(Subscription(ae_title="OTHER", target=A))
        assert await subscription_store.unsubscribe("ALL", WORKLIST_UID)
        assert await subscription_store.subscriptions("ALL") == []
        assert [sub.ae_title for sub in await subscription_store.subscriptions()] == ["OTHER"]
        assert not await subscription_store.unsubscribe("ALL", WORKLIST_UID)


    async def test_filtered_subscription_matches(self, subscription_store: SubscriptionStore) -> None:
        keys = (("ScheduledStationNameCodeSequence.CodeValue", "CT1"),)
        sub = Subscription(ae_title="CT", target=FILTERED_WORKLIST_UID, filter=keys)
        await subscription_store.subscribe(sub, workitems=[A])
        seen: list[Subscription] = []

        def matches(candidate: Subscription) -> bool:
            seen.append(candidate)
            return False

        assert await subscription_store.record(B, b"b1", matches=matches, keep=100) == []
        assert seen == [sub]  # the stored keys come back as given
        assert await subscription_store.record(B, b"b2", matches=_always, keep=100) == ["CT"]
        assert await _targets(subscription_store, "CT") == {
            FILTERED_WORKLIST_UID: (False, "workitem"),
            A: (False, "filtered"),
            B: (False, "filtered"),
        }
        # Once subscribed, a workitem's events arrive whether or not it still matches.
        assert await subscription_store.record(B, b"b3", matches=_never, keep=100) == ["CT"]
        # Unsubscribing from the filtered worklist removes what it subscribed to, not the rest.
        await subscription_store.subscribe(Subscription(ae_title="CT", target="1.2.3.400"))
        assert await subscription_store.unsubscribe("CT", FILTERED_WORKLIST_UID)
        assert set(await _targets(subscription_store, "CT")) == {"1.2.3.400"}


    async def test_explicit_subscription_takes_precedence(self, subscription_store: SubscriptionStore) -> None:
        await subscription_store.subscribe(Subscription(ae_title="ALL", target=A, deletion_lock=True))
        await subscription_store.subscribe(Subscription(ae_title="ALL", target=WORKLIST_UID), workitems=[A, B])
        targets = await _targets(subscription_store, "ALL")
        assert targets[A] == (True, "workitem")  # not replaced by the worklist's unlocked one
        assert targets[B] == (False, "worklist")
        await subscription_store.subscribe(Subscription(ae_title="ALL", target=B, deletion_lock=True))
        assert (await _targets(subscription_store, "ALL"))[B] == (True, "workitem")


    async def test_one_report_per_ae_whatever_the_paths(self, subscription_store: SubscriptionStore) -> None:
        await subscription_store.subscribe(Subscription(ae_title="X", target=A))
        await subscription_store.subscribe(Subscription(ae_title="X", target=WORKLIST_UID))
        keys = (("PatientID", "1"),)
        await subscription_store.subscribe(Subscription(ae_title="X", target=FILTERED_WORKLIST_UID, filter=keys))
        assert await subscription_store.record(A, b"once", matches=_always, keep=100) == ["X"]
        assert [e.message for e in await subscription_store.read("X", after=0, limit=10)] == [b"once"]


    async def test_log_order_cursor_and_trimming(self, subscription_store: SubscriptionStore) -> None:
        await subscription_store.subscribe(Subscription(ae_title="LOG", target=A))
        for i in range(5):
            await subscription_store.record(A, f"m{i}".encode(), matches=_never, keep=100)
        await subscription_store.append("LOG", [b"x", b"y"], keep=100)
        entries = await subscription_store.read("LOG", after=0, limit=100)
        assert [(e.seq, e.message) for e in entries] == [
            (1, b"m0"), (2, b"m1"), (3, b"m2"), (4, b"m3"), (5, b"m4"), (6, b"x"), (7, b"y")
        ]  # fmt: skip
        assert [e.seq for e in await subscription_store.read("LOG", after=2, limit=2)] == [3, 4]
        assert await subscription_store.cursor("LOG") == 0
        await subscription_store.acknowledge("LOG", 4)
        assert await subscription_store.cursor("LOG") == 4
        assert [e.seq for e in await subscription_store.read("LOG", after=0, limit=100)] == [5, 6, 7]
        await subscription_store.acknowledge("LOG", 2)  # never backwards
        assert await subscription_store.cursor("LOG") == 4
        # The bound: only the newest `keep` entries stay for an AE that does not read them.
        for i in range(10):
            await subscription_store.record(A, f"n{i}".encode(), matches=_never, keep=3)
        assert [e.message for e in await subscription_store.read("LOG", after=0, limit=100)] == [b"n7", b"n8", b"n9"]
        assert await subscription_store.read("NOBODY", after=0, limit=10) == []
        assert await subscription_store.cursor("NOBODY") == 0


    async def test_release_keeps_only_locked_subscriptions(self, subscription_store: SubscriptionStore) -> None:
        await subscription_store.subscribe(Subscription(ae_title="LOCK", target=A, deletion_lock=True))
        await subscription_store.subscribe(Subscription(ae_title="FREE", target=A))
        await subscription_store.subscribe(Subscription(ae_title="FREE", target=B))
        await subscription_store.subscribe(Subscription(ae_title="ALL", target=WORKLIST_UID), workitems=[A])
        await subscription_store.release(A)
        assert [(s.ae_title, s.target) for s in await subscription_store.subscriptions()] == [
            ("ALL", WORKLIST_UID),
            ("FREE", B),
            ("LOCK", A),
        ]
        assert await subscription_store.deletion_locked(A)


    async def test_unsubscribe_one_workitem(self, subscription_store: SubscriptionStore) -> None:
        await subscription_store.subscribe(Subscription(ae_title="ONE", target=A))
        await subscription_store.subscribe(Subscription(ae_title="ONE", target=B))
        assert await subscription_store.unsubscribe("ONE", A)
        assert not await subscription_store.unsubscribe("ONE", A)
        assert set(await _targets(subscription_store, "ONE")) == {B}
        assert await subscription_store.record(A, b"gone", matches=_never, keep=10) == []


async def _take(messages: AsyncIterator[bytes], n: int) -> list[bytes]:
    got: list[bytes] = []
    with anyio.fail_after(10):
        while len(got) < n:
            got.append(await anext(messages))
    return got


@pytest.mark.anyio
class EventBusContract:
    """What every :class:`~dicomweb_kit.EventBus` does."""

    async def test_implements_the_protocol(self, event_buses: Buses) -> None:
        assert all(isinstance(bus, EventBus) for bus in event_buses)


    async def test_messages_reach_subscribers_of_their_topic_in_order(self, event_buses: Buses) -> None:
        publisher, listener = event_buses
        async with listener.subscribe("a") as a, listener.subscribe("a") as a2, listener.subscribe("b") as b:
            for i in range(20):
                await publisher.publish("a", f"a{i}".encode())
            await publisher.publish("b", b"b0")
            expected = [f"a{i}".encode() for i in range(20)]
            assert await _take(a, 20) == expected
            assert await _take(a2, 20) == expected  # every subscriber gets every message
            assert await _take(b, 1) == [b"b0"]


    async def test_messages_from_before_subscribing_are_not_kept(self, event_buses: Buses) -> None:
        publisher, listener = event_buses
        await publisher.publish("t", b"before")
        async with listener.subscribe("t") as messages:
            await publisher.publish("t", b"after")
            got = await _take(messages, 1)
            if got == [b"before"]:  # across processes one still in flight may arrive: never a stored one
                assert publisher is not listener
                got = await _take(messages, 1)
            assert got == [b"after"]


    async def test_waiting_can_time_out_without_ending_the_subscription(self, event_buses: Buses) -> None:
        publisher, listener = event_buses
        async with listener.subscribe("t") as messages:
            with anyio.move_on_after(0.05):
                await anext(messages)
            await publisher.publish("t", b"later")
            assert await _take(messages, 1) == [b"later"]


    async def test_binary_empty_and_large_messages(self, event_buses: Buses) -> None:
        publisher, listener = event_buses
        large = ("é" * 9000).encode()  # 18,000 bytes: past NOTIFY's 8000-byte payload limit
        binary = bytes(range(256)) * 3  # not text: cannot be a NOTIFY payload at all
        async with listener.subscribe("t") as messages:
            for message in (b"", large, binary, b"small"):
                await publisher.publish("t", message)
            assert await _take(messages, 4) == [b"", large, binary, b"small"]


    async def test_bad_topics_are_refused(self, event_buses: Buses) -> None:
        publisher, listener = event_buses
        for topic in ("", "x" * 201, "a\nb", "a\x1fb"):
            with pytest.raises(ValueError, match="topic"):
                await publisher.publish(topic, b"")
            with pytest.raises(ValueError, match="topic"):
                async with listener.subscribe(topic):
                    pass
