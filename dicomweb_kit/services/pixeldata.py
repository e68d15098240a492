"""Pixel data on the wire: its media types, and the parts it is sent as (PS3.18 §8.7.3.3).

* Uncompressed pixel data is ``application/octet-stream`` in Little Endian byte order (Table
  8.7.3-4); a whole value (Pixel Data resource, Bulk Data URI) is one part with every frame, a
  frame (Frames resource) one part each.
* Compressed pixel data is one part per frame in the media type of its transfer syntax (Table
  8.7.3-5: ``image/jpeg``, ``image/jls``, ``image/jp2``, ``image/dicom-rle`` ...), with the
  ``transfer-syntax`` parameter.

Which transfer syntaxes a frame can be sent in is the codec seam's answer
(:func:`~dicomweb_kit.codecs.pixel_codecs.frame_syntaxes`, stored syntax first), and frames are
re-encoded by :func:`~dicomweb_kit.codecs.pixel_codecs.convert_frame`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Final, NamedTuple

import anyio

from ..codecs.pixel_codecs import LOSSY, convert_frame, frame_syntaxes
from ..codecs.transcode import UNCOMPRESSED
from ..errors import NotAcceptable
from ..media_types import DEFAULT_TRANSFER_SYNTAX, TRANSFER_SYNTAX_MEDIA_TYPES, Choice, Offer
from .frames import PixelSource, read_span

if TYPE_CHECKING:
    from ..kit import DicomWeb

__all__ = [
    "OCTET_STREAM",
    "Part",
    "as_stored_offers",
    "frame_bytes",
    "frame_parts",
    "is_native",
    "offers_for",
    "part_content_type",
    "require_target",
    "source_syntaxes",
    "target_syntax",
    "value_chunks",
    "value_parts",
]

OCTET_STREAM: Final = "application/octet-stream"
_BLOCK: Final = 1 << 20


class Part(NamedTuple):
    """One part of a multipart response: headers, payload size when known, payload."""

    headers: dict[str, str]
    size: int | None
    payload: AsyncIterator[bytes]


def source_syntaxes(source: PixelSource) -> tuple[str, ...]:
    """The transfer syntaxes the frames of ``source`` can be sent in, the stored one first."""
    if source.description is None:
        return (source.transfer_syntax_uid,)
    return frame_syntaxes(source.transfer_syntax_uid, source.description)


def offers_for(syntaxes: Sequence[str], /) -> list[Offer]:
    """``multipart/related`` offers, one per media type of ``syntaxes`` (in their order)."""
    groups: dict[str, list[str]] = {}
    for syntax in syntaxes:
        media_type = TRANSFER_SYNTAX_MEDIA_TYPES.get(syntax)
        if media_type is not None:
            groups.setdefault(media_type, []).append(syntax)
    return [
        Offer("multipart/related", part_type=media_type, transfer_syntaxes=tuple(ts))
        for media_type, ts in groups.items()
    ]


def as_stored_offers() -> list[Offer]:
    """Offers of a resource with many instances: each part as stored (any ``multipart/related``
    without a ``type``), or every part in one media type, checked per instance with
    :func:`target_syntax`."""
    every = offers_for(list(TRANSFER_SYNTAX_MEDIA_TYPES))
    return [Offer("multipart/related"), *every]


def target_syntax(syntaxes: Sequence[str], choice: Choice, /) -> str | None:
    """The transfer syntax to send frames in, of those they can be sent in (``syntaxes``), for the
    negotiated ``choice``; ``None`` if none fits."""
    part_type = choice.offer.part_type
    if part_type is None:  # as stored
        return syntaxes[0] if syntaxes else None
    candidates = [ts for ts in syntaxes if TRANSFER_SYNTAX_MEDIA_TYPES.get(ts) == part_type]
    if not candidates:
        return None
    wanted = choice.transfer_syntax
    if wanted is None:
        # PS3.18 §8.7.3.3: the media type's default transfer syntax (Explicit VR Little Endian for
        # application/octet-stream), "unless the origin server has only access to the pixel data
        # in lossy compressed form". We read that as: frames stored in a syntax of the media type
        # asked for go as stored (re-encoding JPEG 2000 lossy data as "lossless" J2K, or lossless
        # data as baseline JPEG, would add cost or loss); otherwise the default.
        if syntaxes[0] in candidates:
            return syntaxes[0]
        default = DEFAULT_TRANSFER_SYNTAX.get(part_type)
        if default in candidates:
            return default
        # Lossy compression of frames that are not lossy already only when the client names
        # the syntax (PS3.18 §8.7.3.5 leaves it to the server; we never choose loss for them).
        lossless = [ts for ts in candidates if ts not in LOSSY or syntaxes[0] in LOSSY]
        return lossless[0] if lossless else None
    if wanted == "*":
        return candidates[0]
    return wanted if wanted in candidates else None


def require_target(source: PixelSource, choice: Choice, what: str) -> str:
    """:func:`target_syntax` for ``source``, or 406 naming ``what``."""
    target = target_syntax(source_syntaxes(source), choice)
    if target is None:
        raise NotAcceptable(f"the pixel data of {what} cannot be sent as {choice.offer}")
    return target


def is_native(transfer_syntax_uid: str) -> bool:
    """Uncompressed frames (the same bytes in every uncompressed transfer syntax)."""
    return transfer_syntax_uid in UNCOMPRESSED


def part_content_type(target: str) -> str:
    """The Content-Type of a part holding frames in ``target`` (PS3.18 §8.7.3.3)."""
    return f"{TRANSFER_SYNTAX_MEDIA_TYPES.get(target, OCTET_STREAM)}; transfer-syntax={target}"


async def frame_bytes(kit: DicomWeb, source: PixelSource, number: int, target: str) -> bytes:
    """Frame ``number`` (1-based) of ``source`` in transfer syntax ``target``."""
    data = await read_span(kit, source, source.span(number))
    stored = source.transfer_syntax_uid
    if target == stored or (is_native(target) and is_native(stored)):
        return data
    assert source.description is not None  # frame_syntaxes offered a conversion
    return await anyio.to_thread.run_sync(convert_frame, data, source.description, stored, target)


def frame_parts(
    kit: DicomWeb, source: PixelSource, numbers: Sequence[int], target: str, locations: Sequence[str | None]
) -> list[Part]:
    """One part per frame; sizes known when the frames go out as read."""
    content_type = part_content_type(target)
    verbatim = target == source.transfer_syntax_uid or (is_native(target) and is_native(source.transfer_syntax_uid))
    parts = []
    for number, location in zip(numbers, locations, strict=True):
        headers = {"Content-Type": content_type}
        if location is not None:
            headers["Content-Location"] = location
        size = source.span(number).output_size if verbatim else None
        parts.append(Part(headers, size, _one_frame(kit, source, number, target)))
    return parts


def value_parts(kit: DicomWeb, source: PixelSource, target: str, location: str, frames_url: str) -> list[Part]:
    """The whole pixel data value of one instance (PS3.18 §10.4.3.3.6): uncompressed, one part
    with every frame; compressed, one part per frame (located by the frames resource when
    there are several)."""
    numbers = range(1, source.count + 1)
    if is_native(target):
        headers = {"Content-Type": part_content_type(target), "Content-Location": location}
        if not source.layout.encapsulated:
            length = source.layout.value_length
            return [Part(headers, length, value_chunks(kit, source, 0, length))]
        return [Part(headers, None, _frames(kit, source, numbers, target))]
    if source.count == 1:
        return frame_parts(kit, source, [1], target, [location])
    return frame_parts(kit, source, numbers, target, [f"{frames_url}/{n}" for n in numbers])


async def value_chunks(kit: DicomWeb, source: PixelSource, start: int, end: int) -> AsyncIterator[bytes]:
    """Bytes ``[start, end)`` of a native pixel data value in Little Endian byte order, streamed."""
    layout = source.layout
    if source.data is None and not layout.big_endian:
        begin = layout.value_offset
        async for chunk in kit.blobs.get(source.record.blob_key, start=begin + start, end=begin + end):
            yield chunk
        return
    position = start
    while position < end:
        stop = min(end, position + _BLOCK)
        yield await read_span(kit, source, layout.value_span(source.description, position, stop))
        position = stop


async def _one_frame(kit: DicomWeb, source: PixelSource, number: int, target: str) -> AsyncIterator[bytes]:
    yield await frame_bytes(kit, source, number, target)


async def _frames(kit: DicomWeb, source: PixelSource, numbers: Sequence[int], target: str) -> AsyncIterator[bytes]:
    for number in numbers:
        yield await frame_bytes(kit, source, number, target)
