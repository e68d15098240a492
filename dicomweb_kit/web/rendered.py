"""Handlers of the rendered and thumbnail resources (PS3.18 §10.4.1.1.3-4); the work is in
``services/rendered.py``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from ..pixels.params import parse_render_params
from ..resources import ResourceKey
from ..services import rendered
from ..services.rendered import Rendered

if TYPE_CHECKING:
    from ..kit import DicomWeb

__all__ = ["RenderedEndpoints"]


def _key(request: Request) -> ResourceKey:
    params = request.path_params
    return ResourceKey.parse(params.get("study"), params.get("series"), params.get("instance"))


def _accept(request: Request) -> tuple[str | None, str | None]:
    # PS3.18 §8.3.3.1: the `accept` query parameter overrides the Accept header.
    return request.headers.get("accept"), request.query_params.get("accept")


def _response(result: Rendered) -> Response:
    if result.data is not None:  # one image: one write
        return Response(result.data, media_type=result.media_type)
    headers = {} if result.length is None else {"Content-Length": str(result.length)}
    return StreamingResponse(result.chunks, headers=headers, media_type=result.media_type)


class RenderedEndpoints:
    """The rendered-resource handlers of one kit."""

    def __init__(self, kit: DicomWeb) -> None:
        self.kit = kit

    async def rendered(self, request: Request) -> Response:
        """GET .../rendered on a study, series, instance or frame list."""
        key = _key(request)
        params = parse_render_params(request.query_params.multi_items())
        accept, accept_param = _accept(request)
        frames = request.path_params.get("frames")
        if frames is not None:
            result = await rendered.render_frames(self.kit, key, frames, params, accept, accept_param=accept_param)
        elif key.instance is not None:
            result = await rendered.render_instance(self.kit, key, params, accept, accept_param=accept_param)
        else:
            result = await rendered.render_scope(self.kit, key, params, accept, accept_param=accept_param)
        return _response(result)

    async def thumbnail(self, request: Request) -> Response:
        """GET .../thumbnail on a study, series, instance or frame list."""
        params = parse_render_params(request.query_params.multi_items(), thumbnail=True)
        accept, accept_param = _accept(request)
        result = await rendered.thumbnail(
            self.kit,
            _key(request),
            params.viewport,
            accept,
            frame_list=request.path_params.get("frames"),
            accept_param=accept_param,
        )
        return _response(result)
