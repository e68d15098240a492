"""UPS-RS subscriptions over HTTP (PS3.18 §11.10-11.12) and the notification channel, a WebSocket
(PS3.18 §8.10.4 Open Notification Connection, §8.10.5 Send Event Report).

* ``POST   /workitems/{uid}/subscribers/{aetitle}{?deletionlock}``: Subscribe; 201 (§11.10.3).
  ``{uid}`` is a workitem, the Worklist (``1.2.840.10008.5.1.4.34.5``) or the Filtered Worklist
  (``1.2.840.10008.5.1.4.34.5.1``, with ``filter=`` or bare match keys).
* ``DELETE /workitems/{uid}/subscribers/{aetitle}``: Unsubscribe; 200 (§11.11.3).
* ``POST   /workitems/{worklist uid}/subscribers/{aetitle}/suspend``: Suspend; 200 (§11.12.3).
* ``ws(s)://.../subscribers/{aetitle}``: the AE's channel. On connect it sends, in order, every
  report queued while the AE was away, then each new one as it is recorded. One text frame per
  report (``dicomweb_kit.ups.events`` documents the DICOM JSON). Frames from the client are
  read and ignored. A report is removed from the AE's log once written to the socket; one whose
  write fails stays for the next connection. (WebSocket has no application-level acknowledgement
  in PS3.18: a report written just before the connection broke may be lost.) One channel per AE
  is the model; with several open at once, each report reaches at least one of them.

Bad UIDs, AE titles, ``deletionlock`` values and filters are 400; an unknown workitem 404. A
WebSocket with a bad AE title is refused with 400 where the server supports denial responses,
else closed with 1008 (policy violation) before it opens.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import anyio
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from ..errors import InvalidRequest
from ..ups import subscribing
from ..ups.events import report_for_channel, subscriber_topic
from ..ups.subscriptions import FILTERED_WORKLIST_UID

if TYPE_CHECKING:
    from ..kit import DicomWeb

__all__ = ["UpsEventEndpoints", "until_client_leaves"]

log = logging.getLogger("dicomweb_kit.web")

_BATCH = 100
_GOING_AWAY = 1001
_POLICY_VIOLATION = 1008


class UpsEventEndpoints:
    """The subscription resources and the notification channel of one kit."""

    def __init__(self, kit: DicomWeb) -> None:
        self.kit = kit

    async def subscribe(self, request: Request) -> Response:
        target, ae_title = request.path_params["workitem"], request.path_params["ae_title"]
        params = request.query_params.multi_items()
        locks = [value for name, value in params if name.lower() == "deletionlock"]
        if len(locks) > 1:
            raise InvalidRequest("Query parameter 'deletionlock' is given more than once")
        lock = subscribing.parse_deletion_lock(locks[0] if locks else None)
        keys = subscribing.parse_filter(params)
        if keys and target != FILTERED_WORKLIST_UID:
            raise InvalidRequest(
                f"Match keys ({', '.join(name for name, _ in keys)}) are for the Filtered Worklist "
                f"subscription ({FILTERED_WORKLIST_UID}) only"
            )
        await subscribing.subscribe(self.kit, target, ae_title, deletion_lock=lock, filter=keys)
        return Response(status_code=201)

    async def unsubscribe(self, request: Request) -> Response:
        target, ae_title = request.path_params["workitem"], request.path_params["ae_title"]
        await subscribing.unsubscribe(self.kit, target, ae_title)
        return Response(status_code=200)

    async def suspend(self, request: Request) -> Response:
        await subscribing.suspend(self.kit, request.path_params["workitem"], request.path_params["ae_title"])
        return Response(status_code=200)

    async def channel(self, websocket: WebSocket) -> None:
        try:
            ae_title = subscribing.parse_ae_title(websocket.path_params["ae_title"])
        except InvalidRequest as err:
            if "websocket.http.response" in websocket.scope.get("extensions", {}):
                await websocket.send_denial_response(PlainTextResponse(err.message + "\n", status_code=400))
            else:
                await websocket.close(code=_POLICY_VIOLATION, reason=err.message[:120])
            return
        await websocket.accept()
        open_ = False  # stays False when the client leaves (the sender is cancelled)
        async with self.kit.events.subscribe(subscriber_topic(ae_title)) as wakeups, anyio.create_task_group() as group:
            group.start_soon(until_client_leaves, websocket, group.cancel_scope)
            open_ = await self._send_reports(websocket, ae_title, wakeups)
            group.cancel_scope.cancel()
        if open_ and websocket.application_state == WebSocketState.CONNECTED:
            await websocket.close(code=_GOING_AWAY)  # the kit is shutting down

    async def _send_reports(self, websocket: WebSocket, ae_title: str, wakeups: AsyncIterator[bytes]) -> bool:
        """Send the log from the AE's cursor on, then wait for the bus (or the poll interval).
        Returns when the bus closes (True) or the connection breaks (False)."""
        store = self.kit.subscriptions
        poll = self.kit.settings.ups_channel_poll_interval
        cursor = await store.cursor(ae_title)
        while True:
            batch = await store.read(ae_title, after=cursor, limit=_BATCH)
            try:
                for entry in batch:
                    await websocket.send_text(report_for_channel(entry.message, entry.seq))
                    cursor = entry.seq
            except (WebSocketDisconnect, OSError, RuntimeError) as err:
                # RuntimeError: starlette's "send after close"; OSError: the socket broke.
                log.info("notification channel of %s closed: %s", ae_title, err)
                return False
            finally:
                if batch and cursor >= batch[0].seq:
                    with anyio.CancelScope(shield=True):  # also when the client just left
                        await store.acknowledge(ae_title, cursor)
            if batch:
                continue
            with anyio.move_on_after(poll):
                try:
                    await anext(wakeups)
                except StopAsyncIteration:
                    return True


async def until_client_leaves(websocket: WebSocket, scope: anyio.CancelScope) -> None:
    """Read (and ignore) what the client sends; when it disconnects, stop the sender."""
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
    finally:
        scope.cancel()
