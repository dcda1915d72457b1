"""The speaker page ``/w/{webinar_id}/speak`` and its pre-flight check (R-ROOM-4).

Speakers, moderators and organizers of the webinar only (others get 404, like
the moderator panel). The camera room itself appears only for webcam webinars
in a state whose room is open; a studio webinar's page says speakers use an
encoder there.

Pre-flight: the page times ``POST /w/{id}/speak/preflight`` (a body of random
bytes, at most :data:`PREFLIGHT_MAX_BYTES`) and ``GET /w/{id}/speak/preflight?bytes=N``.
The server also times the upload it receives (first to last body byte) and keeps
the figure per person: going on stage is refused below :data:`MIN_UPLOAD_MBPS`
(and without a check in the last :data:`PREFLIGHT_VALID_S`); the page warns below
:data:`WARN_UPLOAD_MBPS`.

Media node: a webcam room's peers, program and pre-flight results live in the process
that takes its speakers. With several nodes only the media node does (setting
``enable_webcam``); the others refuse what would act on the room's media with
:data:`MEDIA_NODE_CODE` and :func:`media_node_refusal`'s message (the speaker socket
``/ws/speak/{id}`` in :mod:`rooms.ws`, the pre-flight upload here, content uploads and
deletions in :mod:`rooms.webcam.content_routes`), and the proxy sends all of them to the
media node (docs/DEPLOYMENT.md, "Webcam rooms").
"""

from __future__ import annotations

import os
import time
import uuid

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from rooms.pages import STATIC_URL
from rooms.participants import ROOM_STATES, staff_role
from server.errors import NotFound
from server.settings import Settings
from server.web import CSRF_COOKIE, AppRoute, path_uuid, render, require_user, services
from server.webinars import Webinar, get_webinar

MIN_UPLOAD_MBPS = 1.0
"""R-ROOM-4: below this upload rate (megabits per second) a person cannot speak."""
WARN_UPLOAD_MBPS = 3.5
"""R-ROOM-4: below this upload rate the page warns (the picture may suffer)."""
PREFLIGHT_MAX_BYTES = 8 * 1024 * 1024
"""Largest pre-flight upload or download (bytes)."""
PREFLIGHT_DEFAULT_BYTES = 2 * 1024 * 1024
PREFLIGHT_VALID_S = 3600.0
"""Seconds a pre-flight result stays valid for going on stage."""
_RANDOM_BLOCK = os.urandom(256 * 1024)  # incompressible filler for downloads (a proxy cannot shrink it)
MEDIA_NODE_CODE = "media_node"
"""Error code of a refusal on a node that does not run webcam rooms' media."""
MEDIA_NODE_STATUS = 421
"""HTTP status of that refusal (Misdirected Request: another server answers this)."""


def media_node_refusal(settings: Settings) -> str | None:
    """Why this node takes no webcam speaker (``enable_webcam`` off), or None."""
    if settings.enable_webcam:
        return None
    node = f" ({settings.node_name})" if settings.node_name else ""
    return (f"this server{node} does not run webcam rooms (WEBINAR_ENABLE_WEBCAM=0): speakers, their "
            "connection check and shared content go to the media node. Open the speaker page through the "
            "site's public address (its proxy routes /ws/speak/, /w/ID/speak and /webinars/ID/content there)")


def media_node_response(settings: Settings) -> JSONResponse | None:
    """The HTTP refusal of :func:`media_node_refusal` (status :data:`MEDIA_NODE_STATUS`), or None."""
    message = media_node_refusal(settings)
    if message is None:
        return None
    return JSONResponse({"error": MEDIA_NODE_CODE, "message": message}, status_code=MEDIA_NODE_STATUS,
                        headers={"cache-control": "no-store"})


class PreflightResults:
    """Server-measured upload rates per (webinar, user), in memory (this node)."""

    def __init__(self) -> None:
        self._results: dict[tuple[uuid.UUID, uuid.UUID], tuple[float, float]] = {}

    def record(self, webinar_id: uuid.UUID, user_id: uuid.UUID, upload_mbps: float) -> None:
        self._results[(webinar_id, user_id)] = (upload_mbps, time.monotonic())
        if len(self._results) > 10_000:
            self._results.clear()

    def upload_mbps(self, webinar_id: uuid.UUID, user_id: uuid.UUID) -> float | None:
        """The latest valid measurement, or None (never measured, or too old)."""
        found = self._results.get((webinar_id, user_id))
        if found is None or time.monotonic() - found[1] > PREFLIGHT_VALID_S:
            return None
        return found[0]


def stage_refusal(results: PreflightResults, webinar_id: uuid.UUID, user_id: uuid.UUID | None) -> str | None:
    """Why this person may not go on stage now (R-ROOM-4), or None."""
    if user_id is None:
        return "only speakers and moderators go on stage"
    mbps = results.upload_mbps(webinar_id, user_id)
    if mbps is None:
        return "run the connection check of the speaker page first"
    if mbps < MIN_UPLOAD_MBPS:
        return (f"your upload rate ({mbps:.2f} Mbps) is below {MIN_UPLOAD_MBPS:g} Mbps: you cannot speak "
                "from this connection")
    return None


def results_of(request: Request) -> PreflightResults:
    extras = services(request).extras
    found = extras.get("preflight")
    if found is None:
        found = extras["preflight"] = PreflightResults()
    return found  # type: ignore[no-any-return]


async def _staff_webinar(request: Request) -> tuple[Webinar, str, uuid.UUID]:
    webinar_id = path_uuid(request, "webinar_id")
    user = await require_user(request)
    db = services(request).db
    webinar = await get_webinar(db, webinar_id)
    role = await staff_role(db, user, webinar_id)
    if role not in ("speaker", "moderator"):
        raise NotFound("webinar")
    return webinar, role, user.id


async def speak_page(request: Request) -> Response:
    webinar, role, _ = await _staff_webinar(request)
    open_room = webinar.room_type == "webcam" and webinar.state in ROOM_STATES
    config = {
        "webinarId": str(webinar.id), "role": role, "iceServers": services(request).settings.ice_server_list,
        "minUploadMbps": MIN_UPLOAD_MBPS, "warnUploadMbps": WARN_UPLOAD_MBPS,
        "preflightBytes": PREFLIGHT_DEFAULT_BYTES,
    }
    response = await render(request, "speak.html", webinar=webinar, open_room=open_room, speak_config=config,
                            room_static=STATIC_URL)
    response.headers["cache-control"] = "no-store"
    return response


async def preflight_upload(request: Request) -> Response:
    """Times the received body; answers ``{"bytes", "seconds", "upload_mbps"}`` and records it."""
    webinar, _, user_id = await _staff_webinar(request)
    refused = media_node_response(services(request).settings)
    if refused is not None:  # a result measured here would not be seen by the node running the room
        return refused
    cookie = request.cookies.get(CSRF_COOKIE)
    if not services(request).signer.csrf_ok(cookie, request.headers.get("x-csrf-token")):
        return JSONResponse({"error": "csrf", "message": "reload the page (missing or stale CSRF token)"},
                            status_code=403)
    received = 0
    first: float | None = None
    async for chunk in request.stream():
        if chunk and first is None:
            first = time.perf_counter()
        received += len(chunk)
        if received > PREFLIGHT_MAX_BYTES:
            return JSONResponse({"error": "too_large", "message": f"at most {PREFLIGHT_MAX_BYTES} bytes"},
                                status_code=413)
    last = time.perf_counter()
    if received < 64 * 1024 or first is None:
        return JSONResponse({"error": "too_small", "message": "send at least 64 KiB to measure"}, status_code=400)
    # The first chunk arrived before the clock started: count the rest only.
    seconds = max(last - first, 1e-4)
    mbps = received * 8 / seconds / 1e6
    results_of(request).record(webinar.id, user_id, mbps)
    return JSONResponse({"bytes": received, "seconds": round(seconds, 4), "upload_mbps": round(mbps, 2)},
                        headers={"cache-control": "no-store"})


async def preflight_download(request: Request) -> Response:
    """``bytes`` (64 KiB to 8 MiB, default 2 MiB) of random data, not cacheable."""
    await _staff_webinar(request)
    try:
        size = int(request.query_params.get("bytes", PREFLIGHT_DEFAULT_BYTES))
    except ValueError:
        size = -1
    if not 64 * 1024 <= size <= PREFLIGHT_MAX_BYTES:
        return JSONResponse({"error": "bad_size", "message": f"bytes must be 65536 to {PREFLIGHT_MAX_BYTES}"},
                            status_code=400)
    body = (_RANDOM_BLOCK * (size // len(_RANDOM_BLOCK) + 1))[:size]
    return Response(body, media_type="application/octet-stream", headers={"cache-control": "no-store"})


routes = [
    AppRoute("/w/{webinar_id}/speak", speak_page, access="user", methods=["GET"]),
    AppRoute("/w/{webinar_id}/speak/preflight", preflight_upload, access="user", methods=["POST"]),
    AppRoute("/w/{webinar_id}/speak/preflight", preflight_download, access="user", methods=["GET"]),
]
