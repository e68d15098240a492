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

import functools
import hashlib
import io
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

import anyio
import msgspec
import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.pixels.processing import apply_modality_lut

from ..codecs.multipart import multipart_content_type, new_boundary, write_multipart
from ..codecs.pixel_codecs import decode_frame
from ..codecs.structured_report import SR_MEDIA_TYPES, is_structured_report, render_report
from ..errors import InvalidRequest, NotAcceptable, PayloadTooLarge, ResourceNotFound, StorageUnavailable
from ..index import InstanceRecord
from ..media_types import Offer, negotiate
from ..pixels.description import PixelDescription
from ..pixels.encode import encode_frames, encode_image, image_media_types, video_media_types
from ..pixels.render import RenderParams, render_image, voi_window
from ..pixels.viewport import Viewport
from ..pixels.window import min_max_window
from ..resources import ResourceKey
from .frames import PixelSource, check_frame_numbers, parse_frame_list, pixel_source, read_header, read_span

if TYPE_CHECKING:
    from ..kit import DicomWeb

__all__ = [
    "MAX_ANIMATION_BYTES",
    "Rendered",
    "frame_rate",
    "render_frames",
    "render_instance",
    "render_scope",
    "thumbnail",
]

log = logging.getLogger("dicomweb_kit.rendered")

_PDF = "application/pdf"
_ENCAPSULATED_PDF_STORAGE = "1.2.840.10008.5.1.4.1.1.104.1"
_MULTIPART = "multipart/related"
_T = TypeVar("_T")

#: The most bytes of rendered 8-bit frames an animated image/gif or a video holds before encoding.
MAX_ANIMATION_BYTES = 512 << 20


class Rendered(NamedTuple):
    """A rendered response: its Content-Type and body."""

    media_type: str
    chunks: AsyncIterator[bytes | memoryview]
    length: int | None = None


def _one(data: bytes, media_type: str) -> Rendered:
    async def body() -> AsyncIterator[bytes]:
        yield data

    return Rendered(media_type, body(), len(data))


# ------------------------------------------------------------------------------------------ kinds


def _is_pdf(record: InstanceRecord) -> bool:
    mime = record.attributes.get("00420012", {}).get("Value") or [""]
    return record.sop_class_uid == _ENCAPSULATED_PDF_STORAGE or str(mime[0]).strip().lower() == _PDF


def _frames_of(record: InstanceRecord) -> int:
    """Number of frames of an image instance; 0 when it has no pixels to render."""
    description = PixelDescription.from_attributes(record.attributes)
    return 0 if description is None else description.number_of_frames


def _image_offers(frames: int) -> list[Offer]:
    """PS3.18 Table 8.7.4-1: single frame image or multi-frame image media types."""
    if frames == 1:
        return [Offer(t) for t in image_media_types()]
    return [
        Offer("image/gif"),
        *(Offer(t) for t in video_media_types()),
        *(Offer(_MULTIPART, part_type=t) for t in image_media_types()),
    ]


def _no_rendering(record: InstanceRecord) -> NotAcceptable:
    return NotAcceptable(
        f"instance {record.instance_uid} (SOP Class {record.sop_class_uid}) has no rendered representation"
    )


# ----------------------------------------------------------------------------------------- pixels


class _Source:
    """The header and decoded frames of one image instance.

    Each frame is a ranged read of the blob (``services.frames``) decoded by
    ``pixel_codecs.decode_frame``; the header is one more ranged read (it holds the LUT data,
    which the record's DICOM JSON may keep only as a BulkDataURI). The blob is never read whole.
    """

    def __init__(self, kit: DicomWeb, record: InstanceRecord) -> None:
        self.kit = kit
        self.record = record
        self._pixels: PixelSource | None = None
        self._header: Dataset | None = None

    async def pixels(self) -> PixelSource:
        """The located pixel data (frame count, description, where each frame is)."""
        if self._pixels is None:
            try:
                source = await pixel_source(self.kit, self.record)
            except ResourceNotFound as exc:  # the record exists: its pixels cannot be read
                raise NotAcceptable(f"instance {self.record.instance_uid} cannot be rendered: {exc}") from exc
            if source is None or source.description is None:
                raise _no_rendering(self.record)
            self._pixels = source
        return self._pixels

    async def header(self) -> Dataset:
        if self._header is None:
            header, _ = await read_header(self.kit, self.record)
            self._header = header.dataset
        return self._header

    async def frame(self, number: int) -> np.ndarray:
        """Frame ``number`` (1-based), decoded with YBR turned into RGB as pydicom's ``pixel_array`` does."""
        pixels = await self.pixels()
        check_frame_numbers([number], pixels.count, self.record.key)
        data = await read_span(self.kit, pixels, pixels.span(number))
        assert pixels.description is not None  # checked in pixels()
        return await anyio.to_thread.run_sync(_load_frame, data, pixels.description, pixels.transfer_syntax_uid)


def _load_frame(data: bytes, description: PixelDescription, transfer_syntax_uid: str) -> np.ndarray:
    """Decode one frame; the single decoding entry point (the thumbnail cache tests count calls)."""
    try:
        return decode_frame(data, description, transfer_syntax_uid, as_rgb=True)
    except Exception as exc:  # pydicom raises many kinds on data it cannot decode
        raise NotAcceptable(f"the pixel data cannot be decoded here: {type(exc).__name__}: {exc}") from exc


def _read_header(data: bytes) -> Dataset:
    return pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)


async def _read_blob(kit: DicomWeb, record: InstanceRecord, *, limit: int | None) -> bytes:
    if limit is not None and record.size > limit:
        raise PayloadTooLarge(
            f"instance {record.instance_uid} is {record.size} bytes, more than the {limit} bytes"
            " a rendered document may have (Settings.max_rendered_document_bytes)"
        )
    data = bytearray()
    async for chunk in kit.blobs.get(record.blob_key):
        data += chunk
        if limit is not None and len(data) > limit:
            raise PayloadTooLarge(f"instance {record.instance_uid} is larger than {limit} bytes")
    return bytes(data)


def _decoded_photometric(ds: Dataset) -> str:
    """What pydicom's decoders hand back: YBR_FULL and YBR_FULL_422 as RGB (``as_rgb=True``)."""
    photometric = str(ds.get("PhotometricInterpretation") or "MONOCHROME2").strip().upper()
    return "RGB" if photometric.startswith("YBR") else photometric


def frame_rate(ds: Dataset, /) -> float:
    """Frames per second for video and animations: Cine Rate (0018,0040), Recommended Display
    Frame Rate (0008,2144), or 1000 / Frame Time (0018,1063); 10 when none is usable."""
    for keyword in ("CineRate", "RecommendedDisplayFrameRate"):
        value = ds.get(keyword)
        if value and 0 < float(value) <= 1000:
            return float(value)
    frame_time = ds.get("FrameTime")
    if frame_time and 1 <= float(frame_time) <= 60_000:
        return 1000.0 / float(frame_time)
    return 10.0


async def _render(source: _Source, number: int, params: RenderParams) -> Image.Image:
    ds = await source.header()
    frame = await source.frame(number)
    work = functools.partial(
        render_image, frame, ds, params, photometric=_decoded_photometric(ds), frame_index=number - 1
    )
    return await _in_thread(work)


async def _in_thread(work: Callable[[], _T]) -> _T:
    try:
        return await anyio.to_thread.run_sync(work)
    except ValueError as exc:  # a region outside the image, an unrenderable shape
        raise InvalidRequest(str(exc)) from exc


async def _encode_one(source: _Source, number: int, params: RenderParams, media_type: str) -> bytes:
    image = await _render(source, number, params)
    return await _in_thread(functools.partial(encode_image, image, media_type, quality=params.quality))


async def _encode_many(source: _Source, numbers: Sequence[int], params: RenderParams, media_type: str) -> bytes:
    # An animation or video is encoded whole: the rendered 8-bit frames are held until then.
    ds = await source.header()
    if params.window is None and voi_window(ds) is None and "VOILUTSequence" not in ds:
        # Without a VOI of its own, every frame takes the first frame's range: a per-frame
        # min/max would make a cine loop flicker.
        first = await source.frame(numbers[0])
        if first.ndim == 2:
            params = msgspec.structs.replace(params, window=min_max_window(apply_modality_lut(first, ds)))
    images: list[Image.Image] = []
    held = 0
    for number in numbers:
        image = await _render(source, number, params)
        held += image.width * image.height * len(image.getbands())
        if held > MAX_ANIMATION_BYTES:
            raise PayloadTooLarge(
                f"{len(numbers)} rendered frames would take more than {MAX_ANIMATION_BYTES >> 20} MiB to encode;"
                " ask for fewer frames (frames/{list}/rendered) or smaller ones (viewport)"
            )
        images.append(image)
    rate = frame_rate(ds)
    work = functools.partial(encode_frames, images, media_type, frame_rate=rate, quality=params.quality)
    return await _in_thread(work)


def _frame_parts(
    source: _Source, numbers: Sequence[int], params: RenderParams, part_type: str
) -> AsyncIterator[tuple[dict[str, str], AsyncIterator[bytes]]]:
    async def parts() -> AsyncIterator[tuple[dict[str, str], AsyncIterator[bytes]]]:
        for number in numbers:
            data = await _encode_one(source, number, params, part_type)
            yield {"Content-Type": part_type}, _chunks(data)

    return parts()


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


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
        ds = await anyio.to_thread.run_sync(_read_header, data)
        media_type = choice.offer.media_type
        text = await anyio.to_thread.run_sync(render_report, ds, media_type)
        return _one(text, f"{media_type}; charset=utf-8")
    if _is_pdf(record):
        negotiate(accept, [Offer(_PDF)], accept_param=accept_param)
        return _one(await _pdf(kit, record), _PDF)
    if not _frames_of(record):
        raise _no_rendering(record)
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
    if not _frames_of(record):
        raise _no_rendering(record)
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
    source = _Source(kit, record)
    pixels = await source.pixels()
    if numbers is None:
        numbers = list(range(1, pixels.count + 1))
    check_frame_numbers(numbers, pixels.count, record.key)
    choice = negotiate(accept, _image_offers(len(numbers)), accept_param=accept_param)
    offer = choice.offer
    if offer.media_type == _MULTIPART:
        assert offer.part_type is not None
        boundary = new_boundary()
        body = write_multipart(_frame_parts(source, numbers, params, offer.part_type), boundary)
        return Rendered(multipart_content_type(offer.part_type, boundary), body)
    if len(numbers) == 1:
        return _one(await _encode_one(source, numbers[0], params, offer.media_type), offer.media_type)
    return _one(await _encode_many(source, numbers, params, offer.media_type), offer.media_type)


async def _pdf(kit: DicomWeb, record: InstanceRecord) -> bytes:
    data = await _read_blob(kit, record, limit=kit.settings.max_rendered_document_bytes)
    ds = await anyio.to_thread.run_sync(lambda: pydicom.dcmread(io.BytesIO(data)))
    document = ds.get("EncapsulatedDocument")
    if not document:
        raise StorageUnavailable(f"instance {record.instance_uid} has no Encapsulated Document (0042,0011)")
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
            if not _frames_of(record) or is_structured_report(record.sop_class_uid) or _is_pdf(record):
                continue
            source = _Source(kit, record)
            try:
                numbers = list(range(1, (await source.pixels()).count + 1))
                if part_type == "image/gif" and len(numbers) > 1:
                    data = await _encode_many(source, numbers, params, part_type)
                    yield {"Content-Type": part_type}, _chunks(data)
                    continue
                async for part in _frame_parts(source, numbers, params, part_type):
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
        if _frames_of(record):
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
    if not _frames_of(record):
        raise _no_rendering(record)
    source = _Source(kit, record)
    count = (await source.pixels()).count
    number = parse_frame_list(frame_list)[0] if frame_list is not None else (count + 1) // 2
    data = await _encode_one(source, number, RenderParams(viewport=viewport), media_type)
    await kit.render_cache.put(cache_key, data)
    return _one(data, media_type)
