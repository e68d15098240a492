"""Cross-origin settings around the kit's app: CORS, and the headers of cross-origin isolation."""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.middleware.cors import CORSMiddleware

from ..settings import Settings
from .types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["cross_origin"]

# Every method a DICOMweb resource of the kit answers (OPTIONS: Capabilities, PS3.18 §8.9).
METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS")


def cross_origin(app: ASGIApp, settings: Settings) -> ASGIApp:
    """``app`` with the CORS and isolation headers ``settings`` ask for (unchanged when none).

    CORS goes outermost, so error answers (4xx, and the guard's 500) carry it too and a viewer's
    script can read them. A preflight (``OPTIONS`` with ``Origin`` and
    ``Access-Control-Request-Method``) is answered here; a plain ``OPTIONS`` still reaches the
    Capabilities service.
    """
    policy = settings.cross_origin_resource_policy
    if policy is None and settings.cross_origin_isolation:
        policy = "same-origin"
    if settings.cross_origin_isolation or policy is not None:
        app = _IsolationHeaders(app, isolate=settings.cross_origin_isolation, resource_policy=policy)
    if settings.cors_origins or settings.cors_origin_regex:
        app = CORSMiddleware(
            app,
            allow_origins=settings.cors_origins,
            allow_origin_regex=settings.cors_origin_regex,
            allow_methods=METHODS,
            allow_headers=settings.cors_allow_headers,
            allow_credentials=settings.cors_allow_credentials,
            expose_headers=settings.cors_expose_headers,
            max_age=settings.cors_max_age,
            allow_private_network=settings.cors_allow_private_network,
        )
    return app


class _IsolationHeaders:
    """Adds COOP/COEP (a page that embeds a viewer's WebAssembly decoders needs both for
    SharedArrayBuffer) and CORP (lets a cross-origin-isolated page load our images) to every
    HTTP response."""

    def __init__(self, app: ASGIApp, *, isolate: bool, resource_policy: str | None) -> None:
        self.app = app
        self.headers: dict[str, str] = {}
        if isolate:
            self.headers["Cross-Origin-Opener-Policy"] = "same-origin"
            self.headers["Cross-Origin-Embedder-Policy"] = "require-corp"
        if resource_policy is not None:
            self.headers["Cross-Origin-Resource-Policy"] = resource_policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).update(self.headers)
            await send(message)

        await self.app(scope, receive, with_headers)
