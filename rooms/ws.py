"""The room WebSocket: ``/ws/rooms/{webinar_id}``, one per viewer, speaker or moderator.

The speaker page opens the same socket as ``/ws/speak/{webinar_id}``: a path a proxy can
pin to the media node, where the webinar's peers and program run (docs/DEPLOYMENT.md,
"Webcam rooms"). A node that does not run webcam media (setting ``enable_webcam`` off)
refuses that socket (an ``error`` ``media_node`` with the reason, then close 4403) and,
on either path, the messages that act on the room's media (:data:`MEDIA_MESSAGES`).

Identity: a viewer passes its join token as ``?token=``; staff come with their
login cookie (then the ``Origin`` header must be this server's, against
cross-site WebSocket hijacking). The first message must be ``hello`` within
:data:`HELLO_TIMEOUT_S`; the server answers ``welcome`` (with a state
snapshot unless the client resumes from a recent event id), then events.

Bad input never crashes anything: oversized, malformed or unknown messages
get an ``error``; more than :data:`rooms.limits.ABUSE_ERRORS` refusals in
:data:`rooms.limits.ABUSE_WINDOW_S` close the socket (1008).

Outgoing frames (events, welcome, acks, errors) go through the connection's
``webinar.frames`` extension (:mod:`server.ws_protocol`: pre-encoded frames
written to the transport, see :mod:`rooms.hub`); under an ASGI server without
it, through :class:`AsgiFrames`. Rate limits count each frame at the time it
was read from the socket (the extension's arrival stamps), so a client within
its limits is not refused because the server was slow to get to its frames.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from prometheus_client import Counter, Gauge
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from billing.attendance import viewer_connected, viewer_disconnected, viewer_heartbeat
from rooms import messages as m
from rooms.commands import CATEGORY, CommandError, Context, execute
from rooms.hub import Client, FrameSink, RoomHub
from rooms.limits import Limiter
from rooms.participants import JoinRefused, Participant, create_guest, for_staff, from_token
from rooms.snapshot import snapshot
from rooms.webcam.speak import MEDIA_NODE_CODE, media_node_refusal
from server.metrics import REGISTRY
from server.sessions import COOKIE as SESSION_COOKIE
from server.sessions import session_user_id
from server.users import get_user
from server.web import AppRoute, read_form, services
from server.ws_protocol import EXTENSION, frame_payloads

log = logging.getLogger("rooms.ws")

HELLO_TIMEOUT_S = 10.0
MEDIA_MESSAGES: tuple[type[m.ClientMessage], ...] = (
    m.RtcOffer, m.RtcIce, m.RtcHangup, m.StageJoin, m.StageLeave, m.StageLayoutSet, m.StageSpotlight,
    *m.CONTENT_MESSAGES)
"""Messages that act on a webcam room's peers, program or content shown: taken only where it runs."""
WS_CONNECTIONS = Gauge("webinar_ws_connections", "Open room WebSockets on this node", registry=REGISTRY)
WS_MESSAGES = Counter("webinar_ws_messages_total", "Client messages by type and outcome", ["type", "outcome"],
                      registry=REGISTRY)


class AsgiFrames:
    """A :class:`rooms.hub.FrameSink` over plain ASGI ``websocket.send`` (servers without the
    ``webinar.frames`` extension): one send in flight at a time, ``paused`` meanwhile."""

    __slots__ = ("_task", "_ws", "on_drain", "paused")

    def __init__(self, ws: WebSocket) -> None:
        self._ws = ws
        self.paused = False
        self.on_drain: Callable[[], None] | None = None
        self._task: asyncio.Task[None] | None = None

    def write(self, frame: bytes) -> None:
        self.paused = True
        self._task = asyncio.get_running_loop().create_task(self._send(frame))

    async def _send(self, frame: bytes) -> None:
        try:
            for payload in frame_payloads(frame):
                await self._ws.send_text(payload.decode())
        except Exception:  # the socket is gone: the receive loop ends the connection
            return
        self.paused = False
        if self.on_drain is not None:
            self.on_drain()


def hub_of(app_state: Any) -> RoomHub:
    return app_state.services.extras["rooms"]  # type: ignore[no-any-return]


async def _identify(ws: WebSocket, webinar_id: uuid.UUID) -> Participant:
    svc = ws.app.state.services
    token = ws.query_params.get("token")
    if token:
        return await from_token(svc.db, svc.signer, webinar_id, token)
    session = ws.cookies.get(SESSION_COOKIE)
    if not session:
        raise JoinRefused("no_identity")
    origin = ws.headers.get("origin")
    if origin is None or urlsplit(origin).netloc != ws.headers.get("host", ""):
        raise JoinRefused("bad_origin")
    user_id = await session_user_id(svc.db, session)
    user = await get_user(svc.db, user_id) if user_id else None
    if user is None:
        raise JoinRefused("no_identity")
    return await for_staff(svc.db, user, webinar_id)


async def room_socket(ws: WebSocket) -> None:
    svc = ws.app.state.services
    try:
        webinar_id = uuid.UUID(ws.path_params["webinar_id"])
        state = await svc.db.fetchval("SELECT state FROM webinars WHERE id = $1", webinar_id)
        if state not in ("announced", "live", "ended", "replay"):
            raise JoinRefused("room_closed")
        participant = await _identify(ws, webinar_id)
        if state == "live":  # attended the live: no replay invitation (server/notifications.py)
            await svc.db.execute(
                "UPDATE participants SET first_seen_live_at = now() WHERE id = $1 AND first_seen_live_at IS NULL",
                participant.id)
    except (ValueError, JoinRefused) as exc:
        await ws.close(code=4403, reason=getattr(exc, "code", "bad_room"))
        return
    await ws.accept()
    WS_CONNECTIONS.inc()
    hub = hub_of(ws.app.state)
    room = await hub.room(webinar_id)
    client: Client | None = None
    limiter = Limiter()
    direct = ws.scope.get("extensions", {}).get(EXTENSION)
    sink: FrameSink = direct if direct is not None else AsgiFrames(ws)
    arrivals: deque[float] | None = direct.arrivals if direct is not None else None

    async def close(code: int, reason: str) -> None:
        try:
            await ws.close(code=code, reason=reason)
        except RuntimeError:
            pass

    try:
        try:
            async with asyncio.timeout(HELLO_TIMEOUT_S):
                first = await ws.receive_text()
            if arrivals:
                arrivals.popleft()  # hello's: each message received pops its own stamp
            hello = m.decode_client(first)
            if not isinstance(hello, m.Hello):
                raise m.ProtocolError("hello_first", "the first message must be hello")
            if hello.v != m.PROTOCOL_VERSION:
                raise m.ProtocolError("version", f"this server speaks protocol version {m.PROTOCOL_VERSION}")
        except (TimeoutError, m.ProtocolError) as exc:
            code = exc.code if isinstance(exc, m.ProtocolError) else "timeout"
            await ws.send_bytes(m.error(code, str(exc) or "no hello in time"))
            await close(1008, code)
            return
        client = Client(participant, sink, close)
        viewer_connected(svc, ws, participant)
        welcome: dict[str, Any] = {"type": "welcome", "v": m.PROTOCOL_VERSION, "participant": participant.public(),
                                   "role": participant.role, "state": None}
        resumed = hello.last_event_id > 0 and await room.attach(client, hello.last_event_id)
        if resumed:
            welcome["last_event_id"] = hello.last_event_id
            welcome["resumed"] = True
            client.send_first(m.encode(welcome))
        else:
            last_id, state = await snapshot(svc.db, participant)
            welcome.update(last_event_id=last_id, state=state, resumed=False)
            client.send_direct(m.encode(welcome))
            await room.attach(client, last_id)
        client.release()
        await _serve(ws, client, limiter, Context(participant, room, hub, svc.db), arrivals)
    except WebSocketDisconnect:
        pass
    finally:
        WS_CONNECTIONS.dec()
        viewer_disconnected(svc, ws)
        if client is not None:
            room.detach(client)
            if client.kicked and client.closing is None:
                # Let it send what is queued (the errors that explain the close), then close.
                deadline = asyncio.get_running_loop().time() + 2.0
                while client.closing is None and asyncio.get_running_loop().time() < deadline:
                    await asyncio.sleep(0.05)
            if client.closing is not None:
                try:
                    await asyncio.wait_for(asyncio.shield(client.closing), 2.0)
                except (TimeoutError, Exception):
                    pass
            client.stop()
        await hub.release(room)


async def speak_socket(ws: WebSocket) -> None:
    """``/ws/speak/{webinar_id}``: :func:`room_socket` for the speaker page, refused on a node
    without webcam media (the reason in an ``error`` frame, then close 4403 ``media_node``)."""
    refusal = media_node_refusal(ws.app.state.services.settings)
    if refusal is None:
        await room_socket(ws)
        return
    await ws.accept()  # accepted first, so the page and the operator can read why
    await ws.send_text(m.error(MEDIA_NODE_CODE, refusal).decode())
    await ws.close(code=4403, reason=MEDIA_NODE_CODE)


async def _serve(ws: WebSocket, client: Client, limiter: Limiter, ctx: Context, arrivals: deque[float] | None) -> None:
    loop = asyncio.get_running_loop()
    media_refusal = media_node_refusal(ws.app.state.services.settings)
    while not client.closed:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            return
        arrived = arrivals.popleft() if arrivals else loop.time()
        frame = message.get("text")
        if frame is None:
            frame = message.get("bytes") or b""
        kind = "invalid"
        ref = None
        try:
            if not limiter.allow("frames", arrived):
                raise m.ProtocolError("rate_limited", "too many messages: slow down")
            msg = m.decode_client(frame)
            kind, ref = type(msg).__name__, msg.ref
            if isinstance(msg, m.Ping):
                client.send_direct(b'{"type":"pong"}')
                continue
            if isinstance(msg, m.Heartbeat):
                # Audience data: billing/attendance.py keeps it in memory and writes in batches.
                counted = await viewer_heartbeat(ws.app.state.services, ws, msg)
                if ref is not None:
                    client.send_direct(m.ack(ref, counted=counted))
                continue
            if isinstance(msg, m.Hello):
                raise m.ProtocolError("invalid", "hello was already received", ref)
            if media_refusal is not None and isinstance(msg, MEDIA_MESSAGES):
                raise CommandError(MEDIA_NODE_CODE, media_refusal)  # else a second program on this node
            category = CATEGORY.get(type(msg), "moderation")
            if not limiter.allow(category, arrived):
                raise CommandError("rate_limited", f"too many {category} messages: wait a moment")
            outcome = await execute(ctx, msg)
            client.send_direct(m.ack(ref, **outcome.ack))
            WS_MESSAGES.labels(kind, "ok").inc()
        except m.ProtocolError as exc:
            WS_MESSAGES.labels(kind, exc.code).inc()
            client.send_direct(m.error(exc.code, str(exc), exc.ref if exc.ref is not None else ref))
            if limiter.note_error(arrived):
                client.kick(1008, "too many invalid messages")
                return
        except CommandError as exc:
            WS_MESSAGES.labels(kind, exc.code).inc()
            client.send_direct(m.error(exc.code, str(exc), ref))
            if exc.code in ("rate_limited", "forbidden", "invalid") and limiter.note_error(arrived):
                client.kick(1008, "too many refused messages")
                return


async def join_as_guest(request: Request) -> Response:
    """``POST /w/{webinar_id}/join`` (form: ``name``, CSRF token): a guest participant and its join token."""
    form = await read_form(request)
    svc = services(request)
    try:
        webinar_id = uuid.UUID(request.path_params["webinar_id"])
        name = form.get("name")
        participant, token = await create_guest(svc.db, svc.signer, webinar_id, name if isinstance(name, str) else "")
    except ValueError:
        return JSONResponse({"error": "not_found"}, status_code=404)
    except JoinRefused as exc:
        status = 422 if exc.code == "bad_name" else 404
        return JSONResponse({"error": exc.code}, status_code=status)
    return JSONResponse({"participant": participant.public(), "token": token})


routes = [
    WebSocketRoute("/ws/rooms/{webinar_id}", room_socket),
    WebSocketRoute("/ws/speak/{webinar_id}", speak_socket),
    AppRoute("/w/{webinar_id}/join", join_as_guest, access="public", methods=["POST"]),
]
