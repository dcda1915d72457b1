"""Who may publish: stream key → webinar → a sink from the live manager.

Both listeners ask :class:`IngestGateway`:

- ``authorize(app, key)`` (RTMP, and SRT once connected) refuses, with a
  reason the listener logs and sends back: an unknown key, a webcam-room
  webinar (it takes no encoder), a webinar not announced yet, one that has
  ended, and a second publisher while one is live (decided by
  :class:`player.live.LiveManager`).
- ``precheck(key)`` (SRT's listen callback, in libsrt's thread, before the
  handshake completes) must answer synchronously. It consults a set of the
  SHA-256 of every key that may publish now, refreshed from the database
  every :data:`KEY_CACHE_REFRESH_S` seconds; a key missing from the set (just
  rotated, maybe on another node) is looked up in the database through the
  event loop, the libsrt thread waiting at most :data:`PRECHECK_LOOKUP_S`.

Maintenance mode (:mod:`server.maintenance`) refuses every **new** live, with
:data:`server.maintenance.REFUSAL` as the reason (logged by the listener and
sent to the encoder: an RTMP ``NetStream.Publish`` error status, an SRT
handshake rejection). A live already running on this node goes on, and its
encoder may come back within the grace period. ``precheck`` lets through,
during maintenance, only the keys of webinars in state ``live`` (a
reconnecting encoder); ``authorize`` then checks that the live runs here.
"""

from __future__ import annotations

import asyncio
import logging
import threading

from player.live import LiveManager
from player.media import MediaSink
from server.db import Database
from server.maintenance import MaintenanceWatch, new_live_refusal
from server.security import token_digest
from server.webinars import webinar_by_stream_key

log = logging.getLogger("ingest.gateway")

KEY_CACHE_REFRESH_S = 5.0
PRECHECK_LOOKUP_S = 2.0
PUBLISHABLE_STATES = ("announced", "live")


class IngestGateway:
    def __init__(self, db: Database, live: LiveManager, maintenance: MaintenanceWatch | None = None) -> None:
        self.db = db
        self.live = live
        self.maintenance = maintenance
        self._publishable: frozenset[bytes] = frozenset()
        self._live_keys: frozenset[bytes] = frozenset()
        self._refresher: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        await self.refresh_keys()
        self._refresher = asyncio.create_task(self._refresh_loop())

    async def close(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            try:
                await self._refresher
            except asyncio.CancelledError:
                pass

    async def refresh_keys(self) -> None:
        rows = await self.db.fetch(
            "SELECT stream_key_hash, state FROM webinars WHERE stream_key_hash IS NOT NULL AND room_type = 'studio' "
            "AND state = ANY($1::text[])",
            list(PUBLISHABLE_STATES),
        )
        self._publishable = frozenset(bytes(r["stream_key_hash"]) for r in rows)
        self._live_keys = frozenset(bytes(r["stream_key_hash"]) for r in rows if r["state"] == "live")

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(KEY_CACHE_REFRESH_S)
            try:
                await self.refresh_keys()
            except Exception as exc:  # keep the last good set
                log.warning("stream key cache refresh failed: %s", exc)

    async def _publishable_now(self, digest: bytes) -> bool:
        found = await self.db.fetchval(
            "SELECT 1 FROM webinars WHERE stream_key_hash = $1 AND room_type = 'studio' AND state = ANY($2::text[])",
            digest, list(PUBLISHABLE_STATES),
        )
        if found:
            self._publishable = self._publishable | {digest}
        return bool(found)

    def precheck(self, key: str) -> str | None:
        """Synchronous screen for SRT's handshake (called from libsrt's thread): None to let it through."""
        refusal = "unknown or unusable stream key"
        digest = token_digest(key)
        in_maintenance = new_live_refusal(self.maintenance, already_running=False)
        if in_maintenance is not None:  # only a live webinar's encoder may come back (authorize checks the node)
            return None if digest in self._live_keys else in_maintenance
        if digest in self._publishable:
            return None
        if len(key) > 100 or self._loop is None or threading.get_ident() == self._loop_thread:
            return refusal
        future = asyncio.run_coroutine_threadsafe(self._publishable_now(digest), self._loop)
        try:
            return None if future.result(timeout=PRECHECK_LOOKUP_S) else refusal
        except Exception as exc:  # timeout or database error: refuse, the publisher retries
            future.cancel()
            log.warning("stream key lookup for SRT failed: %s", exc)
            return refusal

    async def authorize(self, app: str, key: str) -> MediaSink | str:
        webinar = await webinar_by_stream_key(self.db, key)
        if webinar is None:
            return "unknown stream key"
        if webinar.room_type != "studio":
            return "this webinar is a webcam room: it takes no encoder stream"
        if webinar.state == "draft":
            return "this webinar is not announced yet"
        if webinar.state not in PUBLISHABLE_STATES:
            return f"this webinar is over (state {webinar.state})"
        if webinar.state == "live" and self.live.publication(webinar.id) is None:
            return "this webinar is live on another node (or its node restarted); ingest is pinned to one node"
        in_maintenance = new_live_refusal(self.maintenance, self.live.publication(webinar.id) is not None)
        if in_maintenance is not None:
            return in_maintenance  # a new live; a running one (encoder back within the grace) goes on
        return await self.live.open_source(webinar.id)
