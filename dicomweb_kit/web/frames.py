"""WADO-RS Frames and Pixel Data resources (PS3.18 §10.4.1.1.6, payload §10.4.3.3.6).

``GET {instance}/frames/{frames}``: the frames asked for, in that order, one part each, as
``multipart/related`` (Table 8.7.3-3: ``application/octet-stream`` for uncompressed frames, the
media type of the transfer syntax for compressed ones, Table 8.7.3-5). When one frame is asked
for and the client accepts only a single-part media type (``Accept: image/jpeg``), the frame is
the whole body.

``GET {study|series|instance}/pixeldata``: the pixel data of every instance in scope that has
some, each part located by its BulkDataURI (or the frames resource, one part per compressed frame).
Without a ``type``, or with ``*/*``, parts go as stored, each with its own media type.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from ..codecs.multipart import multipart_content_type, multipart_length, new_boundary, write_multipart
from ..errors import ResourceNotFound
from ..media_types import Choice, negotiate, parse_accept
from ..resources import ResourceKey
from ..services import frames, pixeldata
from ..services.frames import PixelSource
from ..services.wado import require_summary
from .endpoints import service_url

if TYPE_CHECKING:
    from ..kit import DicomWeb

__all__ = [
    "FrameEndpoints",
    "multipart_response",
    "request_accept",
    "request_scope",
    "single_part_only",
    "value_parts",
]


def request_scope(request: Request) -> ResourceKey:
    params = request.path_params
    return ResourceKey.parse(params.get("study"), params.get("series"), params.get("instance"))


def request_accept(request: Request) -> tuple[str | None, str | None]:
    # PS3.18 §8.3.3.1: the `accept` query parameter overrides the Accept header.
    return request.headers.get("accept"), request.query_params.get("accept")


def single_part_only(request: Request) -> bool:
    """The client accepts no ``multipart/related`` body (only e.g. ``image/jpeg``): then a
    single-part answer is what it can read."""
    header, param = request_accept(request)
    text = param if param is not None and param.strip() else header
    ranges = parse_accept(text, plus_as_space=text is param)
    if not ranges:
        return False
    multipart = ("*/*", "multipart/*", "multipart/related")
    return not any(r.q > 0 and r.media_type in multipart for r in ranges)


def multipart_response(
    parts: Sequence[pixeldata.Part] | AsyncIterator[pixeldata.Part],
    part_type: str,
    *,
    headers: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
) -> Response:
    """A ``multipart/related`` response of ``parts``, with a Content-Length when every size is known."""
    boundary = new_boundary()
    all_headers = dict(headers or {})
    if isinstance(parts, Sequence):
        sizes = [part.size for part in parts]
        if all(size is not None for size in sizes):
            known = [(part.headers, part.size or 0) for part in parts]
            all_headers["Content-Length"] = str(multipart_length(known, boundary))
        listed = parts

        async def iterate() -> AsyncIterator[pixeldata.Part]:
            for part in listed:
                yield part

        source = iterate()
    else:
        source = parts

    async def framed() -> AsyncIterator[tuple[dict[str, str], AsyncIterator[bytes]]]:
        async for part in source:
            yield part.headers, part.payload

    return StreamingResponse(
        write_multipart(framed(), boundary),
        headers=all_headers,
        media_type=multipart_content_type(part_type, boundary, **(params or {})),
    )


#: A multipart body of known size under this many bytes (a frame or a few, as viewers ask for them)
#: is assembled before it is sent: one write instead of one per piece of the framing, which
#: costs more than the copy at this size.
_SMALL_BODY = 1 << 20


async def buffered_multipart_response(
    parts: Sequence[pixeldata.Part], part_type: str, *, params: dict[str, str] | None = None
) -> Response:
    """:func:`multipart_response` of small parts, assembled in memory and sent in one piece."""
    boundary = new_boundary()

    async def framed() -> AsyncIterator[tuple[dict[str, str], AsyncIterator[bytes]]]:
        for part in parts:
            yield part.headers, part.payload

    body = b"".join([bytes(piece) async for piece in write_multipart(framed(), boundary)])
    return Response(body, media_type=multipart_content_type(part_type, boundary, **(params or {})))


class FrameEndpoints:
    """The frames and pixel data handlers of one kit."""

    def __init__(self, kit: DicomWeb) -> None:
        self.kit = kit

    async def frames(self, request: Request) -> Response:
        """Frames, PS3.18 §10.4.1.1.6: ``{instance}/frames/{frames}``."""
        key = request_scope(request)
        numbers = frames.parse_frame_list(request.path_params["frames"])
        stored = await frames.read_frames(self.kit, key, numbers)
        source = stored.source
        header, param = request_accept(request)
        choice = negotiate(header, pixeldata.offers_for(pixeldata.source_syntaxes(source)), accept_param=param)
        target = _target(source, choice, key)
        part_type = choice.offer.part_type or pixeldata.OCTET_STREAM
        base = f"{service_url(request)}/{key.path()}/frames"
        if len(numbers) == 1 and single_part_only(request):
            data = await pixeldata.frame_bytes(self.kit, source, numbers[0], target)
            return Response(data, media_type=pixeldata.part_content_type(target))
        parts = pixeldata.frame_parts(self.kit, source, numbers, target, [f"{base}/{n}" for n in numbers])
        if sum(part.size or _SMALL_BODY for part in parts) < _SMALL_BODY:
            return await buffered_multipart_response(parts, part_type, params={"transfer_syntax": target})
        return multipart_response(parts, part_type, params={"transfer_syntax": target})

    async def pixeldata(self, request: Request) -> Response:
        """Pixel Data, PS3.18 §10.4.1.1.6: ``{study|series|instance}/pixeldata``."""
        scope = request_scope(request)
        await require_summary(self.kit, scope)
        header, param = request_accept(request)
        if scope.instance is not None:
            source = await frames.open_pixels(self.kit, scope)
            choice = negotiate(header, pixeldata.offers_for(pixeldata.source_syntaxes(source)), accept_param=param)
        else:
            choice = negotiate(header, pixeldata.as_stored_offers(), accept_param=param)
        base = service_url(request)
        # First pass: every instance can be sent so, and what the first part is (for `type`).
        first: str | None = None
        async for record in self.kit.index.records(scope):
            source_ = await frames.pixel_source(self.kit, record)
            if source_ is not None:
                target = _target(source_, choice, record.key)
                first = first or pixeldata.part_content_type(target).partition(";")[0]
        if first is None:
            raise ResourceNotFound(f"no instance of {scope} has pixel data")

        async def parts() -> AsyncIterator[pixeldata.Part]:
            async for record in self.kit.index.records(scope):
                source_ = await frames.pixel_source(self.kit, record)
                if source_ is None:
                    continue
                for part in value_parts(self.kit, source_, choice, base):
                    yield part

        params = {} if choice.transfer_syntax in (None, "*") else {"transfer_syntax": choice.transfer_syntax}
        return multipart_response(parts(), choice.offer.part_type or first, params=params)


def _target(source: PixelSource, choice: Choice, key: ResourceKey) -> str:
    return pixeldata.require_target(
        source, choice, f"instance {key.instance} (stored as {source.record.transfer_syntax_uid})"
    )


def value_parts(kit: DicomWeb, source: PixelSource, choice: Choice, base: str) -> list[pixeldata.Part]:
    """The parts of one instance's pixel data value, located under the service root ``base``."""
    key = source.record.key
    target = _target(source, choice, key)
    instance_url = f"{base}/{key.path()}"
    location = f"{instance_url}/bulkdata/{source.layout.tag:08X}"
    return pixeldata.value_parts(kit, source, target, location, f"{instance_url}/frames")
