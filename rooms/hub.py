"""Fan-out of room events to this node's WebSocket clients.

Every node keeps one :class:`Room` per room that has local clients. The room
subscribes to the broker channel ``room:<webinar id>`` (in-process or Redis),
receives every event committed by any node, puts them back in id order
(events from two nodes may cross on the broker: a gap waits
:data:`GAP_WAIT_S` then is filled from the database), and hands each to the
clients allowed to see it (``all``, ``moderators``, or one participant).

Backpressure: each client has a bounded queue (:data:`CLIENT_QUEUE`
events). A client whose queue is full is disconnected (close code 1013,
"try again later"); its page reconnects and resumes from its last event id,
so a slow viewer never slows the room and loses nothing. Queued events are
sent as one ``events`` frame per wake-up: under load, frames carry more
events instead of there being more frames.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import deque
from typing import Any, Awaitable, Callable

import msgspec

from rooms.events import MAX_CATCHUP, RoomEvent, batch_frame, last_event_id, read_after
from rooms.participants import Participant
from server.broker import Broker, MessagesLost

log = logging.getLogger("rooms.hub")

NOTICE_ID = 0
"""Id of a *notice*: an ephemeral room message (presence, live state, stream health),
not persisted, not replayed, sent as ``{"type": "notice", "kind": ..., "data": ...}``."""
PRESENCE_EVERY_S = 5.0
"""Each node tells the room's moderators how many clients it holds, this often."""
CLIENT_QUEUE = 2000
GAP_WAIT_S = 0.3
MAX_BATCH = 200
"""Most events in one frame."""

Send = Callable[[str], Awaitable[None]]


class Client:
    """One WebSocket connection as the hub sees it."""

    def __init__(self, participant: Participant, send: Send, close: Callable[[int, str], Awaitable[None]]) -> None:
        self.participant = participant
        self._send = send
        self._close = close
        self.last_id = 0
        self.ready = False
        self._backlog: list[RoomEvent] = []
        self._queue: deque[bytes] = deque()
        self._wake = asyncio.Event()
        self.closed = False
        self.dropped_for_slowness = False
        self.sent_frames = 0
        self._kick: tuple[int, str] | None = None

    def wants(self, event: RoomEvent) -> bool:
        if event.audience == "all":
            return True
        if event.audience == "moderators":
            return self.participant.role == "moderator"
        return event.audience == f"p:{self.participant.id}"

    def offer(self, event: RoomEvent) -> None:
        if self.closed or event.id <= self.last_id:
            return
        if not self.ready:
            self._backlog.append(event)
            return
        self.last_id = event.id
        if self.wants(event):
            self._push(event.wire)

    def _push(self, wire: bytes) -> None:
        if len(self._queue) >= CLIENT_QUEUE:
            self.dropped_for_slowness = True
            self.closed = True
            self._wake.set()
            return
        self._queue.append(wire)
        self._wake.set()

    def start(self, catchup: list[RoomEvent], after: int) -> None:
        """Deliver what was missed, then whatever arrived meanwhile; from now on live."""
        self.last_id = after
        for event in catchup:
            self.last_id = max(self.last_id, event.id)
            if self.wants(event):
                self._push(event.wire)
        backlog, self._backlog = self._backlog, []
        self.ready = True
        for event in backlog:
            self.offer(event)

    def send_first(self, frame: bytes) -> None:
        """A frame to send before everything already queued (the welcome of a resume)."""
        self._queue.appendleft(b"\x00" + frame)
        self._wake.set()

    @property
    def kicked(self) -> bool:
        return self._kick is not None

    def kick(self, code: int, reason: str) -> None:
        """Send what is queued, then close the connection (a banned participant)."""
        self._kick = (code, reason)
        self.closed = True
        self._wake.set()

    def send_direct(self, frame: bytes) -> None:
        """A frame for this client only (ack, error, welcome), in order with events."""
        if len(self._queue) >= CLIENT_QUEUE:
            self.closed = True
        self._queue.append(b"\x00" + frame)
        self._wake.set()

    async def sender(self) -> None:
        """Runs for the connection's life: drains the queue into frames."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self.dropped_for_slowness:
                await self._close(1013, "too slow: reconnect to resume")
                return
            batch: list[bytes] = []
            while self._queue:
                item = self._queue.popleft()
                if item[:1] == b"\x00":
                    if batch:
                        await self._send(batch_frame(batch).decode())
                        batch = []
                    await self._send(item[1:].decode())
                    continue
                batch.append(item)
                if len(batch) >= MAX_BATCH:
                    await self._send(batch_frame(batch).decode())
                    self.sent_frames += 1
                    batch = []
            if batch:
                await self._send(batch_frame(batch).decode())
                self.sent_frames += 1
            if self.closed and not self._queue:
                if self._kick is not None:
                    await self._close(*self._kick)
                return


class Room:
    def __init__(self, hub: "RoomHub", webinar_id: uuid.UUID) -> None:
        self.hub = hub
        self.webinar_id = webinar_id
        self.clients: set[Client] = set()
        self.delivered = 0
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
        if event.id == NOTICE_ID:
            for client in list(self.clients):
                if client.ready and client.wants(event):
                    client.send_direct(event.wire)
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
        self.delivered = event.id
        if event.kind in ("room.settings", "room.filter"):
            data = msgspec.json.decode(event.wire)["data"]
            if "slow_mode_s" in data:
                self.slow_mode_s = int(data["slow_mode_s"])
            if "words" in data:
                self.word_filter = tuple(data["words"])
        self.hub.on_event(self, event)
        for client in list(self.clients):
            client.offer(event)
            if event.kind == "participant.banned" and event.audience == f"p:{client.participant.id}":
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
        return True

    def detach(self, client: Client) -> None:
        self.clients.discard(client)

    async def close(self) -> None:
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

    def viewer_count(self, webinar_id: uuid.UUID) -> int:
        room = self.rooms.get(webinar_id)
        return len(room.clients) if room else 0

    async def close(self) -> None:
        for room in list(self.rooms.values()):
            await room.close()
        self.rooms.clear()


async def current_last_id(db: Any, webinar_id: uuid.UUID) -> int:
    return await last_event_id(db, webinar_id)


