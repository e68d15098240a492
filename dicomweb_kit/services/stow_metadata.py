"""STOW-RS of metadata and bulk data (PS3.18 §10.5.1.2, §8.6.1.2).

The body is ``multipart/related; type="application/dicom+json"`` (each metadata part an array of
DICOM JSON data sets) or ``type="application/dicom+xml"`` (one Native DICOM Model document per
part). Their bulk data attributes carry a BulkDataURI naming another part of the same body by
its Content-Location (or ``cid:`` + its Content-ID, RFC 2392); the bulk parts may come before
or after the metadata. Compressed Pixel Data is one part per frame, at the URI itself or at
``{BulkDataURI}/frames/{n}`` (the form WADO-RS uses, PS3.18 §10.4.1.1.2).

Each data set becomes a Part 10 file (:mod:`..codecs.bulk_instance`) that goes through the same
ingest path as a Part 10 STOW-RS part (:func:`.ingest.prepare_instance`, then
:func:`.ingest.commit_instances`): frame index, metadata, the duplicates policy and durability
are the same. Since a data set may refer to parts that are still to come, nothing is stored
before the body has been read; bulk parts are kept in memory up to
``Settings.stow_bulk_memory_bytes`` per request and spill to an anonymous temporary file beyond
it (local disk, deleted by the OS even after a crash; the blob store would cost a second remote
write and a cleanup duty).
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import AsyncIterable, AsyncIterator, Mapping, Sequence
from typing import IO, TYPE_CHECKING, Any, Final

import anyio
import msgspec

from .. import status_codes
from ..codecs import dicom_json
from ..codecs.bulk_instance import AssembledInstance, Segment, assemble
from ..codecs.bulk_media import UnreadableBulkData
from ..codecs.dicom_xml import DEFAULT_MAX_XML_SIZE, xml_to_json_dict
from ..codecs.multipart import Part, parse_media_type, read_multipart
from ..errors import DicomWebError, InstanceRejected, InvalidRequest, PayloadTooLarge
from ..media_types import canonical_media_type
from ..resources import ResourceKey
from .ingest import PreparedInstance, prepare_instance, required_uid
from .stow import StoreOutcome, commit_into, multipart_limits

if TYPE_CHECKING:
    from ..kit import DicomWeb

__all__ = ["METADATA_MEDIA_TYPES", "store_metadata_instances"]

log = logging.getLogger("dicomweb_kit.stow")

_JSON: Final = "application/dicom+json"
_XML: Final = "application/dicom+xml"
METADATA_MEDIA_TYPES: Final = frozenset({_JSON, _XML})
# The metadata of one request, all parts together: it is all held (parsed) until the body ends.
_MAX_METADATA_BYTES: Final = DEFAULT_MAX_XML_SIZE
_GROUP_COMMIT: Final = 32
_WRITE_STEP: Final = 1 << 20  # spilled bytes go to the file (and are streamed back) in steps of this


class _SpooledPart:
    """A bulk data part of the request: its bytes in memory, or a range of the request's spill file."""

    __slots__ = ("_data", "_fd", "_offset", "length", "looked_up", "media_type", "params")

    def __init__(self, media_type: str, params: Mapping[str, str]) -> None:
        self.media_type = media_type
        self.params = params
        self.length = 0
        self.looked_up = False
        self._data: bytearray | None = bytearray()
        self._fd = -1
        self._offset = 0

    @property
    def in_memory(self) -> bytearray | None:
        return self._data

    def read(self, start: int = 0, end: int | None = None, /) -> bytes:
        end = self.length if end is None else min(end, self.length)
        if self._data is not None:
            return bytes(self._data[start:end])
        out = bytearray()
        while start + len(out) < end:  # pread is positional: threads never share a file position
            piece = os.pread(self._fd, end - start - len(out), self._offset + start + len(out))
            if not piece:
                raise OSError("the STOW-RS spill file is shorter than expected")
            out += piece
        return bytes(out)


class _BulkSpool:
    """The request's bulk data parts by Content-Location, within a memory budget."""

    def __init__(self, memory_limit: int) -> None:
        self._memory_limit = memory_limit
        self._in_memory = 0
        self._file: IO[bytes] | None = None
        self._size = 0
        self._parts: dict[str, list[_SpooledPart]] = {}

    @property
    def parts(self) -> list[_SpooledPart]:
        """Every part once (one with both a Content-Location and a Content-ID is listed under both)."""
        return list({id(p): p for parts in self._parts.values() for p in parts}.values())

    async def add(self, part: Part, media_type: str, params: Mapping[str, str]) -> None:
        names = _names(part)
        if not names:
            log.info("STOW-RS: a %s part has neither Content-Location nor Content-ID: skipped", media_type)
            return  # nothing can refer to it; the reader drains it
        spooled = _SpooledPart(media_type, params)
        pending = bytearray()
        async for chunk in part.chunks():
            spooled.length += len(chunk)
            data = spooled.in_memory
            if data is not None and self._in_memory + len(data) + len(chunk) <= self._memory_limit:
                data += chunk
                continue
            if data is not None:  # over the budget: this part goes to the file from here on
                pending = data
                await self._spill(spooled)
            pending += chunk
            if len(pending) >= _WRITE_STEP:
                await self._write(pending)
                pending = bytearray()
        if spooled.in_memory is not None:
            self._in_memory += spooled.length
        elif pending:
            await self._write(pending)
        for name in names:
            self._parts.setdefault(name, []).append(spooled)

    async def _spill(self, spooled: _SpooledPart) -> None:
        if self._file is None:
            self._file = await anyio.to_thread.run_sync(tempfile.TemporaryFile)
        spooled._data = None
        spooled._fd = self._file.fileno()
        spooled._offset = self._size

    async def _write(self, data: bytearray) -> None:
        assert self._file is not None
        await anyio.to_thread.run_sync(self._file.write, data)
        self._size += len(data)

    def lookup(self, uri: str) -> Sequence[_SpooledPart]:
        """The parts a BulkDataURI names: those at the URI, else its ``/frames/{n}`` (1, 2, ...)."""
        found = self._parts.get(uri) or self._parts.get(uri.strip("<>"), [])
        if not found:
            frames: list[_SpooledPart] = []
            while parts := self._parts.get(f"{uri}/frames/{len(frames) + 1}"):
                frames.append(parts[0])
            found = frames
        for part in found:
            part.looked_up = True
        return found

    async def aclose(self) -> None:
        if self._file is not None:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self._file.close)


def _names(part: Part) -> list[str]:
    names = []
    if part.content_location:
        names.append(part.content_location.strip())
    content_id = part.headers.get("content-id", "").strip().strip("<>")
    if content_id:
        names.append(f"cid:{content_id}")  # RFC 2392 / RFC 2387: parts may be referred to by cid: URLs
    return names


async def store_metadata_instances(
    kit: DicomWeb,
    body: AsyncIterable[bytes],
    boundary: str,
    root_type: str,
    /,
    *,
    study: ResourceKey | None = None,
) -> StoreOutcome:
    """Store the data sets of a metadata + bulk data body (see the module docstring).

    A data set that cannot be built (no part at its BulkDataURI, a bulk part that contradicts
    the metadata, missing UIDs) or stored is reported in FailedSOPSequence; the others are
    stored. A body that breaks off raises (400, 413, 408), and then nothing is stored.
    """
    settings = kit.settings
    limits = multipart_limits(settings)
    expected_study = study.study if study is not None else None
    outcome = StoreOutcome()
    datasets: list[Any] = []
    spool = _BulkSpool(settings.stow_bulk_memory_bytes)
    metadata_bytes = 0
    try:
        async for part in read_multipart(body, boundary, limits=limits):
            media_type, params = _part_type(part, root_type)
            if media_type in METADATA_MEDIA_TYPES:
                try:
                    found, size = await _read_metadata(part.chunks(), media_type, _MAX_METADATA_BYTES - metadata_bytes)
                    datasets.extend(found)
                    metadata_bytes += size
                except InvalidRequest as exc:
                    log.info("STOW-RS metadata part rejected: %s", exc.message)
                    outcome.failed.append(InstanceRejected(exc.message, failure_reason=status_codes.CANNOT_UNDERSTAND))
            else:
                await spool.add(part, media_type, params)
        pending: list[PreparedInstance] = []
        for metadata in datasets:
            try:
                pending.append(await _prepare(kit, metadata, spool, expected_study))
            except InstanceRejected as rejected:
                log.info("STOW-RS instance rejected: %s", rejected.message)
                outcome.failed.append(rejected)
            if len(pending) >= _GROUP_COMMIT:
                await commit_into(kit, pending, outcome)
        await commit_into(kit, pending, outcome)
        unused = sum(1 for p in spool.parts if not p.looked_up)
        if unused:
            log.info("STOW-RS: %d bulk data part(s) named by no BulkDataURI were ignored", unused)
    finally:
        await spool.aclose()
    return outcome


def _part_type(part: Part, root_type: str) -> tuple[str, dict[str, str]]:
    if not part.content_type:
        return root_type, {}  # RFC 2387: a part's type defaults to the root's
    try:
        media_type, params = parse_media_type(part.content_type)
    except InvalidRequest:
        return "application/octet-stream", {}  # the bulk data's own type is ours to guess; say no more
    return canonical_media_type(media_type), params


async def _read_metadata(
    chunks: AsyncIterable[bytes | memoryview], media_type: str, budget: int
) -> tuple[list[Any], int]:
    """One metadata part's data sets and its size; at most ``budget`` bytes (what the request has left)."""
    data = bytearray()
    async for chunk in chunks:
        data += chunk
        if len(data) > budget:
            raise PayloadTooLarge(f"the metadata parts of a request are larger than {_MAX_METADATA_BYTES} bytes")
    return await anyio.to_thread.run_sync(_parse_metadata, bytes(data), media_type), len(data)


def _parse_metadata(data: bytes, media_type: str) -> list[Any]:
    if media_type == _XML:
        return [xml_to_json_dict(data)]  # one Native DICOM Model document per part (PS3.19 §A.1)
    parsed = dicom_json.decode(data)
    # PS3.18 §F.2.1: an array of data sets; a lone object is accepted as an array of one.
    return parsed if isinstance(parsed, list) else [parsed]


async def _prepare(kit: DicomWeb, metadata: Any, spool: _BulkSpool, expected_study: str | None) -> PreparedInstance:
    if not isinstance(metadata, Mapping):
        raise InstanceRejected(
            "a DICOM JSON data set must be a JSON object (PS3.18 §F.2.2)", failure_reason=status_codes.CANNOT_UNDERSTAND
        )
    sop_class = _required_uid(metadata, "00080016", "SOPClassUID", None, None)
    sop_instance = _required_uid(metadata, "00080018", "SOPInstanceUID", sop_class, None)
    study_uid = _required_uid(metadata, "0020000D", "StudyInstanceUID", sop_class, sop_instance)
    if expected_study is not None and study_uid != expected_study:
        # Refused before any byte is written; prepare_instance would say the same after.
        raise InstanceRejected(
            f"Study Instance UID {study_uid} differs from the target study {expected_study} (PS3.18 §10.5.1)",
            failure_reason=status_codes.STUDY_INSTANCE_UID_MISMATCH,
            sop_class_uid=sop_class,
            sop_instance_uid=sop_instance,
        )
    try:
        assembled = await anyio.to_thread.run_sync(_assemble, metadata, spool, kit.settings.max_repair_bytes)
    except (UnreadableBulkData, InvalidRequest) as exc:
        raise InstanceRejected(
            exc.message if isinstance(exc, DicomWebError) else str(exc),
            failure_reason=status_codes.CANNOT_UNDERSTAND,
            sop_class_uid=sop_class,
            sop_instance_uid=sop_instance,
        ) from exc
    try:
        prepared = await prepare_instance(kit, _stream(assembled.segments), expected_study=expected_study)
    except PayloadTooLarge as exc:
        raise InstanceRejected(
            exc.message, failure_reason=status_codes.OUT_OF_RESOURCES, sop_class_uid=sop_class,
            sop_instance_uid=sop_instance,
        ) from exc  # fmt: skip
    if not assembled.coerced:
        return prepared
    log.info("STOW-RS %s: coerced %s", sop_instance, "; ".join(assembled.coerced))
    # PS3.18 Table I.2-1: we added or changed attributes the client sent. (replace keeps the
    # other fields, e.g. the header the before-store hook reads.)
    return msgspec.structs.replace(prepared, warning_reason=status_codes.COERCION_OF_DATA_ELEMENTS)


def _assemble(metadata: Mapping[str, Any], spool: _BulkSpool, limit: int) -> AssembledInstance:
    try:
        return assemble(metadata, spool.lookup, max_loaded_bytes=limit)
    except (UnreadableBulkData, InvalidRequest):
        raise
    except Exception as exc:  # pydicom raises many kinds on values it cannot write
        raise UnreadableBulkData(f"cannot write the data set: {type(exc).__name__}: {exc}") from exc


def _required_uid(
    metadata: Mapping[str, Any], key: str, keyword: str, sop_class: str | None, sop_instance: str | None
) -> str:
    """A UID the instance cannot be stored without; Failure Reason 0xA900 as for Part 10 STOW-RS."""
    attr = metadata.get(key)
    values = attr.get("Value") if isinstance(attr, Mapping) else None
    return required_uid(values[0] if isinstance(values, list) and values else None, keyword, sop_class, sop_instance)


async def _stream(segments: list[Segment]) -> AsyncIterator[bytes | memoryview]:
    """The file's bytes: encoded segments as they are, bulk parts in steps (from the file in a thread)."""
    for segment in segments:
        if isinstance(segment, bytes):
            yield segment
            continue
        data = segment.in_memory if isinstance(segment, _SpooledPart) else None
        for start in range(0, segment.length, _WRITE_STEP):
            end = min(start + _WRITE_STEP, segment.length)
            if data is not None:
                yield memoryview(data)[start:end]
            else:
                yield await anyio.to_thread.run_sync(segment.read, start, end)
