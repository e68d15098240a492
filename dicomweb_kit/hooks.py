"""Ingest hooks: the host's say before an instance is stored, and its reaction after.

* **before-store** (``DicomWeb(before_store=...)``): an async callable given each instance's
  header (:class:`IncomingInstance`) after its bytes are written and parsed, before the index
  commit. It returns ``None`` to accept, :class:`Reject` to refuse (the instance is reported in
  the Failed SOP Sequence with the hook's Failure Reason, PS3.18 §10.5.3 / Table I.2-2), or
  :class:`Coerce` to change attributes (e.g. fix Issuer of Patient ID): the stored instance and
  its index record both carry the new values, and the response reports Warning Reason 0xB000
  "Coercion of data elements" (PS3.18 Table I.2-1). A hook that raises rejects the instance
  with 0x0110 Processing failure (the exception is logged).
* **after-store** (``DicomWeb(after_store=...)``): an async callable given the records each
  commit stored (e.g. to start an AI pipeline). It runs in the background, in a task group the
  kit's lifespan owns, at most ``after_store_concurrency`` at once: the STOW-RS response never
  waits for it, errors are logged and never raised. At shutdown pending calls get
  :data:`DRAIN_SECONDS` to finish, then are cancelled.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.tag import Tag

from . import status_codes
from .errors import ConfigurationError
from .index import InstanceRecord
from .tenancy import acting_for, current_tenant

__all__ = [
    "DRAIN_SECONDS",
    "AfterStore",
    "AfterStoreRunner",
    "BeforeStore",
    "Coerce",
    "IncomingInstance",
    "Reject",
    "apply_coercion",
]

log = logging.getLogger("dicomweb_kit.hooks")

DRAIN_SECONDS: Final = 10.0


@dataclass(frozen=True)
class IncomingInstance:
    """What a before-store hook sees of one instance.

    Attributes:
        dataset: the header (every element before Pixel Data; file meta in ``dataset.file_meta``).
            A private copy: changing it changes nothing; return :class:`Coerce` instead.
        record: the index record the instance would get (UIDs, DICOM JSON ``attributes``).
    """

    dataset: Dataset
    record: InstanceRecord


@dataclass(frozen=True)
class Reject:
    """Refuse the instance: it is reported in the Failed SOP Sequence (0008,1198).

    Attributes:
        message: why (logged, and the ``InstanceRejected`` message of the Python API).
        failure_reason: Failure Reason (0008,1197), PS3.18 Table I.2-2 (default 0x0110
            Processing failure; 0xA900 and 0xC000 are the other usual ones).
    """

    message: str
    failure_reason: int = status_codes.PROCESSING_FAILURE


@dataclass(frozen=True)
class Coerce:
    """Change attributes before the instance is stored (Warning Reason 0xB000).

    Attributes:
        attributes: keyword (``"IssuerOfPatientID"``) or tag (``0x00100021``) to the new value,
            as pydicom takes it; ``None`` removes the element. File meta (group 0002) and Pixel
            Data cannot be coerced.
    """

    attributes: Mapping[str | int, Any] = field(default_factory=dict)


BeforeStore = Callable[[IncomingInstance], Awaitable[Reject | Coerce | None]]
AfterStore = Callable[[Sequence[InstanceRecord]], Awaitable[None]]


def apply_coercion(dataset: Dataset, coerce: Coerce, /) -> None:
    """Apply ``coerce`` to ``dataset`` in place. Raises ``ValueError`` for an unknown keyword or a
    forbidden element."""
    for name, value in coerce.attributes.items():
        number = tag_for_keyword(name) if isinstance(name, str) else name
        if number is None:
            raise ValueError(f"{name!r} is not a DICOM keyword")
        tag = Tag(number)
        if tag.group == 0x0002 or tag.group == 0x7FE0 or tag.group == 0xFFFE:
            raise ValueError(f"{keyword_for_tag(tag) or tag} cannot be coerced by a hook")
        if value is None:
            if tag in dataset:
                del dataset[tag]
        elif tag in dataset:
            dataset[tag].value = value
        else:
            try:
                vr = dictionary_VR(tag)
            except KeyError as exc:
                raise ValueError(f"{tag} is not in the data dictionary; coerce it only where present") from exc
            dataset.add_new(tag, vr.split(" or ")[0], value)
    if "SOPInstanceUID" in dataset and "MediaStorageSOPInstanceUID" in dataset.file_meta:
        # PS3.10 §7.1: the file meta names the instance it holds.
        dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID


_Call = tuple[str | None, Sequence[InstanceRecord]]  # (tenant, records) of one queued hook call


class AfterStoreRunner:
    """Runs the after-store hook in the background of the kit's lifespan, bounded.

    Args:
        hook: the host's after-store callable.
        concurrency: calls running at once.
        backlog: calls waiting at most; past it a call is dropped with an error in the log
            (a stuck hook must not make the server hold records without bound).
    """

    def __init__(self, hook: AfterStore, *, concurrency: int = 4, backlog: int = 10_000) -> None:
        if concurrency < 1 or backlog < 0:
            raise ConfigurationError("after_store_concurrency must be at least 1")
        self._hook = hook
        self._concurrency = concurrency
        self._backlog = backlog
        self._send: MemoryObjectSendStream[_Call] | None = None
        self._group: TaskGroup | None = None
        self._done = anyio.Event()

    async def start(self) -> None:
        """Start the workers (the kit calls it on entering its lifespan, in the lifespan's task)."""
        send, receive = anyio.create_memory_object_stream[_Call](self._backlog)
        self._done = anyio.Event()
        group = anyio.create_task_group()
        await group.__aenter__()
        group.start_soon(self._supervise, receive)
        self._send, self._group = send, group

    async def stop(self) -> None:
        """Let queued calls finish (at most :data:`DRAIN_SECONDS`), then cancel the rest."""
        send, group = self._send, self._group
        self._send = self._group = None
        if send is None or group is None:
            return
        send.close()  # the workers finish what is queued, then end
        with anyio.move_on_after(DRAIN_SECONDS) as waited:
            await self._done.wait()
        if waited.cancelled_caught:
            log.warning("after-store hook calls still running at shutdown were cancelled")
            group.cancel_scope.cancel()
        await group.__aexit__(None, None, None)

    def for_tenant(self, tenant: str, /) -> AfterStoreRunner:
        """This runner for a tenant's kit: its calls run with ``current_tenant() == tenant``."""
        return _TenantAfterStore(self, tenant)

    def submit(self, records: Sequence[InstanceRecord], /, *, tenant: str | None = None) -> None:
        """Queue one call with ``records``, run for ``tenant`` (default: the current one); never waits."""
        if not records:
            return
        if self._send is None:
            log.error("after-store hook not run for %d instances: the kit's lifespan is not running", len(records))
            return
        try:
            self._send.send_nowait((tenant or current_tenant(), list(records)))
        except anyio.WouldBlock:
            log.error("after-store hook backlog full (%d calls): %d instances skipped", self._backlog, len(records))

    async def _supervise(self, receive: MemoryObjectReceiveStream[_Call]) -> None:
        try:
            async with receive, anyio.create_task_group() as workers:
                for _ in range(self._concurrency):
                    workers.start_soon(self._work, receive.clone())
        finally:
            self._done.set()

    async def _work(self, receive: MemoryObjectReceiveStream[_Call]) -> None:
        async with receive:
            async for tenant, records in receive:
                try:
                    with acting_for(tenant):
                        await self._hook(records)
                except Exception:
                    log.exception("after-store hook failed for %d instances", len(records))


class _TenantAfterStore(AfterStoreRunner):
    """A tenant kit's handle on the root kit's runner (which the root's lifespan starts and stops)."""

    def __init__(self, runner: AfterStoreRunner, tenant: str) -> None:  # no super(): shares the root's
        self._runner = runner
        self._tenant = tenant

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    def submit(self, records: Sequence[InstanceRecord], /, *, tenant: str | None = None) -> None:
        self._runner.submit(records, tenant=tenant or self._tenant)
