"""In-memory adapters: a blob store and an instance index that live and die with the process.

For tests, demos and small ephemeral archives. Built only on dicomweb-kit's public API, the way
a third-party adapter would be.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Sequence
from itertools import count
from typing import Literal

from dicomweb_kit import (
    AddOutcome,
    BlobInfo,
    IndexCapabilities,
    InstanceRecord,
    Level,
    MatchRow,
    MemoryChangeFeed,
    Page,
    Query,
    ResourceKey,
    ResourceNotFound,
    ScopeSummary,
    instance_matches,
    sort_entities,
    validate_tenant,
)

__all__ = ["MemoryBlobStore", "MemoryIndex"]


class MemoryBlobStore:
    """Blobs as ``bytes`` in a dict. A put becomes visible only when its stream ends."""

    def __init__(self) -> None:
        self._blobs: dict[str, bytes] = {}
        self._tenants: dict[str, MemoryBlobStore] = {}

    def for_tenant(self, tenant: str, /) -> MemoryBlobStore:
        """The blobs of ``tenant``: a dict of their own (:class:`dicomweb_kit.tenancy.TenantScoped`)."""
        return self._tenants.setdefault(validate_tenant(tenant), MemoryBlobStore())

    async def put(self, key: str, chunks: AsyncIterable[bytes | memoryview], /, *, durable: bool = True) -> BlobInfo:
        pieces = [bytes(chunk) async for chunk in chunks]
        data = b"".join(pieces)
        self._blobs[key] = data
        return BlobInfo(key=key, size=len(data))

    async def get(self, key: str, /, *, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        data = self._blobs.get(key)
        if data is None:
            raise ResourceNotFound(f"blob {key!r} is not stored")
        view = memoryview(data)[start:end]
        step = 1 << 20
        for offset in range(0, len(view), step):
            yield bytes(view[offset : offset + step])

    async def sync(self, keys: Sequence[str], /) -> None:
        pass  # nothing survives the process anyway

    async def exists(self, key: str, /) -> bool:
        return key in self._blobs

    async def iter_keys(self) -> AsyncIterator[str]:
        for key in list(self._blobs):
            yield key

    async def delete(self, keys: Sequence[str], /) -> None:
        for key in keys:
            self._blobs.pop(key, None)

    async def aclose(self) -> None:
        pass


class _Entry:
    __slots__ = ("record", "stored_order")

    def __init__(self, record: InstanceRecord, stored_order: int) -> None:
        self.record = record
        self.stored_order = stored_order


class MemoryIndex:
    """Instance records in insertion-ordered dicts; QIDO matching by the core's reference matcher,
    ``orderby`` by the core's :func:`~dicomweb_kit.sort_entities` on the matching rows before paging."""

    capabilities = IndexCapabilities(fuzzy_matching=True, sequence_matching=True)

    def __init__(self) -> None:
        # study -> series -> instance -> entry; dicts keep first-insertion order, which is the
        # stable order of query results.
        self._tree: dict[str, dict[str, dict[str, _Entry]]] = {}
        self._where: dict[str, tuple[str, str]] = {}  # SOP Instance UID -> (study, series)
        self._clock = count()
        self._feed = MemoryChangeFeed()  # appended in the same step as each change
        self._tenants: dict[str, MemoryIndex] = {}

    def for_tenant(self, tenant: str, /) -> MemoryIndex:
        """The index of ``tenant``: records, change feed and all of its own
        (:class:`dicomweb_kit.tenancy.TenantScoped`)."""
        return self._tenants.setdefault(validate_tenant(tenant), MemoryIndex())

    async def add(self, record: InstanceRecord, /, *, on_existing: Literal["keep", "replace"]) -> AddOutcome:
        return (await self.add_many([record], on_existing=on_existing))[0]

    def _add(self, record: InstanceRecord, on_existing: Literal["keep", "replace"]) -> AddOutcome:
        previous = None
        place = self._where.get(record.instance_uid)
        if place is not None:
            previous = self._tree[place[0]][place[1]][record.instance_uid].record
            if on_existing == "keep":
                return AddOutcome(stored=False, previous=previous)
            self._drop(record.instance_uid)
        series = self._tree.setdefault(record.study_uid, {}).setdefault(record.series_uid, {})
        series[record.instance_uid] = _Entry(record, next(self._clock))
        self._where[record.instance_uid] = (record.study_uid, record.series_uid)
        return AddOutcome(stored=True, previous=previous)

    async def add_many(
        self, records: Sequence[InstanceRecord], /, *, on_existing: Literal["keep", "replace"]
    ) -> list[AddOutcome]:
        # No await between the adds: other tasks see all of them or none.
        existed = {record.instance_uid for record in records if record.instance_uid in self._where}
        outcomes = [self._add(record, on_existing) for record in records]
        # The change feed, as SqlIndex writes it: one entry per instance the batch left stored
        # (a record replaced within the batch was never visible), in order of the last write.
        final: dict[str, InstanceRecord] = {}
        for record, outcome in zip(records, outcomes, strict=True):
            if outcome.stored:
                final.pop(record.instance_uid, None)
                final[record.instance_uid] = record
        for uid, stored in final.items():
            self._feed.stored(stored, replaced=uid in existed)
        return outcomes

    async def get(self, key: ResourceKey, /) -> InstanceRecord | None:
        for entry in self._entries(key):
            return entry.record
        return None

    async def records(self, scope: ResourceKey, /) -> AsyncIterator[InstanceRecord]:
        for entry in list(self._entries(scope)):
            yield entry.record

    async def summary(self, scope: ResourceKey, /) -> ScopeSummary | None:
        entries = list(self._entries(scope))
        if not entries:
            return None
        newest = max(e.stored_order for e in entries)
        syntaxes = tuple(sorted({e.record.transfer_syntax_uid for e in entries}))
        return ScopeSummary(instances=len(entries), transfer_syntaxes=syntaxes, version=f"{len(entries)}-{newest}")

    async def search(self, query: Query, /) -> Page:
        matched: Iterable[MatchRow] = (row for row in self._rows(query) if row is not None)
        if query.orderby:  # sorted before paging; ties keep the stable order
            matched = sort_entities(matched, query.orderby, lambda row: row.attributes)
        rows: list[MatchRow] = []
        skipped = 0
        for row in matched:
            if skipped < query.offset:
                skipped += 1
                continue
            if query.limit is not None and len(rows) == query.limit:
                return Page(rows, has_more=True)
            rows.append(row)
        return Page(rows, has_more=False)

    async def remove(self, scope: ResourceKey, /) -> list[str]:
        entries = list(self._entries(scope))
        for entry in entries:
            self._drop(entry.record.instance_uid)
        self._feed.removed(entry.record for entry in entries)
        return [entry.record.blob_key for entry in entries]

    def change_feed(self) -> MemoryChangeFeed:
        """The feed of this index's changes (the kit's ``changefeed``)."""
        return self._feed

    async def aclose(self) -> None:
        pass

    def _drop(self, instance_uid: str) -> None:
        study, series = self._where.pop(instance_uid)
        instances = self._tree[study][series]
        del instances[instance_uid]
        if not instances:
            del self._tree[study][series]
            if not self._tree[study]:
                del self._tree[study]

    def _entries(self, scope: ResourceKey) -> Iterator[_Entry]:
        for study_uid, series_map in self._tree.items():
            if scope.study is not None and study_uid != scope.study:
                continue
            for series_uid, instances in series_map.items():
                if scope.series is not None and series_uid != scope.series:
                    continue
                for instance_uid, entry in instances.items():
                    if scope.instance is None or instance_uid == scope.instance:
                        yield entry

    def _rows(self, query: Query) -> Iterator[MatchRow | None]:
        scope = query.scope
        for study_uid, series_map in self._tree.items():
            if scope.study is not None and study_uid != scope.study:
                continue
            study_entries = [e for instances in series_map.values() for e in instances.values()]
            modalities = tuple(sorted({m for e in study_entries for m in _values(e.record, "00080060")}))
            sop_classes = tuple(sorted({e.record.sop_class_uid for e in study_entries}))
            study_counts = {
                "study_series": len(series_map),
                "study_instances": len(study_entries),
                "modalities_in_study": modalities,
                "sop_classes_in_study": sop_classes,
            }
            if query.level == Level.STUDY:
                if scope.series is None:
                    yield self._row(query, ResourceKey(study_uid), study_entries, **study_counts)
                continue
            for series_uid, instances in series_map.items():
                if scope.series is not None and series_uid != scope.series:
                    continue
                entries = list(instances.values())
                if query.level == Level.SERIES:
                    yield self._row(
                        query,
                        ResourceKey(study_uid, series_uid),
                        entries,
                        series_instances=len(entries),
                        **study_counts,
                    )
                    continue
                for entry in entries:
                    key = entry.record.key
                    yield self._row(query, key, [entry], series_instances=len(entries), **study_counts)

    @staticmethod
    def _row(query: Query, key: ResourceKey, entries: list[_Entry], **counts: object) -> MatchRow | None:
        matching = [e for e in entries if instance_matches(query.terms, e.record.attributes, fuzzy=query.fuzzy)]
        if not matching:
            return None
        representative = max(entries, key=lambda e: e.stored_order)
        return MatchRow(level=query.level, key=key, attributes=representative.record.attributes, **counts)  # type: ignore[arg-type]


def _values(record: InstanceRecord, tag: str) -> list[str]:
    element = record.attributes.get(tag) or {}
    return [v for v in element.get("Value", ()) if isinstance(v, str)]
