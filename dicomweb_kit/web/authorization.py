"""The authorization hook in the web layer: one wrapper around every handler of the route table.

``web/app.py`` wraps each operation's handler with :func:`guard` (and the WebSocket channels
with :func:`guard_websocket`), so no resource can be served without asking the hook: an
operation of the table whose kind :func:`access_kind` cannot tell fails the app's construction.
Policy and semantics: :mod:`dicomweb_kit.authorization`.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Final

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.websockets import WebSocket

from ..authorization import STUDY_KINDS, Access, AccessKind, Authorizer, Deny, Narrow, study_visible
from ..errors import ConfigurationError, DicomWebError
from ..query.qido_params import parse_qido
from ..query.terms import Term
from ..resources import Level, ResourceKey

if TYPE_CHECKING:
    from ..kit import DicomWeb
    from .route_table import Handler, Operation

__all__ = ["access_kind", "guard", "guard_request", "guard_websocket", "narrowing"]

#: Where the wrapper leaves a QIDO narrowing for the search handler (an ASGI scope key).
_NARROW: Final = "dicomweb_kit.narrow"
_POLICY_VIOLATION: Final = 1008
_INTERNAL_ERROR: Final = 1011

_BY_NAME: Final[dict[str, AccessKind]] = {
    "CreateWorkitem": "workitem-create",
    "SearchForWorkitems": "workitem-search",
    "RetrieveWorkitem": "workitem-retrieve",
    "UpdateWorkitem": "workitem-update",
    "ChangeWorkitemState": "workitem-state",
    "RequestWorkitemCancellation": "workitem-cancel",
    "CreateSubscription": "workitem-subscribe",
    "DeleteSubscription": "workitem-unsubscribe",
    "SuspendSubscription": "workitem-suspend",
    "ReadChangeFeed": "changefeed",
    "ReadLatestChange": "changefeed",
}
# First match wins: "RetrieveRenderedFrames" is rendered, "RetrieveFramesThumbnail" a thumbnail.
_RULES: Final[tuple[tuple[re.Pattern[str], AccessKind], ...]] = (
    (re.compile(r"^SearchFor(Studies|Series|Instances|StudySeries|StudyInstances|SeriesInstances)$"), "search"),
    (re.compile(r"^Store(Study)?Instances$"), "store"),
    (re.compile(r"^Delete(Study|Series|Instance)$"), "delete"),
    (re.compile(r"Thumbnail$"), "thumbnail"),
    (re.compile(r"^RetrieveRendered"), "rendered"),
    (re.compile(r"Metadata$"), "metadata"),
    (re.compile(r"PixelData$"), "pixeldata"),
    (re.compile(r"Bulkdata$"), "bulkdata"),
    (re.compile(r"^RetrieveFrames$"), "frames"),
    (re.compile(r"^Retrieve(Study|Series|Instance)$"), "retrieve"),
)
_SEARCH_LEVELS: Final = (("Studies", Level.STUDY), ("Series", Level.SERIES), ("Instances", Level.INSTANCE))


def access_kind(operation: Operation, /) -> AccessKind | None:
    """The kind of access an operation of the route table is, or ``None`` if unknown."""
    name = operation.name
    if name in _BY_NAME:
        return _BY_NAME[name]
    return next((kind for pattern, kind in _RULES if pattern.search(name)), None)


def narrowing(request: Request, /) -> tuple[Term, ...]:
    """The match terms the hook narrowed this request's search to (none without a narrowing)."""
    terms: tuple[Term, ...] = request.scope.get(_NARROW, ())
    return terms


def _access(kit: DicomWeb, operation: Operation, kind: AccessKind, request: Request) -> Access:
    params = request.path_params
    key = ResourceKey.parse(params.get("study"), params.get("series"), params.get("instance"))
    query = None
    if kind == "search":
        level = next(level for suffix, level in _SEARCH_LEVELS if operation.name.endswith(suffix))
        settings = kit.settings
        query = parse_qido(
            request.query_params.multi_items(),
            level,
            key,
            max_terms=settings.max_query_terms,
            default_limit=settings.qido_default_limit,
            max_limit=settings.qido_max_limit,
        )
    workitem = params.get("workitem") if kind.startswith("workitem") else None
    return Access(kind, operation.name, request.method, key, query, workitem)


async def _enforce(kit: DicomWeb, authorizer: Authorizer, request: Request | WebSocket, access: Access) -> None:
    """Raise the denial unless the hook lets ``access`` go on; leave a search's narrowing in the scope."""
    decision = await authorizer.decide(request, access)
    if isinstance(decision, Deny):
        raise authorizer.denied(access, decision.message)
    if not isinstance(decision, Narrow):
        return
    if access.kind not in STUDY_KINDS:
        raise authorizer.denied(access, f"{access.operation} is not allowed with a narrowed access")
    study = access.key.study
    if study is not None and not await study_visible(kit, study, decision.terms):
        raise authorizer.denied(access)
    if access.kind == "search":
        request.scope[_NARROW] = decision.terms


def guard(kit: DicomWeb, operation: Operation, handler: Handler, /) -> Handler:
    """``handler``, asking the kit's authorization hook first (unchanged when the kit has none)."""
    authorizer = kit.authorizer
    if authorizer is None:
        return handler
    kind = access_kind(operation)
    if kind is None:
        raise ConfigurationError(
            f"the route table's operation {operation.name} has no access kind for the authorization hook"
            " (add it in dicomweb_kit/web/authorization.py)"
        )

    async def guarded(request: Request) -> Response:
        access = _access(kit, operation, kind, request)
        await _enforce(kit, authorizer, request, access)
        return await handler(request)

    return guarded


def guard_request(kit: DicomWeb, kind: AccessKind, name: str, handler: Handler, /) -> Handler:
    """An HTTP handler outside the route table (the change feed's Server-Sent Events), guarded."""
    authorizer = kit.authorizer
    if authorizer is None:
        return handler

    async def guarded(request: Request) -> Response:
        await _enforce(kit, authorizer, request, Access(kind, name, request.method))
        return await handler(request)

    return guarded


def guard_websocket(
    kit: DicomWeb, kind: AccessKind, name: str, handler: Callable[[WebSocket], Awaitable[None]], /
) -> Callable[[WebSocket], Awaitable[None]]:
    """A WebSocket channel, refused before the handshake completes unless the hook allows it."""
    authorizer = kit.authorizer
    if authorizer is None:
        return handler

    async def guarded(websocket: WebSocket) -> None:
        try:
            await _enforce(kit, authorizer, websocket, Access(kind, name, "WEBSOCKET"))
        except DicomWebError as err:
            if "websocket.http.response" in websocket.scope.get("extensions", {}):
                response = PlainTextResponse(err.message + "\n", status_code=err.http_status)
                await websocket.send_denial_response(response)
            else:  # servers answer a close before accept with 403 (ASGI spec, websocket.close)
                code = _INTERNAL_ERROR if err.http_status >= 500 else _POLICY_VIOLATION
                await websocket.close(code=code, reason=err.message[:120])
            return
        await handler(websocket)

    return guarded
