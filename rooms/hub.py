"""Fan-out of room events to this node's WebSocket clients.

Every node keeps one :class:`Room` per room that has local clients. The room
subscribes to the broker channel ``room:<webinar id>`` (in-process or Redis),
receives every event committed by any node, puts them back in id order
(events from two nodes may cross on the broker: a gap waits
:data:`GAP_WAIT_S` then is filled from the database), and hands each to the
clients allowed to see it (``all``, ``moderators``, or one participant).

Delivery path (the cost that matters at 10,000 viewers): events released in
order during one turn of the event loop are fanned out together at the end of
it (``loop.call_soon``). A run of ``all`` events becomes ONE frame — the
WebSocket frame bytes of ``{"type":"events","events":[...]}``, encoded once
per node — and the same ``bytes`` object is written to every caught-up client
whose socket accepts writes (:class:`FrameSink`, uvicorn's transport through
:mod:`server.ws_protocol`): one write per viewer per batch, no task wake-up,
no per-viewer frame or message object. A fan-out serves :data:`FANOUT_SLICE`
clients per loop turn, so sockets and the database are read in between;
events released meanwhile wait for it to finish (and form the next batch:
the busier the room, the more events per write).

Backpressure: a client whose transport buffer is above its high-water mark
(``FrameSink.paused``) gets its events queued (bounded: :data:`CLIENT_QUEUE`
items); when the transport drains, everything queued goes out coalesced (runs
of events as ``events`` frames of at most :data:`MAX_BATCH`, in one write). A
client whose queue is full is disconnected (close code 1013, "try again
later"); its page reconnects and resumes from its last event id, so a slow
viewer never slows the room and loses nothing.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import msgspec

from rooms.events import MAX_CATCHUP, RoomEvent, batch_frame, last_event_id, read_after
from rooms.participants import Participant
from server.broker import Broker, MessagesLost
from server.ws_protocol import text_frame

log = logging.getLogger("rooms.hub")

NOTICE_ID = 0
"""Id of a *notice*: an ephemeral room message (presence, live state, stream health),
not persisted, not replayed, sent as ``{"type": "notice", "kind": ..., "data": ...}``."""
PRESENCE_EVERY_S = 5.0
"""Each node tells the room's moderators how many clients it holds, this often."""
CLIENT_QUEUE = 2000
"""Most items (events or direct messages) queued for one client whose socket is not draining."""
GAP_WAIT_S = 0.3
MAX_BATCH = 200
"""Most events in one ``events`` frame."""
FANOUT_SLICE = 500
"""Clients served per turn of the event loop during a fan-out (a few milliseconds of writes)."""


class FrameSink(Protocol):
    """Where a client's frames go: complete WebSocket frames written in order.

    :class:`server.ws_protocol.DirectFrames` (the transport itself) in production;
    ``rooms.ws.AsgiFrames`` under an ASGI server without that extension."""

    paused: bool
    """True while the sink takes no more writes (buffer above its high-water mark)."""
    on_drain: Callable[[], None] | None
    """Set by the client; the sink calls it when ``paused`` turned False again."""

    def write(self, frame: bytes) -> None: ...


class Client:
    """One WebSocket connection as the hub sees it.

    Holds nothing per event while the socket keeps up: events are written as they are
    fanned out. Until :meth:`release`, frames are queued (the welcome goes first)."""

    __slots__ = (
        "_backlog",
        "_close",
        "_kick",
        "_queue",
        "_sink",
        "audience_key",
        "closed",
        "closing",
        "dropped_for_slowness",
        "held",
        "is_moderator",
        "last_id",
        "participant",
        "ready",
        "sent_frames",
    )

    def __init__(self, participant: Participant, sink: FrameSink, close: Callable[[int, str], Awaitable[None]]) -> None:
        self.participant = participant
        self.audience_key = f"p:{participant.id}"
        self.is_moderator = participant.role == "moderator"
        self._sink = sink
        sink.on_drain = self._drain
        self._close = close
        self.last_id = 0
        self.ready = False
        """Live: gets events as they come (set by :meth:`start`, after the catch-up)."""
        self.held = True
        """Writes nothing until :meth:`release` (the welcome must be the first frame)."""
        self._backlog: list[RoomEvent] = []
        self._queue: deque[tuple[bool, bytes]] = deque()
        """(is an event, payload): event wires are batched into ``events`` frames."""
        self.closed = False
        self.dropped_for_slowness = False
        self.sent_frames = 0
        self._kick: tuple[int, str] | None = None
        self.closing: asyncio.Task[None] | None = None

    def wants(self, event: RoomEvent) -> bool:
        audience = event.audience
        if audience == "all":
            return True
        if audience == "moderators":
            return self.is_moderator
        if audience == "staff":  # speakers and moderators (webcam backstage, rooms/webcam/stage.py)
            return self.participant.role in ("moderator", "speaker")
        return audience == self.audience_key

    # -- events ------------------------------------------------------------------
    def offer(self, event: RoomEvent) -> None:
        """One event, in id order (an event already seen is ignored)."""
        if self.closed or event.id <= self.last_id:
            return
        if not self.ready:
            self._backlog.append(event)
            return
        self.last_id = event.id
        if self.wants(event):
            self._event(event.wire, None)

    def take(self, events: list[RoomEvent], frame: bytes, first: int, last: int) -> None:
        """A run of consecutive ``all`` events (ids ``first``..``last``) and their shared ``events``
        frame: the fan-out's fast path, one write of the same bytes for every caught-up client."""
        if self.closed:
            return
        if not self.ready or self.last_id >= first:
            for event in events:  # catching up, or saw some of them already
                self.offer(event)
            return
        self.last_id = last
        if self._queue or self.held or self._sink.paused:
            for event in events:
                self._enqueue(True, event.wire)
            return
        self._sink.write(frame)
        self.sent_frames += 1

    def _event(self, wire: bytes, frame: bytes | None) -> None:
        if self._queue or self.held or self._sink.paused:
            self._enqueue(True, wire)
            return
        self._sink.write(frame if frame is not None else text_frame(batch_frame([wire])))
        self.sent_frames += 1

    def start(self, catchup: list[RoomEvent], after: int) -> None:
        """Deliver what was missed, then whatever arrived meanwhile; from now on live."""
        self.last_id = after
        for event in catchup:  # at most MAX_CATCHUP: not counted against CLIENT_QUEUE
            self.last_id = max(self.last_id, event.id)
            if self.wants(event):
                self._queue.append((True, event.wire))
        backlog, self._backlog = self._backlog, []
        self.ready = True
        for event in backlog:
            self.offer(event)
        self._drain()

    # -- direct messages (welcome, ack, error, pong), in order with events -------------
    def send_direct(self, payload: bytes) -> None:
        if self._queue or self.held or self._sink.paused:
            self._enqueue(False, payload)
            return
        self._sink.write(text_frame(payload))

    def send_first(self, payload: bytes) -> None:
        """A message to send before everything already queued (the welcome of a resume)."""
        self._queue.appendleft((False, payload))

    def release(self) -> None:
        """Start writing (after the welcome was queued first)."""
        self.held = False
        self._drain()

    def _enqueue(self, is_event: bool, payload: bytes) -> None:
        if self.dropped_for_slowness:
            return
        if len(self._queue) >= CLIENT_QUEUE:
            self._drop()
            return
        self._queue.append((is_event, payload))

    def _drain(self) -> None:
        """Write everything queued, coalesced into as few frames as allowed, in one write."""
        if self.held or self.dropped_for_slowness:
            return
        queue = self._queue
        if queue and not self._sink.paused:
            frames: list[bytes] = []
            batch: list[bytes] = []
            while queue:
                is_event, payload = queue.popleft()
                if is_event:
                    batch.append(payload)
                    if len(batch) < MAX_BATCH:
                        continue
                    frames.append(text_frame(batch_frame(batch)))
                    batch = []
                    continue
                if batch:
                    frames.append(text_frame(batch_frame(batch)))
                    batch = []
                frames.append(text_frame(payload))
            if batch:
                frames.append(text_frame(batch_frame(batch)))
            self.sent_frames += len(frames)
            self._sink.write(b"".join(frames))
        if not queue and self._kick is not None and self.closing is None:
            self._start_close(*self._kick)

    def _drop(self) -> None:
        """Too slow: forget the queue and close (1013); the page resumes from its last id."""
        self.dropped_for_slowness = True
        self.closed = True
        self._queue.clear()
        self._backlog.clear()
        if self.closing is None:
            self._start_close(1013, "too slow: reconnect to resume")

    def _start_close(self, code: int, reason: str) -> None:
        self.closing = asyncio.ensure_future(self._close(code, reason))

    # -- ending --------------------------------------------------------------------
    @property
    def kicked(self) -> bool:
        return self._kick is not None

    def kick(self, code: int, reason: str) -> None:
        """Send what is queued, then close the connection (a banned participant, an abuser)."""
        self._kick = (code, reason)
        self.closed = True
        self._drain()

    def stop(self) -> None:
        """The connection ended: take nothing more, hold nothing."""
        self.closed = True
        self._sink.on_drain = None
        if self._kick is None:
            self._queue.clear()
        self._backlog.clear()


class Room:
    """One room on this node: its clients, its place in the event sequence, its broker subscription."""

    def __init__(self, hub: RoomHub, webinar_id: uuid.UUID) -> None:
        self.hub = hub
        self.webinar_id = webinar_id
        self.clients: set[Client] = set()
        self.delivered = 0
        self._outbox: list[RoomEvent] = []
        """Events released in order during this turn of the loop, fanned out at its end."""
        self._fanout_handle: asyncio.Handle | None = None
        self._job_clients: list[Client] = []
        self._job_steps: list[tuple[list[RoomEvent], bytes | None, int, int]] = []
        self._job_pos = 0
        self._pending: dict[int, RoomEvent] = {}
        self._gap_task: asyncio.Task[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._presence_task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self.slow_mode_s = 0
        self.word_filter: tuple[str, ...] = ()
        self.last_chat: dict[uuid.UUID, float] = {}

    @property
    def channel(self) -> str:
        return f"room:{self.webinar_id}"

    async def start(self) -> None:
        self._task = asyncio.create_task(self._listen())
        self._presence_task = asyncio.create_task(self._presence())
        await self._ready.wait()

    async def _presence(self) -> None:
        """Approximate and cheap: one small notice per node per room every few seconds;
        the moderator panel sums the latest count of each node."""
        while True:
            await asyncio.sleep(PRESENCE_EVERY_S)
            await self.hub.notice(self.webinar_id, "presence.node",
                                  {"node": self.hub.node_id, "count": len(self.clients), "every_s": PRESENCE_EVERY_S},
                                  audience="moderators")

    async def _listen(self) -> None:
        broker = self.hub.broker
        while True:
            try:
                async with broker.subscribe(self.channel) as subscription:
                    await self._resync()
                    self._ready.set()
                    while True:
                        try:
                            async for message in subscription:
                                self._receive(RoomEvent.from_broker(self.webinar_id, message))
                            return
                        except MessagesLost:
                            await self._fill_from_db()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # broker unavailable: retry, clients keep their sockets
                log.warning("room %s: subscription failed (%s); retrying", self.webinar_id, exc)
                self._ready.set()
                await asyncio.sleep(1.0)

    async def _resync(self) -> None:
        row = await self.hub.db.fetchrow(
            "SELECT last_event_id, slow_mode_s, word_filter FROM rooms WHERE webinar_id = $1", self.webinar_id)
        if row is not None:
            self.slow_mode_s = row["slow_mode_s"]
            self.word_filter = tuple(row["word_filter"])
        if self.delivered == 0:
            self.delivered = int(row["last_event_id"]) if row else 0
        else:
            await self._fill_from_db()

    def _receive(self, event: RoomEvent) -> None:
        if event.id == NOTICE_ID:  # in order with the events around it, not persisted
            self._release(event)
            return
        if event.id <= self.delivered:
            return
        if event.id > self.delivered + 1:
            self._pending[event.id] = event
            if self._gap_task is None or self._gap_task.done():
                self._gap_task = asyncio.create_task(self._gap_timer())
            return
        self._deliver(event)
        while (nxt := self._pending.pop(self.delivered + 1, None)) is not None:
            self._deliver(nxt)

    async def _gap_timer(self) -> None:
        await asyncio.sleep(GAP_WAIT_S)
        if self._pending:
            await self._fill_from_db()

    async def _fill_from_db(self) -> None:
        events = await read_after(self.hub.db, self.webinar_id, self.delivered)
        for event in events:
            self._pending.pop(event.id, None)
            if event.id == self.delivered + 1:
                self._deliver(event)
        while (nxt := self._pending.pop(self.delivered + 1, None)) is not None:
            self._deliver(nxt)

    def _deliver(self, event: RoomEvent) -> None:
        """The next event in id order: room state now, fan-out at the end of this loop turn."""
        self.delivered = event.id
        if event.kind in ("room.settings", "room.filter"):
            data = msgspec.json.decode(event.wire)["data"]
            if "slow_mode_s" in data:
                self.slow_mode_s = int(data["slow_mode_s"])
            if "words" in data:
                self.word_filter = tuple(data["words"])
        self.hub.on_event(self, event)
        self._release(event)

    def _release(self, event: RoomEvent) -> None:
        self._outbox.append(event)
        if self._fanout_handle is None and not self._job_clients:
            self._fanout_handle = asyncio.get_running_loop().call_soon(self._fanout)

    def _fanout(self) -> None:
        """Plan the outbox's delivery (runs of ``all`` events as one shared frame), then hand it
        to the clients :data:`FANOUT_SLICE` at a time, one slice per turn of the loop, so that
        reading sockets and the database go on meanwhile (a 10,000-viewer fan-out is tens of
        milliseconds of writes). The next outbox waits for this one: each client gets events in order."""
        self._fanout_handle = None
        events, self._outbox = self._outbox, []
        steps: list[tuple[list[RoomEvent], bytes | None, int, int]] = []
        start = 0
        while start < len(events):
            end = start
            while (end < len(events) and events[end].audience == "all" and events[end].id != NOTICE_ID
                   and end - start < MAX_BATCH):
                end += 1
            if end > start:
                run = events[start:end]
                steps.append((run, text_frame(batch_frame([event.wire for event in run])), run[0].id, run[-1].id))
                start = end
            else:
                steps.append(([events[start]], None, 0, 0))
                start += 1
        self._job_steps = steps
        self._job_clients = list(self.clients)
        self._job_pos = 0
        self._fanout_slice()

    def _fanout_slice(self) -> None:
        self._fanout_handle = None
        clients, steps, start = self._job_clients, self._job_steps, self._job_pos
        end = min(start + FANOUT_SLICE, len(clients))
        for client in clients[start:end]:
            for run, frame, first, last in steps:
                if frame is not None:
                    client.take(run, frame, first, last)
                else:
                    self._one(client, run[0])
        loop = asyncio.get_running_loop()
        if end < len(clients):
            self._job_pos = end
            self._fanout_handle = loop.call_soon(self._fanout_slice)
            return
        self._job_clients, self._job_steps = [], []
        if self._outbox:
            self._fanout_handle = loop.call_soon(self._fanout)

    @staticmethod
    def _one(client: Client, event: RoomEvent) -> None:
        """An event that is not for everyone (or a notice), for one client."""
        if event.id == NOTICE_ID:
            if client.ready and not client.closed and client.wants(event):
                client.send_direct(event.wire)
            return
        client.offer(event)
        if event.kind == "participant.banned" and client.audience_key == event.audience:
            client.kick(4403, "banned")

    async def attach(self, client: Client, after: int) -> bool:
        """Add a client that saw events up to ``after``; False when it missed too many
        (it then needs a snapshot: the caller gives one and attaches with a fresh id)."""
        self.clients.add(client)
        upto = self.delivered
        if upto - after > MAX_CATCHUP:
            self.clients.discard(client)
            return False
        catchup = await read_after(self.hub.db, self.webinar_id, after, limit=MAX_CATCHUP, upto=upto) if upto > after else []
        client.start(catchup, after)
        for wire in self.hub.join_notices.values():  # node-wide states (maintenance), after the welcome
            client.send_direct(wire)
        return True

    def detach(self, client: Client) -> None:
        self.clients.discard(client)

    async def close(self) -> None:
        if self._fanout_handle is not None:
            self._fanout_handle.cancel()
        if self._presence_task is not None:
            self._presence_task.cancel()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        if self._gap_task is not None:
            self._gap_task.cancel()


class RoomHub:
    """The rooms of this node; a room lives while it has clients (and a little after)."""

    def __init__(self, db: Any, broker: Broker, *, on_event: Callable[[Room, RoomEvent], None] | None = None) -> None:
        self.db = db
        self.broker = broker
        self.rooms: dict[uuid.UUID, Room] = {}
        self._locks: dict[uuid.UUID, asyncio.Lock] = {}
        self._on_event = on_event
        self.extras: dict[str, Any] = {}
        self.node_id = uuid.uuid4().hex[:12]
        self.join_notices: dict[str, bytes] = {}
        """Notice wires (by kind) given to every client that joins, right after its welcome
        (see :meth:`local_notice`)."""

    def on_event(self, room: Room, event: RoomEvent) -> None:
        if self._on_event is not None:
            self._on_event(room, event)

    async def room(self, webinar_id: uuid.UUID) -> Room:
        lock = self._locks.setdefault(webinar_id, asyncio.Lock())
        async with lock:
            room = self.rooms.get(webinar_id)
            if room is None:
                room = Room(self, webinar_id)
                await room.start()
                self.rooms[webinar_id] = room
            return room

    async def release(self, room: Room) -> None:
        if not room.clients and self.rooms.get(room.webinar_id) is room:
            del self.rooms[room.webinar_id]
            await room.close()

    async def publish(self, events: list[RoomEvent]) -> None:
        """After commit: send the events to every node (this one included)."""
        for event in events:
            try:
                await self.broker.publish(f"room:{event.webinar_id}", event.to_broker())
            except Exception as exc:  # persisted already: nodes catch up from the database
                log.warning("room %s: publish of event %d failed: %s", event.webinar_id, event.id, exc)
                room = self.rooms.get(event.webinar_id)
                if room is not None:
                    room._receive(event)

    async def notice(self, webinar_id: uuid.UUID, kind: str, data: dict[str, Any], audience: str = "all") -> None:
        """Send an ephemeral notice to the room's clients on every node (best effort)."""
        wire = msgspec.json.encode({"type": "notice", "kind": kind, "data": data})
        event = RoomEvent(webinar_id, NOTICE_ID, kind, audience, wire)
        try:
            await self.broker.publish(f"room:{webinar_id}", event.to_broker())
        except Exception as exc:
            log.debug("room %s: notice %s not sent: %s", webinar_id, kind, exc)

    def local_notice(self, kind: str, data: dict[str, Any], *, for_joiners: bool = False) -> None:
        """Send one notice to every client of every room of THIS node, by the notices' path
        (in order with the events around it), without the broker: for a state that each node
        detects itself (maintenance mode, :mod:`server.maintenance`), which the broker would
        deliver once per node. The wire is encoded once for all rooms.

        ``for_joiners``: keep it (the latest per kind) and give it to each client that joins
        from now on, right after its welcome; False forgets the kept notice of ``kind``.
        Clients that are still catching up when it is fanned out get the kept one at join."""
        wire = msgspec.json.encode({"type": "notice", "kind": kind, "data": data})
        if for_joiners:
            self.join_notices[kind] = wire
        else:
            self.join_notices.pop(kind, None)
        for room in list(self.rooms.values()):
            room._release(RoomEvent(room.webinar_id, NOTICE_ID, kind, "all", wire))

    def viewer_count(self, webinar_id: uuid.UUID) -> int:
        room = self.rooms.get(webinar_id)
        return len(room.clients) if room else 0

    async def close(self) -> None:
        for room in list(self.rooms.values()):
            await room.close()
        self.rooms.clear()


async def current_last_id(db: Any, webinar_id: uuid.UUID) -> int:
    return await last_event_id(db, webinar_id)


