"""WADO-RS: retrieve studies, series and instances, and their metadata (PS3.18 §10.4)."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator, Callable, Collection, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

import anyio
import msgspec
from pydicom.uid import UID

from ..codecs import dicom_json, dicom_xml
from ..codecs.multipart import multipart_length, new_boundary, write_multipart
from ..codecs.pixel_codecs import can_decode
from ..codecs.transcode import (
    UNCOMPRESSED,
    producible_for_syntax,
    to_explicit_vr_little_endian,
    transcode,
    unproducible_reason,
)
from ..errors import NotAcceptable, ResourceNotFound
from ..index import InstanceRecord, ScopeSummary
from ..media_types import EXPLICIT_VR_LE, NOT_FOR_WEB, Choice, Offer, negotiate
from ..pixels.description import PixelDescription
from ..resources import ResourceKey
from ..storage import exactly

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
_METADATA_CHUNK = 64 * 1024  # bytes of a metadata response gathered per send

log = logging.getLogger("dicomweb_kit.wado")


async def require_summary(kit: DicomWeb, scope: ResourceKey) -> ScopeSummary:
    """What is stored under ``scope``; 404 when it holds nothing."""
    summary = await kit.index.summary(scope)
    if summary is None:
        raise ResourceNotFound(f"no {scope.level or 'study'} {scope} is stored here")
    return summary


def _producible(stored: str) -> frozenset[str]:
    """Transfer syntaxes an instance stored in ``stored`` may be sent in, before its pixels are
    looked at (PS3.18 §8.7.3.5: never Implicit VR Little Endian or Explicit VR Big Endian)."""
    return producible_for_syntax(stored)


def _default_syntax(stored: str) -> str:
    """PS3.18 §8.7.3.4 and Table 8.7.3-2: Explicit VR Little Endian when the client names no
    transfer syntax. Data nothing installed can decode (video, JPEG XL...) goes as stored: Note 2
    permits it for lossy data, and for the rare lossless rest it is all we have."""
    return EXPLICIT_VR_LE if can_decode(stored) else stored


class RetrievePlan(msgspec.Struct, frozen=True):
    """What a retrieve will send: the negotiated representation for every instance under scope."""

    scope: ResourceKey
    choice: Choice
    boundary: str = msgspec.field(default_factory=new_boundary)
    #: How many instances the scope held when the plan was made (None: not known).
    instances: int | None = None

    def target_syntax(self, stored: str, attributes: Mapping[str, Any] | None = None) -> str:
        """The transfer syntax an instance stored in ``stored`` (with DICOM JSON ``attributes``,
        when known) goes out in. Decided per instance: PS3.18 §8.7.8.2 Note 1 lets each part of a
        mixed study carry its own transfer syntax."""
        wanted = self.choice.transfer_syntax
        if wanted is None:
            return _default_syntax(stored)
        if wanted == "*":  # as stored, except where PS3.18 §8.7.3.5 forbids it
            return EXPLICIT_VR_LE if stored in NOT_FOR_WEB else stored
        if attributes is None and wanted in _producible(stored):
            return wanted
        if attributes is not None:
            description = PixelDescription.from_attributes(attributes)
            if unproducible_reason(stored, description, wanted) is None:
                return wanted
        # Planning checked every instance, so only one stored after it gets here: it goes out
        # as it would by default rather than breaking the response off.
        return _default_syntax(stored)


async def plan_retrieve(
    kit: DicomWeb, scope: ResourceKey, accept: str | None, /, *, accept_param: str | None = None
) -> RetrievePlan:
    """Check that ``scope`` exists and negotiate the response (406 when nothing fits)."""
    summary = await require_summary(kit, scope)
    stored = summary.transfer_syntaxes
    common = frozenset.intersection(*(_producible(ts) for ts in stored))
    choice = negotiate(accept, [_offer(common)], accept_param=accept_param)
    wanted = choice.transfer_syntax
    if wanted is not None and wanted != "*" and wanted not in UNCOMPRESSED and set(stored) != {wanted}:
        # Whether pixels can be encoded in a syntax depends on them (a JPEG Baseline frame holds
        # 8-bit samples only): check every instance once, for every such syntax the client might
        # fall back to by q-value, then negotiate again without the ones that fail.
        refused = await _refused_syntaxes(kit, scope, {ts for ts in common if ts not in UNCOMPRESSED})
        if refused:
            try:
                choice = negotiate(accept, [_offer(common - refused.keys())], accept_param=accept_param)
            except NotAcceptable as exc:
                reasons = " ".join(refused[ts] for ts in sorted(refused))
                raise NotAcceptable(f"{reasons} {exc.message}") from None
    return RetrievePlan(scope, choice, instances=summary.instances)


def _offer(syntaxes: Collection[str]) -> Offer:
    return Offer("multipart/related", part_type=_DICOM, transfer_syntaxes=tuple(sorted(syntaxes)))


async def _refused_syntaxes(kit: DicomWeb, scope: ResourceKey, candidates: set[str]) -> dict[str, str]:
    """The ``candidates`` some instance under ``scope`` cannot be sent in, each with the reason."""
    refused: dict[str, str] = {}
    seen: set[tuple[str, PixelDescription | None]] = set()
    records = kit.index.records(scope)
    try:
        async for record in records:
            stored = record.transfer_syntax_uid
            description = PixelDescription.from_attributes(record.attributes)
            if (stored, description) in seen:
                continue  # the same pixel layout gets the same answers: one check per layout
            seen.add((stored, description))
            for ts in candidates - refused.keys():
                if reason := unproducible_reason(stored, description, ts):
                    refused[ts] = (
                        f"{_name(ts)} ({ts}) cannot be produced for instance {record.instance_uid}"
                        f" (stored in {_name(stored)}): {reason}."
                    )
            if refused.keys() >= candidates:
                break
    finally:
        aclose = getattr(records, "aclose", None)
        if aclose is not None:
            await aclose()
    return refused


def _name(transfer_syntax: str) -> str:
    return UID(transfer_syntax).name


#: A retrieve of at most this many instances lists them (blob key, size, headers: ~200 bytes each)
#: before it answers, so the response carries an exact Content-Length: no chunked framing, which
#: costs the server a copy of every payload and the client a parse per chunk. Larger scopes stream
#: without a length, so memory stays bounded whatever the study's size.
SIZED_RETRIEVE_MAX_INSTANCES = 10_000


class _Part(NamedTuple):
    blob_key: str
    size: int  # the blob's size, as the index recorded it
    headers: dict[str, str]  # shared by all parts of one target transfer syntax
    stored: str  # the blob's transfer syntax
    target: str | None  # transcode to this syntax (size unknown up front); None: as stored


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
    if any(part.target is not None for part in listed):
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
    def make(record: InstanceRecord) -> _Part:
        stored = record.transfer_syntax_uid
        syntax = plan.target_syntax(stored, record.attributes)
        return _Part(record.blob_key, record.size, _headers(syntax), stored, None if syntax == stored else syntax)

    return make


_HEADERS: dict[str, dict[str, str]] = {}


def _headers(syntax: str) -> dict[str, str]:
    """The part headers of one transfer syntax, built once (the UIDs come from a small set)."""
    headers = _HEADERS.get(syntax)
    if headers is None:
        headers = {"Content-Type": f"{_DICOM}; transfer-syntax={syntax}"}
        if len(_HEADERS) < 256:
            _HEADERS[syntax] = headers
    return headers


async def _iterate(parts: list[_Part]) -> AsyncIterator[_Part]:
    for part in parts:
        yield part


async def _framed(
    kit: DicomWeb, parts: AsyncIterator[_Part], boundary: str, *, sized: bool
) -> AsyncIterator[bytes | memoryview]:
    async def payloads() -> AsyncIterator[tuple[dict[str, str], AsyncIterator[bytes | memoryview]]]:
        async for part in parts:
            if part.target is not None:
                syntax, data = await _converted(kit, part)
                yield _headers(syntax), _one(data)
            elif sized:
                yield part.headers, exactly(kit.blobs.get(part.blob_key), key=part.blob_key, size=part.size)
            else:
                yield part.headers, kit.blobs.get(part.blob_key)

    async for piece in write_multipart(payloads(), boundary):
        yield piece


async def _converted(kit: DicomWeb, part: _Part) -> tuple[str, bytes]:
    """The instance transcoded to ``part.target`` in a worker thread, and the syntax it is in.

    Memory holds this one instance (blob, decoded pixels, result). A blob that the codecs cannot
    read after all (a corrupt codestream) goes out as stored, or as Explicit VR Little Endian
    where PS3.18 §8.7.3.5 forbids the stored syntax, with its own part header saying so
    (§8.7.8.2 Note 1), rather than breaking the whole response off.
    """
    assert part.target is not None
    data = b"".join([chunk async for chunk in kit.blobs.get(part.blob_key)])
    try:
        return part.target, await anyio.to_thread.run_sync(transcode, data, part.target)
    except Exception as exc:  # pydicom and the codecs raise many kinds on bad data
        log.warning("could not transcode %s to %s (%s); sending it as stored", part.blob_key, part.target, exc)
    if part.stored in NOT_FOR_WEB:
        return EXPLICIT_VR_LE, await anyio.to_thread.run_sync(to_explicit_vr_little_endian, data)
    return part.stored, data


async def _one(data: bytes) -> AsyncIterator[bytes]:
    yield data


def _with_base(metadata: bytes, service_url: str) -> bytes:
    # Stored BulkDataURIs are relative to the service root (see services/ingest.py); the
    # literal `"BulkDataURI":"` can only be a key, since quotes inside strings are escaped.
    return metadata.replace(b'"BulkDataURI":"', b'"BulkDataURI":"' + service_url.encode() + b"/")


def _stored_metadata(kit: DicomWeb, scope: ResourceKey) -> AsyncIterator[bytes]:
    """The stored DICOM JSON of every instance under ``scope``: from the index's optional
    ``stored_metadata(scope)`` (as ``SqlIndex`` offers, without decoding each record), else
    from :meth:`~dicomweb_kit.InstanceIndex.records`."""
    fast = getattr(kit.index, "stored_metadata", None)
    if fast is not None:
        stored: AsyncIterator[bytes] = fast(scope)
        return stored

    async def from_records() -> AsyncIterator[bytes]:
        async for record in kit.index.records(scope):
            yield bytes(record.metadata)

    return from_records()


async def metadata_json(kit: DicomWeb, scope: ResourceKey, service_url: str) -> AsyncIterator[bytes]:
    """The metadata of every instance under ``scope`` as a DICOM JSON array, spliced from stored JSON.

    Stored metadata is never decoded: each record's bytes go out as they were encoded at ingest,
    gathered into chunks of about :data:`_METADATA_CHUNK` (one send each, not one per instance).
    """
    pending: list[bytes] = []
    size = 0
    separator = b"["
    async for metadata in _stored_metadata(kit, scope):
        piece = _with_base(metadata, service_url)
        pending += (separator, piece)
        separator = b","
        size += len(piece) + 1
        if size >= _METADATA_CHUNK:
            yield b"".join(pending)
            pending, size = [], 0
    pending.append(b"]" if separator == b"," else b"[]")
    yield b"".join(pending)


async def metadata_xml(kit: DicomWeb, scope: ResourceKey, service_url: str) -> AsyncIterator[bytes]:
    """The metadata of every instance under ``scope`` as NativeDicomModel XML documents."""
    async for metadata in _stored_metadata(kit, scope):
        yield dicom_xml.json_dict_to_xml(dicom_json.decode(_with_base(metadata, service_url)))


def metadata_etag(summary: ScopeSummary, service_url: str, representation: str) -> str:
    """A weak ETag of one metadata representation (RFC 9110 §8.8.3): it changes with the records,
    the URL base the BulkDataURIs are built on, and the media type."""
    digest = hashlib.blake2s(f"{summary.version}|{service_url}|{representation}".encode(), digest_size=12)
    return f'W/"{digest.hexdigest()}"'
