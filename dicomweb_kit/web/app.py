"""The route table of the DICOMweb service: one line per PS3.18 resource."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.routing import BaseRoute, Route, WebSocketRoute

from ..resources import Level
from .bulkdata import BulkDataEndpoints
from .cross_origin import cross_origin
from .endpoints import Endpoints
from .error_handlers import EXCEPTION_HANDLERS, error_response
from .frames import FrameEndpoints
from .rendered import RenderedEndpoints
from .types import ASGIApp, Message, Receive, Scope, Send
from .ups import WorkitemEndpoints
from .ups_events import UpsEventEndpoints

if TYPE_CHECKING:
    from ..kit import DicomWeb

__all__ = ["create_app"]

log = logging.getLogger("dicomweb_kit.web")

S = "/studies/{study}"
R = S + "/series/{series}"
I = R + "/instances/{instance}"  # noqa: E741


def create_app(kit: DicomWeb) -> ASGIApp:
    """The ASGI app serving ``kit`` at its root."""
    e = Endpoints(kit)
    routes = [
        # QIDO-RS (PS3.18 §10.6) and STOW-RS (§10.5) share /studies: dispatch on method.
        Route("/studies", e.search(Level.STUDY), methods=["GET"]),
        Route("/studies", e.store, methods=["POST"]),
        Route("/series", e.search(Level.SERIES), methods=["GET"]),
        Route("/instances", e.search(Level.INSTANCE), methods=["GET"]),
        Route(S, e.retrieve, methods=["GET"]),
        Route(S, e.store, methods=["POST"]),
        Route(S + "/metadata", e.metadata, methods=["GET"]),
        Route(S + "/series", e.search(Level.SERIES), methods=["GET"]),
        Route(S + "/instances", e.search(Level.INSTANCE), methods=["GET"]),
        Route(R, e.retrieve, methods=["GET"]),
        Route(R + "/metadata", e.metadata, methods=["GET"]),
        Route(R + "/instances", e.search(Level.INSTANCE), methods=["GET"]),
        Route(I, e.retrieve, methods=["GET"]),
        Route(I + "/metadata", e.metadata, methods=["GET"]),
    ]
    # WADO-RS rendered resources and thumbnails (PS3.18 §10.4.1.1.3-4).
    rendered = RenderedEndpoints(kit)
    for path in (S, R, I, I + "/frames/{frames}"):
        routes += [
            Route(path + "/rendered", rendered.rendered, methods=["GET"]),
            Route(path + "/thumbnail", rendered.thumbnail, methods=["GET"]),
        ]
    # WADO-RS frames, pixel data and bulk data (PS3.18 §10.4.1.1.5-6).
    pixels, bulk = FrameEndpoints(kit), BulkDataEndpoints(kit)
    routes.append(Route(I + "/frames/{frames}", pixels.frames, methods=["GET"]))
    routes.append(Route(I + "/bulkdata/{path:path}", bulk.value, methods=["GET"]))
    for path in (S, R, I):
        routes += [
            Route(path + "/pixeldata", pixels.pixeldata, methods=["GET"]),
            Route(path + "/bulkdata", bulk.scope, methods=["GET"]),
        ]
    if kit.settings.allow_delete:
        routes += [Route(path, e.delete, methods=["DELETE"]) for path in (S, R, I)]
    # UPS-RS workitem transactions (PS3.18 §11.4-11.9).
    ups = WorkitemEndpoints(kit)
    routes += [
        Route("/workitems", ups.create, methods=["POST"]),
        Route("/workitems", ups.search, methods=["GET"]),
        Route("/workitems/{workitem}", ups.retrieve, methods=["GET"]),
        Route("/workitems/{workitem}", ups.update, methods=["POST"]),
        Route("/workitems/{workitem}/state", ups.change_state, methods=["PUT"]),
        Route("/workitems/{workitem}/cancelrequest", ups.request_cancellation, methods=["POST"]),
    ]
    # UPS-RS Subscribe / Unsubscribe / Suspend (PS3.18 §11.10-11.12).
    ups_events = UpsEventEndpoints(kit)
    subscriber = "/workitems/{workitem}/subscribers/{ae_title}"
    routes += [
        Route(subscriber, ups_events.subscribe, methods=["POST"]),
        Route(subscriber, ups_events.unsubscribe, methods=["DELETE"]),
        Route(subscriber + "/suspend", ups_events.suspend, methods=["POST"]),
    ]
    # The DICOMweb tutorial queries `/studies/`: every resource answers with a trailing slash too,
    # directly (a redirect would lose the Accept header with some clients).
    routes += [Route(r.path + "/", r.endpoint, methods=sorted(r.methods or ())) for r in list(routes)]
    # The UPS notification channel, a WebSocket (PS3.18 §8.10.4): after the loop above, which
    # duplicates HTTP routes only.
    channels: list[BaseRoute] = [WebSocketRoute("/subscribers/{ae_title}", ups_events.channel)]
    app = Starlette(routes=[*routes, *channels], exception_handlers=EXCEPTION_HANDLERS)
    app.state.public_url = kit.settings.public_url  # see web.endpoints.service_url
    return cross_origin(_CatchAll(app), kit.settings)  # CORS and COOP/COEP/CORP, if configured


class _CatchAll:
    """Outermost guard: an unexpected error becomes a bare 500, never a traceback to the client."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            log.exception("unhandled error in %s %s", scope.get("method"), scope.get("path"))
            if started or scope["type"] != "http":
                raise
            await error_response(500, "internal server error")(scope, receive, send)
