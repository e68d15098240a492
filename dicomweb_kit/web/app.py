"""The ASGI app of a kit: Starlette routes generated from the route table (``web/route_table.py``).

Each DICOMweb resource is one route that dispatches on the method, answers ``OPTIONS`` with its
Capabilities (PS3.18 §8.9, a WADL of the resource and its children) and ``Allow``, and any other
method with 405 and ``Allow``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route, WebSocketRoute

from .authorization import guard, guard_request, guard_websocket
from .capabilities import capabilities_response
from .changefeed import SSE_PATH as CHANGEFEED_SSE_PATH
from .changefeed import WS_PATH as CHANGEFEED_WS_PATH
from .cross_origin import cross_origin
from .error_handlers import EXCEPTION_HANDLERS, error_response
from .openapi import openapi_response
from .pages import page_routes
from .route_table import CHANNEL_PATH, RESOURCES, Condition, Handler, Handlers, Resource, served
from .study_browser import browser_routes
from .types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from ..kit import DicomWeb

__all__ = ["ResourceRoute", "create_app"]

log = logging.getLogger("dicomweb_kit.web")


def create_app(kit: DicomWeb) -> ASGIApp:
    """The ASGI app serving ``kit`` at its root."""
    handlers = Handlers(kit)
    resources = served(kit)
    routes: list[BaseRoute] = [ResourceRoute(kit, resource, handlers) for resource in resources]
    # The DICOMweb tutorial queries `/studies/`: every resource answers with a trailing slash too,
    # directly (a redirect would lose the Accept header with some clients).
    routes += [ResourceRoute(kit, resource, handlers, path=resource.path + "/") for resource in resources]
    # PS3.18 §8.9.1.1: the Capabilities of the whole service are OPTIONS on its root.
    routes.append(ResourceRoute(kit, Resource("/", ()), handlers))
    routes.append(Route("/openapi.json", openapi_response, methods=["GET"]))
    routes += browser_routes(kit)  # {root}/browse, the study browser for people, if on
    routes += page_routes(kit)  # {root}/docs (ReDoc) and {root}/cheatsheet, for people
    # The UPS notification channel, a WebSocket (PS3.18 §8.10.4).
    # Each is guarded by the authorization hook, as the table's handlers are (web/authorization.py).
    ups_channel = guard_websocket(kit, "workitem-events", "UpsEventChannel", handlers.events.channel)
    channels: list[BaseRoute] = [WebSocketRoute(CHANNEL_PATH, ups_channel)]
    # The instance change feed's live channels (web/changefeed.py): endless streams, so neither in
    # the WADL nor in OpenAPI.
    sse = guard_request(kit, "changefeed", "ChangeFeedEvents", handlers.changefeed.events)
    channels.append(Route(CHANGEFEED_SSE_PATH, sse, methods=["GET"]))
    ws = guard_websocket(kit, "changefeed", "ChangeFeedChannel", handlers.changefeed.channel)
    channels.append(WebSocketRoute(CHANGEFEED_WS_PATH, ws))
    app = Starlette(routes=[*routes, *channels], exception_handlers=EXCEPTION_HANDLERS)
    app.state.public_url = kit.settings.public_url  # see web.endpoints.service_url
    app.state.kit = kit  # see web.openapi.openapi_response
    if kit.tenant_id is not None:
        return _CatchAll(app)  # the tenant dispatcher around it adds the cross-origin headers once
    return cross_origin(_CatchAll(app), kit.settings)  # CORS and COOP/COEP/CORP, if configured


class ResourceRoute(Route):
    """One resource of the table: dispatches on the method; OPTIONS is its Capabilities, a method it
    does not serve is 405 with ``Allow`` (RFC 9110 §15.5.6) and a message saying why."""

    def __init__(self, kit: DicomWeb, resource: Resource, handlers: Handlers, *, path: str | None = None) -> None:
        self.kit = kit
        self.target = resource.path
        # Every handler asks the kit's authorization hook first, if it has one (web/authorization.py).
        self.by_method: dict[str, Handler] = {
            op.method: guard(kit, op, op.handler(handlers)) for op in resource.operations
        }
        if "GET" in self.by_method:
            self.by_method["HEAD"] = self.by_method["GET"]
        allowed = sorted({*self.by_method, "OPTIONS"})
        self.allow = ", ".join(allowed)
        # Operations of this resource that the kit's settings turn off, to say so in a 405.
        self.off: Mapping[str, Condition] = {
            op.method: op.condition
            for full in RESOURCES
            if full.path == resource.path
            for op in full.operations
            if op.condition is not None and not op.exists(kit)
        }
        super().__init__(path or resource.path, self.dispatch, methods=allowed)

    async def dispatch(self, request: Request) -> Response:
        if request.method == "OPTIONS":
            return capabilities_response(request, self.kit, self.target, self.allow)
        return await self.by_method[request.method](request)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"]
        if self.methods is not None and method not in self.methods:
            message = f"{method} is not allowed on {scope.get('path', self.path)}; allowed: {self.allow}"
            condition = self.off.get(method)
            if condition is not None:
                message += f". {method} is served only with {condition.description}"
            elif self.target == "/":
                message += ". OPTIONS gives the Capabilities (WADL, PS3.18 §8.9); OpenAPI is at ./openapi.json"
            await error_response(405, message, {"Allow": self.allow})(scope, receive, send)
            return
        await super().handle(scope, receive, send)


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
