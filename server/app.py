"""The composition root: settings → services (database, broker, signer) → ASGI app.

``create_app(settings)`` builds the starlette application; its lifespan starts
the embedded PostgreSQL when ``DATABASE_URL`` is unset, connects the pool,
applies migrations and starts the broker, and undoes all of it on shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from billing import pages_analytics, pages_billing, pages_privacy
from billing.attendance import attendance_service
from ingest.gateway import IngestGateway
from ingest.rtmp_listener import RTMPListener
from ingest.srt import SRTListener, SRTUnavailable
from player import origin, viewer
from player.live import WARN_BEFORE_S, LiveManager, encode_event
from player.publication import Publication
from player.renditions import low_rendition_enabled
from player.replay import remux_in_subprocess
from player.storage import LocalMediaStore
from rooms import pages as room_pages
from rooms import ws as room_ws
from rooms.hub import RoomHub
from rooms.webcam import content_routes as webcam_content
from rooms.webcam import speak as webcam_speak
from rooms.webcam.content_director import content_service
from rooms.webcam.room import webcam_service
from rooms.webcam.sources import ContentSlots
from server import (
    daily,
    notifications,
    pages_admin,
    pages_auth,
    pages_organizer,
    pages_registration,
    pages_sponsor,
    pages_unsubscribe,
    registrations,
    scheduling,
)
from server.broker import Broker, create_broker
from server.jobs import utc_now
from server.maintenance import maintenance_service, read_maintenance, watch_of
from server.node_header import HEADER as NODE_HEADER
from server.node_header import NodeHeaderMiddleware
from server.db import Database, ensure_database
from server.errors import Forbidden, NotFound, RuleViolation
from server.access_log import install_media_access_log
from server.metrics import BUILD_INFO, MetricsMiddleware, metrics_endpoint
from server.pg_embedded import EmbeddedPostgres
from server.security import Signer
from server.settings import Settings
from server.web import AppRoute, BadRequest, CSRFCookieMiddleware, CSRFError, NotLoggedIn, render
from server.webinars import set_state

log = logging.getLogger("server.app")
EMBEDDED_DB_NAME = "webinar"

# Registrants hear about their registration and every move of the webinar (durable email jobs).
# Process-wide hooks, registered once here (create_app may run many times, in tests).
registrations.AFTER_REGISTER.append(notifications.on_registered)
scheduling.AFTER_MOVE.append(notifications.on_webinar_moved)
scheduling.AFTER_CANCEL.append(notifications.on_webinar_cancelled)

try:
    VERSION = version("webinar")
except PackageNotFoundError:  # running from a source tree without install
    VERSION = "0.0.0+source"


@dataclass
class Services:
    """What request handlers and background tasks share. One per process."""

    settings: Settings
    db: Database
    signer: Signer
    broker: Broker
    embedded_pg: EmbeddedPostgres | None = None
    extras: dict[str, Any] = field(default_factory=dict)


@contextlib.asynccontextmanager
async def open_database(settings: Settings, *, adopt_embedded: bool) -> AsyncIterator[tuple[Database, EmbeddedPostgres | None]]:
    """Connect (starting the embedded server if needed) and migrate. ``adopt_embedded``:
    stop the embedded server on exit even if another process started it (``serve`` does)."""
    pg: EmbeddedPostgres | None = None
    dsn = settings.database_url
    if dsn is None:
        pg = EmbeddedPostgres(settings.postgres_dir)
        await asyncio.to_thread(pg.start)
        if adopt_embedded:
            pg.owned = True
        await ensure_database(pg.dsn, EMBEDDED_DB_NAME)
        dsn = pg.dsn_for(EMBEDDED_DB_NAME)
    db = Database(dsn, min_size=settings.db_pool_min, max_size=settings.db_pool_max)
    try:
        await db.connect()
        await db.migrate()
        yield db, pg
    finally:
        await db.close()
        if pg is not None:
            await asyncio.to_thread(pg.stop_if_owned)


async def healthz(request: Request) -> Response:
    """For monitoring: 200 when the database answers within 2 s, else 503. In maintenance
    mode still 200, with ``"status": "maintenance"`` (a 503 would make a load balancer
    drop every node and cut the running lives; see server/maintenance.py)."""
    svc: Services = request.app.state.services
    body: dict[str, Any] = {"status": "ok", "version": VERSION, "database": "ok"}
    try:
        async with asyncio.timeout(2):
            state = await read_maintenance(svc.db)
    except Exception as exc:  # any failure means "not healthy"
        body.update(status="error", database=f"unreachable: {type(exc).__name__}")
        return JSONResponse(body, status_code=503)
    body["maintenance"] = state.as_json()
    if state.enabled:
        body["status"] = "maintenance"
    return JSONResponse(body)


async def _error_page(request: Request, status: int, key: str) -> Response:
    try:
        return await render(request, "error.html", status_code=status, message_key=key)
    except Exception:  # the page itself failed (database down?): plain text
        return Response(key, status_code=status, media_type="text/plain")


async def on_not_logged_in(request: Request, exc: Exception) -> Response:
    from urllib.parse import quote

    return Response(status_code=303, headers={"location": f"/login?next={quote(request.url.path)}"})


async def on_forbidden(request: Request, exc: Exception) -> Response:
    key = exc.args[0] if exc.args and str(exc.args[0]).count(".") == 1 else "error.403"
    return await _error_page(request, 403, key)


async def on_not_found(request: Request, exc: Exception) -> Response:
    return await _error_page(request, 404, "error.404")


async def on_csrf(request: Request, exc: Exception) -> Response:
    return await _error_page(request, 403, "error.csrf")


async def on_bad_request(request: Request, exc: Exception) -> Response:
    return Response(f"Bad request: {getattr(exc, 'detail', '')}", status_code=400, media_type="text/plain")


async def on_rule(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RuleViolation)
    return Response(str(exc), status_code=409, media_type="text/plain")


class SecurityHeadersMiddleware:
    """Conservative defaults on every response; a route may set its own values first."""

    HEADERS = [
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"same-origin"),
        (b"x-frame-options", b"DENY"),
    ]

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                # A response that says who may frame it (CSP frame-ancestors: the embeddable
                # registration form) gets no X-Frame-Options; every other page keeps DENY.
                framable = any(k.lower() == b"content-security-policy" and b"frame-ancestors" in v for k, v in headers)
                headers += [(k, v) for k, v in self.HEADERS
                            if k not in present and not (framable and k == b"x-frame-options")]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_wrapper)


@contextlib.asynccontextmanager
async def media_services(svc: Services) -> AsyncIterator[None]:
    """Media store, live manager and the RTMP/SRT listeners (each can be turned off)."""
    settings = svc.settings
    store = LocalMediaStore(settings.media_dir)

    async def persist_state(webinar_id: Any, state: str) -> None:
        await set_state(svc.db, webinar_id, state)

    async def announce(webinar_id: Any, event: dict[str, Any]) -> None:
        await svc.broker.publish(f"live:{webinar_id}", encode_event(event))
        hub: RoomHub = svc.extras["rooms"]
        data = {k: v for k, v in event.items() if k != "type"}
        await hub.notice(webinar_id, str(event["type"]), data)

    async def after_end(publication: Publication) -> None:
        try:
            await remux_in_subprocess(store.root, publication.webinar_id)
        except Exception:
            log.exception("replay MP4 of %s failed", publication.webinar_id)

    async def low_rendition(webinar_id: Any) -> bool:
        return await low_rendition_enabled(svc.db, webinar_id)

    live = LiveManager(store, set_state=persist_state, announce=announce, after_end=after_end,
                       grace_s=settings.live_grace_s, max_live_s=settings.live_max_s,
                       warn_before_s=tuple(w for w in WARN_BEFORE_S if w < settings.live_max_s),
                       low_rendition=low_rendition)
    gateway = IngestGateway(svc.db, live, maintenance=watch_of(svc))
    svc.extras.update(media_store=store, live=live, gateway=gateway)
    await gateway.start()
    listeners: list[Any] = []
    try:
        if settings.enable_rtmp:
            rtmp = RTMPListener(gateway.authorize, host=settings.host, port=settings.rtmp_port)
            await rtmp.start()
            listeners.append(rtmp)
            log.info("RTMP ingest on %s:%d", settings.host, rtmp.port)
        if settings.enable_srt:
            srt = SRTListener(settings.host, settings.srt_port, authorize=lambda key: gateway.authorize("srt", key),
                              precheck=gateway.precheck)
            try:
                await srt.start()
            except SRTUnavailable as exc:
                log.warning("SRT ingest disabled: %s", exc)
            else:
                listeners.append(srt)
                log.info("SRT ingest on %s:%d (UDP)", settings.host, srt.port)
        svc.extras["listeners"] = listeners
        yield
    finally:
        for listener in reversed(listeners):
            await listener.close()
        await live.close()
        await gateway.close()


def build_routes() -> list[BaseRoute]:
    routes: list[BaseRoute] = [
        AppRoute("/healthz", healthz, access="public", methods=["GET"]),
        AppRoute("/metrics", metrics_endpoint, access="public", methods=["GET"]),
        *viewer.routes,  # before Mount("/static"), which would shadow its Mount("/static/player")
        Mount("/static", StaticFiles(directory=str(Path(__file__).with_name("static"))), name="static"),
    ]
    for module in (pages_auth, pages_organizer, pages_admin, pages_sponsor, pages_registration, pages_unsubscribe, origin, room_ws, room_pages, webcam_speak, webcam_content, pages_billing, pages_privacy, pages_analytics):
        routes.extend(module.routes)
    return routes


def create_app(settings: Settings) -> Starlette:
    """The ASGI application. Services are built in the lifespan, so the app can be
    created without a database (and ``app.routes`` inspected)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        async with open_database(settings, adopt_embedded=True) as (db, pg):
            broker = create_broker(settings.redis_url)
            await broker.start()
            svc = Services(settings, db, Signer(settings.resolved_secret()), broker, pg)
            app.state.services = svc
            hub = RoomHub(db, broker)
            svc.extras["rooms"] = hub
            svc.extras["content_slots"] = ContentSlots()  # shared content -> webcam program (rooms/webcam/sources.py)
            worker = notifications.email_worker(db, settings, svc.signer,
                                                extra_handlers=daily.handlers(db, utc_now, settings))
            if settings.run_jobs:
                await daily.schedule(db, utc_now(), settings)
                await worker.start()
            try:
                async with maintenance_service(svc), media_services(svc), attendance_service(svc), webcam_service(svc), \
                        content_service(svc):
                    BUILD_INFO.labels(VERSION).set(1)
                    log.info("server ready", extra={"url": settings.base_url, "redis": bool(settings.redis_url)})
                    yield
            finally:
                await worker.stop()
            await hub.close()
            await broker.close()
            log.info("server stopped")

    def signer() -> Signer:
        return app.state.services.signer  # type: ignore[no-any-return]

    install_media_access_log()  # /hls/ access-log lines: one summary a minute
    node_headers = [(NODE_HEADER, settings.node_name.encode("ascii"))] if settings.node_name else []
    app: Starlette = Starlette(
        routes=build_routes(),
        middleware=[
            # A running live's playlists and parts skip the rest (player/origin.py, LiveMediaPath).
            Middleware(origin.LiveMediaPath, extra_headers=node_headers),
            Middleware(MetricsMiddleware),
            Middleware(SecurityHeadersMiddleware),
            Middleware(NodeHeaderMiddleware, node_name=settings.node_name),
            Middleware(CSRFCookieMiddleware, signer_factory=signer),
        ],
        exception_handlers={
            NotLoggedIn: on_not_logged_in,
            Forbidden: on_forbidden,
            NotFound: on_not_found,
            CSRFError: on_csrf,
            BadRequest: on_bad_request,
            RuleViolation: on_rule,
            404: on_not_found,
        },
        lifespan=lifespan,
    )
    return app
