"""The one place that turns errors into HTTP responses (PS3.18 §8.6, §10.x status tables)."""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from ..errors import DicomWebError

__all__ = ["EXCEPTION_HANDLERS", "error_response"]

log = logging.getLogger("dicomweb_kit.web")


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    """A short plain-text error body; the Warning header carries the same text (PS3.18 §8.6.1.2)."""
    all_headers = {"Warning": _warning(message)}
    all_headers.update(headers or {})
    return PlainTextResponse(message + "\n", status_code=status, headers=all_headers)


def _warning(message: str) -> str:
    # RFC 7234 §5.5 warn-text is a quoted-string; keep it printable ASCII and short.
    text = message.encode("ascii", "replace").decode().replace("\\", "\\\\").replace('"', '\\"')
    text = "".join(ch if ch.isprintable() else " " for ch in text)[:300]
    return f'299 dicomweb-kit "{text}"'


async def dicomweb_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DicomWebError)
    if exc.http_status >= 500:
        log.error("%s %s failed: %s", request.method, request.url.path, exc.message)
    return error_response(exc.http_status, exc.message)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = exc.detail or "error"
    if exc.status_code == 404 and message == "Not Found":
        message = f"no DICOMweb resource at {request.url.path}"
    elif exc.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path}"
    return error_response(exc.status_code, message, dict(exc.headers or {}))


# Anything else is caught by the outermost guard in app.py: a bare 500 and a log entry.
EXCEPTION_HANDLERS = {DicomWebError: dicomweb_error, HTTPException: http_error}
