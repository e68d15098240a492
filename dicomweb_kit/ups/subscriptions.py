"""UPS subscriptions (PS3.4 §CC.2.3) and each subscriber's event log: the store protocol and the
in-memory store.

The model follows PS3.4 Table CC.2.3-2. Every AE has, per workitem, a *workitem subscription*
or none; and, per worklist, a *worklist subscription* (``1.2.840.10008.5.1.4.34.5``) and/or a
*filtered worklist subscription* (``1.2.840.10008.5.1.4.34.5.1`` with match keys) or none.
A worklist subscription subscribes the AE to the existing workitems and to each new (or, when
filtered, newly matching) workitem; those workitem subscriptions are rows of their own, so they
outlive a Suspend. Unsubscribing from the worklist removes every subscription of the AE (the
one exception to "instance-specific instructions take precedence" that PS3.4 §CC.2.3 makes).

Each AE has one event log: the event reports addressed to it, numbered 1, 2, 3... in the order
they were recorded. A notification channel sends the entries after the AE's *cursor* and moves
the cursor as it sends them; entries at or before the cursor are deleted. At most ``keep``
entries are kept per AE (``Settings.ups_event_log_limit``): an AE that never connects loses
the oldest beyond that bound.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final, Literal, Protocol, runtime_checkable

import msgspec

__all__ = [
    "FILTERED_WORKLIST_UID",
    "WORKLIST_UID",
    "LoggedEvent",
    "MemorySubscriptionStore",
    "Origin",
    "Subscription",
    "SubscriptionStore",
]

# Well-known SOP Instance UIDs of the UPS Global Subscription and the UPS Filtered Global
# Subscription (PS3.4 §CC.3.1, PS3.6 Annex A; PS3.18 Table 11.10.1-1 "Worklist" resources).
WORKLIST_UID: Final = "1.2.840.10008.5.1.4.34.5"
FILTERED_WORKLIST_UID: Final = "1.2.840.10008.5.1.4.34.5.1"

Origin = Literal["workitem", "worklist", "filtered"]


class Subscription(msgspec.Struct, frozen=True, kw_only=True):
    """One subscription of one AE.

    Attributes:
        ae_title: the Receiving AE (0074,1234), leading/trailing spaces removed.
        target: a workitem's SOP Instance UID, :data:`WORKLIST_UID` or :data:`FILTERED_WORKLIST_UID`.
        deletion_lock: Deletion Lock (0074,1230): a workitem with a locked subscription is not
            deleted once final (PS3.4 §CC.2.1.3).
        filter: the match keys of a filtered worklist subscription, as ``(key, value)`` pairs in
            QIDO-RS form (PS3.18 §8.3.4.1).
        origin: for a workitem subscription, what made it: an explicit subscribe
            (``"workitem"``) or a worklist/filtered worklist subscription.
    """

    ae_title: str
    target: str
    deletion_lock: bool = False
    filter: tuple[tuple[str, str], ...] = ()
    origin: Origin = "workitem"

    @property
    def is_worklist(self) -> bool:
        return self.target in (WORKLIST_UID, FILTERED_WORKLIST_UID)


class LoggedEvent(msgspec.Struct, frozen=True):
    """One entry of an AE's event log: its sequence number and the event report (DICOM JSON)."""

    seq: int
    message: bytes


@runtime_checkable
class SubscriptionStore(Protocol):
    """Where subscriptions and event logs are kept. Every method is one atomic step.

    Implementations may add ``async def open()``; the kit calls it at start-up.
    """

    async def subscribe(self, subscription: Subscription, /, *, workitems: Sequence[str] = ()) -> None:
        """Create or replace ``subscription`` (one per AE and target). For a worklist or
        filtered worklist subscription, also subscribe the AE to each of ``workitems`` it is not
        subscribed to yet (origin the worklist subscription, with its deletion lock); an
        explicit workitem subscription replaces one made by a worklist subscription."""
        ...

    async def unsubscribe(self, ae_title: str, target: str, /) -> bool:
        """Remove subscriptions per PS3.4 Table CC.2.3-2: a workitem's, or for
        :data:`WORKLIST_UID` every subscription of the AE, or for :data:`FILTERED_WORKLIST_UID`
        the filtered subscription and the workitem subscriptions it made. Whether any existed."""
        ...

    async def suspend(self, ae_title: str, target: str, /) -> bool:
        """Remove only the worklist (or filtered worklist) subscription itself; the workitem
        subscriptions it made stay (PS3.4 §CC.2.3, Suspend Global Subscription). Whether it existed."""
        ...

    async def subscriptions(self, ae_title: str | None = None, /) -> list[Subscription]:
        """Every subscription (of one AE), ordered by AE title then target."""
        ...

    async def deletion_locked(self, workitem_uid: str, /) -> bool:
        """Does any AE hold a workitem subscription with a Deletion Lock on ``workitem_uid``?"""
        ...

    async def release(self, workitem_uid: str, /) -> None:
        """The workitem reached a final state: drop its subscriptions without a Deletion Lock
        (no further events can come; the locked ones keep it from deletion, PS3.4 §CC.2.1.3)."""
        ...

    async def record(
        self, workitem_uid: str, message: bytes, /, *, matches: Callable[[Subscription], bool], keep: int
    ) -> list[str]:
        """Append an event report about ``workitem_uid`` to the log of every AE subscribed to it:
        AEs with a workitem subscription, AEs with a worklist subscription, and AEs with a
        filtered worklist subscription for which ``matches(subscription)``; the last two are
        subscribed to the workitem first (PS3.4 Table CC.2.3-2, "UPS created"). Keeps at most
        ``keep`` entries per log. Returns the AE titles whose log grew."""
        ...

    async def append(self, ae_title: str, messages: Sequence[bytes], /, *, keep: int) -> None:
        """Append ``messages`` to ``ae_title``'s log (the initial reports of a subscribe)."""
        ...

    async def read(self, ae_title: str, /, *, after: int, limit: int) -> list[LoggedEvent]:
        """Up to ``limit`` entries of ``ae_title``'s log with ``seq > after``, in order."""
        ...

    async def cursor(self, ae_title: str, /) -> int:
        """The sequence number of the last entry sent to ``ae_title`` (0: none)."""
        ...

    async def acknowledge(self, ae_title: str, seq: int, /) -> None:
        """Entries up to ``seq`` were sent: move the cursor (never backwards) and delete them."""
        ...

    async def aclose(self) -> None: ...


class _Log:
    def __init__(self) -> None:
        self.entries: list[LoggedEvent] = []
        self.last = 0  # the last sequence number given out
        self.cursor = 0

    def append(self, messages: Sequence[bytes], keep: int) -> None:
        for message in messages:
            self.last += 1
            self.entries.append(LoggedEvent(self.last, message))
        if len(self.entries) > keep:
            del self.entries[: len(self.entries) - keep]


class MemorySubscriptionStore:
    """A :class:`SubscriptionStore` in a dict: lives and dies with the process (tests, demos)."""

    def __init__(self) -> None:
        self._subscriptions: dict[tuple[str, str], Subscription] = {}
        self._logs: dict[str, _Log] = {}
        self._tenants: dict[str, MemorySubscriptionStore] = {}

    def for_tenant(self, tenant: str, /) -> MemorySubscriptionStore:
        """The subscriptions of ``tenant``: a dict of their own (:class:`dicomweb_kit.tenancy.TenantScoped`)."""
        from ..tenancy import validate_tenant

        return self._tenants.setdefault(validate_tenant(tenant), MemorySubscriptionStore())

    async def subscribe(self, subscription: Subscription, /, *, workitems: Sequence[str] = ()) -> None:
        ae = subscription.ae_title
        self._subscriptions[(ae, subscription.target)] = subscription
        if subscription.is_worklist:
            origin: Origin = "worklist" if subscription.target == WORKLIST_UID else "filtered"
            for uid in workitems:
                self._subscriptions.setdefault(
                    (ae, uid),
                    Subscription(ae_title=ae, target=uid, deletion_lock=subscription.deletion_lock, origin=origin),
                )

    async def unsubscribe(self, ae_title: str, target: str, /) -> bool:
        if target == WORKLIST_UID:
            doomed = [key for key in self._subscriptions if key[0] == ae_title]
        elif target == FILTERED_WORKLIST_UID:
            doomed = [
                key
                for key, sub in self._subscriptions.items()
                if key[0] == ae_title and (key[1] == target or sub.origin == "filtered")
            ]
        else:
            doomed = [(ae_title, target)] if (ae_title, target) in self._subscriptions else []
        for key in doomed:
            del self._subscriptions[key]
        return bool(doomed)

    async def suspend(self, ae_title: str, target: str, /) -> bool:
        return self._subscriptions.pop((ae_title, target), None) is not None

    async def subscriptions(self, ae_title: str | None = None, /) -> list[Subscription]:
        return [sub for key, sub in sorted(self._subscriptions.items()) if ae_title is None or key[0] == ae_title]

    async def deletion_locked(self, workitem_uid: str, /) -> bool:
        return any(key[1] == workitem_uid and sub.deletion_lock for key, sub in self._subscriptions.items())

    async def release(self, workitem_uid: str, /) -> None:
        for key in [k for k, sub in self._subscriptions.items() if k[1] == workitem_uid and not sub.deletion_lock]:
            del self._subscriptions[key]

    async def record(
        self, workitem_uid: str, message: bytes, /, *, matches: Callable[[Subscription], bool], keep: int
    ) -> list[str]:
        recipients: set[str] = set()
        for (ae, target), sub in list(self._subscriptions.items()):
            if target == workitem_uid:
                recipients.add(ae)
            elif sub.is_worklist and (target == WORKLIST_UID or matches(sub)):
                await self.subscribe(sub, workitems=[workitem_uid])
                recipients.add(ae)
        for ae in sorted(recipients):
            self._logs.setdefault(ae, _Log()).append([message], keep)
        return sorted(recipients)

    async def append(self, ae_title: str, messages: Sequence[bytes], /, *, keep: int) -> None:
        if messages:
            self._logs.setdefault(ae_title, _Log()).append(messages, keep)

    async def read(self, ae_title: str, /, *, after: int, limit: int) -> list[LoggedEvent]:
        log = self._logs.get(ae_title)
        if log is None:
            return []
        return [entry for entry in log.entries if entry.seq > after][:limit]

    async def cursor(self, ae_title: str, /) -> int:
        log = self._logs.get(ae_title)
        return 0 if log is None else log.cursor

    async def acknowledge(self, ae_title: str, seq: int, /) -> None:
        log = self._logs.get(ae_title)
        if log is None or seq <= log.cursor:
            return
        log.cursor = seq
        log.entries = [entry for entry in log.entries if entry.seq > seq]

    async def aclose(self) -> None:
        pass
