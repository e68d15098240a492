"""The instance index protocol: what is stored, and the answers to queries about it.

The index is the source of truth: an instance exists when its record is in the index. STOW-RS
writes the blob first and adds the record second, so a failed request leaves at most an orphan
blob, never a record without bytes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, Literal, Protocol, runtime_checkable

import msgspec

from .pixels.layout import PixelLayout
from .query.terms import Query
from .resources import Level, ResourceKey

__all__ = [
    "AddOutcome",
    "IndexCapabilities",
    "InstanceIndex",
    "InstanceRecord",
    "MatchRow",
    "Page",
    "ScopeSummary",
]


class InstanceRecord(msgspec.Struct, frozen=True):
    """One stored instance, as the core hands it to the index.

    Attributes:
        study_uid, series_uid, instance_uid: the instance's place in the hierarchy.
        sop_class_uid: SOP Class UID (0008,0016).
        transfer_syntax_uid: the transfer syntax the blob is encoded in.
        blob_key: where the Part 10 bytes are in the blob store.
        size: the blob's size in bytes.
        metadata: the instance's DICOM JSON object (PS3.18 Annex F), already encoded, with bulk
            data as BulkDataURI values relative to the service root (see ``dicomweb_kit.codecs.dicom_json``).
            Indexes store it as is and give it back byte for byte.
        attributes: the same object decoded (``{"00100010": {"vr": "PN", "Value": [...]}}``), for
            indexes that match in Python or extract their indexed columns from it.
        pixel_layout: where the pixel data and each frame are in the blob (computed at ingest;
            ``None`` for instances without pixel data and for records stored before it existed).
            Indexes store it as given (e.g. ``msgspec.msgpack.encode``) and give it back.
    """

    study_uid: str
    series_uid: str
    instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    blob_key: str
    size: int
    metadata: msgspec.Raw
    attributes: dict[str, Any] = msgspec.field(default_factory=dict)
    pixel_layout: PixelLayout | None = None

    @property
    def key(self) -> ResourceKey:
        return ResourceKey(self.study_uid, self.series_uid, self.instance_uid)


class AddOutcome(msgspec.Struct, frozen=True):
    """What :meth:`InstanceIndex.add` did.

    Attributes:
        stored: the new record is now in the index.
        previous: the record that had the same SOP Instance UID before, if any. With
            ``on_existing="replace"`` the caller deletes its blob; with ``"keep"`` it is still there
            and the new record was not stored.
    """

    stored: bool
    previous: InstanceRecord | None = None


class MatchRow(msgspec.Struct, frozen=True):
    """One QIDO-RS result entity before the core selects the attributes to return.

    Attributes:
        level: the query level.
        key: the entity's UIDs (down to ``level``).
        attributes: the DICOM JSON object of a representative instance of the entity (for a
            study or series: the most recently stored instance). The core picks the returned
            attributes from it.
        study_series, study_instances: NumberOfStudyRelatedSeries/Instances (0020,1206/1208).
        series_instances: NumberOfSeriesRelatedInstances (0020,1209); 0 at study level.
        modalities_in_study: distinct Modality (0008,0060) values of the study, sorted.
        sop_classes_in_study: distinct SOP Class UIDs of the study, sorted.
    """

    level: Level
    key: ResourceKey
    attributes: Mapping[str, Any]
    study_series: int = 0
    study_instances: int = 0
    series_instances: int = 0
    modalities_in_study: tuple[str, ...] = ()
    sop_classes_in_study: tuple[str, ...] = ()


class Page(msgspec.Struct, frozen=True):
    """A page of QIDO-RS results in the stable order, and whether more rows follow it."""

    rows: list[MatchRow]
    has_more: bool = False


class ScopeSummary(msgspec.Struct, frozen=True):
    """What is stored under a scope, cheaply: for 404s, transfer syntax negotiation and ETags.

    Attributes:
        instances: how many instances the scope holds (at least 1).
        transfer_syntaxes: the distinct transfer syntaxes they are stored in, sorted.
        version: an opaque string that changes whenever a record under the scope is added,
            replaced or removed (e.g. count and highest insertion sequence number).
    """

    instances: int
    transfer_syntaxes: tuple[str, ...]
    version: str


class IndexCapabilities(msgspec.Struct, frozen=True):
    """What an index can match; reported by the Capabilities service and read by the contract suite."""

    fuzzy_matching: bool = True
    sequence_matching: bool = True
    timezone_adjustment: bool = False


@runtime_checkable
class InstanceIndex(Protocol):
    """Records of stored instances, and QIDO-RS matching over them.

    Contract (checked by :class:`dicomweb_kit.testing.InstanceIndexContract`):

    * ``add`` is atomic per record: a concurrent ``search`` sees the record wholly or not at all,
      and concurrent ``add`` calls for instances of one study leave exact counts.
    * ``search`` returns exactly the entities that :func:`dicomweb_kit.query.matching.entity_matches`
      accepts, in ``query.orderby`` order (:mod:`dicomweb_kit.query.ordering`), ties and
      unordered queries by first insertion (study, then series, then instance), paged by
      ``query.limit``/``query.offset`` without gaps or duplicates while nothing is added.
      A study (series) matches when one of its instances matches every term; the
      ``ModalitiesInStudy`` (0008,0061) term matches the Modality of any instance of the study.
    * ``records`` yields the records under ``scope`` (in the same order); an unknown scope
      yields nothing.
    * ``remove`` deletes the records under ``scope`` and returns their blob keys.
    * Backend failures surface as :class:`dicomweb_kit.errors.StorageUnavailable`.
    """

    capabilities: IndexCapabilities

    async def add(self, record: InstanceRecord, /, *, on_existing: Literal["keep", "replace"]) -> AddOutcome:
        """Add ``record``; if its SOP Instance UID is already stored, keep the old one or replace it."""
        ...

    async def add_many(
        self, records: Sequence[InstanceRecord], /, *, on_existing: Literal["keep", "replace"]
    ) -> list[AddOutcome]:
        """Add several records in one transaction (group commit); one outcome per record, in order.

        Each record behaves as in :meth:`add` (a later record with the same SOP Instance UID as
        an earlier one in the batch sees it as existing). All are visible at once, or, if the
        call raises, none is.
        """
        ...

    async def get(self, key: ResourceKey, /) -> InstanceRecord | None:
        """The record of the instance ``key`` names (all three UIDs set), or ``None``."""
        ...

    def records(self, scope: ResourceKey, /) -> AsyncIterator[InstanceRecord]:
        """Every record under ``scope`` (a study, series or instance)."""
        ...

    async def summary(self, scope: ResourceKey, /) -> ScopeSummary | None:
        """Count, transfer syntaxes and version of the records under ``scope``; ``None`` if none."""
        ...

    async def search(self, query: Query, /) -> Page:
        """The page of entities at ``query.level`` under ``query.scope`` that match ``query.terms``."""
        ...

    async def remove(self, scope: ResourceKey, /) -> list[str]:
        """Delete the records under ``scope``; return the blob keys they referenced."""
        ...

    async def aclose(self) -> None:
        """Release resources; called once from the kit's lifespan shutdown."""
        ...
