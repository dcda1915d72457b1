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
"""

from __future__ import annotations

import re
import uuid

from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response

from player.blocking import TooManyWaiters
from player.live import LiveManager
from player.multivariant import MultivariantError
from player.playlist import PlaylistRequestError, RenditionReport, parse_delivery_directives
from player.publication import VOD_PLAYLIST, Publication, hls_prefix, rendition_prefix
from player.renditions import MASTER_PLAYLIST, MEDIA_PLAYLIST, RENDITIONS, render_master
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
    if not source.playlist.segments and not source.playlist.open_parts:
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
    return await _live_playlist(request, publication, _reports(manager, webinar_id, rendition))


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


async def _live_playlist(request: Request, publication: Publication,
                         reports: tuple[RenditionReport, ...] = ()) -> Response:
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
    return _playlist_response(publication.render_live(directives.skip, reports), max_age)


async def media_file(request: Request) -> Response:
    webinar_id = _webinar_id(request)
    rendition = _rendition(request)
    match = _MEDIA_NAME.fullmatch(request.path_params["name"])
    if webinar_id is None or rendition is None or match is None:
        return PlainTextResponse("not found", status_code=404)
    init_gen, msn, part = match.groups()
    publication = live_manager(request).rendition(webinar_id, rendition)
    content_type = "video/mp4" if init_gen is not None else "video/iso.segment"
    if part is not None:
        data = await _wait_part(publication, int(msn), int(part))
        if data is None:
            return _cors(PlainTextResponse("no such part", status_code=404, headers={"cache-control": "no-store"}))
        return _cors(Response(data, media_type=content_type, headers={"cache-control": IMMUTABLE}))
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
    AppRoute(f"/hls/{{webinar_id}}/{MASTER_PLAYLIST}", master_playlist, access="public", methods=["GET"]),
    AppRoute(f"/hls/{{webinar_id}}/{MEDIA_PLAYLIST}", media_playlist, access="public", methods=["GET"]),
    AppRoute("/hls/{webinar_id}/replay.mp4", replay_mp4, access="public", methods=["GET"]),
    AppRoute("/hls/{webinar_id}/{name}", media_file, access="public", methods=["GET"]),
    AppRoute(f"/hls/{{webinar_id}}/{{rendition}}/{MEDIA_PLAYLIST}", media_playlist, access="public", methods=["GET"]),
    AppRoute("/hls/{webinar_id}/{rendition}/{name}", media_file, access="public", methods=["GET"]),
]
