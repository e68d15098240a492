"""The study browser: a page for people at ``{root}/browse`` (``Settings.study_browser``).

Static HTML, JavaScript and CSS shipped in the package (``web/static/browser/``, no build step).
The page uses only the kit's own DICOMweb resources (QIDO-RS, thumbnails, rendered, zip
retrieve, STOW-RS) by relative URL: it is served at ``{root}/browse``, so ``studies`` resolves to
``{root}/studies`` under any mount prefix. Not a PS3.18 resource.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import Route

from .error_handlers import error_response

if TYPE_CHECKING:
    from ..kit import DicomWeb

__all__ = ["browser_routes"]

STATIC = Path(__file__).parent / "static" / "browser"

#: The files served, by URL name: a fixed table, so no path from a request ever reaches the file system.
ASSETS = {
    "browser.js": "text/javascript; charset=utf-8",
    "browser.css": "text/css; charset=utf-8",
    "icon.svg": "image/svg+xml",
}

# The page runs only its own script and talks only to its own origin; images may be blob: URLs.
_PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
        "connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Revalidate (ETag, Last-Modified) so an upgraded kit's page and scripts are never mixed.
    "Cache-Control": "no-cache",
}
_ASSET_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"}


async def _page(request: Request) -> Response:
    return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8", headers=_PAGE_HEADERS)


async def _slash(request: Request) -> Response:
    # ``{root}/browse/`` would resolve the page's relative URLs one level too deep: send it to
    # ``{root}/browse`` with a relative Location (RFC 9110 §10.2.2), right under any prefix.
    return RedirectResponse("../browse", status_code=308)


async def _asset(request: Request) -> Response:
    name = request.path_params["name"]
    media_type = ASSETS.get(name)
    if media_type is None:
        return error_response(404, f"no study browser file {name!r}")
    return FileResponse(STATIC / name, media_type=media_type, headers=_ASSET_HEADERS)


def browser_routes(kit: DicomWeb) -> list[Route]:
    """The study browser's routes, or none when ``kit.settings.study_browser`` is off. They go
    after the route table's trailing-slash copies: ``/browse/`` has its own meaning here."""
    if not kit.settings.study_browser:
        return []
    return [
        Route("/browse", _page, methods=["GET"]),
        Route("/browse/", _slash, methods=["GET"]),
        Route("/browse/{name}", _asset, methods=["GET"]),
    ]
