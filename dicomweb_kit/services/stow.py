"""STOW-RS: the Studies Store transaction (PS3.18 §10.5)."""

from __future__ import annotations

import logging
import weakref
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator
from typing import TYPE_CHECKING, Any

import anyio
import msgspec

from .. import status_codes
from ..codecs.multipart import MultipartLimits, parse_media_type, read_multipart
from ..errors import DicomWebError, InstanceRejected, MalformedMultipart, PayloadTooLarge, UnsupportedMediaType
from ..resources import ResourceKey
from .ingest import PreparedInstance, StoredInstance, commit_instances, prepare_instance

if TYPE_CHECKING:
    from ..kit import DicomWeb
    from ..settings import Settings

__all__ = ["StoreOutcome", "store_instances"]

log = logging.getLogger("dicomweb_kit.stow")

_DICOM = "application/dicom"
_REQUEST_TYPES = frozenset({_DICOM, "application/dicom+json", "application/dicom+xml"})
# Instances added to the index per transaction: one commit (and one fsync of the database) for
# many instances, while a long body still becomes visible in steps.
_GROUP_COMMIT = 32
# Parts whose blob write and header parse may still run while later parts are read: receiving,
# writing and parsing overlap, and memory stays bounded to this many parts' buffers.
_IN_FLIGHT = 4
# The bound is per kit, not per request: with many concurrent uploads each gets less overlap, and
# the worker threads are not swamped (16 preparations at once measured 15% slower than 4).
_SLOTS: weakref.WeakKeyDictionary[DicomWeb, anyio.Semaphore] = weakref.WeakKeyDictionary()


def _slots(kit: DicomWeb) -> anyio.Semaphore:
    slots = _SLOTS.get(kit)
    if slots is None:
        slots = _SLOTS[kit] = anyio.Semaphore(_IN_FLIGHT)
    return slots


class _Slot:
    """One part's preparation, running beside the reading of the following parts."""

    __slots__ = ("body_error", "consumed", "done", "prepared", "rejected")

    def __init__(self) -> None:
        self.consumed = anyio.Event()  # its bytes are all read (or it gave up reading them)
        self.done = anyio.Event()
        self.prepared: PreparedInstance | None = None
        self.rejected: InstanceRejected | None = None
        # The body itself broke inside this part, or the store failed: the request fails.
        self.body_error: Exception | None = None


async def _prepare(
    kit: DicomWeb,
    chunks: AsyncIterable[bytes | memoryview],
    expected_study: str | None,
    slot: _Slot,
    window: anyio.Semaphore,
) -> None:
    async def watched() -> AsyncIterator[bytes | memoryview]:
        try:
            async for chunk in chunks:
                yield chunk
        except Exception as exc:
            slot.body_error = exc
            raise
        finally:
            slot.consumed.set()

    try:
        slot.prepared = await prepare_instance(kit, watched(), expected_study=expected_study)
    except InstanceRejected as rejected:
        if slot.body_error is None:
            log.info("STOW-RS instance rejected: %s", rejected.message)
            slot.rejected = rejected
    except PayloadTooLarge as too_large:
        if slot.body_error is None:  # max_part_bytes: this part only; the reader skips its rest
            slot.rejected = InstanceRejected(too_large.message, failure_reason=status_codes.OUT_OF_RESOURCES)
    except Exception as exc:
        # Raised by the host task after the task group, so it is never wrapped in an ExceptionGroup.
        if slot.body_error is None:  # e.g. the blob store is unavailable: the request fails
            slot.body_error = exc
    finally:
        slot.consumed.set()
        slot.done.set()
        window.release()


class StoreOutcome(msgspec.Struct):
    """The result of one STOW-RS request, before it is rendered."""

    stored: list[StoredInstance] = msgspec.field(default_factory=list)
    failed: list[InstanceRejected] = msgspec.field(default_factory=list)
    # Set when the body broke off after some instances were stored: they stay stored and the
    # response says what happened in a Warning header.
    body_error: str | None = None

    @property
    def http_status(self) -> int:
        """PS3.18 §10.5.3: 200 all stored, 202 some failed (or a warning), 409 none stored."""
        if not self.stored:
            return 409
        if self.failed or self.body_error or any(s.warning_reason is not None for s in self.stored):
            return 202
        return 200

    def response_dataset(self, service_url: str, study: str | None) -> dict[str, Any]:
        """The Store Instances Response Module (PS3.18 §10.5.3.1, Table 10.5.3-1) as DICOM JSON."""
        studies = {s.record.study_uid for s in self.stored}
        target = study or (next(iter(studies)) if len(studies) == 1 else None)
        response: dict[str, Any] = {
            # Type 2: empty when the stored instances span several studies.
            "00081190": {"vr": "UR", "Value": [f"{service_url}/studies/{target}"]} if target else {"vr": "UR"},
        }
        if self.failed:
            response["00081198"] = {"vr": "SQ", "Value": [_failed_item(f) for f in self.failed]}
        if self.stored:
            response["00081199"] = {"vr": "SQ", "Value": [_stored_item(s, service_url) for s in self.stored]}
        return response


def _failed_item(failure: InstanceRejected) -> dict[str, Any]:
    item: dict[str, Any] = {
        "00081150": _ui(failure.sop_class_uid),
        "00081155": _ui(failure.sop_instance_uid),
        "00081197": {"vr": "US", "Value": [failure.failure_reason]},
    }
    if failure.message:
        # Why, in words (e.g. a before-store hook's reason): Error Comment (0000,0902, LO) in a
        # Failed Attributes Sequence (0074,1048) item, as Microsoft's STOW-RS response has it;
        # PS3.18 §10.5.3 lets the response describe failures beyond the Failure Reason.
        comment = "".join(c if c.isprintable() and c != "\\" else " " for c in failure.message)[:64].strip()
        item["00741048"] = {"vr": "SQ", "Value": [{"00000902": {"vr": "LO", "Value": [comment]}}]}
    return item


def _stored_item(stored: StoredInstance, service_url: str) -> dict[str, Any]:
    record = stored.record
    item = {
        "00081150": _ui(record.sop_class_uid),
        "00081155": _ui(record.instance_uid),
        "00081190": {"vr": "UR", "Value": [f"{service_url}/{record.key.path()}"]},
    }
    if stored.warning_reason is not None:
        item["00081196"] = {"vr": "US", "Value": [stored.warning_reason]}
    return item


def _ui(value: str | None) -> dict[str, Any]:
    return {"vr": "UI", "Value": [value]} if value else {"vr": "UI"}


async def commit_into(kit: DicomWeb, pending: list[PreparedInstance], outcome: StoreOutcome) -> None:
    """Commit the prepared instances of ``pending`` as one group and record each outcome.

    ``pending`` is emptied first: a failed commit has deleted those blobs, so an error path that
    commits what is left must not commit them again.
    """
    batch = pending[:]
    pending.clear()
    for result in await commit_instances(kit, batch):
        if isinstance(result, InstanceRejected):
            outcome.failed.append(result)
        else:
            outcome.stored.append(result)


def multipart_limits(settings: Settings) -> MultipartLimits:
    """The request limits of ``settings`` for the STOW-RS body reader."""
    return MultipartLimits(
        max_header_bytes=settings.max_part_header_bytes,
        max_parts=settings.max_parts,
        max_body_bytes=settings.max_request_bytes,
    )


def check_request_type(content_type: str | None) -> str:
    """Validate the request's Content-Type (PS3.18 §10.5.1.2); return the multipart boundary."""
    if not content_type:
        raise UnsupportedMediaType('a STOW-RS request needs Content-Type: multipart/related; type="application/dicom"')
    media_type, params = parse_media_type(content_type)
    if media_type != "multipart/related":
        raise UnsupportedMediaType(
            f'STOW-RS accepts multipart/related; type="application/dicom", not {media_type or content_type!r}'
        )
    part_type = params.get("type", _DICOM).lower()
    if part_type.split(";")[0].strip() not in _REQUEST_TYPES:
        # PS3.18 §10.5.1.2: Part 10 instances, or metadata (JSON, XML) + bulk data.
        raise UnsupportedMediaType(
            'STOW-RS accepts type="application/dicom", "application/dicom+json" or "application/dicom+xml"'
            f" parts, not {part_type!r}"
        )
    boundary = params.get("boundary")
    if not boundary:
        raise MalformedMultipart("the multipart/related Content-Type has no boundary parameter")
    return boundary


async def store_instances(
    kit: DicomWeb,
    body: AsyncIterable[bytes],
    content_type: str | None,
    /,
    *,
    study: ResourceKey | None = None,
) -> StoreOutcome:
    """Store every instance of a multipart/related body, one part at a time.

    Each part is streamed to the blob store and validated on its own: a bad part is reported in
    FailedSOPSequence and the others are stored. Valid parts are added to the index in groups
    (one transaction per group). A body that breaks before any part was stored raises (400, 413,
    408); after, the stored instances are kept and reported.
    """
    boundary = check_request_type(content_type)
    root_type = parse_media_type(content_type or "")[1].get("type", _DICOM).split(";")[0].strip().lower()
    if root_type != _DICOM:
        from .stow_metadata import store_metadata_instances  # it builds on this module's StoreOutcome

        return await store_metadata_instances(kit, body, boundary, root_type, study=study)
    settings = kit.settings
    limits = multipart_limits(settings)
    expected_study = study.study if study is not None else None
    outcome = StoreOutcome()
    pending: list[PreparedInstance] = []
    in_flight: deque[_Slot] = deque()
    window = _slots(kit)
    error: Exception | None = None  # the body (or the store) failed: raised after the tasks end

    async def commit() -> None:
        await commit_into(kit, pending, outcome)

    async def collect(*, wait: bool) -> None:
        """Move finished preparations to ``pending`` in body order; commit full groups."""
        nonlocal error
        while in_flight and (wait or in_flight[0].done.is_set()):
            slot = in_flight.popleft()
            await slot.done.wait()
            if slot.body_error is not None:
                error = error or slot.body_error
            elif slot.prepared is not None:
                pending.append(slot.prepared)
            elif slot.rejected is not None:
                outcome.failed.append(slot.rejected)
            if len(pending) >= _GROUP_COMMIT:
                await commit()

    try:
        async with anyio.create_task_group() as tasks:
            try:
                async for part in read_multipart(body, boundary, limits=limits):
                    part_type = (part.content_type or _DICOM).split(";")[0].strip().lower()
                    if part_type != _DICOM:
                        outcome.failed.append(
                            InstanceRejected(
                                f"a part of type {part_type!r} is not an application/dicom instance",
                                failure_reason=status_codes.CANNOT_UNDERSTAND,
                            )
                        )
                        continue  # the reader drains the unread part
                    await window.acquire()
                    slot = _Slot()
                    in_flight.append(slot)
                    tasks.start_soon(_prepare, kit, part.chunks(), expected_study, slot, window)
                    # The next part can be read once this one's bytes are all handed over; its
                    # blob write and header parse go on meanwhile, in worker threads.
                    await slot.consumed.wait()
                    if slot.body_error is not None:
                        break
                    await collect(wait=False)
            except DicomWebError as exc:  # raised by the reader itself, between parts
                error = exc
            finally:
                with anyio.CancelScope(shield=True):
                    await collect(wait=True)
        if error is not None:
            raise error  # outside the task group, so it is not wrapped in an ExceptionGroup
        await commit()
    except DicomWebError as exc:
        # The body broke off (malformed, over the body limit, stalled). Instances prepared before
        # it are committed: each is whole. Without any stored, the error is the answer.
        await commit()
        if not outcome.stored:
            raise
        outcome.body_error = exc.message
        outcome.failed.append(InstanceRejected(exc.message, failure_reason=status_codes.CANNOT_UNDERSTAND))
    return outcome
