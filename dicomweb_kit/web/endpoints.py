"""Request handlers: parse the HTTP request, call a service, render its result. No DICOM logic here."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Final

import anyio
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse
from starlette.websockets import WebSocket

from ..codecs.multipart import multipart_content_type, new_boundary
from ..errors import MalformedMultipart, PayloadTooLarge, RequestTimeout
from ..media_types import Offer, negotiate
from ..resources import Level, ResourceKey
from ..services import delete, qido, stow, wado
from . import archive
from .authorization import narrowing
from .responses import XML_TYPE, dataset_response, datasets_response, gzip_if_accepted, xml_parts

if TYPE_CHECKING:
    from ..kit import DicomWeb

__all__ = ["Endpoints"]

JSON_OFFERS = [Offer("application/dicom+json"), Offer("application/json")]
# PS3.18 §10.5.3 (STOW-RS response): one dataset, JSON or XML.
STOW_OFFERS = [*JSON_OFFERS, Offer(XML_TYPE)]
# PS3.18 §10.6.3 (QIDO-RS) and §10.4.3 (metadata): a list of datasets, a JSON array or multipart XML.
LIST_OFFERS = [*JSON_OFFERS, Offer("multipart/related", part_type=XML_TYPE)]


_DEFAULT_PORTS: Final = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def service_url(request: Request | WebSocket) -> str:
    """The service root as the client reached it, mount prefix included (for RetrieveURL), or
    ``Settings.public_url`` when the operator set one.

    Built from the scope as Starlette builds ``request.url`` (Host header, else the server
    address without a default port), without parsing the whole URL, and kept in the scope:
    handlers ask for it more than once, and it was a fifth of a QIDO request's own time.
    """
    scope = request.scope
    cached: str | None = scope.get(_SERVICE_URL)
    if cached is not None:
        return cached
    public: str | None = getattr(request.app.state, "public_url", None)
    if public:
        url = public.rstrip("/")
    else:
        scheme = scope.get("scheme", "http")
        host = next((value.decode("latin-1") for key, value in scope["headers"] if key == b"host"), None)
        if host is None and scope.get("server") is not None:
            name, port = scope["server"]
            host = name if port == _DEFAULT_PORTS.get(scheme) else f"{name}:{port}"
        url = (f"{scheme}://{host}" if host else "") + scope.get("root_path", "")
        url = url.rstrip("/")
    scope[_SERVICE_URL] = url
    return url


_SERVICE_URL: Final = "dicomweb_kit.service_url"


def _scope(request: Request) -> ResourceKey:
    params = request.path_params
    return ResourceKey.parse(params.get("study"), params.get("series"), params.get("instance"))


def _accept_param(request: Request) -> str | None:
    # PS3.18 §8.3.3.1: the `accept` query parameter overrides the Accept header.
    return request.query_params.get("accept")


async def _body(request: Request, limit: int, stall_seconds: float) -> AsyncIterator[bytes]:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the request body of {declared} bytes is larger than the limit of {limit} bytes")
    stream = aiter(request.stream())
    try:
        while True:
            with anyio.move_on_after(stall_seconds) as waited:
                chunk = await anext(stream, None)
            if waited.cancelled_caught:
                raise RequestTimeout(f"no part of the request body arrived for {stall_seconds:g} seconds")
            if chunk is None:
                return
            if chunk:
                yield chunk
    except ClientDisconnect as exc:
        raise MalformedMultipart("the request body ended early: the client disconnected") from exc


def _matches_etag(if_none_match: str | None, etag: str) -> bool:
    """Weak comparison (RFC 9110 §13.1.2): ``W/"x"`` and ``"x"`` are the same validator."""
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    opaque = etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == opaque for tag in if_none_match.split(","))


class Endpoints:
    """The handlers of one kit, bound to it."""

    def __init__(self, kit: DicomWeb) -> None:
        self.kit = kit

    async def store(self, request: Request) -> Response:
        """STOW-RS, PS3.18 §10.5: POST /studies[/{study}]."""
        choice = negotiate(request.headers.get("accept"), STOW_OFFERS, accept_param=_accept_param(request))
        study = _scope(request) if "study" in request.path_params else None
        outcome = await stow.store_instances(
            self.kit,
            _body(request, self.kit.settings.max_request_bytes, self.kit.settings.body_read_timeout),
            request.headers.get("content-type"),
            study=study,
        )
        headers = {}
        if outcome.body_error:
            headers["Warning"] = (
                f'299 dicomweb-kit "the body broke off after some instances were stored: {outcome.body_error}"'
            )
        base = service_url(request)
        return dataset_response(
            outcome.response_dataset(base, study.study if study else None),
            choice,
            status=outcome.http_status,
            headers=headers,
        )

    def search(self, level: Level) -> Callable[[Request], Awaitable[Response]]:
        async def handler(request: Request) -> Response:
            """QIDO-RS, PS3.18 §10.6."""
            choice = negotiate(request.headers.get("accept"), LIST_OFFERS, accept_param=_accept_param(request))
            base = service_url(request)
            result = await qido.search(
                self.kit,
                level,
                _scope(request),
                request.query_params.multi_items(),
                service_url=base,
                narrow=narrowing(request),  # the authorization hook's (web/authorization.py)
            )
            warnings = []
            if result.has_more:
                # PS3.18 §8.3.4.4 / §10.6.3.2: say that the result was truncated.
                warnings.append(
                    "The number of results exceeded the maximum supported by the server."
                    " Additional results can be requested."
                )
            for name in result.not_performed:  # PS3.18 §8.3.4.5-6
                kind = name.removesuffix("valuematching").capitalize()
                warnings.append(f"The {name} parameter is not supported. {kind} Value Matching has not been performed.")
            # RFC 7234 §5.5: several warnings go comma-separated in one header.
            headers = {"Warning": ", ".join(f"299 {base}: {text}" for text in warnings)} if warnings else {}
            return datasets_response(result.results, choice, headers=headers)

        return handler

    async def retrieve(self, request: Request) -> Response:
        """WADO-RS, PS3.18 §10.4: GET a study, series or instance as multipart/related application/dicom."""
        if archive.wants_zip(request):  # application/zip (Supplement 211): web/archive.py
            return await archive.download(self.kit, request)
        plan = await wado.plan_retrieve(
            self.kit, _scope(request), request.headers.get("accept"), accept_param=_accept_param(request)
        )
        syntax = plan.choice.transfer_syntax
        params = {} if syntax in (None, "*") else {"transfer-syntax": syntax}
        body = await wado.retrieve_body(self.kit, plan)
        return StreamingResponse(
            body.chunks,
            headers=None if body.length is None else {"Content-Length": str(body.length)},
            media_type=multipart_content_type("application/dicom", plan.boundary, **params),
        )

    async def delete(self, request: Request) -> Response:
        """DELETE a study, series or instance (``Settings.allow_delete``): 204, or 404."""
        await delete.delete_resource(self.kit, _scope(request))
        return Response(status_code=204)

    async def metadata(self, request: Request) -> Response:
        """WADO-RS metadata, PS3.18 §10.4.1.1.2: DICOM JSON array or multipart XML."""
        choice = negotiate(request.headers.get("accept"), LIST_OFFERS, accept_param=_accept_param(request))
        scope = _scope(request)
        base = service_url(request)
        summary = await wado.require_summary(self.kit, scope)
        etag = wado.metadata_etag(summary, base, str(choice.offer))
        headers = {"ETag": etag, "Cache-Control": "no-cache"}
        if _matches_etag(request.headers.get("if-none-match"), etag):
            return Response(status_code=304, headers=headers)  # RFC 9110 §13.1.2
        body: AsyncIterator[bytes | memoryview]
        if choice.offer.part_type == XML_TYPE:
            boundary = new_boundary()
            body = xml_parts(wado.metadata_xml(self.kit, scope, base), boundary)
            media_type = multipart_content_type(XML_TYPE, boundary)
        else:
            body = wado.metadata_json(self.kit, scope, base)
            media_type = choice.offer.media_type
        body = gzip_if_accepted(request.headers.get("accept-encoding"), body, headers)
        return StreamingResponse(body, headers=headers, media_type=media_type)
