"""Ingest of one instance: stream it to the blob store, parse its header on the way, index it.

Used by STOW-RS for each part (and by any other way of bringing instances in), so there is one
path that decides what a stored instance is.
"""

from __future__ import annotations

import copy
import io
import logging
import re
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, NamedTuple

import anyio
import msgspec
from pydicom.dataset import Dataset
from pydicom.uid import UID

from .. import changefeed, status_codes
from ..codecs import dicom_json
from ..codecs.header_walk import WalkedHeader, walk_header
from ..codecs.part10 import HeaderIncomplete, NotPart10, Part10Header, has_part10_prefix, parse_header, to_part10
from ..errors import InstanceRejected, PayloadTooLarge
from ..hooks import Coerce, IncomingInstance, Reject, apply_coercion
from ..index import InstanceRecord
from ..pixels.layout import LayoutInputs, PixelLayout, PixelScanner, layout_from_bytes, layout_of
from ..resources import ResourceKey, validate_uid
from ..threads import WorkerThreads

if TYPE_CHECKING:
    from ..kit import DicomWeb

__all__ = ["PreparedInstance", "StoredInstance", "commit_instances", "ingest_instance", "prepare_instance"]

log = logging.getLogger("dicomweb_kit.ingest")


class StoredInstance(msgspec.Struct, frozen=True):
    """An instance that is now stored (or was already, with ``on_duplicate="keep"``)."""

    record: InstanceRecord
    replaced: bool = False
    already_stored: bool = False
    # Warning Reason (0008,1196) when the stored instance differs from what was sent.
    warning_reason: int | None = None


class PreparedInstance(msgspec.Struct, frozen=True):
    """An instance whose blob is durable and whose header is valid, not yet in the index."""

    record: InstanceRecord
    warning_reason: int | None = None
    # The parsed header, for the before-store hook (bounded by ``header_prefix_bytes``).
    header: Part10Header | None = None


# The Pixel Data tags (7FE0,0010), Float (7FE0,0008) and Double Float (7FE0,0009) Pixel Data as
# they appear in little and big endian files: the header ends there. One pattern, so one pass
# that stops at the first sighting (six finds each scanned all the pixels when the tag was absent).
_PIXEL_DATA_TAG = re.compile(rb"\xe0\x7f[\x10\x08\x09]\x00|\x7f\xe0\x00[\x10\x08\x09]")
# Header parses by pydicom run here: a hop costs ~20 µs where anyio's thread pool takes 50-300 µs, paid once
# per instance. As many threads as STOW keeps parts in flight.
_PARSERS = WorkerThreads(4, name="dicomweb-kit header parse")
# Headers up to this size are walked on the event loop (a few hundred attributes: well under 1 ms).
_INLINE_WALK_MAX = 64 * 1024
# The prefix grows by at most this much between searches: a header's end is found before the
# pixels after it are copied.
_KEEP_STEP = 1 << 16


class _PrefixTee:
    """Passes chunks through to the blob store while keeping the header's bytes for parsing.

    It keeps bytes until the Pixel Data tag shows up (plus a little, for its VR), or until
    ``limit``: an image's pixels are never copied. From the tag on, a :class:`PixelScanner`
    sees every chunk as it passes and finds where each frame is (item headers only). A false
    sighting inside some value only costs a read-back of the stored blob (see ``_read_record``).
    """

    def __init__(self, chunks: AsyncIterable[bytes | memoryview], limit: int, max_bytes: int | None) -> None:
        self._chunks = chunks
        self._limit = limit
        self._max_bytes = max_bytes
        self.prefix = bytearray()
        self.size = 0
        self._stop_at: int | None = None
        self.scanner: PixelScanner | None = None

    async def __aiter__(self) -> AsyncIterator[bytes | memoryview]:
        async for chunk in self._chunks:
            at = self.size
            self.size += len(chunk)
            if self._max_bytes is not None and self.size > self._max_bytes:
                raise PayloadTooLarge(f"an instance is larger than the limit of {self._max_bytes} bytes")
            if self._stop_at is None or len(self.prefix) < self._stop_at:
                self._keep(chunk)
            if self.scanner is not None and not self.scanner.done:
                self.scanner.feed(chunk, at)
            yield chunk
        if self.scanner is not None:
            self.scanner.close()

    def _keep(self, chunk: bytes | memoryview) -> None:
        view = memoryview(chunk)
        if self._stop_at is not None:  # the tag is known: keep the bytes up to just after it
            self.prefix += view[: self._stop_at - len(self.prefix)]
            return
        view = view[: self._limit - len(self.prefix)]
        for step in range(0, len(view), _KEEP_STEP):
            scan_from = max(len(self.prefix) - 3, 132)  # a tag may straddle two steps
            self.prefix += view[step : step + _KEEP_STEP]
            found = _PIXEL_DATA_TAG.search(self.prefix, scan_from)
            if found is not None:
                start = found.start()
                self._stop_at = start + 16
                del self.prefix[self._stop_at :]
                # The tag may have begun in an earlier chunk: show the scanner the kept bytes first.
                self.scanner = PixelScanner(start)
                self.scanner.feed(self.prefix[start:], start)
                return

    @property
    def complete_in_prefix(self) -> bool:
        return self.size == len(self.prefix)


async def ingest_instance(
    kit: DicomWeb,
    chunks: AsyncIterable[bytes | memoryview],
    /,
    *,
    expected_study: str | None = None,
) -> StoredInstance:
    """Store one Part 10 instance streamed as ``chunks``: :func:`prepare_instance`, then
    :func:`commit_instances`.

    Raises:
        InstanceRejected: the instance was not stored; ``failure_reason`` says why (PS3.18 Table I.2-2).
        PayloadTooLarge: the instance breaks ``max_part_bytes``.
    """
    prepared = await prepare_instance(kit, chunks, expected_study=expected_study)
    [outcome] = await commit_instances(kit, [prepared])
    if isinstance(outcome, InstanceRejected):
        raise outcome
    return outcome


async def prepare_instance(
    kit: DicomWeb,
    chunks: AsyncIterable[bytes | memoryview],
    /,
    *,
    expected_study: str | None = None,
) -> PreparedInstance:
    """Write one Part 10 instance streamed as ``chunks`` to the blob store and validate it.

    The blob goes under a fresh random key; the header is parsed from the bytes kept on the
    way. Nothing is visible until :func:`commit_instances` adds the record to the index; on any
    failure here the blob is deleted.

    Raises:
        InstanceRejected: the instance cannot be stored; ``failure_reason`` says why (PS3.18 Table I.2-2).
        PayloadTooLarge: the instance breaks ``max_part_bytes``.
    """
    settings = kit.settings
    key = uuid.uuid4().hex
    head, chunks = await _peek(chunks, 132)
    warning = None
    if not has_part10_prefix(head):
        chunks = await _repaired(chunks, settings.max_repair_bytes)
        # We wrote the preamble and file meta the client left out (PS3.18 Table I.2-1).
        warning = status_codes.COERCION_OF_DATA_ELEMENTS
    record, header = await _write_and_parse(kit, key, chunks)
    try:
        if expected_study is not None and record.study_uid != expected_study:
            raise InstanceRejected(
                f"Study Instance UID {record.study_uid} differs from the target study {expected_study}"
                " (PS3.18 §10.5.1)",
                failure_reason=status_codes.STUDY_INSTANCE_UID_MISMATCH,
                sop_class_uid=record.sop_class_uid,
                sop_instance_uid=record.instance_uid,
            )
    except BaseException:
        with anyio.CancelScope(shield=True):
            await kit.blobs.delete([key])
        raise
    return PreparedInstance(record, warning, header if kit.before_store is not None else None)


async def _write_and_parse(
    kit: DicomWeb, key: str, chunks: AsyncIterable[bytes | memoryview]
) -> tuple[InstanceRecord, Part10Header]:
    """Write the blob ``key`` (not durable yet: commit_instances syncs the whole group's blobs at
    once) and parse its header on the way; on failure the blob is deleted."""
    settings = kit.settings
    tee = _PrefixTee(chunks, settings.header_prefix_bytes, settings.max_part_bytes)
    info = await kit.blobs.put(key, tee, durable=False)
    try:
        return await _read_record(kit, key, tee, info.size, settings.bulk_data_threshold)
    except BaseException:
        with anyio.CancelScope(shield=True):
            await kit.blobs.delete([key])
        raise


async def commit_instances(
    kit: DicomWeb, prepared: Sequence[PreparedInstance], /
) -> list[StoredInstance | InstanceRejected]:
    """Add prepared instances to the index in one transaction (group commit), per the
    ``on_duplicate`` policy; delete the blobs that lost. One outcome per instance, in order.

    If the index fails, every blob of the batch is deleted and the error propagates.
    """
    if not prepared:
        return []
    screened = await _screen(kit, prepared) if kit.before_store is not None else list(prepared)
    prepared = [p for p in screened if isinstance(p, PreparedInstance)]
    results = await _commit(kit, prepared)
    if len(prepared) < len(screened):  # the hook's rejections, in their places
        merged = iter(results)
        results = [next(merged) if isinstance(p, PreparedInstance) else p for p in screened]
    return results


async def _commit(kit: DicomWeb, prepared: Sequence[PreparedInstance]) -> list[StoredInstance | InstanceRejected]:
    if not prepared:
        return []
    policy = kit.settings.on_duplicate
    try:
        # Shielded: a cancellation (the client left) must not land between the index's COMMIT and
        # its acknowledgement, where the blobs would be deleted under committed records. The
        # instances were received whole; they are committed, then the cancellation proceeds.
        with anyio.CancelScope(shield=True):
            # The blobs are durable before the index refers to them: a crash leaves orphans at most.
            await kit.blobs.sync([p.record.blob_key for p in prepared])
            outcomes = await kit.index.add_many(
                [p.record for p in prepared], on_existing="replace" if policy == "replace" else "keep"
            )
    except BaseException:
        with anyio.CancelScope(shield=True):
            await kit.blobs.delete([p.record.blob_key for p in prepared])
        raise
    results: list[StoredInstance | InstanceRejected] = []
    garbage: list[str] = []
    for item, outcome in zip(prepared, outcomes, strict=True):
        record = item.record
        if not outcome.stored:
            garbage.append(record.blob_key)
            if policy == "reject":
                results.append(
                    InstanceRejected(
                        f"SOP Instance {record.instance_uid} is already stored",
                        failure_reason=status_codes.DUPLICATE_SOP_INSTANCE,
                        sop_class_uid=record.sop_class_uid,
                        sop_instance_uid=record.instance_uid,
                    )
                )
            else:
                results.append(StoredInstance(outcome.previous or record, already_stored=True))
            continue
        if outcome.previous is not None:
            garbage.append(outcome.previous.blob_key)
        results.append(
            StoredInstance(record, replaced=outcome.previous is not None, warning_reason=item.warning_reason)
        )
    if garbage:
        await kit.blobs.delete(garbage)
    changed = [r.record for r in results if isinstance(r, StoredInstance) and not r.already_stored]
    if changed:
        if kit.changefeed is not None:
            await changefeed.notify(kit)
        if kit.after_store is not None:
            kit.after_store.submit(changed)  # runs in the background; never delays this response
    return results


async def _screen(
    kit: DicomWeb, prepared: Sequence[PreparedInstance]
) -> list[PreparedInstance | InstanceRejected]:
    """Ask the before-store hook about each instance (concurrently); apply its rejections and
    coercions. A rejected instance's blob is deleted."""
    screened: list[PreparedInstance | InstanceRejected] = list(prepared)
    errors: list[Exception] = []

    async def one(position: int, item: PreparedInstance) -> None:
        try:
            result = await _screen_one(kit, item)
        except Exception as exc:  # e.g. the blob store failed while rewriting: the request fails
            errors.append(exc)
            return
        if isinstance(result, InstanceRejected):
            await kit.blobs.delete([item.record.blob_key])
        screened[position] = result

    async with anyio.create_task_group() as tasks:
        for position, item in enumerate(prepared):
            tasks.start_soon(one, position, item)
    if errors:
        with anyio.CancelScope(shield=True):
            await kit.blobs.delete([p.record.blob_key for p in screened if isinstance(p, PreparedInstance)])
        raise errors[0]  # outside the task group, so not wrapped in an ExceptionGroup
    return screened


async def _screen_one(kit: DicomWeb, item: PreparedInstance) -> PreparedInstance | InstanceRejected:
    assert kit.before_store is not None and item.header is not None
    record = item.record

    def rejected(message: str, reason: int) -> InstanceRejected:
        log.info("STOW-RS instance %s rejected by the before-store hook: %s", record.instance_uid, message)
        return InstanceRejected(
            message, failure_reason=reason, sop_class_uid=record.sop_class_uid, sop_instance_uid=record.instance_uid
        )

    source = item.header.dataset
    if getattr(source, "buffer", None) is not None:
        # The kept prefix it was parsed from: nothing is read from it later (no deferred
        # values), and pydicom warns that it cannot be deep-copied.
        source.buffer = None
    dataset = copy.deepcopy(source)
    try:
        decision = await kit.before_store(IncomingInstance(dataset, record))
    except Exception as exc:
        log.exception("before-store hook failed for %s", record.instance_uid)
        return rejected(f"the before-store hook failed: {type(exc).__name__}", status_codes.PROCESSING_FAILURE)
    if isinstance(decision, Reject):
        return rejected(decision.message, decision.failure_reason)
    if not isinstance(decision, Coerce) or not decision.attributes:
        return PreparedInstance(record, item.warning_reason)
    try:
        coerced = await _coerce(kit, item, decision)
    except InstanceRejected as exc:  # the rewritten instance is invalid (e.g. a coerced UID)
        log.info("STOW-RS instance %s rejected after coercion: %s", record.instance_uid, exc.message)
        return exc
    except (ValueError, TypeError, OverflowError) as exc:
        return rejected(f"coercion failed: {exc}", status_codes.PROCESSING_FAILURE)
    return PreparedInstance(coerced, status_codes.COERCION_OF_DATA_ELEMENTS)


async def _coerce(kit: DicomWeb, item: PreparedInstance, coerce: Coerce) -> InstanceRecord:
    """Store the instance again with the coerced header; delete the original blob.

    The blob was streamed before the hook could say anything, so it is rewritten rather than
    patched: a new blob made of the header written again by pydicom (elements before Pixel
    Data, bounded by ``header_prefix_bytes``) followed by the original bytes from Pixel Data on,
    copied with one ranged read that streams chunk by chunk. Memory stays bounded and pixels are
    never decoded. The new blob goes through the same parse as any upload, so the index record
    (metadata JSON, match values, frame layout) describes exactly the bytes stored.
    """
    header = item.header
    assert header is not None
    if UID(header.transfer_syntax_uid).is_deflated:
        # The whole dataset is one deflate stream: its pixels cannot be copied apart from the header.
        raise ValueError("a Deflated transfer syntax instance cannot be coerced")
    dataset = copy.deepcopy(header.dataset)
    apply_coercion(dataset, coerce)
    head = await anyio.to_thread.run_sync(_write_header, dataset)
    old_key = item.record.blob_key
    new_key = uuid.uuid4().hex

    async def rewritten() -> AsyncIterator[bytes]:
        yield head
        if header.pixel_data_vr is not None:
            async for chunk in kit.blobs.get(old_key, start=header.header_length):
                yield chunk

    record, _header = await _write_and_parse(kit, new_key, rewritten())
    await kit.blobs.delete([old_key])
    return record


async def _peek(
    chunks: AsyncIterable[bytes | memoryview], size: int
) -> tuple[bytes, AsyncIterator[bytes | memoryview]]:
    """The first ``size`` bytes of ``chunks`` (fewer if it is shorter), and the whole stream again."""
    iterator = aiter(chunks)
    seen: list[bytes | memoryview] = []
    length = 0
    while length < size:
        chunk = await anext(iterator, None)
        if chunk is None:
            break
        seen.append(chunk)
        length += len(chunk)

    async def replay() -> AsyncIterator[bytes | memoryview]:
        for chunk in seen:
            yield chunk
        async for chunk in iterator:
            yield chunk

    head = bytearray()
    for chunk in seen:  # only the bytes asked for: the first chunk may be a whole 256 KB read
        head += memoryview(chunk)[: size - len(head)]
    return bytes(head), replay()


async def _repaired(chunks: AsyncIterable[bytes | memoryview], limit: int) -> AsyncIterator[bytes]:
    """A dataset sent without the Part 10 preamble, rewritten as a Part 10 file (in memory, bounded)."""
    data = bytearray()
    async for chunk in chunks:
        data += chunk
        if len(data) > limit:
            raise PayloadTooLarge(f"an instance without the Part 10 preamble is larger than {limit} bytes")
    try:
        fixed = await anyio.to_thread.run_sync(to_part10, data)
    except NotPart10 as exc:
        raise _cannot_understand(str(exc)) from exc

    async def one() -> AsyncIterator[bytes]:
        yield fixed

    return one()


def _write_header(dataset: Dataset) -> bytes:
    """Preamble, file meta and ``dataset`` (the elements before Pixel Data) as Part 10 bytes."""
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


async def _read_record(
    kit: DicomWeb, key: str, tee: _PrefixTee, size: int, threshold: int
) -> tuple[InstanceRecord, Part10Header]:
    """Parse the header from the kept bytes and build the record.

    Without a before-store hook (nobody looks at a pydicom data set) the header is walked right
    here on the event loop: ~0.1 ms for a CT header, less than the hop to a thread and back, and
    no parse thread competes with the loop for the GIL. Past ``_INLINE_WALK_MAX`` bytes the walk
    runs in a thread; where it declines, pydicom parses the header in a thread.
    """
    walk = kit.before_store is None
    if walk and len(tee.prefix) <= _INLINE_WALK_MAX:
        walked = _walked_or_none(tee.prefix, tee.complete_in_prefix, key, size, threshold, tee.scanner)
        if walked is not None:
            return walked
        walk = False  # it declined: pydicom decides, without walking again
    parse = partial(_record_from, with_dataset=not walk)
    try:
        return await _PARSERS.run(
            partial(parse, tee.prefix, tee.complete_in_prefix, key, size, threshold, tee.scanner)
        )
    except HeaderIncomplete:
        pass
    if tee.complete_in_prefix:  # pragma: no cover - parse_header with complete=True never asks for more
        raise _cannot_understand("the file ends inside its header")
    # A header longer than the kept prefix (rare: huge private or overlay data before the
    # pixels): read the stored blob back, once.
    whole = bytearray()
    async for chunk in kit.blobs.get(key):
        whole += chunk
    return await _PARSERS.run(partial(parse, whole, True, key, size, threshold, None))


def _walked_or_none(
    prefix: bytearray, complete: bool, key: str, size: int, threshold: int, scanner: PixelScanner | None
) -> tuple[InstanceRecord, Part10Header] | None:
    try:
        return _walked_record(prefix, complete, key, size, threshold, scanner)
    except Exception:  # a walker bug must not fail an upload: pydicom's path decides instead
        log.warning("header walk failed for blob %s; parsing with pydicom", key, exc_info=True)
        return None


def _record_from(
    prefix: bytearray,
    complete: bool,
    key: str,
    size: int,
    threshold: int,
    scanner: PixelScanner | None,
    *,
    with_dataset: bool = True,
) -> tuple[InstanceRecord, Part10Header]:
    """``prefix`` is the whole file when ``scanner`` is ``None``.

    With ``with_dataset=False`` (nothing will look at ``Part10Header.dataset``: no before-store
    hook) the header is walked without pydicom where :mod:`~dicomweb_kit.codecs.header_walk` can,
    for the same record at a fraction of the cost; the returned header's data set is then empty.
    """
    if not with_dataset:
        walked = _walked_or_none(prefix, complete, key, size, threshold, scanner)
        if walked is not None:
            return walked
    try:
        header = parse_header(prefix, complete=complete)
    except NotPart10 as exc:
        raise _cannot_understand(str(exc)) from exc
    layout = layout_of(scanner, header, size=size) if scanner is not None else layout_from_bytes(prefix, header)
    # No layout (a scan that started at a false sighting, deflated data): the frames service
    # computes it from the blob when a frame is first asked for.
    return _make_record(header, key, size, threshold, layout), header


def _cannot_understand(message: str) -> InstanceRejected:
    return InstanceRejected(message, failure_reason=status_codes.CANNOT_UNDERSTAND)


def _make_record(
    header: Part10Header, key: str, size: int, bulk_data_threshold: int, layout: PixelLayout | None = None
) -> InstanceRecord:
    ds = header.dataset
    sop_class = _required_uid(ds, "SOPClassUID", None)
    sop_instance = _required_uid(ds, "SOPInstanceUID", sop_class)
    meta_class = ds.file_meta.get("MediaStorageSOPClassUID")
    if meta_class and str(meta_class) != sop_class:
        raise InstanceRejected(
            f"SOP Class UID {sop_class} differs from Media Storage SOP Class UID {meta_class} (PS3.10 §7.1)",
            failure_reason=status_codes.DATASET_DOES_NOT_MATCH_SOP_CLASS,
            sop_class_uid=sop_class,
            sop_instance_uid=sop_instance,
        )
    study = _required_uid(ds, "StudyInstanceUID", sop_class, sop_instance)
    series = _required_uid(ds, "SeriesInstanceUID", sop_class, sop_instance)
    uids = _InstanceUids(sop_class, sop_instance, study, series)
    base = uids.base()
    try:
        attributes = dicom_json.dataset_to_json_dict(
            ds,
            bulk_data_uri=lambda path: f"{base}/bulkdata/{path}",
            bulk_data_threshold=bulk_data_threshold,
        )
    except Exception as exc:
        raise InstanceRejected(
            f"cannot encode the header as DICOM JSON: {type(exc).__name__}: {exc}",
            failure_reason=status_codes.CANNOT_UNDERSTAND,
            sop_class_uid=sop_class,
            sop_instance_uid=sop_instance,
        ) from exc
    return _instance_record(
        uids,
        attributes,
        transfer_syntax_uid=header.transfer_syntax_uid,
        pixel_data_vr=header.pixel_data_vr,
        key=key,
        size=size,
        layout=layout,
    )


class _InstanceUids(NamedTuple):
    """The UIDs an instance is stored under, validated."""

    sop_class: str
    sop_instance: str
    study: str
    series: str

    def base(self) -> str:
        """The instance's path, which its BulkDataURIs start with."""
        return ResourceKey(self.study, self.series, self.sop_instance).path()


def _instance_record(
    uids: _InstanceUids,
    attributes: dict[str, Any],
    *,
    transfer_syntax_uid: str,
    pixel_data_vr: str | None,
    key: str,
    size: int,
    layout: PixelLayout | None,
) -> InstanceRecord:
    """The record of an instance whose header became ``attributes`` (either path)."""
    if pixel_data_vr is not None:
        base = uids.base()
        # PS3.18 §F.2.7: Pixel Data is bulk data; its URI is the instance's frames resource's
        # sibling, served by the bulkdata route.
        attributes["7FE00010"] = {"vr": pixel_data_vr, "BulkDataURI": f"{base}/bulkdata/7FE00010"}
    return InstanceRecord(
        study_uid=uids.study,
        series_uid=uids.series,
        instance_uid=uids.sop_instance,
        sop_class_uid=uids.sop_class,
        transfer_syntax_uid=transfer_syntax_uid,
        blob_key=key,
        size=size,
        metadata=msgspec.Raw(dicom_json.encode(attributes)),
        attributes=attributes,
        pixel_layout=layout,
    )


def _walked_record(
    prefix: bytearray, complete: bool, key: str, size: int, threshold: int, scanner: PixelScanner | None
) -> tuple[InstanceRecord, Part10Header] | None:
    """:func:`_record_from` without pydicom (and without a data set), or ``None`` where the walk
    declines or the instance would be rejected: the pydicom path then says why."""
    walked = walk_header(prefix, complete=complete, bulk_data_threshold=threshold)
    if walked is None:
        return None
    uids = _walked_uids(walked)
    if uids is None:
        return None
    base = uids.base()
    walked.resolve_bulk_data_uris(lambda path: f"{base}/bulkdata/{path}")
    inputs = LayoutInputs(
        transfer_syntax_uid=walked.transfer_syntax_uid,
        pixel_data_vr=walked.pixel_data_vr,
        header_length=walked.header_length,
        implicit_vr=walked.implicit_vr,
        big_endian=False,
        number_of_frames=walked.number_of_frames,
        extended_offsets=walked.extended_offsets,
    )
    layout = layout_of(scanner, inputs, size=size) if scanner is not None else layout_from_bytes(prefix, inputs)
    record = _instance_record(
        uids,
        walked.attributes,
        transfer_syntax_uid=walked.transfer_syntax_uid,
        pixel_data_vr=walked.pixel_data_vr,
        key=key,
        size=size,
        layout=layout,
    )
    # No data set: the caller said it will not look (see _record_from).
    header = Part10Header(Dataset(), walked.transfer_syntax_uid, walked.pixel_data_vr, walked.header_length)
    return record, header


# SOP Class, SOP Instance, Study Instance and Series Instance UIDs, as _InstanceUids orders them.
_UID_KEYS = ("00080016", "00080018", "0020000D", "0020000E")


def _walked_uids(walked: WalkedHeader) -> _InstanceUids | None:
    """The four UIDs, if each is valid and the SOP Class matches the file meta's (PS3.10 §7.1)."""
    try:
        uids = _InstanceUids(*(validate_uid(walked.uid(tag) or "") for tag in _UID_KEYS))
    except ValueError:
        return None
    meta_class = walked.media_storage_sop_class_uid
    return None if meta_class and meta_class != uids.sop_class else uids


def _required_uid(ds: Dataset, keyword: str, sop_class: str | None, sop_instance: str | None = None) -> str:
    return required_uid(ds.get(keyword), keyword, sop_class, sop_instance)


def required_uid(value: Any, keyword: str, sop_class: str | None, sop_instance: str | None = None) -> str:
    """``value`` as a UID the instance cannot be stored without, else rejected with Failure
    Reason 0xA900 (PS3.18 Table I.2-2) naming the attribute and, when known, the instance."""
    try:
        return validate_uid(str(value or ""), name=keyword)
    except ValueError as exc:
        why = "is missing" if not value else f"is not a valid UID: {str(value)[:70]!r}"
        raise InstanceRejected(
            f"{keyword} {why}",
            failure_reason=status_codes.DATASET_DOES_NOT_MATCH_SOP_CLASS,
            sop_class_uid=sop_class,
            sop_instance_uid=sop_instance,
        ) from exc
