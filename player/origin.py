"""The LL-HLS origin: playlists and media over HTTP.

Routes (``access="public"``: what viewers load)::

    GET /hls/{webinar_id}/master.m3u8    multivariant playlist, only for a live (or its
                                         replay) with the lower rendition on; 404 otherwise
    GET /hls/{webinar_id}/index.m3u8     source rendition: live media playlist (blocking
                                         reload, delta updates), or the VOD playlist once ended
    GET /hls/{webinar_id}/{name}         init{n}.mp4, seg{msn}.m4s, seg{msn}.{part}.m4s
    GET /hls/{webinar_id}/{rendition}/index.m3u8 and /{rendition}/{name}
                                         the same for a named rendition (``480p``)

Every rendition is served by the same handlers, looked up by name
(:meth:`player.live.LiveManager.rendition`); its stored files are under
:func:`player.publication.rendition_prefix`. A live media playlist of a live
with several renditions carries ``EXT-X-RENDITION-REPORT`` lines for the
others. The multivariant playlist of a running live is built from the
publications (measured ``BANDWIDTH``, ``CODECS`` and ``RESOLUTION`` of the
init segments, see :mod:`player.renditions`); the replay's is the file the
live manager wrote at the end.

Caching, so a CDN or nginx can sit in front: init sections, parts and
segments never change once served (``max-age`` one year, ``immutable``); a
live playlist is fresh for :data:`LIVE_PLAYLIST_MAX_AGE` second (a blocking
request names an exact msn/part, so its answer may be cached longer); the VOD
playlist for a day. A request for the part named by the preload hint is held
until the part exists (LL-HLS §6.2.6), at most three target durations.

Cost per request does not grow with the live's age: the checks are O(1)
(:attr:`~player.playlist.MediaPlaylist.published`), the playlist bytes are
rendered once per change and shared by every request (a delta update renders
only the last segments). A running live's playlists and parts are answered
by :class:`LiveMediaPath` in front of the page middleware stack; both it and
the routes build the same :class:`Answer`.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from player.blocking import TooManyWaiters
from player.live import LiveManager
from player.multivariant import MultivariantError
from player.playlist import PlaylistRequestError, RenditionReport, parse_delivery_directives
from player.publication import VOD_PLAYLIST, Publication, hls_prefix, rendition_prefix
from player.renditions import MASTER_PLAYLIST, MEDIA_PLAYLIST, RENDITIONS, render_master
from player.replay import REPLAY_MP4
from player.storage import MediaStore
from server.metrics import count_request
from server.web import AppRoute, services

PLAYLIST_TYPE = "application/vnd.apple.mpegurl"
IMMUTABLE = "public, max-age=31536000, immutable"
LIVE_PLAYLIST_MAX_AGE = 1
BLOCKING_PLAYLIST_MAX_AGE = 6
VOD_PLAYLIST_MAX_AGE = 86400
_MEDIA_NAME = re.compile(r"^(?:init(\d{1,6})\.mp4|seg(\d{1,9})(?:\.(\d{1,4}))?\.m4s)$")
_PART_NAME = re.compile(r"seg(\d{1,9})\.(\d{1,4})\.m4s")
_TEXT_TYPE = "text/plain; charset=utf-8"
_PART_TYPE = "video/iso.segment"


def live_manager(request: Request) -> LiveManager:
    return services(request).extras["live"]  # type: ignore[no-any-return]


def media_store(request: Request) -> MediaStore:
    return services(request).extras["media_store"]  # type: ignore[no-any-return]


def _webinar_id(request: Request) -> uuid.UUID | None:
    try:
        return uuid.UUID(request.path_params["webinar_id"])
    except ValueError:
        return None


def _rendition(request: Request) -> str | None:
    """The rendition a URL names: ``""`` for the source, a known name, or None (404)."""
    name = request.path_params.get("rendition", "")
    return name if name == "" or name in RENDITIONS else None


def _not_found(text: str = "not found") -> Response:
    return _cors(PlainTextResponse(text, status_code=404, headers={"cache-control": "no-store"}))


def _cors(response: Response) -> Response:
    # Viewer pages and players may be on another origin (embeds, a CDN).
    response.headers["access-control-allow-origin"] = "*"
    return response


def _playlist_response(body: str, max_age: int) -> Response:
    return _cors(Response(body, media_type=PLAYLIST_TYPE, headers={"cache-control": f"public, max-age={max_age}"}))


async def master_playlist(request: Request) -> Response:
    """The multivariant playlist; 404 when the live (or replay) has no lower rendition."""
    webinar_id = _webinar_id(request)
    if webinar_id is None:
        return PlainTextResponse("not found", status_code=404)
    manager = live_manager(request)
    variants = manager.variants(webinar_id)
    if variants is None:
        if manager.rendition(webinar_id) is not None:
            return _not_found("this live has a single rendition: play index.m3u8")
        data = media_store(request).read(f"{hls_prefix(webinar_id)}/{MASTER_PLAYLIST}")
        if data is None:
            return _not_found("no multivariant playlist for this webinar")
        return _playlist_response(data.decode(), VOD_PLAYLIST_MAX_AGE)
    source = variants[0][0]
    if not source.playlist.published:
        return _not_found("the live is starting")
    transcoder = manager.transcoder(webinar_id)
    rate = transcoder.frame_rate if transcoder is not None else None
    try:
        body = render_master([(pub, uri, rate) for pub, uri in variants])
    except MultivariantError as exc:
        return _cors(PlainTextResponse(f"cannot list the renditions: {exc}", status_code=503,
                                       headers={"cache-control": "no-store", "retry-after": "1"}))
    if body is None:
        return _not_found("the live is starting")
    return _playlist_response(body, LIVE_PLAYLIST_MAX_AGE)


async def media_playlist(request: Request) -> Response:
    webinar_id = _webinar_id(request)
    rendition = _rendition(request)
    if webinar_id is None or rendition is None:
        return PlainTextResponse("not found", status_code=404)
    manager = live_manager(request)
    publication = manager.rendition(webinar_id, rendition)
    if publication is None or publication.ended:
        data = media_store(request).read(f"{rendition_prefix(webinar_id, rendition)}/{VOD_PLAYLIST}")
        if data is None:
            return _not_found("no live or replay for this webinar")
        return _playlist_response(data.decode(), VOD_PLAYLIST_MAX_AGE)
    answer = await live_playlist_answer(publication, _reports(manager, webinar_id, rendition),
                                        request.query_params)
    return _response(answer)


def _reports(manager: LiveManager, webinar_id: uuid.UUID, rendition: str) -> tuple[RenditionReport, ...]:
    """``EXT-X-RENDITION-REPORT`` of the other live renditions, URIs relative to this playlist."""
    variants = manager.variants(webinar_id)
    if variants is None:
        return ()
    up = "../" if rendition else ""
    return tuple(
        pub.playlist.rendition_report(f"{up}{uri}")
        for pub, uri in variants
        if pub.rendition != rendition and not pub.playlist.ended
    )


# -- answers, shared by the routes and the lean path ---------------------------------


@dataclass(frozen=True, slots=True)
class Answer:
    """One origin response, whatever serves it (a starlette route or :class:`LiveMediaPath`).

    ``content_type`` and ``cache_control`` are header values; ``retry_after``
    adds ``retry-after: 1`` (the 503 answers). CORS is added by both servers.
    """

    status: int
    body: bytes
    content_type: str = _TEXT_TYPE
    cache_control: str = "no-store"
    retry_after: bool = False


def _text_answer(status: int, text: str, *, retry_after: bool = False) -> Answer:
    return Answer(status, text.encode(), retry_after=retry_after)


_STARTING = _text_answer(404, "the live is starting")
_NOT_YET = _text_answer(503, "not yet available", retry_after=True)
_TOO_MANY = _text_answer(503, "too many waiting requests", retry_after=True)
_NO_PART = _text_answer(404, "no such part")


def _response(answer: Answer) -> Response:
    headers = {"content-type": answer.content_type, "cache-control": answer.cache_control,
               "access-control-allow-origin": "*"}
    if answer.retry_after:
        headers["retry-after"] = "1"
    return Response(answer.body, status_code=answer.status, headers=headers)


async def live_playlist_answer(publication: Publication, reports: tuple[RenditionReport, ...],
                               query: Mapping[str, str]) -> Answer:
    """A live media playlist request: delivery directives (400 when malformed or too
    far ahead), blocking reload (at most three target durations, then 503), the
    cached playlist bytes. Per request: O(1) checks and a dictionary look-up of
    the render (see :meth:`Publication.live_playlist`), whatever the live's age."""
    playlist = publication.playlist
    try:
        directives = parse_delivery_directives(query)
        if directives.blocking and not playlist.ended:
            assert directives.msn is not None
            playlist.validate_request(directives.msn, directives.part)
            if not await publication.waiter.wait_for(directives.msn, directives.part, 3 * playlist.target_duration):
                if not playlist.ended:
                    return _NOT_YET
    except PlaylistRequestError as exc:
        return _text_answer(400, str(exc))
    except TooManyWaiters:
        return _TOO_MANY
    if not playlist.published:
        return _STARTING
    max_age = BLOCKING_PLAYLIST_MAX_AGE if directives.blocking else LIVE_PLAYLIST_MAX_AGE
    return Answer(200, publication.live_playlist(directives.skip, reports), PLAYLIST_TYPE,
                  f"public, max-age={max_age}")


async def part_answer(publication: Publication | None, msn: int, index: int) -> Answer:
    """A part request: its bytes (immutable), or 404 when it is gone, never comes, or
    was not produced within three target durations of being hinted."""
    data = await _wait_part(publication, msn, index)
    if data is None:
        return _NO_PART
    return Answer(200, data, _PART_TYPE, IMMUTABLE)


async def media_file(request: Request) -> Response:
    webinar_id = _webinar_id(request)
    rendition = _rendition(request)
    match = _MEDIA_NAME.fullmatch(request.path_params["name"])
    if webinar_id is None or rendition is None or match is None:
        return PlainTextResponse("not found", status_code=404)
    init_gen, msn, part = match.groups()
    content_type = "video/mp4" if init_gen is not None else _PART_TYPE
    if part is not None:  # also the last parts of a live that just ended (still in memory)
        publication = live_manager(request).rendition(webinar_id, rendition, lingering=True)
        return _response(await part_answer(publication, int(msn), int(part)))
    path = media_store(request).local_path(f"{rendition_prefix(webinar_id, rendition)}/{request.path_params['name']}")
    if path is None:
        return _cors(PlainTextResponse("not found", status_code=404, headers={"cache-control": "no-store"}))
    return _cors(FileResponse(path, media_type=content_type, headers={"cache-control": IMMUTABLE}))


async def _wait_part(publication: Publication | None, msn: int, index: int) -> bytes | None:
    """The part's bytes; a part not produced yet but next in line (the preload
    hint) is waited for, at most three target durations."""
    if publication is None:
        return None
    data = publication.part(msn, index)
    if data is not None or publication.ended:
        return data
    playlist = publication.playlist
    try:
        playlist.validate_request(msn, index)
    except PlaylistRequestError:
        return None
    try:
        await publication.waiter.wait_for(msn, index, 3 * playlist.target_duration, first=True)
    except TooManyWaiters:
        return None
    return publication.part(msn, index)


async def replay_mp4(request: Request) -> Response:
    """The whole replay as one MP4 (after the live; 404 while it is being written)."""
    webinar_id = _webinar_id(request)
    if webinar_id is None:
        return PlainTextResponse("not found", status_code=404)
    path = media_store(request).local_path(f"{hls_prefix(webinar_id)}/{REPLAY_MP4}")
    if path is None:
        return PlainTextResponse("the replay file is not ready", status_code=404, headers={"cache-control": "no-store"})
    return _cors(FileResponse(path, media_type="video/mp4", filename=f"replay-{webinar_id}.mp4",
                              headers={"cache-control": "public, max-age=3600"}))


_PLAYLIST_ROUTE = f"/hls/{{webinar_id}}/{MEDIA_PLAYLIST}"
_FILE_ROUTE = "/hls/{webinar_id}/{name}"
_RENDITION_PLAYLIST_ROUTE = f"/hls/{{webinar_id}}/{{rendition}}/{MEDIA_PLAYLIST}"
_RENDITION_FILE_ROUTE = "/hls/{webinar_id}/{rendition}/{name}"

routes = [
    AppRoute(f"/hls/{{webinar_id}}/{MASTER_PLAYLIST}", master_playlist, access="public", methods=["GET"]),
    AppRoute(_PLAYLIST_ROUTE, media_playlist, access="public", methods=["GET"]),
    AppRoute("/hls/{webinar_id}/replay.mp4", replay_mp4, access="public", methods=["GET"]),
    AppRoute(_FILE_ROUTE, media_file, access="public", methods=["GET"]),
    AppRoute(_RENDITION_PLAYLIST_ROUTE, media_playlist, access="public", methods=["GET"]),
    AppRoute(_RENDITION_FILE_ROUTE, media_file, access="public", methods=["GET"]),
]
"""Every origin URL, with its access level (the authorization matrix walks them).
:class:`LiveMediaPath` answers the hot ones of a running live before they reach
this router; everything else (VOD, files on disk, replay MP4, 404s) comes here."""

_MEDIA_HEADERS = [
    (b"access-control-allow-origin", b"*"),
    # What SecurityHeadersMiddleware adds to every other response.
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
]


class LiveMediaPath:
    """The lean path for a running live's playlists and parts: an ASGI middleware
    placed first, in front of the page middleware stack and the router.

    LL-HLS viewers send about seven requests a second each (a blocking playlist
    and a part per part); what pages need costs them for nothing: no route
    matching (the path is split once), no session or CSRF cookie (media is
    public), no per-request access-log line (``server.access_log`` aggregates
    ``/hls/`` lines), and the metrics count the request under its route
    template (``webinar_http_requests_total``) without a duration sample.

    It answers ``GET /hls/{id}/index.m3u8``, ``/hls/{id}/seg{msn}.{part}.m4s``
    and the same under a rendition folder, for a webinar whose live (or whose
    end being written) this process holds, with the same :class:`Answer` as
    the routes (:func:`live_playlist_answer`, :func:`part_answer`): same
    status, body and headers as the routes plus the security headers. Every
    other request goes down the stack unchanged (``HEAD``, VOD playlists,
    init sections and segments on disk, master playlist, replay MP4, unknown
    webinars, a request before the services exist).
    """

    def __init__(self, app: ASGIApp, extra_headers: list[tuple[bytes, bytes]] | None = None) -> None:
        self.app = app
        self._headers = [*_MEDIA_HEADERS, *(extra_headers or [])]
        """Added to every answer: CORS, the security headers, ``extra_headers`` (the node name)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" and scope["path"].startswith("/hls/"):
            answered = await self._answer(scope, send)
            if answered:
                return
        await self.app(scope, receive, send)

    async def _answer(self, scope: Scope, send: Send) -> bool:
        names = scope["path"][5:].split("/")
        if len(names) == 2:
            rendition, route = "", (_PLAYLIST_ROUTE, _FILE_ROUTE)
        elif len(names) == 3 and names[1] in RENDITIONS:
            rendition, route = names[1], (_RENDITION_PLAYLIST_ROUTE, _RENDITION_FILE_ROUTE)
        else:
            return False
        state = getattr(scope.get("app"), "state", None)
        svc = getattr(state, "services", None) if state is not None else None
        manager = svc.extras.get("live") if svc is not None else None
        if manager is None:
            return False
        try:
            webinar_id = uuid.UUID(names[0])
        except ValueError:
            return False
        publication = manager.rendition(webinar_id, rendition)
        if publication is None or publication.ended:
            return False
        name = names[-1]
        if name == MEDIA_PLAYLIST:
            template = route[0]
            query = dict(parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True))
            answer = await live_playlist_answer(publication, _reports(manager, webinar_id, rendition), query)
        else:
            match = _PART_NAME.fullmatch(name)
            if match is None:
                return False
            template = route[1]
            answer = await part_answer(publication, int(match[1]), int(match[2]))
        headers = [
            (b"content-type", answer.content_type.encode()),
            (b"content-length", str(len(answer.body)).encode()),
            (b"cache-control", answer.cache_control.encode()),
            *self._headers,
        ]
        if answer.retry_after:
            headers.append((b"retry-after", b"1"))
        await send({"type": "http.response.start", "status": answer.status, "headers": headers})
        await send({"type": "http.response.body", "body": answer.body})
        count_request("GET", template, answer.status)
        return True
