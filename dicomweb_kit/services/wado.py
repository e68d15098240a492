"""WADO-RS: retrieve studies, series and instances, and their metadata (PS3.18 §10.4)."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, NamedTuple

import anyio
import msgspec

from ..codecs import dicom_json, dicom_xml
from ..codecs.multipart import multipart_length, new_boundary, write_multipart
from ..codecs.transcode import UNCOMPRESSED, to_explicit_vr_little_endian
from ..errors import ResourceNotFound, StorageUnavailable
from ..index import InstanceRecord, ScopeSummary
from ..media_types import EXPLICIT_VR_LE, NOT_FOR_WEB, Choice, Offer, negotiate
from ..resources import ResourceKey

if TYPE_CHECKING:
    from ..kit import DicomWeb

__all__ = [
    "SIZED_RETRIEVE_MAX_INSTANCES",
    "RetrieveBody",
    "RetrievePlan",
    "instance_parts",
    "metadata_etag",
    "metadata_json",
    "metadata_xml",
    "plan_retrieve",
    "require_summary",
    "retrieve_body",
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
    #: How many instances the scope held when the plan was made (None: not known).
    instances: int | None = None

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
    return RetrievePlan(scope, negotiate(accept, [offer], accept_param=accept_param), instances=summary.instances)


#: A retrieve of at most this many instances lists them (blob key, size, headers: ~200 bytes each)
#: before it answers, so the response carries an exact Content-Length: no chunked framing, which
#: costs the server a copy of every payload and the client a parse per chunk. Larger scopes stream
#: without a length, so memory stays bounded whatever the study's size.
SIZED_RETRIEVE_MAX_INSTANCES = 10_000


class _Part(NamedTuple):
    blob_key: str
    size: int  # the blob's size, as the index recorded it
    headers: dict[str, str]  # shared by all parts of one target transfer syntax
    convert: bool  # transcode to Explicit VR Little Endian (size unknown up front)


class RetrieveBody(NamedTuple):
    """The multipart/related body of a retrieve, and its length when known before it is sent."""

    chunks: AsyncIterator[bytes | memoryview]
    length: int | None


async def retrieve_body(kit: DicomWeb, plan: RetrievePlan) -> RetrieveBody:
    """The body of a retrieve, with its exact length when every instance goes out as stored and the
    scope is small enough to list first (:data:`SIZED_RETRIEVE_MAX_INSTANCES`).

    Index failures of a listed retrieve surface here, before the response starts. Blobs are still
    streamed one at a time, as the store chunks them: memory holds the list and one chunk.
    """
    if plan.instances is None or plan.instances > SIZED_RETRIEVE_MAX_INSTANCES:
        return RetrieveBody(instance_parts(kit, plan), None)
    make = _part_maker(plan)
    listed: list[_Part] = []
    records = kit.index.records(plan.scope)
    try:
        async for record in records:
            if len(listed) == SIZED_RETRIEVE_MAX_INSTANCES:  # grew meanwhile: stream it all instead
                return RetrieveBody(instance_parts(kit, plan), None)
            listed.append(make(record))
    finally:
        aclose = getattr(records, "aclose", None)
        if aclose is not None:
            await aclose()
    if not listed:  # emptied meanwhile
        raise ResourceNotFound(f"no {plan.scope.level or 'study'} {plan.scope} is stored here")
    if any(part.convert for part in listed):
        return RetrieveBody(_framed(kit, _iterate(listed), plan.boundary, sized=False), None)
    length = multipart_length(((part.headers, part.size) for part in listed), plan.boundary)
    return RetrieveBody(_framed(kit, _iterate(listed), plan.boundary, sized=True), length)


def instance_parts(kit: DicomWeb, plan: RetrievePlan) -> AsyncIterator[bytes | memoryview]:
    """The multipart/related body of a retrieve, streamed one instance at a time (no length)."""
    make = _part_maker(plan)

    async def listed() -> AsyncIterator[_Part]:
        async for record in kit.index.records(plan.scope):
            yield make(record)

    return _framed(kit, listed(), plan.boundary, sized=False)


def _part_maker(plan: RetrievePlan) -> Callable[[InstanceRecord], _Part]:
    headers_of: dict[str, dict[str, str]] = {}

    def make(record: InstanceRecord) -> _Part:
        stored = record.transfer_syntax_uid
        syntax = plan.target_syntax(stored)
        headers = headers_of.get(syntax)
        if headers is None:
            headers = headers_of[syntax] = {"Content-Type": f"{_DICOM}; transfer-syntax={syntax}"}
        return _Part(record.blob_key, record.size, headers, syntax != stored)

    return make


async def _iterate(parts: list[_Part]) -> AsyncIterator[_Part]:
    for part in parts:
        yield part


async def _framed(
    kit: DicomWeb, parts: AsyncIterator[_Part], boundary: str, *, sized: bool
) -> AsyncIterator[bytes | memoryview]:
    async def payloads() -> AsyncIterator[tuple[dict[str, str], AsyncIterator[bytes | memoryview]]]:
        async for part in parts:
            if part.convert:
                yield part.headers, _converted(kit, part.blob_key)
            elif sized:
                yield part.headers, _exactly(kit.blobs.get(part.blob_key), part)
            else:
                yield part.headers, kit.blobs.get(part.blob_key)

    async for piece in write_multipart(payloads(), boundary):
        yield piece


async def _exactly(chunks: AsyncIterator[bytes], part: _Part) -> AsyncIterator[bytes]:
    """The blob's chunks, failing rather than break the promised Content-Length."""
    left = part.size
    async for chunk in chunks:
        left -= len(chunk)
        if left < 0:
            break
        yield chunk
    if left:
        # Only a blob edited behind the store's back (or a wrong index) gets here: the response
        # is cut off, which the client sees as a short body.
        raise StorageUnavailable(
            f"blob {part.blob_key!r} does not hold the {part.size} bytes the index recorded for it"
        )


async def _converted(kit: DicomWeb, blob_key: str) -> AsyncIterator[bytes]:
    data = bytearray()
    async for chunk in kit.blobs.get(blob_key):
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
