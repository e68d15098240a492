"""WADO-RS rendered resources and thumbnails (PS3.18 §10.4.1.1.3, §10.4.1.1.4).

* Instance: a single-frame image in image/jpeg (default), image/png, image/gif or image/jp2; a
  multi-frame image as an animated image/gif (default), video/mp4 or video/mpeg, or as
  multipart/related of single-frame images; an Encapsulated PDF as application/pdf; a Structured
  Report as text/html (default), text/plain or text/xml (PS3.18 Table 8.7.4-1 categories).
* Frames: one frame as a single-frame image; several as for a multi-frame instance.
* Study and series: multipart/related of the rendered image instances, one part per frame
  (or one animated image/gif per multi-frame instance), streamed one instance at a time.
  Instances without pixels have no part in an image multipart and are left out.
* Thumbnail (one image, no annotations: PS3.18 §10.4.3.3.4 forbids patient information):
  instance and frame as above (a multi-frame instance shows its middle frame); a series shows
  its middle instance by Instance Number; a study shows that of its series with the lowest
  Series Number. Thumbnails are cached in ``kit.render_cache`` under a key holding the scope's
  version, so a changed scope is never answered from a stale entry.
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import anyio
import msgspec
import pydicom
from pydicom.dataset import Dataset

from ..codecs.multipart import multipart_content_type, new_boundary, write_multipart
from ..codecs.structured_report import SR_MEDIA_TYPES, is_structured_report, render_report
from ..errors import InvalidRequest, NotAcceptable, PayloadTooLarge, ResourceNotFound
from ..index import InstanceRecord
from ..media_types import Offer, negotiate
from ..pixels.encode import image_media_types, video_media_types
from ..pixels.render import RenderParams
from ..pixels.viewport import Viewport
from ..resources import ResourceKey
from .frames import check_frame_numbers, parse_frame_list
from .rendering import InstanceImages, frame_count, no_rendering

if TYPE_CHECKING:
    from ..kit import DicomWeb

__all__ = [
    "Rendered",
    "render_frames",
    "render_instance",
    "render_scope",
    "thumbnail",
]

log = logging.getLogger("dicomweb_kit.rendered")

_PDF = "application/pdf"
_ENCAPSULATED_PDF_STORAGE = "1.2.840.10008.5.1.4.1.1.104.1"
_MULTIPART = "multipart/related"



class Rendered(NamedTuple):
    """A rendered response: its Content-Type and body."""

    media_type: str
    chunks: AsyncIterator[bytes | memoryview]
    length: int | None = None
    #: The whole body, when it is one image already in memory (sent in one write).
    data: bytes | None = None


def _one(data: bytes, media_type: str) -> Rendered:
    return Rendered(media_type, _chunks(data), len(data), data)


# ------------------------------------------------------------------------------------------ kinds


def _is_pdf(record: InstanceRecord) -> bool:
    mime = record.attributes.get("00420012", {}).get("Value") or [""]
    return record.sop_class_uid == _ENCAPSULATED_PDF_STORAGE or str(mime[0]).strip().lower() == _PDF


def _image_offers(frames: int) -> list[Offer]:
    """PS3.18 Table 8.7.4-1: single frame image or multi-frame image media types."""
    if frames == 1:
        return [Offer(t) for t in image_media_types()]
    return [
        Offer("image/gif"),
        *(Offer(t) for t in video_media_types()),
        *(Offer(_MULTIPART, part_type=t) for t in image_media_types()),
    ]


def _frame_parts(
    images: InstanceImages, numbers: Sequence[int], params: RenderParams, part_type: str
) -> AsyncIterator[tuple[dict[str, str], AsyncIterator[bytes]]]:
    async def parts() -> AsyncIterator[tuple[dict[str, str], AsyncIterator[bytes]]]:
        for number in numbers:
            data = await images.encode(number, params, part_type)
            yield {"Content-Type": part_type}, _chunks(data)

    return parts()


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _read_blob(kit: DicomWeb, record: InstanceRecord, *, limit: int) -> bytes:
    """A whole (small) instance: Encapsulated PDF and SR documents, at most ``limit`` bytes (413)."""
    if record.size > limit:
        raise PayloadTooLarge(
            f"instance {record.instance_uid} is {record.size} bytes, more than the {limit} bytes"
            " a rendered document may have (Settings.max_rendered_document_bytes)"
        )
    data = bytearray()
    async for chunk in kit.blobs.get(record.blob_key):
        data += chunk
        if len(data) > limit:
            raise PayloadTooLarge(f"instance {record.instance_uid} is larger than {limit} bytes")
    return bytes(data)


def _read_dataset(data: bytes) -> Dataset:
    try:
        return pydicom.dcmread(io.BytesIO(data))
    except Exception as exc:  # pydicom raises many kinds on corrupt data
        raise NotAcceptable(f"the stored instance cannot be read to render it: {type(exc).__name__}: {exc}") from exc


# -------------------------------------------------------------------------------------- resources


async def _record(kit: DicomWeb, key: ResourceKey) -> InstanceRecord:
    record = await kit.index.get(key)
    if record is None:
        raise ResourceNotFound(f"no instance {key} is stored here")
    return record


async def render_instance(
    kit: DicomWeb, key: ResourceKey, params: RenderParams, accept: str | None, /, *, accept_param: str | None = None
) -> Rendered:
    """The rendered instance ``key`` (PS3.18 §10.4.1.1.3)."""
    record = await _record(kit, key)
    if is_structured_report(record.sop_class_uid):
        choice = negotiate(accept, [Offer(t) for t in SR_MEDIA_TYPES], accept_param=accept_param)
        data = await _read_blob(kit, record, limit=kit.settings.max_rendered_document_bytes)
        ds = await anyio.to_thread.run_sync(_read_dataset, data)
        media_type = choice.offer.media_type
        text = await anyio.to_thread.run_sync(render_report, ds, media_type)
        return _one(text, f"{media_type}; charset=utf-8")
    if _is_pdf(record):
        negotiate(accept, [Offer(_PDF)], accept_param=accept_param)
        return _one(await _pdf(kit, record), _PDF)
    if not frame_count(record):
        raise no_rendering(record)
    return await _render_image_frames(kit, record, None, params, accept, accept_param)


async def render_frames(
    kit: DicomWeb,
    key: ResourceKey,
    frame_list: str,
    params: RenderParams,
    accept: str | None,
    /,
    *,
    accept_param: str | None = None,
) -> Rendered:
    """The rendered frames ``frame_list`` of instance ``key`` (PS3.18 §10.4.1.1.3)."""
    numbers = parse_frame_list(frame_list)
    record = await _record(kit, key)
    if not frame_count(record):
        raise no_rendering(record)
    return await _render_image_frames(kit, record, numbers, params, accept, accept_param)


async def _render_image_frames(
    kit: DicomWeb,
    record: InstanceRecord,
    numbers: list[int] | None,
    params: RenderParams,
    accept: str | None,
    accept_param: str | None,
) -> Rendered:
    """``numbers`` (``None``: every frame) of an image instance, in the negotiated media type."""
    images = InstanceImages(kit, record)
    pixels = await images.pixels()
    if numbers is None:
        numbers = list(range(1, pixels.count + 1))
    check_frame_numbers(numbers, pixels.count, record.key)
    try:
        choice = negotiate(accept, _image_offers(len(numbers)), accept_param=accept_param)
    except NotAcceptable as exc:
        wanted = f"{accept or ''} {accept_param or ''}".lower()
        if "video/" in wanted and not video_media_types():
            hint = "Video needs the 'video' extra (PyAV): pip install 'dicomweb-kit[video]'"
            raise NotAcceptable(f"{exc.message}. {hint}") from exc
        raise
    offer = choice.offer
    if offer.media_type == _MULTIPART:
        assert offer.part_type is not None
        boundary = new_boundary()
        body = write_multipart(_frame_parts(images, numbers, params, offer.part_type), boundary)
        return Rendered(multipart_content_type(offer.part_type, boundary), body)
    if len(numbers) == 1:
        return _one(await images.encode(numbers[0], params, offer.media_type), offer.media_type)
    return _one(await images.encode_animation(numbers, params, offer.media_type), offer.media_type)


async def _pdf(kit: DicomWeb, record: InstanceRecord) -> bytes:
    data = await _read_blob(kit, record, limit=kit.settings.max_rendered_document_bytes)
    ds = await anyio.to_thread.run_sync(_read_dataset, data)
    document = ds.get("EncapsulatedDocument")
    if not document:
        raise no_rendering(record)  # a PDF MIME type without the document
    # PS3.3 §C.24.2: the value is padded to even length; Encapsulated Document Length (0042,0015)
    # gives the document's own length when present.
    length = ds.get("EncapsulatedDocumentLength")
    return bytes(document[: int(length)] if length else document)


async def render_scope(
    kit: DicomWeb, scope: ResourceKey, params: RenderParams, accept: str | None, /, *, accept_param: str | None = None
) -> Rendered:
    """A rendered study or series: multipart/related of its rendered image instances (PS3.18
    §10.4.1.1.3), one instance in memory at a time.

    An instance that cannot be rendered (no pixels, a codec we lack, a source region outside it)
    is left out. The first part is rendered before the response starts, so a scope with nothing
    to show answers with that error (406 or 400) rather than an empty multipart body.
    """
    summary = await kit.index.summary(scope)
    if summary is None:
        raise ResourceNotFound(f"no {scope.level} {scope} is stored here")
    offers = [Offer(_MULTIPART, part_type=t) for t in image_media_types()]
    part_type = negotiate(accept, offers, accept_param=accept_param).offer.part_type
    assert part_type is not None
    boundary = new_boundary()

    failure: list[NotAcceptable | InvalidRequest] = []

    async def parts() -> AsyncIterator[tuple[dict[str, str], AsyncIterator[bytes]]]:
        async for record in kit.index.records(scope):
            if not frame_count(record) or is_structured_report(record.sop_class_uid) or _is_pdf(record):
                continue
            images = InstanceImages(kit, record)
            try:
                numbers = list(range(1, await images.count() + 1))
                if part_type == "image/gif" and len(numbers) > 1:
                    data = await images.encode_animation(numbers, params, part_type)
                    yield {"Content-Type": part_type}, _chunks(data)
                    continue
                async for part in _frame_parts(images, numbers, params, part_type):
                    yield part
            except (NotAcceptable, InvalidRequest) as exc:
                log.warning("rendered %s: instance %s left out: %s", scope, record.instance_uid, exc)
                failure[:] = [exc]

    generator = parts()
    first = await anext(generator, None)
    if first is None:
        raise failure[0] if failure else NotAcceptable(f"{scope.level} {scope} has no image instance to render")

    async def all_parts() -> AsyncIterator[tuple[dict[str, str], AsyncIterator[bytes]]]:
        assert first is not None
        yield first
        async for part in generator:
            yield part

    return Rendered(multipart_content_type(part_type, boundary), write_multipart(all_parts(), boundary))


# -------------------------------------------------------------------------------------- thumbnail


class _Pick(msgspec.Struct, frozen=True, order=True):
    series_number: float
    instance_number: float
    order: int
    key: ResourceKey


def _number(attributes: dict[str, Any], tag: str) -> float:
    values = attributes.get(tag, {}).get("Value")
    try:
        return float(values[0]) if values else float("inf")
    except (TypeError, ValueError):
        return float("inf")


async def _representative(kit: DicomWeb, scope: ResourceKey) -> InstanceRecord:
    """The middle image instance (by Instance Number) of the series with the lowest Series
    Number under ``scope``; ties and missing numbers go by index order."""
    picks: list[_Pick] = []
    async for record in kit.index.records(scope):
        if frame_count(record):
            attributes = record.attributes
            picks.append(
                _Pick(_number(attributes, "00200011"), _number(attributes, "00200013"), len(picks), record.key)
            )
    if not picks:
        raise NotAcceptable(f"{scope.level} {scope} has no image instance to show as a thumbnail")
    first_series = min(picks).key.series
    in_series = sorted(pick for pick in picks if pick.key.series == first_series)
    return await _record(kit, in_series[(len(in_series) - 1) // 2].key)


async def thumbnail(
    kit: DicomWeb,
    scope: ResourceKey,
    viewport: Viewport | None,
    accept: str | None,
    /,
    *,
    frame_list: str | None = None,
    accept_param: str | None = None,
) -> Rendered:
    """The thumbnail of a study, series, instance or frame (PS3.18 §10.4.1.1.4): one image."""
    summary = await kit.index.summary(scope)
    if summary is None:
        raise ResourceNotFound(f"no {scope.level} {scope} is stored here")
    media_type = negotiate(accept, [Offer(t) for t in image_media_types()], accept_param=accept_param).offer.media_type
    size = kit.settings.thumbnail_size
    viewport = viewport or Viewport(size, size)
    fields = f"{scope}|{summary.version}|{frame_list}|{viewport.width}x{viewport.height}|{media_type}"
    cache_key = "thumbnail/" + hashlib.blake2s(fields.encode(), digest_size=16).hexdigest()
    cached = await kit.render_cache.get(cache_key)
    if cached is not None:
        return _one(cached, media_type)
    record = await (_record(kit, scope) if scope.instance is not None else _representative(kit, scope))
    if not frame_count(record):
        raise no_rendering(record)
    images = InstanceImages(kit, record)
    count = await images.count()
    number = parse_frame_list(frame_list)[0] if frame_list is not None else (count + 1) // 2
    data = await images.encode(number, RenderParams(viewport=viewport), media_type)
    await kit.render_cache.put(cache_key, data)
    return _one(data, media_type)
