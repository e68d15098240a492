"""One stored image instance rendered: its frames read, decoded, put through the pixel pipeline
(``dicomweb_kit.pixels.render``) and encoded, for the rendered and thumbnail resources."""

from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

import anyio
import msgspec
import numpy as np
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.pixels.processing import apply_modality_lut

from ..codecs.pixel_codecs import decode_frame
from ..errors import DicomWebError, NotAcceptable, PayloadTooLarge, ResourceNotFound
from ..index import InstanceRecord
from ..pixels.description import PixelDescription
from ..pixels.encode import encode_frames, encode_image
from ..pixels.render import RenderParams, render_image, voi_window
from ..pixels.window import min_max_window
from .frames import PixelSource, check_frame_numbers, pixel_source, read_header, read_span

if TYPE_CHECKING:
    from ..kit import DicomWeb

__all__ = [
    "MAX_ANIMATION_BYTES",
    "InstanceImages",
    "decode_stored_frame",
    "frame_count",
    "frame_rate",
    "no_rendering",
]

#: The most bytes of rendered 8-bit frames an animated image/gif or a video holds before encoding.
MAX_ANIMATION_BYTES = 512 << 20

_T = TypeVar("_T")

#: Parsed headers of the most recently rendered instances: a viewer asks for many frames (and
#: thumbnails) of the same few instances, and parsing a CT header costs about as much as
#: rendering its frame.
_HEADERS_KEPT = 64
_HEADERS: OrderedDict[tuple[int, str], Dataset] = OrderedDict()


def frame_count(record: InstanceRecord, /) -> int:
    """Number of frames of an image instance, from its attributes; 0 when it has no pixels."""
    description = PixelDescription.from_attributes(record.attributes)
    return 0 if description is None else description.number_of_frames


def no_rendering(record: InstanceRecord, /) -> NotAcceptable:
    """The 406 of an instance that has no rendered representation here."""
    return NotAcceptable(
        f"instance {record.instance_uid} (SOP Class {record.sop_class_uid}) has no rendered representation"
    )


def decode_stored_frame(data: bytes, description: PixelDescription, transfer_syntax_uid: str, /) -> np.ndarray:
    """Decode one stored frame, YBR as RGB; the single decoding entry point (tests count calls)."""
    try:
        return decode_frame(data, description, transfer_syntax_uid, as_rgb=True)
    except Exception as exc:  # pydicom raises many kinds on data it cannot decode
        raise NotAcceptable(f"the pixel data cannot be decoded here: {type(exc).__name__}: {exc}") from exc


def _decoded_photometric(ds: Dataset) -> str:
    """What :func:`decode_stored_frame` hands back: YBR colour as RGB (pydicom's ``as_rgb``)."""
    photometric = str(ds.get("PhotometricInterpretation") or "MONOCHROME2").strip().upper()
    return "RGB" if photometric.startswith("YBR") else photometric


def _positive(value: object) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


def frame_rate(ds: Dataset, /) -> float:
    """Frames per second for video and animations: Cine Rate (0018,0040), Recommended Display
    Frame Rate (0008,2144), or 1000 / Frame Time (0018,1063); 10 when none is usable."""
    for keyword in ("CineRate", "RecommendedDisplayFrameRate"):
        rate = _positive(ds.get(keyword))
        if rate is not None and rate <= 1000:
            return rate
    frame_time = _positive(ds.get("FrameTime"))  # milliseconds
    if frame_time is not None and 1 <= frame_time <= 60_000:
        return 1000.0 / frame_time
    return 10.0


async def _in_thread(work: Callable[[], _T]) -> _T:
    try:
        return await anyio.to_thread.run_sync(work)
    except DicomWebError:  # e.g. InvalidRequest: a source region outside the image
        raise
    except Exception as exc:  # malformed LUTs, odd shapes: pydicom and Pillow raise many kinds
        raise NotAcceptable(f"the instance cannot be rendered: {type(exc).__name__}: {exc}") from exc


class InstanceImages:
    """The frames of one image instance, rendered on demand.

    Each frame is a ranged read of the blob (``services.frames``) decoded by
    ``pixel_codecs.decode_frame``; the header is one more ranged read (it holds the LUT data,
    which the record's DICOM JSON may keep only as a BulkDataURI). The blob is never read whole,
    and CPU work runs in worker threads.
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
                raise no_rendering(self.record)
            self._pixels = source
        return self._pixels

    async def count(self) -> int:
        """How many frames the instance has."""
        return (await self.pixels()).count

    async def header(self) -> Dataset:
        """Every attribute before the pixel data (parsed headers of recent instances are kept)."""
        if self._header is None:
            key = (id(self.kit), self.record.blob_key)  # a blob key names one immutable version
            cached = _HEADERS.get(key)
            if cached is None:
                header, _ = await read_header(self.kit, self.record)
                cached = _HEADERS[key] = header.dataset
                while len(_HEADERS) > _HEADERS_KEPT:
                    _HEADERS.popitem(last=False)
            else:
                _HEADERS.move_to_end(key)
            self._header = cached
        return self._header

    async def frame(self, number: int, /) -> np.ndarray:
        """Frame ``number`` (1-based), decoded (404 when there is no such frame)."""
        pixels = await self.pixels()
        check_frame_numbers([number], pixels.count, self.record.key)
        data = await read_span(self.kit, pixels, pixels.span(number))
        assert pixels.description is not None  # checked in pixels()
        return await anyio.to_thread.run_sync(
            decode_stored_frame, data, pixels.description, pixels.transfer_syntax_uid
        )

    async def render(self, number: int, params: RenderParams, /) -> Image.Image:
        """Frame ``number`` through the pixel pipeline."""
        ds = await self.header()
        frame = await self.frame(number)
        photometric = _decoded_photometric(ds)
        return await _in_thread(
            functools.partial(render_image, frame, ds, params, photometric=photometric, frame_index=number - 1)
        )

    async def encode(self, number: int, params: RenderParams, media_type: str, /) -> bytes:
        """Frame ``number`` rendered and encoded as a single-frame ``media_type``: the reads, then
        decoding, rendering and encoding in one worker-thread hop (each hop costs ~0.1 ms)."""
        ds = await self.header()
        pixels = await self.pixels()
        check_frame_numbers([number], pixels.count, self.record.key)
        data = await read_span(self.kit, pixels, pixels.span(number))
        description = pixels.description
        assert description is not None  # checked in pixels()
        photometric = _decoded_photometric(ds)

        def work() -> bytes:
            frame = decode_stored_frame(data, description, pixels.transfer_syntax_uid)
            image = render_image(frame, ds, params, photometric=photometric, frame_index=number - 1)
            return encode_image(image, media_type, quality=params.quality)

        return await _in_thread(work)

    async def encode_animation(self, numbers: Sequence[int], params: RenderParams, media_type: str, /) -> bytes:
        """Frames ``numbers`` as an animated image/gif or a video, at the instance's frame rate.

        The rendered 8-bit frames are held until they are encoded (at most
        :data:`MAX_ANIMATION_BYTES`, else 413).
        """
        ds = await self.header()
        if params.window is None and voi_window(ds) is None and "VOILUTSequence" not in ds:
            # Without a VOI of its own, every frame takes the first frame's range: a per-frame
            # min/max would make a cine loop flicker.
            first = await self.frame(numbers[0])
            if first.ndim == 2:
                params = msgspec.structs.replace(params, window=min_max_window(apply_modality_lut(first, ds)))
        images: list[Image.Image] = []
        held = 0
        for number in numbers:
            image = await self.render(number, params)
            held += image.width * image.height * len(image.getbands())
            if held > MAX_ANIMATION_BYTES:
                raise PayloadTooLarge(
                    f"{len(numbers)} rendered frames would take more than {MAX_ANIMATION_BYTES >> 20} MiB to"
                    " encode; ask for fewer frames (frames/{list}/rendered) or smaller ones (viewport)"
                )
            images.append(image)
        work = functools.partial(encode_frames, images, media_type, frame_rate=frame_rate(ds), quality=params.quality)
        return await _in_thread(work)
