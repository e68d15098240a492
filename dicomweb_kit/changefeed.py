"""The instance change feed: every create, replace and delete of an instance, in commit order.

Each entry has a sequence number that grows by one per change and is never reused, so a reader
that remembers the last sequence it saw resumes exactly there (``read(after=seq)``). The index
appends entries in the same transaction as the change itself (``SqlIndex``: one transaction;
``MemoryIndex``: the same uninterrupted step), so the feed never shows a change that did not
happen nor misses one that did, and a reader never sees sequence *n + 1* before *n*.

An index that keeps a feed offers it as ``index.change_feed()``; the kit picks it up as
``kit.changefeed``. Live delivery (:func:`follow`) replays the feed from a sequence and then
waits on the kit's event bus, which carries only a wake-up (topic :data:`TOPIC`): what was
missed is always read back from the feed, so a dropped notification delays an entry by at most
the poll interval and never loses it.

The entry's fields follow Microsoft's DICOM change feed (Sequence, Timestamp, Action, State,
UIDs), with ``replace`` as its own action (re-storing an instance under ``on_duplicate="replace"``).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol, runtime_checkable

import anyio
import msgspec

if TYPE_CHECKING:
    from .index import InstanceRecord
    from .kit import DicomWeb

__all__ = [
    "TOPIC",
    "Action",
    "ChangeEntry",
    "ChangeFeed",
    "ChangeFilter",
    "MemoryChangeFeed",
    "State",
    "follow",
    "follow_with_idle",
    "from_micros",
    "modality_of",
    "notify",
    "now_utc",
    "state_of",
]

log = logging.getLogger("dicomweb_kit.changefeed")

TOPIC: Final = "dicomweb.changefeed"
Action = Literal["create", "replace", "delete"]
State = Literal["current", "replaced", "deleted"]
_READ_BATCH: Final = 200


class ChangeEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One change of one instance.

    Attributes:
        sequence: the entry's place in the feed (1, 2, 3, ... without gaps).
        timestamp: when the change was committed (UTC).
        action: ``create``, ``replace`` or ``delete``.
        state: what became of the record this entry is about: ``current`` (it is still the stored
            one), ``replaced`` (a later create/replace superseded it) or ``deleted``.
        study_uid, series_uid, instance_uid: the instance.
        modality: its Modality (0008,0060), if known.
        version: the sequence of the entry that stored the record concerned (a create/replace:
            its own sequence; a delete: the sequence that stored what was deleted, 0 if the
            instance was stored before the feed existed). Equal versions mean the same stored bytes.
    """

    sequence: int
    timestamp: dt.datetime
    action: Action
    state: State
    study_uid: str
    series_uid: str
    instance_uid: str
    modality: str | None = None
    version: int = 0

    def to_json(self) -> dict[str, Any]:
        """The entry as Microsoft's change feed writes it (PascalCase keys)."""
        return {
            "Sequence": self.sequence,
            "Timestamp": self.timestamp.isoformat().replace("+00:00", "Z"),
            "Action": self.action,
            "State": self.state,
            "StudyInstanceUid": self.study_uid,
            "SeriesInstanceUid": self.series_uid,
            "SopInstanceUid": self.instance_uid,
            "Modality": self.modality,
            "Version": self.version,
        }


class ChangeFilter(msgspec.Struct, frozen=True, kw_only=True):
    """Which entries a reader wants: each set field must equal the entry's (exact match)."""

    study_uid: str | None = None
    series_uid: str | None = None
    modality: str | None = None

    def matches(self, entry: ChangeEntry, /) -> bool:
        return (
            (self.study_uid is None or entry.study_uid == self.study_uid)
            and (self.series_uid is None or entry.series_uid == self.series_uid)
            and (self.modality is None or entry.modality == self.modality)
        )


@runtime_checkable
class ChangeFeed(Protocol):
    """Read access to an index's change feed (the index appends to it as it changes).

    Contract: sequence numbers start at 1 and grow by one per entry; an entry is appended in the
    same transaction (or atomic step) as the change it records, and entries become visible in
    sequence order, so ``read(after=n)`` never returns ``n + 2`` while ``n + 1`` is still to come.
    ``state`` is computed when read, from the newest entry of the same instance.
    """

    async def read(self, *, after: int = 0, limit: int = 100, filter: ChangeFilter | None = None) -> list[ChangeEntry]:
        """Up to ``limit`` entries with ``sequence > after`` that match ``filter``, in sequence order."""
        ...

    async def latest(self) -> ChangeEntry | None:
        """The entry with the highest sequence, ``None`` while the feed is empty."""
        ...


def modality_of(record: InstanceRecord, /) -> str | None:
    """The record's Modality (0008,0060), or ``None``."""
    element = record.attributes.get("00080060")
    values = element.get("Value") if isinstance(element, dict) else None
    return str(values[0]) if isinstance(values, list) and values and values[0] else None


def state_of(action: str, version: int, newest_action: str, newest_sequence: int, newest_version: int) -> State:
    """An entry's State, given the newest entry of the same instance."""
    if action == "delete":
        return "deleted"
    if newest_sequence == version:
        return "current"
    # Superseded: by a delete of this very record, or by another create/replace.
    return "deleted" if newest_action == "delete" and newest_version == version else "replaced"


def now_utc() -> dt.datetime:
    """Now, in UTC, to the microsecond (as the SQL feed stores it: microseconds since 1970)."""
    return from_micros(int(time.time() * 1_000_000))


def from_micros(micros: int) -> dt.datetime:
    """The UTC time ``micros`` microseconds after 1970-01-01."""
    return dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=micros)


class _Row(msgspec.Struct, frozen=True):
    sequence: int
    timestamp: dt.datetime
    action: Action
    study_uid: str
    series_uid: str
    instance_uid: str
    modality: str | None
    version: int


class MemoryChangeFeed:
    """The change feed of :class:`~dicomweb_kit_adapters.memory.MemoryIndex` (one process).

    The index calls :meth:`stored` and :meth:`removed` in the same step as the change (no
    ``await`` in between), which makes the entry and the change one atomic step.
    """

    def __init__(self) -> None:
        self._rows: list[_Row] = []
        self._newest: dict[str, _Row] = {}  # SOP Instance UID -> its newest entry

    def stored(self, record: InstanceRecord, /, *, replaced: bool) -> None:
        sequence = len(self._rows) + 1
        self._append("replace" if replaced else "create", record, sequence, sequence)

    def removed(self, records: Iterable[InstanceRecord], /) -> None:
        for record in records:
            newest = self._newest.get(record.instance_uid)
            version = newest.version if newest is not None and newest.action != "delete" else 0
            self._append("delete", record, len(self._rows) + 1, version)

    def _append(self, action: Action, record: InstanceRecord, sequence: int, version: int) -> None:
        row = _Row(
            sequence,
            now_utc(),
            action,
            record.study_uid,
            record.series_uid,
            record.instance_uid,
            modality_of(record),
            version,
        )
        self._rows.append(row)
        self._newest[record.instance_uid] = row

    def _entry(self, row: _Row) -> ChangeEntry:
        newest = self._newest[row.instance_uid]
        return ChangeEntry(
            sequence=row.sequence,
            timestamp=row.timestamp,
            action=row.action,
            state=state_of(row.action, row.version, newest.action, newest.sequence, newest.version),
            study_uid=row.study_uid,
            series_uid=row.series_uid,
            instance_uid=row.instance_uid,
            modality=row.modality,
            version=row.version,
        )

    async def read(self, *, after: int = 0, limit: int = 100, filter: ChangeFilter | None = None) -> list[ChangeEntry]:
        found: list[ChangeEntry] = []
        for row in self._rows[max(after, 0) :]:  # sequence n is at position n - 1
            if len(found) >= limit:
                break
            entry = self._entry(row)
            if filter is None or filter.matches(entry):
                found.append(entry)
        return found

    async def latest(self) -> ChangeEntry | None:
        return self._entry(self._rows[-1]) if self._rows else None


async def notify(kit: DicomWeb, /) -> None:
    """Wake the kit's change feed followers (after a change was committed). Never raises: the
    change stands, and followers also re-read the feed on a timer."""
    try:
        await kit.events.publish(TOPIC, b"")
    except Exception:  # a bus failure must not fail a committed store or delete
        log.warning("change feed notification not sent", exc_info=True)


async def follow(
    feed: ChangeFeed,
    kit: DicomWeb,
    /,
    *,
    after: int = 0,
    filter: ChangeFilter | None = None,
    poll_interval: float = 5.0,
) -> AsyncIterator[ChangeEntry]:
    """Every entry after ``after`` that matches ``filter``: first those already in the feed,
    then each new one as it is committed, without gaps or repeats, until the bus closes.

    It subscribes to the bus *before* reading the feed, so an entry committed between the two
    is either read or announced. Each wake-up (or ``poll_interval``, in case a notification was
    lost) re-reads the feed from the last sequence yielded.
    """
    async for entry in follow_with_idle(feed, kit, after=after, filter=filter, poll_interval=poll_interval):
        if entry is not None:
            yield entry


async def follow_with_idle(
    feed: ChangeFeed,
    kit: DicomWeb,
    /,
    *,
    after: int = 0,
    filter: ChangeFilter | None = None,
    poll_interval: float = 5.0,
) -> AsyncIterator[ChangeEntry | None]:
    """:func:`follow`, also yielding ``None`` after each ``poll_interval`` without news (a
    stream's chance to send a keep-alive)."""
    cursor = after
    async with kit.events.subscribe(TOPIC) as wakeups:
        while True:
            batch = await feed.read(after=cursor, limit=_READ_BATCH, filter=filter)
            for entry in batch:
                cursor = entry.sequence
                yield entry
            if len(batch) == _READ_BATCH:
                continue
            woken = False
            with anyio.move_on_after(poll_interval):
                try:
                    await anext(wakeups)
                except StopAsyncIteration:
                    return
                woken = True
            if not woken:
                yield None
