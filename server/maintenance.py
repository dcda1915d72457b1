"""Maintenance mode (R-OPS-3): one switch in the database, seen by every node.

The switch is the single row of the ``maintenance`` table (migration 0008):
on or off, an optional message for people (at most :data:`MAX_MESSAGE_LEN`
characters), when and by whom it was last changed. It is turned on and off
from the admin page ``/admin/maintenance`` or ``webinar maintenance on|off``.

Every process keeps a :class:`MaintenanceWatch`: a cached copy of the row that
request handlers and the ingest gateway read without any I/O. The cache is
re-read from the database

- at once when a change is announced on the broker channel
  :data:`CHANNEL` (every node sharing Redis hears it), and
- otherwise every :data:`POLL_S` seconds (one primary-key SELECT), which
  covers a change made by a process on another broker, or a lost message.

While the mode is on:

- every page built on ``base.html`` (viewer page, room panels, organizer and
  admin pages) shows a notice;
- a **new** live is refused: :meth:`MaintenanceWatch.refusal` gives the
  reason the ingest gateway (RTMP, SRT) and webcam rooms send back. A live
  already running continues, and its encoder may reconnect within the grace
  period (that is not a new live);
- ``/healthz`` answers HTTP 200 with ``"status": "maintenance"`` (not 503: a
  load balancer takes a 503 node out of rotation, which would cut the lives
  that are allowed to finish; and the mode is platform-wide, so every node
  would be out at once).

People already on a room page (viewer, panel, moderator, speaker) see the
notice come and go without a reload: the watch tells its listeners
(:meth:`MaintenanceWatch.add_listener`) when ``enabled`` or ``message``
changed on THIS process, and :func:`maintenance_service` hands that to this
node's room hub as the notice :data:`NOTICE_KIND` for its local clients only
(each node detects the change itself: going through the broker would deliver
it once per node). A client joining a room gets the latest such notice right
after its welcome (see :func:`tell_rooms`). Delay: at most :data:`POLL_S` seconds
after the change on a node that missed the announcement.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import unicodedata
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from server.broker import Broker, MessagesLost
from server.errors import RuleViolation

if TYPE_CHECKING:
    from rooms.hub import RoomHub
    from server.app import Services

log = logging.getLogger("server.maintenance")

CHANNEL = "maintenance"
"""Broker channel on which a change is announced (the payload is only a wake-up)."""
POLL_S = 3.0
"""Seconds between two reads of the switch when no change is announced."""
MAX_MESSAGE_LEN = 500
"""Characters of the message shown to people (the column's CHECK agrees)."""
MAX_CHANGED_BY_LEN = 254
NOTICE_KIND = "maintenance"
"""Kind of the room notice ``{"type": "notice", "kind": "maintenance", "data": {"enabled": ...,
"message": ...}}`` (see :func:`notice_data`)."""
REFUSAL = "the platform is in maintenance: new lives are refused until it ends (running lives go on)"
"""The reason a new live gets (RTMP onStatus description, logs)."""


@dataclass(frozen=True)
class Maintenance:
    """The switch. ``changed_at`` is UTC; ``changed_by`` an admin's email or ``cli``."""

    enabled: bool
    message: str = ""
    changed_at: dt.datetime | None = None
    changed_by: str = ""

    def as_json(self) -> dict[str, Any]:
        return {"enabled": self.enabled, "message": self.message,
                "since": self.changed_at.isoformat() if self.changed_at else None}


OFF = Maintenance(False)

Listener = Callable[[Maintenance], None]
"""Called with the new state when the switch changed on this process (see
:meth:`MaintenanceWatch.add_listener`)."""


def notice_data(state: Maintenance) -> dict[str, Any]:
    """The ``data`` of the room notice :data:`NOTICE_KIND`: ``enabled`` and ``message``
    (plain text, at most :data:`MAX_MESSAGE_LEN` characters; pages insert it as text)."""
    return {"enabled": state.enabled, "message": state.message if state.enabled else ""}


def clean_message(message: str) -> str:
    """The message as stored: stripped, one line, no control characters; too long is refused."""
    text = " ".join(message.split())
    if any(unicodedata.category(c).startswith("C") for c in text):
        raise RuleViolation("bad_value", field="message")
    if len(text) > MAX_MESSAGE_LEN:
        raise RuleViolation("maintenance_message_too_long", max=MAX_MESSAGE_LEN)
    return text


async def read_maintenance(db: Any) -> Maintenance:
    """The switch as stored (``db``: a Database or an asyncpg connection)."""
    row = await db.fetchrow("SELECT enabled, message, changed_at, changed_by FROM maintenance WHERE id = 1")
    if row is None:  # the row is created by the migration; never deleted
        return OFF
    return Maintenance(row["enabled"], row["message"], row["changed_at"], row["changed_by"])


async def set_maintenance(db: Any, enabled: bool, message: str = "", *, changed_by: str,
                          broker: Broker | None = None) -> Maintenance:
    """Turn the mode on or off (with a message, kept only while on) and tell the other nodes.

    The database is the truth; a failed announcement is logged and left to polling."""
    text = clean_message(message) if enabled else ""
    row = await db.fetchrow(
        "UPDATE maintenance SET enabled = $1, message = $2, changed_at = now(), changed_by = $3 WHERE id = 1 "
        "RETURNING enabled, message, changed_at, changed_by",
        enabled, text, changed_by[:MAX_CHANGED_BY_LEN],
    )
    assert row is not None, "migration 0008 creates the maintenance row"
    state = Maintenance(row["enabled"], row["message"], row["changed_at"], row["changed_by"])
    log.warning("maintenance mode %s by %s", "ON" if enabled else "OFF", state.changed_by,
                extra={"maintenance": enabled, "maintenance_message": text})
    if broker is not None:
        await announce(broker)
    return state


async def announce(broker: Broker) -> None:
    """Wake every node's :class:`MaintenanceWatch` (best effort)."""
    try:
        await broker.publish(CHANNEL, b"changed")
    except Exception as exc:  # noqa: BLE001 -- any broker failure: nodes still poll
        log.warning("maintenance change not announced on the broker (nodes see it within %g s): %s", POLL_S, exc)


class MaintenanceWatch:
    """This process's cached view of the switch (see the module docs).

    ``current`` and :meth:`refusal` are synchronous and free: safe in request
    handlers and in libsrt's listen callback thread (a frozen dataclass swapped
    atomically)."""

    def __init__(self, db: Any, broker: Broker, poll_s: float = POLL_S) -> None:
        self.db = db
        self.broker = broker
        self.poll_s = poll_s
        self.current: Maintenance = OFF
        self._task: asyncio.Task[None] | None = None
        self._listeners: list[Listener] = []

    def refusal(self) -> str | None:
        """The reason a new live is refused now, or None."""
        return REFUSAL if self.current.enabled else None

    def add_listener(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(state)`` on this process's event loop each time a refresh finds
        that ``enabled`` or ``message`` changed (not for ``changed_at``/``changed_by`` alone:
        turning the mode on again with the same message is no change). Each process
        detects a change by itself (announcement or polling), so a listener hears it once
        per process. Listeners must not block; one that raises is logged and the others
        still run. Returns a function that removes the listener."""
        self._listeners.append(listener)

        def remove() -> None:
            with contextlib.suppress(ValueError):
                self._listeners.remove(listener)

        return remove

    async def refresh(self) -> Maintenance:
        state = await read_maintenance(self.db)
        before = self.current
        if state.enabled != before.enabled:
            log.info("maintenance mode is now %s", "on" if state.enabled else "off")
        self.current = state
        if (state.enabled, state.message) != (before.enabled, before.message):
            for listener in list(self._listeners):
                try:
                    listener(state)
                except Exception:
                    log.exception("maintenance change listener %r failed", listener)
        return state

    async def start(self) -> None:
        await self.refresh()
        self._task = asyncio.create_task(self._run(), name="maintenance-watch")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                async with self.broker.subscribe(CHANNEL, max_queue=16) as sub:
                    await self._refresh_quietly()  # a change made while we were not subscribed
                    while True:
                        try:
                            await asyncio.wait_for(anext(sub), self.poll_s)
                        except (TimeoutError, MessagesLost):
                            pass
                        except StopAsyncIteration:  # broker closed: poll only
                            break
                        await self._refresh_quietly()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 -- broker unavailable: keep polling, try again
                log.warning("maintenance watch: broker subscription failed (%s); polling", exc)
            await asyncio.sleep(self.poll_s)
            await self._refresh_quietly()

    async def _refresh_quietly(self) -> None:
        try:
            await self.refresh()
        except Exception as exc:  # noqa: BLE001 -- database down: keep the last known state
            log.warning("maintenance state refresh failed: %s", exc)


def new_live_refusal(watch: MaintenanceWatch | None, already_running: bool) -> str | None:
    """The one maintenance gate of every way a live starts (RTMP and SRT in
    :mod:`ingest.gateway`, webcam rooms): the reason a new live is refused now, or
    None. ``already_running``: the webinar's live runs on this node (its source is
    coming back), which maintenance lets finish."""
    if watch is None or already_running:
        return None
    return watch.refusal()


def watch_of(svc: Services) -> MaintenanceWatch | None:
    """The process's watch (None before the app's lifespan started it)."""
    watch = svc.extras.get("maintenance")
    return watch if isinstance(watch, MaintenanceWatch) else None


def notice(request: Any) -> Maintenance | None:
    """What ``base.html`` shows: the switch when on, else None (no services: None)."""
    services = getattr(request.app.state, "services", None)
    watch = watch_of(services) if services is not None else None
    return watch.current if watch is not None and watch.current.enabled else None


def tell_rooms(hub: RoomHub) -> Listener:
    """A listener that gives the switch to ``hub``'s local room clients as the notice
    :data:`NOTICE_KIND` (this node only, no broker). The latest one is also given to every
    client joining afterwards, off included: a page that reconnects after the mode was turned
    off while it was away hides its notice too. (A node that has seen no change since it
    started sends nothing at join: its pages were rendered with the right state.)"""

    def listener(state: Maintenance) -> None:
        hub.local_notice(NOTICE_KIND, notice_data(state), for_joiners=True)

    return listener


@contextlib.asynccontextmanager
async def maintenance_service(svc: Services) -> AsyncIterator[MaintenanceWatch]:
    """Start this process's watch into ``svc.extras["maintenance"]``; stop it on exit.
    With a room hub in ``svc.extras["rooms"]``, room pages follow the switch live."""
    watch = MaintenanceWatch(svc.db, svc.broker)
    hub = svc.extras.get("rooms")
    if hub is not None:
        watch.add_listener(tell_rooms(hub))
    await watch.start()
    svc.extras["maintenance"] = watch
    try:
        yield watch
    finally:
        svc.extras.pop("maintenance", None)
        await watch.close()
