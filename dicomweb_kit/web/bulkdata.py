"""WADO-RS Bulk Data resources (PS3.18 §10.4.1.1.5, payload §10.4.3.3.5).

``GET {instance}/bulkdata/{path}`` serves one BulkDataURI of our metadata. The default answer is
``multipart/related; type="application/octet-stream"`` with one part (PS3.18 §8.7.3.3, Table
8.7.3-4); encapsulated Pixel Data is one part per compressed frame (Table 8.7.3-5). A client that
accepts only ``application/octet-stream`` gets the bare value, and HTTP range requests on it
(RFC 9110 §14; WADO-RS RetrieveBulkdata took a Range header from the start):

* one range: 206 with Content-Range; a range starting beyond the value: 416 with
  ``Content-Range: bytes */{size}``;
* several ranges: the whole value, 200 (RFC 9110 §14.2 lets a server ignore Range; we do not
  build ``multipart/byteranges``);
* ``If-Range`` (we send no validators) or an unparsable header: the whole value, 200.

``GET {study|series|instance}/bulkdata``: every bulk data value of the scope, one part (or one
per compressed frame) each, with the Content-Location of its BulkDataURI.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import anyio
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from ..errors import ResourceNotFound
from ..media_types import EXPLICIT_VR_LE, Choice, Offer, negotiate
from ..resources import ResourceKey
from ..services import bulkdata, frames, pixeldata
from ..services.wado import require_summary
from .endpoints import service_url
from .error_handlers import error_response
from .frames import multipart_response, request_accept, request_scope, single_part_only, value_parts

if TYPE_CHECKING:
    from ..kit import DicomWeb

__all__ = ["BulkDataEndpoints", "parse_range"]

_OCTET_OFFERS = [Offer("multipart/related", part_type=pixeldata.OCTET_STREAM, transfer_syntaxes=(EXPLICIT_VR_LE,))]
_RANGE = re.compile(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", re.IGNORECASE)
_ACCEPT_RANGES = {"Accept-Ranges": "bytes"}


class _Unsatisfiable(Exception):
    pass


def parse_range(header: str | None, size: int, /) -> tuple[int, int] | None:
    """The one byte range ``[start, end)`` of a Range header over a ``size``-byte value (RFC 9110
    §14.1.2), or ``None`` to send the whole value (no header, several ranges, not parsable).

    Raises:
        _Unsatisfiable: the range starts at or beyond the end (416).
    """
    if header is None or "," in header:
        return None
    match = _RANGE.fullmatch(header)
    if match is None:
        return None
    first, last = match.groups()
    if not first:
        if not last:
            return None
        suffix = int(last)  # the last `suffix` bytes
        if suffix == 0 or size == 0:
            raise _Unsatisfiable
        return max(0, size - suffix), size
    start = int(first)
    if last and int(last) < start:
        return None  # invalid: ignored (RFC 9110 §14.1.1)
    if start >= size:
        raise _Unsatisfiable
    end = size if not last else min(int(last) + 1, size)
    return start, end


class BulkDataEndpoints:
    """The bulk data handlers of one kit."""

    def __init__(self, kit: DicomWeb) -> None:
        self.kit = kit

    async def value(self, request: Request) -> Response:
        """One BulkDataURI: ``{instance}/bulkdata/{path}``."""
        key = request_scope(request)
        found = await bulkdata.open_bulk(self.kit, key, request.path_params["path"])
        header, param = request_accept(request)
        source = found.pixels
        base = service_url(request)
        location = f"{base}/{key.path()}/bulkdata/{found.path}"
        if source is not None and source.layout.encapsulated:
            # Compressed frames: their media types (PS3.18 Table 8.7.3-5), one part per frame.
            choice = negotiate(header, pixeldata.offers_for(pixeldata.source_syntaxes(source)), accept_param=param)
            parts = value_parts(self.kit, source, choice, base)
            if len(parts) == 1 and single_part_only(request):
                [part] = parts
                sized = {} if part.size is None else {"Content-Length": str(part.size)}
                return StreamingResponse(part.payload, headers=sized, media_type=part.headers["Content-Type"])
            return multipart_response(parts, choice.offer.part_type or pixeldata.OCTET_STREAM)
        negotiate(header, _OCTET_OFFERS, accept_param=param)  # 406 unless octet-stream is acceptable
        size = source.layout.value_length if source is not None else len(found.value or b"")
        content_type = pixeldata.part_content_type(EXPLICIT_VR_LE)
        if not single_part_only(request):
            part = pixeldata.Part(
                {"Content-Type": content_type, "Content-Location": location}, size, self._chunks(found, 0, size)
            )
            return multipart_response([part], pixeldata.OCTET_STREAM, headers=dict(_ACCEPT_RANGES))
        headers = dict(_ACCEPT_RANGES)
        status, span = 200, (0, size)
        range_header = request.headers.get("range")
        if range_header is not None and "if-range" not in request.headers:
            try:
                wanted = parse_range(range_header, size)
            except _Unsatisfiable:
                return error_response(
                    416, f"the range is beyond the {size} bytes of the value", {"Content-Range": f"bytes */{size}"}
                )
            if wanted is not None:
                status, span = 206, wanted
                headers["Content-Range"] = f"bytes {span[0]}-{span[1] - 1}/{size}"
        headers["Content-Length"] = str(span[1] - span[0])
        return StreamingResponse(
            self._chunks(found, *span), status_code=status, headers=headers, media_type=content_type
        )

    def _chunks(self, found: bulkdata.BulkValue, start: int, end: int) -> AsyncIterator[bytes]:
        if found.pixels is not None:
            return pixeldata.value_chunks(self.kit, found.pixels, start, end)
        return _one((found.value or b"")[start:end])

    async def scope(self, request: Request) -> Response:
        """Every bulk data value of a study, series or instance: ``{scope}/bulkdata``."""
        scope = request_scope(request)
        await require_summary(self.kit, scope)
        header, param = request_accept(request)
        choice = negotiate(header, pixeldata.as_stored_offers(), accept_param=param)
        base = service_url(request)
        first: str | None = None  # the media type of the first part, for `type`
        async for record in self.kit.index.records(scope):
            for path in bulkdata.bulk_paths(record.attributes):
                kind = pixeldata.OCTET_STREAM
                if path in bulkdata.PIXEL_PATHS:
                    source = await frames.pixel_source(self.kit, record)
                    if source is None:
                        continue
                    target = pixeldata.require_target(source, choice, f"instance {record.instance_uid}")
                    kind = pixeldata.part_content_type(target).partition(";")[0]
                first = first or kind
        if first is None:
            raise ResourceNotFound(f"no instance of {scope} has bulk data")
        return multipart_response(self._scope_parts(scope, choice, base), choice.offer.part_type or first)

    async def _scope_parts(self, scope: ResourceKey, choice: Choice, base: str) -> AsyncIterator[pixeldata.Part]:
        content_type = pixeldata.part_content_type(EXPLICIT_VR_LE)
        async for record in self.kit.index.records(scope):
            paths = list(bulkdata.bulk_paths(record.attributes))
            others = [path for path in paths if path not in bulkdata.PIXEL_PATHS]
            header = (await frames.read_header(self.kit, record))[0] if others else None
            for path in paths:
                if path in bulkdata.PIXEL_PATHS:
                    source = await frames.pixel_source(self.kit, record)
                    if source is not None:
                        for part in value_parts(self.kit, source, choice, base):
                            yield part
                    continue
                assert header is not None
                steps = bulkdata.parse_path(path)
                value = await anyio.to_thread.run_sync(
                    bulkdata.header_value, header.dataset, steps, header.transfer_syntax_uid
                )
                if value is None:
                    continue
                location = f"{base}/{record.key.path()}/bulkdata/{path}"
                headers = {"Content-Type": content_type, "Content-Location": location}
                yield pixeldata.Part(headers, len(value), _one(value))


async def _one(data: bytes) -> AsyncIterator[bytes]:
    yield data
