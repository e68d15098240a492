"""The instance change feed over HTTP: a page of entries, the latest one, and live streams.

Not PS3.18: modelled on Microsoft's DICOM change feed (``GET /changefeed?offset=&limit=``,
``GET /changefeed/latest``, entries with Sequence, Timestamp, Action, State and the UIDs), plus
live delivery that nobody ships for DICOMweb:

* ``GET {root}/changefeed?offset=N&limit=M``: up to ``limit`` (default 100, at most 1000)
  entries with ``Sequence > offset``, oldest first, as a JSON array.
* ``GET {root}/changefeed/latest``: the newest entry (``{"Sequence": 0}`` while the feed is
  empty, so a client can always start from ``Sequence``).
* ``GET {root}/changefeed/events``: Server-Sent Events (WHATWG HTML §9.2), one ``change`` event
  per entry with ``id: <Sequence>``; a reconnecting ``EventSource`` sends ``Last-Event-ID`` and
  gets everything after it, then live entries. ``after=N`` starts a first connection elsewhere
  than at the beginning. A comment line is sent when idle, to keep proxies from closing it.
* ``ws(s)://{root}/changefeed/ws?after=N``: the same as text frames, one JSON entry each.

Every form takes the filters ``StudyInstanceUID``, ``SeriesInstanceUID`` and ``Modality``
(exact values). Bad parameters are 400 (a WebSocket is refused with 400, or closed with 1008
where the server cannot send a denial response); a kit without a feed answers 404.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Final

import anyio
import msgspec
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from ..changefeed import ChangeEntry, ChangeFeed, ChangeFilter, follow_with_idle
from ..errors import InvalidRequest, ResourceNotFound
from ..resources import validate_uid
from .ups_events import until_client_leaves

if TYPE_CHECKING:
    from ..kit import DicomWeb

__all__ = ["DEFAULT_LIMIT", "KEEP_ALIVE_SECONDS", "MAX_LIMIT", "SSE_PATH", "WS_PATH", "ChangeFeedEndpoints"]

log = logging.getLogger("dicomweb_kit.web")

DEFAULT_LIMIT: Final = 100
MAX_LIMIT: Final = 1000
KEEP_ALIVE_SECONDS: Final = 15.0
SSE_PATH: Final = "/changefeed/events"
WS_PATH: Final = "/changefeed/ws"
_FILTERS: Final = {"studyinstanceuid": "study_uid", "seriesinstanceuid": "series_uid", "modality": "modality"}
_GOING_AWAY = 1001
_POLICY_VIOLATION = 1008
_encode = msgspec.json.Encoder().encode


def _integer(name: str, value: str, minimum: int, maximum: int | None = None) -> int:
    if not value.isascii() or not value.isdigit():
        raise InvalidRequest(f"Query parameter {name!r} must be a whole number, not {value[:40]!r}")
    number = int(value)
    if number < minimum or (maximum is not None and number > maximum):
        bound = f"{minimum}-{maximum}" if maximum is not None else f"at least {minimum}"
        raise InvalidRequest(f"Query parameter {name!r} must be {bound}, not {number}")
    return number


def parse_params(
    params: list[tuple[str, str]], /, *, allowed: tuple[str, ...]
) -> tuple[dict[str, int], ChangeFilter | None]:
    """The numeric parameters in ``allowed`` and the filter; 400 for anything unknown, repeated or bad."""
    numbers: dict[str, int] = {}
    filters: dict[str, str] = {}
    seen: set[str] = set()
    for name, value in params:
        key = name.lower()
        if key in seen:
            raise InvalidRequest(f"Query parameter {name!r} is given more than once")
        seen.add(key)
        if key in allowed:
            numbers[key] = _integer(name, value, 1 if key == "limit" else 0, MAX_LIMIT if key == "limit" else None)
        elif key in _FILTERS:
            if key == "modality":
                # PS3.5 Table 6.2-1: CS, at most 16 upper-case letters, digits, space or underscore.
                if not value or len(value) > 16 or not all(c.isupper() or c.isdigit() or c in " _" for c in value):
                    raise InvalidRequest(f"Modality must be a code string (CS) of 1-16 characters, not {value[:40]!r}")
            else:
                try:
                    validate_uid(value, name=name)
                except ValueError as exc:
                    raise InvalidRequest(str(exc)) from exc
            filters[_FILTERS[key]] = value
        else:
            known = ", ".join([*allowed, "StudyInstanceUID", "SeriesInstanceUID", "Modality"])
            raise InvalidRequest(f"Unknown query parameter {name!r} (known: {known})")
    return numbers, ChangeFilter(**filters) if filters else None


def _json(entry: ChangeEntry) -> bytes:
    return _encode(entry.to_json())


class ChangeFeedEndpoints:
    """The change feed resources of one kit."""

    def __init__(self, kit: DicomWeb) -> None:
        self.kit = kit

    def _feed(self) -> ChangeFeed:
        if self.kit.changefeed is None:
            raise ResourceNotFound("this service keeps no change feed (its index has none)")
        return self.kit.changefeed

    async def entries(self, request: Request) -> Response:
        feed = self._feed()
        numbers, filter = parse_params(request.query_params.multi_items(), allowed=("offset", "limit"))
        found = await feed.read(
            after=numbers.get("offset", 0), limit=numbers.get("limit", DEFAULT_LIMIT), filter=filter
        )
        body = b"[" + b",".join(_json(entry) for entry in found) + b"]"
        return Response(body, media_type="application/json")

    async def latest(self, request: Request) -> Response:
        feed = self._feed()
        parse_params(request.query_params.multi_items(), allowed=())
        entry = await feed.latest()
        return Response(_json(entry) if entry is not None else b'{"Sequence":0}', media_type="application/json")

    async def events(self, request: Request) -> Response:
        feed = self._feed()
        numbers, filter = parse_params(request.query_params.multi_items(), allowed=("after",))
        after = numbers.get("after", 0)
        last_id = request.headers.get("last-event-id")
        if last_id is not None and last_id.strip():  # a reconnect: resume after what it saw
            after = _integer("Last-Event-ID", last_id.strip(), 0)
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        if request.method == "HEAD":  # the headers only: a stream would never end
            return Response(headers=headers, media_type="text/event-stream")
        return StreamingResponse(
            self._event_stream(feed, after, filter), media_type="text/event-stream", headers=headers
        )

    async def _event_stream(self, feed: ChangeFeed, after: int, filter: ChangeFilter | None) -> AsyncIterator[bytes]:
        yield b"retry: 2000\n\n"
        stream = follow_with_idle(feed, self.kit, after=after, filter=filter, poll_interval=KEEP_ALIVE_SECONDS)
        async for entry in stream:
            if entry is None:
                yield b": keep-alive\n\n"
            else:
                yield b"id: %d\nevent: change\ndata: %s\n\n" % (entry.sequence, _json(entry))

    async def channel(self, websocket: WebSocket) -> None:
        try:
            feed = self._feed()
            numbers, filter = parse_params(websocket.query_params.multi_items(), allowed=("after",))
        except (InvalidRequest, ResourceNotFound) as err:
            status = 404 if isinstance(err, ResourceNotFound) else 400
            if "websocket.http.response" in websocket.scope.get("extensions", {}):
                await websocket.send_denial_response(PlainTextResponse(err.message + "\n", status_code=status))
            else:
                await websocket.close(code=_POLICY_VIOLATION, reason=err.message[:120])
            return
        await websocket.accept()
        open_ = False
        async with anyio.create_task_group() as group:
            group.start_soon(until_client_leaves, websocket, group.cancel_scope)
            open_ = await self._send(websocket, feed, numbers.get("after", 0), filter)
            group.cancel_scope.cancel()
        if open_ and websocket.application_state == WebSocketState.CONNECTED:
            await websocket.close(code=_GOING_AWAY)  # the kit is shutting down

    async def _send(self, websocket: WebSocket, feed: ChangeFeed, after: int, filter: ChangeFilter | None) -> bool:
        """Send entries until the bus closes (True) or the connection breaks (False)."""
        poll = KEEP_ALIVE_SECONDS
        try:
            async for entry in follow_with_idle(feed, self.kit, after=after, filter=filter, poll_interval=poll):
                if entry is not None:
                    await websocket.send_text(_json(entry).decode())
        except (WebSocketDisconnect, OSError, RuntimeError) as err:
            # RuntimeError: starlette's "send after close"; OSError: the socket broke.
            log.info("change feed WebSocket closed: %s", err)
            return False
        return True
