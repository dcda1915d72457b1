"""The LL-HLS origin: playlists and media over HTTP.

Routes (``access="public"``: what viewers load)::

    GET /hls/{webinar_id}/index.m3u8     live media playlist (blocking reload, delta
                                         updates), or the VOD playlist once ended
    GET /hls/{webinar_id}/{name}         init{n}.mp4, seg{msn}.m4s, seg{msn}.{part}.m4s

Caching, so a CDN or nginx can sit in front: init sections, parts and
segments never change once served (``max-age`` one year, ``immutable``); a
live playlist is fresh for :data:`LIVE_PLAYLIST_MAX_AGE` second (a blocking
request names an exact msn/part, so its answer may be cached longer); the VOD
playlist for a day. A request for the part named by the preload hint is held
until the part exists (LL-HLS §6.2.6), at most three target durations.
"""

from __future__ import annotations

import re
import uuid

from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response

from player.blocking import TooManyWaiters
from player.live import LiveManager
from player.playlist import PlaylistRequestError, parse_delivery_directives
from player.publication import VOD_PLAYLIST, Publication, hls_prefix
from player.replay import REPLAY_MP4
from player.storage import MediaStore
from server.web import AppRoute, services

PLAYLIST_TYPE = "application/vnd.apple.mpegurl"
IMMUTABLE = "public, max-age=31536000, immutable"
LIVE_PLAYLIST_MAX_AGE = 1
BLOCKING_PLAYLIST_MAX_AGE = 6
VOD_PLAYLIST_MAX_AGE = 86400
_MEDIA_NAME = re.compile(r"^(?:init(\d{1,6})\.mp4|seg(\d{1,9})(?:\.(\d{1,4}))?\.m4s)$")


def live_manager(request: Request) -> LiveManager:
    return services(request).extras["live"]  # type: ignore[no-any-return]


def media_store(request: Request) -> MediaStore:
    return services(request).extras["media_store"]  # type: ignore[no-any-return]


def _webinar_id(request: Request) -> uuid.UUID | None:
    try:
        return uuid.UUID(request.path_params["webinar_id"])
    except ValueError:
        return None


def _cors(response: Response) -> Response:
    # Viewer pages and players may be on another origin (embeds, a CDN).
    response.headers["access-control-allow-origin"] = "*"
    return response


def _playlist_response(body: str, max_age: int) -> Response:
    return _cors(Response(body, media_type=PLAYLIST_TYPE, headers={"cache-control": f"public, max-age={max_age}"}))


async def media_playlist(request: Request) -> Response:
    webinar_id = _webinar_id(request)
    if webinar_id is None:
        return PlainTextResponse("not found", status_code=404)
    publication = live_manager(request).publication(webinar_id)
    if publication is None or publication.ended:
        data = media_store(request).read(f"{hls_prefix(webinar_id)}/{VOD_PLAYLIST}")
        if data is None:
            return _cors(PlainTextResponse("no live or replay for this webinar", status_code=404,
                                           headers={"cache-control": "no-store"}))
        return _playlist_response(data.decode(), VOD_PLAYLIST_MAX_AGE)
    return await _live_playlist(request, publication)


async def _live_playlist(request: Request, publication: Publication) -> Response:
    playlist = publication.playlist
    try:
        directives = parse_delivery_directives(request.query_params)
        if directives.blocking and not playlist.ended:
            assert directives.msn is not None
            playlist.validate_request(directives.msn, directives.part)
            if not await publication.waiter.wait_for(directives.msn, directives.part, 3 * playlist.target_duration):
                if not playlist.ended:
                    return _cors(PlainTextResponse("not yet available", status_code=503,
                                                   headers={"cache-control": "no-store", "retry-after": "1"}))
    except PlaylistRequestError as exc:
        return _cors(PlainTextResponse(str(exc), status_code=400, headers={"cache-control": "no-store"}))
    except TooManyWaiters:
        return _cors(PlainTextResponse("too many waiting requests", status_code=503,
                                       headers={"cache-control": "no-store", "retry-after": "1"}))
    if not playlist.segments and not playlist.open_parts:
        return _cors(PlainTextResponse("the live is starting", status_code=404, headers={"cache-control": "no-store"}))
    max_age = BLOCKING_PLAYLIST_MAX_AGE if directives.blocking else LIVE_PLAYLIST_MAX_AGE
    return _playlist_response(playlist.render(skip=directives.skip), max_age)


async def media_file(request: Request) -> Response:
    webinar_id = _webinar_id(request)
    match = _MEDIA_NAME.fullmatch(request.path_params["name"])
    if webinar_id is None or match is None:
        return PlainTextResponse("not found", status_code=404)
    init_gen, msn, part = match.groups()
    publication = live_manager(request).publication(webinar_id)
    content_type = "video/mp4" if init_gen is not None else "video/iso.segment"
    if part is not None:
        data = await _wait_part(publication, int(msn), int(part))
        if data is None:
            return _cors(PlainTextResponse("no such part", status_code=404, headers={"cache-control": "no-store"}))
        return _cors(Response(data, media_type=content_type, headers={"cache-control": IMMUTABLE}))
    path = media_store(request).local_path(f"{hls_prefix(webinar_id)}/{request.path_params['name']}")
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
        await publication.waiter.wait_for(msn, index, 3 * playlist.target_duration)
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


routes = [
    AppRoute("/hls/{webinar_id}/index.m3u8", media_playlist, access="public", methods=["GET"]),
    AppRoute("/hls/{webinar_id}/replay.mp4", replay_mp4, access="public", methods=["GET"]),
    AppRoute("/hls/{webinar_id}/{name}", media_file, access="public", methods=["GET"]),
]
