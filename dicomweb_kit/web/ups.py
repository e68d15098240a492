"""UPS-RS resources (PS3.18 §11): the workitem transactions over HTTP.

Thin: parse the request, call :mod:`dicomweb_kit.ups.service`, render. Bodies are DICOM JSON
(``application/dicom+json``, ``application/json``) or DICOM XML (``application/dicom+xml``);
so are responses, by Accept. A refusal carries the Warning text PS3.18 prescribes for it
(``Warning: 299 <service>: <text>``) and a body saying exactly what was wrong.

Choices: the Create response has no payload (201 with Location and Content-Location, PS3.18
§11.4.3); Change State and Request Cancellation answer with an empty payload (the status and
Warning header are the status report). Search returns each workitem's whole dataset (a superset
of the Table CC.2.5-3 return keys, so ``includefield`` adds nothing).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from ..codecs import dicom_json, dicom_xml
from ..errors import InvalidRequest, PayloadTooLarge, UnsupportedMediaType, WorkitemRefused
from ..media_types import Offer, negotiate
from ..query.qido_params import parse_qido
from ..resources import Level, ResourceKey
from ..ups import service
from ..ups.requirements import STATE, TRANSACTION_UID, value
from .endpoints import JSON_OFFERS, LIST_OFFERS, service_url
from .responses import XML_TYPE, dataset_response, datasets_response

if TYPE_CHECKING:
    from ..kit import DicomWeb

__all__ = ["WorkitemEndpoints"]

MAX_BODY: Final = 8 << 20  # a workitem is a few kB; this bounds what a request may make us parse
ONE_OFFERS: Final = [*JSON_OFFERS, Offer(XML_TYPE)]
# PS3.18 §11.6.1 / §11.7.1: the parameter was `transaction` in some editions, `transaction-uid` in others.
_TRANSACTION_PARAMS: Final = frozenset({"transaction", "transaction-uid", "transactionuid"})
# PS3.18 §11.4.1: `AffectedSOPInstanceUID`; earlier editions named it `workitem`.
_CREATE_UID_PARAMS: Final = frozenset({"affectedsopinstanceuid", "workitem"})

Handler = Callable[[Request], Awaitable[Response]]


def _param(request: Request, names: frozenset[str]) -> str | None:
    found = {value for key, value in request.query_params.multi_items() if key.lower() in names}
    if len(found) > 1:
        raise InvalidRequest(f"Query parameters {', '.join(sorted(names))} give different values: {sorted(found)}")
    return found.pop() if found else None


async def _read(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY:
        raise PayloadTooLarge(f"The request body of {declared} bytes is larger than a workitem may be ({MAX_BODY})")
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY:
                raise PayloadTooLarge(f"The request body is larger than a workitem may be ({MAX_BODY} bytes)")
    except ClientDisconnect as exc:
        raise InvalidRequest("The request body ended early: the client disconnected") from exc
    return bytes(body)


async def _dataset(request: Request, *, optional: bool = False) -> dict[str, Any]:
    """The request's one dataset, DICOM JSON (an object or an array of one) or DICOM XML."""
    data = await _read(request)
    content_type = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if not data.strip():
        if optional:
            return {}
        raise InvalidRequest("The request has no payload: a DICOM JSON or XML dataset is required")
    if content_type in ("application/dicom+json", "application/json"):
        parsed = dicom_json.decode(data)
        if isinstance(parsed, list):
            if len(parsed) != 1:
                raise InvalidRequest(f"The payload holds {len(parsed)} datasets; exactly one is expected")
            parsed = parsed[0]
        if not isinstance(parsed, dict):
            raise InvalidRequest("The payload is not a DICOM JSON object (PS3.18 §F.2)")
        return parsed
    if content_type == XML_TYPE:
        return dicom_xml.xml_to_json_dict(data)
    raise UnsupportedMediaType(
        f"Content-Type {content_type or '(none)'!r} is not accepted: send application/dicom+json or {XML_TYPE}"
    )


def _workitem_uid(request: Request) -> str:
    return str(request.path_params["workitem"])


def _location(request: Request, uid: str) -> str:
    return f"{service_url(request)}/workitems/{uid}"


def _warning(request: Request, text: str) -> str:
    # PS3.18 §8.4 / §11.x: "Warning: 299 <service>: <text>".
    return f"299 {service_url(request)}: {text}"


def _refused(handler: Handler) -> Handler:
    async def guarded(request: Request) -> Response:
        try:
            return await handler(request)
        except WorkitemRefused as refusal:
            headers = {"Warning": _warning(request, refusal.warning or refusal.message)}
            return Response(refusal.message + "\n", refusal.http_status, headers, media_type="text/plain")

    guarded.__doc__ = handler.__doc__
    return guarded


def _headers(request: Request, result: service.Result) -> dict[str, str]:
    headers = {"Content-Location": _location(request, result.workitem.uid)}
    if result.response.warning:
        headers["Warning"] = _warning(request, result.response.warning)
    return headers


class WorkitemEndpoints:
    """The UPS-RS handlers of one kit."""

    def __init__(self, kit: DicomWeb) -> None:
        self.kit = kit
        self.create = _refused(self._create)
        self.retrieve = _refused(self._retrieve)
        self.update = _refused(self._update)
        self.change_state = _refused(self._change_state)
        self.request_cancellation = _refused(self._request_cancellation)
        self.search = _refused(self._search)

    async def _create(self, request: Request) -> Response:
        """Create Workitem, PS3.18 §11.4: POST /workitems{?AffectedSOPInstanceUID}."""
        uid = _param(request, _CREATE_UID_PARAMS)
        bare = request.url.query
        if uid is None and bare and "=" not in bare and "&" not in bare:
            # `POST /workitems?1.2.3`: the UID as the whole query, as some clients of earlier
            # editions send it; service.create validates it like any other.
            uid = bare
        result = await service.create(self.kit, await _dataset(request), uid=uid)
        location = _location(request, result.workitem.uid)
        headers = {"Location": location, "Content-Location": location}
        return Response(status_code=result.response.http_status, headers=headers)

    async def _retrieve(self, request: Request) -> Response:
        """Retrieve Workitem, PS3.18 §11.5: GET /workitems/{workitem}."""
        choice = negotiate(request.headers.get("accept"), ONE_OFFERS, accept_param=request.query_params.get("accept"))
        item = await service.retrieve(self.kit, _workitem_uid(request))
        headers = {"Content-Location": _location(request, item.uid)}
        if choice.offer.media_type == XML_TYPE:
            return dataset_response(item.attributes, choice, headers=headers)
        # PS3.18 §F.2: a DICOM JSON response is an array of datasets, here one.
        return Response(dicom_json.encode([item.attributes]), 200, headers, media_type=choice.offer.media_type)

    async def _update(self, request: Request) -> Response:
        """Update Workitem, PS3.18 §11.6: POST /workitems/{workitem}{?transaction}."""
        transaction = _param(request, _TRANSACTION_PARAMS)
        result = await service.update(
            self.kit, _workitem_uid(request), await _dataset(request), transaction_uid=transaction
        )
        return Response(status_code=result.response.http_status, headers=_headers(request, result))

    async def _change_state(self, request: Request) -> Response:
        """Change Workitem State, PS3.18 §11.7: PUT /workitems/{workitem}/state."""
        dataset = await _dataset(request)
        state = value(dataset, STATE)
        if not isinstance(state, str) or not state.strip():
            raise InvalidRequest("The payload has no Procedure Step State (0074,1000)")
        in_body = value(dataset, TRANSACTION_UID)
        in_query = _param(request, _TRANSACTION_PARAMS)
        if in_body is not None and in_query is not None and str(in_body).strip() != in_query.strip():
            raise InvalidRequest(
                "The Transaction UID (0008,1195) of the payload differs from the transaction parameter"
            )
        transaction = str(in_body) if in_body is not None else in_query
        result = await service.change_state(self.kit, _workitem_uid(request), state, transaction_uid=transaction)
        return Response(status_code=result.response.http_status, headers=_headers(request, result))

    async def _request_cancellation(self, request: Request) -> Response:
        """Request Cancellation, PS3.18 §11.8: POST /workitems/{workitem}/cancelrequest."""
        reason = await _dataset(request, optional=True)
        result = await service.request_cancellation(self.kit, _workitem_uid(request), reason)
        return Response(status_code=result.response.http_status, headers=_headers(request, result))

    async def _search(self, request: Request) -> Response:
        """Search for Workitems, PS3.18 §11.9: GET /workitems{?query*} (QIDO-RS matching, §8.3.4)."""
        choice = negotiate(request.headers.get("accept"), LIST_OFFERS, accept_param=request.query_params.get("accept"))
        settings = self.kit.settings
        query = parse_qido(
            request.query_params.multi_items(),
            Level.INSTANCE,  # the level is not used: workitems are one flat list
            ResourceKey(),
            max_terms=settings.max_query_terms,
            default_limit=settings.qido_default_limit,
            max_limit=settings.qido_max_limit,
        )
        page = await service.search(self.kit, query)
        warnings = []
        if page.has_more:  # PS3.18 §8.3.4.4
            warnings.append(
                "The number of results exceeded the maximum supported by the server."
                " Additional results can be requested."
            )
        for name in query.not_performed:  # PS3.18 §8.3.4.5-6
            kind = name.removesuffix("valuematching").capitalize()
            warnings.append(f"The {name} parameter is not supported. {kind} Value Matching has not been performed.")
        headers = {"Warning": ", ".join(_warning(request, text) for text in warnings)} if warnings else {}
        return datasets_response([item.attributes for item in page.items], choice, headers=headers)
