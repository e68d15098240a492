"""WADO-RS: retrieve studies, series and instances, and their metadata (PS3.18 §10.4)."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import anyio
import msgspec

from ..codecs import dicom_json, dicom_xml
from ..codecs.multipart import new_boundary, write_multipart
from ..codecs.transcode import UNCOMPRESSED, to_explicit_vr_little_endian
from ..errors import ResourceNotFound
from ..index import InstanceRecord, ScopeSummary
from ..media_types import EXPLICIT_VR_LE, NOT_FOR_WEB, Choice, Offer, negotiate
from ..resources import ResourceKey

if TYPE_CHECKING:
    from ..kit import DicomWeb

__all__ = [
    "RetrievePlan",
    "instance_parts",
    "metadata_etag",
    "metadata_json",
    "metadata_xml",
    "plan_retrieve",
    "require_summary",
]

_DICOM = "application/dicom"


async def require_summary(kit: DicomWeb, scope: ResourceKey) -> ScopeSummary:
    """What is stored under ``scope``; 404 when it holds nothing."""
    summary = await kit.index.summary(scope)
    if summary is None:
        raise ResourceNotFound(f"no {scope.level or 'study'} {scope} is stored here")
    return summary


def _producible(stored: str) -> set[str]:
    """Transfer syntaxes we can send an instance stored in ``stored`` in (PS3.18 §8.7.3.5)."""
    out = set() if stored in NOT_FOR_WEB else {stored}
    if stored in UNCOMPRESSED:
        out.add(EXPLICIT_VR_LE)
    return out


class RetrievePlan(msgspec.Struct, frozen=True):
    """What a retrieve will send: the negotiated representation for every instance under scope."""

    scope: ResourceKey
    choice: Choice
    boundary: str = msgspec.field(default_factory=new_boundary)

    def target_syntax(self, stored: str) -> str:
        """The transfer syntax an instance stored in ``stored`` goes out in."""
        wanted = self.choice.transfer_syntax
        if wanted is None:
            # PS3.18 Table 8.7.3-2: the default for application/dicom is Explicit VR Little
            # Endian. Until transcoding of compressed data lands, a compressed instance goes out
            # as stored rather than failing the whole retrieve (as Orthanc does).
            wanted = EXPLICIT_VR_LE
        if wanted == "*" or wanted not in _producible(stored):
            return EXPLICIT_VR_LE if stored in NOT_FOR_WEB else stored
        return wanted


async def plan_retrieve(
    kit: DicomWeb, scope: ResourceKey, accept: str | None, /, *, accept_param: str | None = None
) -> RetrievePlan:
    """Check that ``scope`` exists and negotiate the response (406 when nothing fits)."""
    summary = await require_summary(kit, scope)
    common = set.intersection(*(_producible(ts) for ts in summary.transfer_syntaxes))
    offer = Offer("multipart/related", part_type=_DICOM, transfer_syntaxes=tuple(sorted(common)))
    return RetrievePlan(scope, negotiate(accept, [offer], accept_param=accept_param))


async def instance_parts(kit: DicomWeb, plan: RetrievePlan) -> AsyncIterator[bytes | memoryview]:
    """The multipart/related body of a retrieve, streamed one instance at a time."""

    async def parts() -> AsyncIterator[tuple[dict[str, str], AsyncIterator[bytes | memoryview]]]:
        async for record in kit.index.records(plan.scope):
            syntax = plan.target_syntax(record.transfer_syntax_uid)
            headers = {"Content-Type": f"{_DICOM}; transfer-syntax={syntax}"}
            if syntax == record.transfer_syntax_uid:
                yield headers, kit.blobs.get(record.blob_key)
            else:
                yield headers, _converted(kit, record)

    async for piece in write_multipart(parts(), plan.boundary):
        yield piece


async def _converted(kit: DicomWeb, record: InstanceRecord) -> AsyncIterator[bytes]:
    data = bytearray()
    async for chunk in kit.blobs.get(record.blob_key):
        data += chunk
    yield await anyio.to_thread.run_sync(to_explicit_vr_little_endian, bytes(data))


def _with_base(metadata: bytes, service_url: str) -> bytes:
    # Stored BulkDataURIs are relative to the service root (see services/ingest.py); the
    # literal `"BulkDataURI":"` can only be a key, since quotes inside strings are escaped.
    return metadata.replace(b'"BulkDataURI":"', b'"BulkDataURI":"' + service_url.encode() + b"/")


async def metadata_json(kit: DicomWeb, scope: ResourceKey, service_url: str) -> AsyncIterator[bytes]:
    """The metadata of every instance under ``scope`` as a DICOM JSON array, spliced from stored JSON.

    Stored metadata is never decoded: each record's bytes go out as they were encoded at ingest.
    """
    separator = b"["
    async for record in kit.index.records(scope):
        yield separator + _with_base(bytes(record.metadata), service_url)
        separator = b","
    yield b"]" if separator == b"," else b"[]"


async def metadata_xml(kit: DicomWeb, scope: ResourceKey, service_url: str) -> AsyncIterator[bytes]:
    """The metadata of every instance under ``scope`` as NativeDicomModel XML documents."""
    async for record in kit.index.records(scope):
        yield dicom_xml.json_dict_to_xml(dicom_json.decode(_with_base(bytes(record.metadata), service_url)))


def metadata_etag(summary: ScopeSummary, service_url: str, representation: str) -> str:
    """A weak ETag of one metadata representation (RFC 9110 §8.8.3): it changes with the records,
    the URL base the BulkDataURIs are built on, and the media type."""
    digest = hashlib.blake2s(f"{summary.version}|{service_url}|{representation}".encode(), digest_size=12)
    return f'W/"{digest.hexdigest()}"'
