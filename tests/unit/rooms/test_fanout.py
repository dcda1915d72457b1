"""The hub's delivery path without a network: one shared frame per batch, backpressure,
coalescing, drops, kicks; frames; arrival-time rate limits; the keepalive of a busy loop."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest

from rooms.events import RoomEvent
from rooms.hub import CLIENT_QUEUE, Client, Room
from rooms.limits import Limiter
from rooms.participants import Participant
from server.ws_protocol import frame_payloads, text_frame


class FakeSink:
    """A FrameSink that records every write; ``paused`` is set by the test."""

    def __init__(self) -> None:
        self.paused = False
        self.on_drain: Any = None
        self.writes: list[bytes] = []

    def write(self, frame: bytes) -> None:
        self.writes.append(frame)

    def messages(self) -> list[dict[str, Any]]:
        return [json.loads(p) for w in self.writes for p in frame_payloads(w)]

    def resume(self) -> None:
        self.paused = False
        self.on_drain()


class Closer:
    def __init__(self) -> None:
        self.calls: list[tuple[int, str]] = []

    async def __call__(self, code: int, reason: str) -> None:
        self.calls.append((code, reason))


WID = uuid.uuid4()


def person(role: str = "viewer") -> Participant:
    return Participant(uuid.uuid4(), WID, "P", role)  # type: ignore[arg-type]


def event(i: int, audience: str = "all", kind: str = "chat.message") -> RoomEvent:
    return RoomEvent(WID, i, kind, audience, b'{"id":%d,"kind":"%s","data":{}}' % (i, kind.encode()))


def live_client(role: str = "viewer", after: int = 0) -> tuple[Client, FakeSink, Closer]:
    sink, closer = FakeSink(), Closer()
    client = Client(person(role), sink, closer)
    client.send_direct(b'{"type":"welcome"}')
    client.start([], after)
    client.release()
    return client, sink, closer


class FakeHub:
    def on_event(self, room: Room, ev: RoomEvent) -> None:
        pass


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_text_frame_round_trip(size: int) -> None:
    payload = b"x" * size
    frame = text_frame(payload)
    assert frame[0] == 0x81 and not frame[1] & 0x80  # FIN + text, unmasked
    assert frame_payloads(frame + text_frame(b"next")) == [payload, b"next"]
    with pytest.raises(ValueError):
        frame_payloads(frame[:-1] if size else frame[:1])


async def test_welcome_first_then_one_shared_frame_for_every_client() -> None:
    room = Room(FakeHub(), WID)  # type: ignore[arg-type]
    clients = [live_client() for _ in range(3)]
    for client, _, _ in clients:
        room.clients.add(client)
    room.delivered = 0
    room._receive(event(2))  # out of order: waits for 1
    room._receive(event(1))
    room._receive(event(3))
    await asyncio.sleep(0)
    frames = [sink.writes[-1] for _, sink, _ in clients]
    assert all(f is frames[0] for f in frames), "one frame object written to everyone"
    for _, sink, _ in clients:
        welcome, batch = sink.messages()
        assert welcome == {"type": "welcome"}
        assert [e["id"] for e in batch["events"]] == [1, 2, 3] and batch["type"] == "events"
        assert len(sink.writes) == 2  # the welcome, then one write for the three events


async def test_audiences_and_ban_kick() -> None:
    room = Room(FakeHub(), WID)  # type: ignore[arg-type]
    viewer, vsink, vclose = live_client()
    mod, msink, _ = live_client("moderator")
    room.clients |= {viewer, mod}
    room._receive(event(1, "moderators", "poll.created"))
    room._receive(event(2, viewer.audience_key, "participant.banned"))
    room._receive(event(3, "moderators", "participant.banned"))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert [e["id"] for m in msink.messages()[1:] for e in m["events"]] == [1, 3]
    assert [e["id"] for m in vsink.messages()[1:] for e in m["events"]] == [2]
    assert viewer.kicked and vclose.calls == [(4403, "banned")]
    assert not mod.kicked and viewer.last_id == 2 and mod.last_id == 3


async def test_paused_client_is_coalesced_on_drain_and_others_do_not_wait() -> None:
    fast, fast_sink, _ = live_client()
    slow, slow_sink, _ = live_client()
    slow_sink.paused = True
    for i in range(1, 6):
        frame = text_frame(b'{"type":"events","events":[%d]}' % i)
        fast.take([event(i)], frame, i, i)
        slow.take([event(i)], frame, i, i)
    slow.send_direct(b'{"type":"ack","ref":1}')
    slow.take([event(6)], b"", 6, 6)
    assert len(fast_sink.writes) == 6 and len(slow_sink.writes) == 1  # welcome only
    slow_sink.resume()
    assert len(slow_sink.writes) == 2, "everything queued goes out in one write"
    _welcome, batch, ack, last = slow_sink.messages()
    assert [e["id"] for e in batch["events"]] == [1, 2, 3, 4, 5]
    assert ack["type"] == "ack" and [e["id"] for e in last["events"]] == [6]


async def test_a_slow_client_is_dropped_not_waited_for() -> None:
    client, sink, closer = live_client()
    sink.paused = True
    for i in range(1, CLIENT_QUEUE + 2):
        client.offer(event(i))
    assert client.dropped_for_slowness and client.closed
    await asyncio.sleep(0)
    assert closer.calls == [(1013, "too slow: reconnect to resume")]
    client.offer(event(CLIENT_QUEUE + 5))
    sink.resume()
    assert len(sink.writes) == 1  # only the welcome: nothing queued survives a drop


async def test_catch_up_then_backlog_once_in_order() -> None:
    sink, closer = FakeSink(), Closer()
    client = Client(person(), sink, closer)
    client.offer(event(4))  # arrives while the catch-up is read: kept
    client.offer(event(5))
    client.start([event(2), event(3), event(4)], after=1)
    client.send_first(b'{"type":"welcome","resumed":true}')
    assert sink.writes == []  # held until released
    client.release()
    welcome, *frames = sink.messages()
    assert welcome["resumed"] is True
    assert [e["id"] for f in frames for e in f["events"]] == [2, 3, 4, 5]


async def test_kick_sends_what_is_queued_then_closes() -> None:
    client, sink, closer = live_client()
    sink.paused = True
    client.send_direct(b'{"type":"error","code":"rate_limited"}')
    client.kick(1008, "too many refused messages")
    await asyncio.sleep(0)
    assert closer.calls == [] and client.closing is None
    sink.resume()
    await asyncio.sleep(0)
    assert sink.messages()[-1]["code"] == "rate_limited"
    assert closer.calls == [(1008, "too many refused messages")]


def test_rate_limits_count_arrival_not_processing_time() -> None:
    """A chatter at exactly 1 msg/s whose frames the server gets to 8 s late, all at once."""
    arrivals = [float(t) for t in range(20)]
    processed_at = [t if t < 10 else 18.0 for t in arrivals[:10]] + [18.0] * 8 + [18.0, 19.0]
    by_arrival, by_processing = Limiter(), Limiter()
    assert all(by_arrival.allow("chat", t) for t in arrivals)
    assert not all(by_processing.allow("chat", t) for t in processed_at)  # what happened before


class FakeTransport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closed = False
        self.reading = True

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 1) if name in ("peername", "sockname") else default


def protocol() -> Any:
    import uvicorn
    from uvicorn.server import ServerState

    from server.settings import Settings
    from server.ws_protocol import WebSocketProtocol, uvicorn_options

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        while (await receive())["type"] != "websocket.disconnect":
            pass

    config = uvicorn.Config(app, **uvicorn_options(Settings()))
    config.load()
    proto = WebSocketProtocol(config, ServerState(), {}, _loop=asyncio.get_running_loop())
    proto.connection_made(FakeTransport())  # type: ignore[arg-type]
    proto.data_received(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    return proto


async def test_keepalive_spares_a_talking_peer_and_a_late_timer() -> None:
    proto = protocol()
    loop = asyncio.get_running_loop()
    for _ in range(5):
        await asyncio.sleep(0)
    assert proto.handshake_complete and proto.scope["extensions"]["webinar.frames"] is proto.frames_ext
    proto.stop_keepalive()
    proto.send_keepalive_ping()
    assert proto.pending_ping_payload is not None and proto.pong_timer is not None
    proto.pong_timer.cancel()
    # The deadline is handled 5 s late (a blocked loop), nothing read yet: one more chance.
    proto.pong_due = loop.time() - 5
    proto.keepalive_timeout()
    assert not proto.transport.closed and proto.pong_timer is not None
    proto.pong_timer.cancel()
    # The peer sent something since the ping (its pong is behind it): alive, next ping scheduled.
    proto.received_at = loop.time()
    proto.keepalive_timeout()
    assert not proto.transport.closed and proto.ping_timer is not None
    proto.ping_timer.cancel()
    # Silent peer, timer on time: closed with 1011 as before.
    proto.send_keepalive_ping()
    proto.pong_timer.cancel()
    proto.received_at = 0.0
    proto.keepalive_timeout()
    assert proto.transport.closed and b"keepalive ping timeout" in b"".join(proto.transport.written)
    proto.connection_lost(None)
    for _ in range(5):
        await asyncio.sleep(0)


def client_frame(payload: bytes) -> bytes:
    mask = b"\x01\x02\x03\x04"
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes((0x81, 0x80 | len(payload))) + mask + masked


async def test_frames_are_read_ahead_and_stamped_when_they_arrive() -> None:
    from server.ws_protocol import READ_AHEAD_MESSAGES

    proto = protocol()
    for _ in range(5):
        await asyncio.sleep(0)
    ext = proto.frames_ext
    ext.arrivals.clear()
    for i in range(READ_AHEAD_MESSAGES - 1):  # the application is busy: nothing consumed meanwhile
        proto.data_received(client_frame(b'{"n":%d}' % i))
        assert proto.transport.reading, "still reading while few messages wait"
    assert len(ext.arrivals) == READ_AHEAD_MESSAGES - 1
    assert list(ext.arrivals) == sorted(ext.arrivals)
    proto.data_received(client_frame(b'{"n":"last"}'))
    assert not proto.transport.reading, "backpressure once the read-ahead is full"
    for _ in range(5):
        await asyncio.sleep(0)
    assert proto.transport.reading and proto.queue.empty() and proto.queued_bytes == 0
    proto.connection_lost(None)
    for _ in range(5):
        await asyncio.sleep(0)


async def test_notices_keep_their_place_among_events() -> None:
    from rooms.hub import NOTICE_ID

    room = Room(FakeHub(), WID)  # type: ignore[arg-type]
    viewer, sink, _ = live_client()
    mod, msink, _ = live_client("moderator")
    room.clients |= {viewer, mod}
    room._receive(event(1))
    room._receive(RoomEvent(WID, NOTICE_ID, "presence.node", "moderators", b'{"type":"notice","kind":"presence.node"}'))
    room._receive(RoomEvent(WID, NOTICE_ID, "live.state", "all", b'{"type":"notice","kind":"live.state"}'))
    room._receive(event(2))
    await asyncio.sleep(0)
    kinds = [m.get("kind") or [e["id"] for e in m["events"]] for m in msink.messages()[1:]]
    assert kinds == [[1], "presence.node", "live.state", [2]]
    assert [m.get("kind") or [e["id"] for e in m["events"]] for m in sink.messages()[1:]] == [[1], "live.state", [2]]


async def test_a_large_fan_out_is_sliced_and_keeps_order() -> None:
    from rooms.hub import FANOUT_SLICE

    room = Room(FakeHub(), WID)  # type: ignore[arg-type]
    clients = [live_client() for _ in range(2 * FANOUT_SLICE + 7)]
    for client, _, _ in clients:
        room.clients.add(client)
    room._receive(event(1))
    await asyncio.sleep(0)
    served = sum(1 for _, sink, _ in clients if len(sink.writes) == 2)
    assert served == FANOUT_SLICE, "one slice per turn of the loop"
    room._receive(event(2))  # released mid fan-out: goes out after event 1 reached everyone
    for _ in range(10):
        await asyncio.sleep(0)
    for _, sink, _ in clients:
        assert [[e["id"] for e in m["events"]] for m in sink.messages()[1:]] == [[1], [2]]


async def test_asgi_fallback_sends_payloads_one_write_at_a_time() -> None:
    from rooms.ws import AsgiFrames

    sent: list[str] = []
    gate = asyncio.Event()

    class FakeWebSocket:
        async def send_text(self, text: str) -> None:
            await gate.wait()
            sent.append(text)

    sink = AsgiFrames(FakeWebSocket())  # type: ignore[arg-type]
    client = Client(person(), sink, Closer())
    client.send_direct(b'{"type":"welcome"}')
    client.start([], 0)
    client.release()
    assert sink.paused, "the welcome is being sent"
    client.take([event(1)], text_frame(b'{"type":"events","events":[1]}'), 1, 1)
    client.take([event(2)], text_frame(b'{"type":"events","events":[2]}'), 2, 2)
    gate.set()
    for _ in range(10):
        await asyncio.sleep(0)
    assert [json.loads(t) for t in sent] == [{"type": "welcome"}, {"type": "events", "events": [
        json.loads(event(1).wire), json.loads(event(2).wire)]}]
    assert not sink.paused
