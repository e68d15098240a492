"""The kit's Python API: the DICOMweb operations as async methods, for the host's own code.

:class:`~dicomweb_kit.DicomWeb` inherits :class:`DicomWebApi`, so a host that embeds the kit
stores, searches and retrieves without HTTP::

    async with DicomWeb(blobs=MemoryBlobStore(), index=MemoryIndex()) as kit:
        stored = await kit.store(dataset)                    # pydicom Dataset, Part 10 bytes or a stream
        studies = await kit.search_studies(PatientID="P1", limit=10)
        data = await kit.retrieve_instance(stored.record.key)

Each method is a thin layer over the service the HTTP handler of the same resource calls
(``dicomweb_kit/services``, :mod:`dicomweb_kit.ups.service`), so both answer alike: the same
query model and validation, the same ingest path and hooks, the same errors
(:mod:`dicomweb_kit.errors`: ``InvalidQuery``, ``ResourceNotFound``, ``InstanceRejected``,
``WorkitemRefused``...). Results are msgspec Structs or DICOM JSON objects (PS3.18 Annex F).

The API is the host's own: it is not gated by ``Settings.allow_delete`` (which gates the HTTP
route). URLs in results (RetrieveURL, BulkDataURI) are relative to the service root unless a
``base_url`` is given.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping, Sequence
from datetime import date
from typing import TYPE_CHECKING, Any, Final, Literal, NamedTuple, cast

import anyio
import msgspec
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from . import status_codes
from .codecs import dicom_json
from .codecs.transcode import transcode, unproducible_reason
from .errors import InstanceRejected, InvalidRequest, NotAcceptable, PayloadTooLarge, ResourceNotFound
from .index import InstanceRecord
from .pixels.description import PixelDescription
from .pixels.params import parse_render_params
from .pixels.render import RenderParams
from .pixels.viewport import Viewport
from .pixels.window import Window
from .query.qido_params import parse_qido
from .query.return_keys import result_attributes
from .query.terms import Query
from .resources import Level, ResourceKey
from .services import delete as delete_service
from .services import frames as frame_service
from .services import pixeldata, rendered, wado
from .services.ingest import PreparedInstance, StoredInstance, commit_instances, prepare_instance
from .services.qido import SearchResult
from .services.stow import StoreOutcome, commit_into
from .ups import service as ups
from .ups.store import Workitem, WorkitemPage

if TYPE_CHECKING:
    from .kit import DicomWeb

__all__ = [
    "DicomWebApi",
    "Frames",
    "Instance",
    "MatchValue",
    "RenderedImage",
    "RetrievedInstance",
    "SearchResult",
    "StoreOutcome",
    "StoredInstance",
]

#: What :meth:`DicomWebApi.store` takes: a pydicom Dataset (written as Part 10 with its file
#: meta), Part 10 bytes, or an async stream of Part 10 bytes (never held whole in memory).
Instance = Dataset | bytes | bytearray | memoryview | AsyncIterable[bytes]
#: A match key's value: QIDO-RS syntax as a string (``"DOE^*"``, ``"20240101-20241231"``), a
#: number, a date, or several UIDs (List of UID Matching, PS3.4 §C.2.2.2.2).
MatchValue = str | int | float | date | Sequence[str]

_CHUNK: Final = 1 << 20
# Instances added to the index per transaction by store_all (as STOW-RS does).
_GROUP_COMMIT: Final = 32


class RetrievedInstance(msgspec.Struct, frozen=True):
    """One instance of a scope: its index record and its Part 10 bytes."""

    record: InstanceRecord
    data: bytes


class Frames(msgspec.Struct, frozen=True):
    """Frames of one instance, in the order asked for.

    Attributes:
        transfer_syntax_uid: the syntax the frame bytes are in (native frames: Explicit VR
            Little Endian, i.e. little endian pixels as PS3.18 §8.7.3.3.2 sends them).
        frames: one ``bytes`` per frame.
        description: the Image Pixel Module values needed to decode them.
    """

    transfer_syntax_uid: str
    frames: list[bytes]
    description: PixelDescription


class RenderedImage(msgspec.Struct, frozen=True):
    """A rendered resource (PS3.18 §10.4.1.1.3-4): its media type and bytes."""

    media_type: str
    data: bytes


class DicomWebApi:
    """The in-process operations of :class:`~dicomweb_kit.DicomWeb` (mixed into it)."""

    @property
    def _kit(self) -> DicomWeb:
        return cast("DicomWeb", self)

    # STOW ------------------------------------------------------------------------------------

    async def store(self, instance: Instance, /, *, study: str | None = None) -> StoredInstance:
        """Store one instance, through the same ingest path (and hooks) as STOW-RS::

            stored = await kit.store(ds)
            stored.record.key            # ResourceKey(study=..., series=..., instance=...)

        Args:
            instance: a pydicom Dataset, Part 10 bytes, or an async iterable of Part 10 chunks.
            study: the target study (``POST /studies/{study}``): another study is rejected.

        Raises:
            InstanceRejected: not stored; ``failure_reason`` is the PS3.18 Table I.2-2 code.
            PayloadTooLarge: the instance is larger than ``Settings.max_part_bytes``.
        """
        prepared = await prepare_instance(self._kit, await _chunks(instance), expected_study=study)
        [result] = await commit_instances(self._kit, [prepared])
        if isinstance(result, InstanceRejected):
            raise result
        return result

    async def store_all(
        self, instances: Iterable[Instance] | AsyncIterable[Instance], /, *, study: str | None = None
    ) -> StoreOutcome:
        """Store many instances, committed to the index in groups as STOW-RS does; a rejected
        one is reported in ``failed`` and the others are stored::

            outcome = await kit.store_all([ds1, ds2])
            len(outcome.stored), [f.failure_reason for f in outcome.failed]
        """
        kit = self._kit
        outcome = StoreOutcome()
        pending: list[PreparedInstance] = []

        async def commit() -> None:
            await commit_into(kit, pending, outcome)

        try:
            async for instance in _each(instances):
                try:
                    pending.append(await prepare_instance(kit, await _chunks(instance), expected_study=study))
                except InstanceRejected as rejected:
                    outcome.failed.append(rejected)
                except PayloadTooLarge as too_large:
                    reason = status_codes.OUT_OF_RESOURCES
                    outcome.failed.append(InstanceRejected(too_large.message, failure_reason=reason))
                if len(pending) >= _GROUP_COMMIT:
                    await commit()
        except BaseException:
            # The source or the store failed: the instances prepared so far are whole, so they
            # are committed (as STOW-RS does when a body breaks off), and the error propagates.
            with anyio.CancelScope(shield=True):
                await commit()
            raise
        await commit()
        return outcome

    # QIDO ------------------------------------------------------------------------------------

    async def search_studies(
        self,
        query: Query | None = None,
        /,
        *,
        limit: int | None = None,
        offset: int = 0,
        includefield: Iterable[str] | Literal["all"] = (),
        orderby: Iterable[str] = (),
        fuzzy: bool = False,
        base_url: str = "",
        **match_keys: MatchValue,
    ) -> SearchResult:
        """QIDO-RS Search for Studies (PS3.18 §10.6) with match keys as keyword arguments::

            page = await kit.search_studies(PatientName="DOE^*", StudyDate="20240101-", limit=20)
            for study in page.results:           # DICOM JSON objects
                study["0020000D"]["Value"][0]
            page.has_more                        # more rows after this page

        Match keys are keywords or 8-hex-digit tags, dotted for sequences, with the values and
        rules of the HTTP query (:mod:`dicomweb_kit.query.qido_params`); or pass a prebuilt
        :class:`~dicomweb_kit.Query` instead. ``limit`` defaults to and is capped at the
        settings' QIDO limits.

        Raises:
            InvalidQuery: a match key or value is not valid.
        """
        options = _Options(limit, offset, includefield, orderby, fuzzy)
        return await self._search(Level.STUDY, ResourceKey(), query, options, match_keys, base_url)

    async def search_series(
        self,
        query: Query | None = None,
        /,
        *,
        study: str | None = None,
        limit: int | None = None,
        offset: int = 0,
        includefield: Iterable[str] | Literal["all"] = (),
        orderby: Iterable[str] = (),
        fuzzy: bool = False,
        base_url: str = "",
        **match_keys: MatchValue,
    ) -> SearchResult:
        """QIDO-RS Search for Series, of all studies or of ``study``::

            page = await kit.search_series(study=study_uid, Modality="CT")
        """
        scope = ResourceKey.parse(study)
        options = _Options(limit, offset, includefield, orderby, fuzzy)
        return await self._search(Level.SERIES, scope, query, options, match_keys, base_url)

    async def search_instances(
        self,
        query: Query | None = None,
        /,
        *,
        study: str | None = None,
        series: str | None = None,
        limit: int | None = None,
        offset: int = 0,
        includefield: Iterable[str] | Literal["all"] = (),
        orderby: Iterable[str] = (),
        fuzzy: bool = False,
        base_url: str = "",
        **match_keys: MatchValue,
    ) -> SearchResult:
        """QIDO-RS Search for Instances, of all studies, of ``study``, or of ``study``/``series``::

            page = await kit.search_instances(study=s, series=t, orderby=["InstanceNumber"])
        """
        if series is not None and study is None:
            raise InvalidRequest("search_instances: a series is searched within its study (pass study=)")
        scope = ResourceKey.parse(study, series)
        options = _Options(limit, offset, includefield, orderby, fuzzy)
        return await self._search(Level.INSTANCE, scope, query, options, match_keys, base_url)

    async def search(self, query: Query, /, *, base_url: str = "") -> SearchResult:
        """Run a prebuilt :class:`~dicomweb_kit.Query` (its level and scope say what is searched)."""
        settings = self._kit.settings
        limit = settings.qido_default_limit if query.limit is None else query.limit
        query = msgspec.structs.replace(query, limit=min(limit, settings.qido_max_limit))
        page = await self._kit.index.search(query)
        results = [result_attributes(row, query, retrieve_url=_url(base_url, row.key)) for row in page.rows]
        return SearchResult(results, page.has_more, query.not_performed)

    async def _search(
        self,
        level: Level,
        scope: ResourceKey,
        query: Query | None,
        options: _Options,
        match_keys: Mapping[str, MatchValue],
        base_url: str,
    ) -> SearchResult:
        if query is not None:
            if match_keys:
                raise InvalidRequest("pass either a Query or match keys, not both")
            return await self.search(query, base_url=base_url)
        settings = self._kit.settings
        parsed = parse_qido(
            _params(options, match_keys),
            level,
            scope,
            max_terms=settings.max_query_terms,
            default_limit=settings.qido_default_limit,
            max_limit=settings.qido_max_limit,
        )
        return await self.search(parsed, base_url=base_url)

    # WADO ------------------------------------------------------------------------------------

    async def open_instance(self, key: ResourceKey, /) -> AsyncIterator[bytes]:
        """The stored Part 10 bytes of instance ``key``, streamed as the blob store reads them::

            async for chunk in await kit.open_instance(key):
                out.write(chunk)

        Raises:
            ResourceNotFound: no such instance.
        """
        record = await _record(self._kit, key)
        return self._kit.blobs.get(record.blob_key)

    async def retrieve_instance(self, key: ResourceKey, /, *, transfer_syntax: str | None = None) -> bytes:
        """The Part 10 bytes of instance ``key``: as stored, or transcoded to ``transfer_syntax``
        with the codecs and rules of WADO-RS (PS3.18 §8.7.3.5: never to Implicit VR or Big Endian)::

            data = await kit.retrieve_instance(stored.record.key)
            ds = pydicom.dcmread(io.BytesIO(data))

        Raises:
            ResourceNotFound: no such instance.
            NotAcceptable: it cannot be sent in ``transfer_syntax`` (the reason is in the message).
        """
        kit = self._kit
        record = await _record(kit, key)
        stored = record.transfer_syntax_uid
        if transfer_syntax is None or transfer_syntax == stored:
            return b"".join([bytes(chunk) async for chunk in kit.blobs.get(record.blob_key)])
        reason = unproducible_reason(stored, PixelDescription.from_attributes(record.attributes), transfer_syntax)
        if reason is not None:
            raise NotAcceptable(f"instance {key.instance} cannot be sent in {transfer_syntax}: {reason}")
        data = b"".join([bytes(chunk) async for chunk in kit.blobs.get(record.blob_key)])
        try:
            return await anyio.to_thread.run_sync(transcode, data, transfer_syntax)
        except ValueError as exc:  # the codecs refused these pixels after all
            raise NotAcceptable(f"instance {key.instance} cannot be sent in {transfer_syntax}: {exc}") from exc

    async def retrieve(self, scope: ResourceKey, /) -> AsyncIterator[RetrievedInstance]:
        """Every instance of a study, series (or one instance), one at a time as stored::

            async for instance in await kit.retrieve(ResourceKey(study_uid)):
                instance.record.key, len(instance.data)

        Memory holds one instance at a time.

        Raises:
            ResourceNotFound: nothing is stored under ``scope``.
        """
        kit = self._kit
        await wado.require_summary(kit, scope)

        async def instances() -> AsyncIterator[RetrievedInstance]:
            async for record in kit.index.records(scope):
                data = b"".join([bytes(chunk) async for chunk in kit.blobs.get(record.blob_key)])
                yield RetrievedInstance(record, data)

        return instances()

    async def metadata(self, scope: ResourceKey, /, *, base_url: str = "") -> list[dict[str, Any]]:
        """WADO-RS metadata (PS3.18 §10.4.1.1.2): the DICOM JSON of every instance under ``scope``::

            [instance] = await kit.metadata(stored.record.key)
            instance["00100010"]                 # {"vr": "PN", "Value": [{"Alphabetic": ...}]}

        Bulk data (Pixel Data...) is a BulkDataURI under ``base_url``.

        Raises:
            ResourceNotFound: nothing is stored under ``scope``.
        """
        kit = self._kit
        await wado.require_summary(kit, scope)
        body = b"".join([chunk async for chunk in wado.metadata_json(kit, scope, base_url.rstrip("/"))])
        return cast("list[dict[str, Any]]", dicom_json.decode(body))

    async def frames(
        self, key: ResourceKey, numbers: Sequence[int], /, *, transfer_syntax: str | None = None
    ) -> Frames:
        """Frames ``numbers`` (1-based) of instance ``key`` (PS3.18 §10.4.1.1.6), read by byte
        range from the blob; in their stored syntax, or converted to ``transfer_syntax``::

            frames = await kit.frames(key, [1, 3])
            frames.frames[0]                     # bytes of frame 1

        Raises:
            ResourceNotFound: no such instance, no pixel data, or no such frame.
            NotAcceptable: the frames cannot be converted to ``transfer_syntax``.
        """
        kit = self._kit
        stored = await frame_service.read_frames(kit, key, numbers)
        source = stored.source
        target = transfer_syntax or source.transfer_syntax_uid
        native = pixeldata.is_native(target) and pixeldata.is_native(source.transfer_syntax_uid)
        if not native and target not in pixeldata.source_syntaxes(source):
            raise NotAcceptable(
                f"the frames of instance {key.instance} (stored as {source.record.transfer_syntax_uid})"
                f" cannot be converted to {target}"
            )
        data = [await pixeldata.frame_bytes(kit, source, number, target) for number in numbers]
        return Frames(target, data, stored.description)

    async def rendered(
        self,
        key: ResourceKey,
        /,
        *,
        frames: Sequence[int] | None = None,
        media_type: str = "image/jpeg",
        window: Window | tuple[float, float] | None = None,
        viewport: Viewport | tuple[int, int] | None = None,
        quality: int | None = None,
    ) -> RenderedImage:
        """An instance (or some of its frames) rendered for display (PS3.18 §10.4.1.1.3)::

            image = await kit.rendered(key, media_type="image/png", window=(40, 400), viewport=(256, 256))

        ``window`` is center and width (linear VOI LUT function) or a
        :class:`~dicomweb_kit.pixels.window.Window`; ``viewport`` width and height or a
        :class:`~dicomweb_kit.pixels.viewport.Viewport`. Encapsulated PDF and SR instances render
        as ``application/pdf`` and ``text/html`` (ask for that ``media_type``).

        Raises:
            ResourceNotFound: no such instance or frame.
            NotAcceptable: it cannot be rendered as ``media_type``.
        """
        kit = self._kit
        params = _render_params(window, viewport, quality)
        if frames is None:
            result = await rendered.render_instance(kit, key, params, media_type)
        else:
            frame_list = ",".join(str(number) for number in frames)
            result = await rendered.render_frames(kit, key, frame_list, params, media_type)
        return await _rendered_image(result)

    async def thumbnail(
        self,
        scope: ResourceKey,
        /,
        *,
        media_type: str = "image/jpeg",
        viewport: Viewport | tuple[int, int] | None = None,
    ) -> RenderedImage:
        """The thumbnail of a study, series or instance (PS3.18 §10.4.1.1.4), cached as over HTTP."""
        params = _render_params(None, viewport, None, thumbnail=True)
        return await _rendered_image(await rendered.thumbnail(self._kit, scope, params.viewport, media_type))

    async def delete(self, scope: ResourceKey, /) -> int:
        """Remove every instance under ``scope`` (recorded in the change feed); how many.

        Raises:
            ResourceNotFound: nothing is stored under ``scope``.
        """
        return await delete_service.delete_resource(self._kit, scope)

    # UPS -------------------------------------------------------------------------------------

    async def create_workitem(
        self, attributes: Mapping[str, Any] | Dataset, /, *, uid: str | None = None
    ) -> ups.Result:
        """Create Workitem (PS3.18 §11.4): DICOM JSON or a pydicom Dataset, stored SCHEDULED::

            created = await kit.create_workitem(make_workitem(label="Lung AI"))
            created.workitem.uid

        Raises:
            InvalidRequest: the dataset misses what PS3.4 Table CC.2.5-3 requires (all named).
            WorkitemRefused: a workitem with that UID exists.
        """
        return await ups.create(self._kit, _json(attributes), uid=uid)

    async def retrieve_workitem(self, uid: str, /) -> Workitem:
        """Retrieve Workitem (PS3.18 §11.5); ``transaction_uid`` stays the performer's secret
        over HTTP but is on the returned :class:`~dicomweb_kit.Workitem` for the host."""
        return await ups.retrieve(self._kit, uid)

    async def search_workitems(
        self,
        query: Query | None = None,
        /,
        *,
        limit: int | None = None,
        offset: int = 0,
        orderby: Iterable[str] = (),
        fuzzy: bool = False,
        **match_keys: MatchValue,
    ) -> WorkitemPage:
        """Search for Workitems (PS3.18 §11.9) with QIDO-RS match keys::

            page = await kit.search_workitems(ProcedureStepState="SCHEDULED", limit=10)
        """
        if query is None:
            settings = self._kit.settings
            options = _Options(limit, offset, (), orderby, fuzzy)
            query = parse_qido(
                _params(options, match_keys),
                Level.INSTANCE,  # not used: workitems are one flat list
                ResourceKey(),
                max_terms=settings.max_query_terms,
                default_limit=settings.qido_default_limit,
                max_limit=settings.qido_max_limit,
            )
        elif match_keys:
            raise InvalidRequest("pass either a Query or match keys, not both")
        return await ups.search(self._kit, query)

    async def update_workitem(
        self, uid: str, changes: Mapping[str, Any] | Dataset, /, *, transaction_uid: str | None = None
    ) -> ups.Result:
        """Update Workitem (PS3.18 §11.6); an IN PROGRESS one needs the ``transaction_uid`` it was claimed with."""
        return await ups.update(self._kit, uid, _json(changes), transaction_uid=transaction_uid)

    async def claim_workitem(self, uid: str, /, *, transaction_uid: str | None = None) -> ups.Result:
        """Change a SCHEDULED workitem to IN PROGRESS, locked by ``transaction_uid`` (a new UID when
        not given; it is on ``result.workitem.transaction_uid``)::

            claimed = await kit.claim_workitem(uid)
            lock = claimed.workitem.transaction_uid

        Raises:
            WorkitemRefused: it is not SCHEDULED (C302 when another performer claimed it first).
        """
        return await ups.change_state(self._kit, uid, "IN PROGRESS", transaction_uid=transaction_uid or generate_uid())

    async def change_workitem_state(
        self, uid: str, state: Literal["IN PROGRESS", "COMPLETED", "CANCELED"], /, *, transaction_uid: str | None
    ) -> ups.Result:
        """Change Workitem State (PS3.18 §11.7) with the claim's ``transaction_uid``::

            await kit.change_workitem_state(uid, "COMPLETED", transaction_uid=lock)

        Raises:
            WorkitemRefused: the table of PS3.4 §CC.1.1 refuses it (wrong UID, final state
                requirements not met: C304 naming what is missing).
        """
        return await ups.change_state(self._kit, uid, state, transaction_uid=transaction_uid)

    async def request_workitem_cancellation(
        self, uid: str, /, reason: Mapping[str, Any] | Dataset | None = None
    ) -> ups.Result:
        """Request Cancellation (PS3.18 §11.8): a SCHEDULED workitem is canceled at once, an IN
        PROGRESS one is left to its performer (who is told by a UPS Cancel Requested event)."""
        return await ups.request_cancellation(self._kit, uid, None if reason is None else _json(reason))


# Helpers ---------------------------------------------------------------------------------------


async def _record(kit: DicomWeb, key: ResourceKey) -> InstanceRecord:
    if key.instance is None:
        raise InvalidRequest(f"{key} is not an instance key (it names no SOP Instance UID)")
    record = await kit.index.get(key)
    if record is None:
        raise ResourceNotFound(f"no instance {key} is stored here")
    return record


def _url(base_url: str, key: ResourceKey) -> str:
    return f"{base_url.rstrip('/')}/{key.path()}" if base_url else key.path()


class _Options(NamedTuple):
    """The QIDO-RS parameters that are not match keys."""

    limit: int | None
    offset: int
    includefield: Iterable[str] | Literal["all"]
    orderby: Iterable[str]
    fuzzy: bool


def _params(options: _Options, match_keys: Mapping[str, MatchValue]) -> list[tuple[str, str]]:
    """The QIDO-RS query parameters the keyword arguments stand for, parsed as HTTP's are."""
    params = [(name, _match_value(value)) for name, value in match_keys.items()]
    if options.limit is not None:
        params.append(("limit", str(options.limit)))
    if options.offset:
        params.append(("offset", str(options.offset)))
    if options.fuzzy:
        params.append(("fuzzymatching", "true"))
    fields = options.includefield
    params += [("includefield", "all")] if fields == "all" else [("includefield", field) for field in fields]
    params += [("orderby", key) for key in options.orderby]
    return params


def _match_value(value: MatchValue) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, date):
        return value.strftime("%Y%m%d")
    if isinstance(value, int | float):
        return str(value)
    return ",".join(value)  # List of UID Matching (PS3.18 §8.3.4.1: comma separated)


def _json(attributes: Mapping[str, Any] | Dataset) -> Mapping[str, Any]:
    if isinstance(attributes, Dataset):
        return dicom_json.dataset_to_json_dict(attributes)
    return attributes


async def _chunks(instance: Instance) -> AsyncIterable[bytes]:
    if isinstance(instance, Dataset):
        instance = await anyio.to_thread.run_sync(_part10, instance)
    if isinstance(instance, bytes | bytearray | memoryview):
        return _sliced(memoryview(instance))
    given: object = instance  # untyped callers pass anything
    if not isinstance(given, AsyncIterable):
        kind = type(given).__name__
        raise TypeError(f"store() takes a pydicom Dataset, Part 10 bytes or an async byte stream, not {kind}")
    return instance


def _part10(ds: Dataset) -> bytes:
    out = io.BytesIO()
    meta = getattr(ds, "file_meta", None)
    if (meta is None or "TransferSyntaxUID" not in meta) and ds.original_encoding == (None, None):
        # Built in memory, it names no encoding: write it in Explicit VR Little Endian, which
        # every receiver accepts (PS3.5 §10.1), from a shallow copy so the caller's is unchanged.
        ds = Dataset(ds)
        ds.file_meta = FileMetaDataset(meta or {})
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    try:
        ds.save_as(out, enforce_file_format=True)
    except (ValueError, AttributeError) as exc:  # pydicom: no file meta it can build, bad values
        raise InstanceRejected(
            f"the dataset cannot be written as a Part 10 file: {exc}", failure_reason=status_codes.CANNOT_UNDERSTAND
        ) from exc
    return out.getvalue()


async def _sliced(data: memoryview) -> AsyncIterator[bytes]:
    for start in range(0, len(data), _CHUNK):
        yield bytes(data[start : start + _CHUNK])


async def _each(instances: Iterable[Instance] | AsyncIterable[Instance]) -> AsyncIterator[Instance]:
    if isinstance(instances, AsyncIterable) and not isinstance(instances, Dataset):
        async for instance in instances:
            yield instance
    else:
        for instance in cast("Iterable[Instance]", instances):
            yield instance


def _render_params(
    window: Window | tuple[float, float] | None,
    viewport: Viewport | tuple[int, int] | None,
    quality: int | None,
    *,
    thumbnail: bool = False,
) -> RenderParams:
    """The parameters checked as the HTTP query's are (PS3.18 §8.3.5.1): written in its syntax
    and parsed by the same parser, so both refuse the same values with the same message."""
    items: list[tuple[str, str]] = []
    if window is not None:
        if isinstance(window, tuple):
            window = Window(float(window[0]), float(window[1]))
        function = window.function.lower().replace("_", "-")
        items.append(("window", f"{window.center!r},{window.width!r},{function}"))
    if viewport is not None:
        if isinstance(viewport, tuple):
            viewport = Viewport(int(viewport[0]), int(viewport[1]))
        text = f"{viewport.width},{viewport.height}"
        if (viewport.sx, viewport.sy, viewport.sw, viewport.sh) != (0, 0, None, None):
            source = (viewport.sx, viewport.sy, viewport.sw, viewport.sh)
            text += "," + ",".join("" if value is None else str(value) for value in source)
        items.append(("viewport", text))
    if quality is not None:
        items.append(("quality", str(quality)))
    return parse_render_params(items, thumbnail=thumbnail)


async def _rendered_image(result: rendered.Rendered) -> RenderedImage:
    if result.data is not None:
        return RenderedImage(result.media_type, result.data)
    return RenderedImage(result.media_type, b"".join([bytes(chunk) async for chunk in result.chunks]))
