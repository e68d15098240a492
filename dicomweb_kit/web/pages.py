"""Pages for people: ``{root}/docs`` (ReDoc over ``{root}/openapi.json``) and ``{root}/cheatsheet``
(every endpoint with an example request), both generated from the OpenAPI document."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.routing import BaseRoute, Route

from ..errors import ConfigurationError
from .cheatsheet import cheatsheet_html
from .endpoints import service_url
from .openapi import openapi_document

if TYPE_CHECKING:
    from ..kit import DicomWeb

__all__ = ["REDOC_JS_PATH", "page_routes"]

#: Where the kit serves ``Settings.redoc_js_file``, below its root.
REDOC_JS_PATH = "/docs/redoc.standalone.js"

DocumentSource = Callable[["DicomWeb", str], Mapping[str, Any]]


def page_routes(kit: DicomWeb, *, document: DocumentSource | None = None) -> list[BaseRoute]:
    """The routes of the pages; ``document(kit, root)`` builds the OpenAPI document (default: the
    one ``{root}/openapi.json`` serves).

    Raises:
        ConfigurationError: ``Settings.redoc_js_file`` names no readable file.
    """
    pages = _Pages(kit, document or openapi_document)
    routes: list[BaseRoute] = [
        Route("/docs", pages.docs, methods=["GET"]),
        Route("/cheatsheet", pages.cheatsheet, methods=["GET"]),
    ]
    if pages.redoc_file is not None:
        routes.append(Route(REDOC_JS_PATH, pages.redoc_js, methods=["GET"]))
    return routes


class _Pages:
    def __init__(self, kit: DicomWeb, document: DocumentSource) -> None:
        self.kit = kit
        self.document = document
        given = kit.settings.redoc_js_file
        self.redoc_file = Path(given) if given else None
        if self.redoc_file is not None and not self.redoc_file.is_file():
            raise ConfigurationError(
                f"Settings.redoc_js_file: {self.redoc_file} is not a file (ReDoc's bundles/redoc.standalone.js, "
                "from the npm package redoc)"
            )

    async def docs(self, request: Request) -> Response:
        root = service_url(request)
        title = str(self.document(self.kit, root).get("info", {}).get("title", "API"))
        script = root + REDOC_JS_PATH if self.redoc_file is not None else self.kit.settings.redoc_js_url
        return HTMLResponse(
            _REDOC_PAGE.format(title=escape(title), spec_url=escape(root + "/openapi.json"), script=escape(script))
        )

    async def cheatsheet(self, request: Request) -> Response:
        root = service_url(request)
        page = cheatsheet_html(
            self.document(self.kit, root), root=root, docs_url=root + "/docs", openapi_url=root + "/openapi.json"
        )
        return HTMLResponse(page)

    async def redoc_js(self, request: Request) -> Response:
        assert self.redoc_file is not None
        return FileResponse(
            self.redoc_file, media_type="text/javascript; charset=utf-8", headers={"Cache-Control": "max-age=86400"}
        )


# As FastAPI's get_redoc_html; the error handler says what to do when the script cannot be loaded
# (a hospital network without internet access: set Settings.redoc_js_file).
_REDOC_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>body {{ margin: 0; padding: 0; }} #redoc-error {{ font: 15px system-ui, sans-serif; padding: 2rem; }}</style>
</head><body>
<noscript>ReDoc needs JavaScript. The raw document is at <a href="{spec_url}">{spec_url}</a>.</noscript>
<redoc spec-url="{spec_url}"></redoc>
<p id="redoc-error" hidden>ReDoc could not be loaded from <code>{script}</code>. Without internet access, set
the <code>redoc_js_file</code> setting (<code>dicomweb-kit serve --redoc-js FILE</code>) to a copy of
<code>redoc.standalone.js</code>. The document itself is at <a href="{spec_url}">{spec_url}</a>.</p>
<script src="{script}" onerror="document.getElementById('redoc-error').hidden = false"></script>
</body></html>
"""
