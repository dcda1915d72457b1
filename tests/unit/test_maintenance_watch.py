"""Maintenance mode reaching pages already open, without services: the watch's change
listeners (what counts as a change, a failing listener, removal) and the room hub's
node-local notice (every local client of every room, not through the broker, kept for
clients that join later), wired together by :func:`server.maintenance.tell_rooms`."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import uuid
from typing import Any

import pytest

from rooms.hub import Client, Room, RoomHub
from server.broker import InProcessBroker
from server.maintenance import (
    NOTICE_KIND,
    Maintenance,
    MaintenanceWatch,
    notice_data,
    tell_rooms,
)
from tests.unit.rooms.test_fanout import Closer, FakeSink, live_client, person
from tests.unit.test_maintenance import FakeDb


async def test_listeners_hear_changes_of_the_switch_or_its_message_only() -> None:
    db = FakeDb()
    watch = MaintenanceWatch(db, InProcessBroker())  # never started: refreshed by hand
    heard: list[Maintenance] = []
    watch.add_listener(heard.append)

    await watch.refresh()
    assert heard == [], "off -> off is no change"
    db.row.update(enabled=True, message="db upgrade", changed_by="admin@example.org")
    await watch.refresh()
    assert [(s.enabled, s.message) for s in heard] == [(True, "db upgrade")]
    assert heard[0] is watch.current, "the listener gets the state the watch now holds"

    db.row.update(changed_at=dt.datetime(2026, 1, 2, tzinfo=dt.UTC), changed_by="cli")  # switched on again, same text
    await watch.refresh()
    assert len(heard) == 1, "only when and by whom changed: no change for people"

    db.row.update(message="back at 6")
    await watch.refresh()
    db.row.update(enabled=False, message="")
    await watch.refresh()
    await watch.refresh()
    assert [(s.enabled, s.message) for s in heard] == [(True, "db upgrade"), (True, "back at 6"), (False, "")]


async def test_a_failing_listener_is_logged_and_the_others_still_hear(caplog: pytest.LogCaptureFixture) -> None:
    db = FakeDb()
    watch = MaintenanceWatch(db, InProcessBroker())
    first: list[bool] = []
    last: list[bool] = []

    def broken(state: Maintenance) -> None:
        raise RuntimeError("listener bug")

    watch.add_listener(lambda s: first.append(s.enabled))
    watch.add_listener(broken)
    remove_last = watch.add_listener(lambda s: last.append(s.enabled))
    db.row.update(enabled=True)
    with caplog.at_level(logging.ERROR, logger="server.maintenance"):
        state = await watch.refresh()
    assert state.enabled and watch.current.enabled, "the watch itself is unaffected"
    assert first == [True] and last == [True]
    assert any("listener" in r.getMessage() and r.exc_info for r in caplog.records)

    remove_last()
    remove_last()  # twice is harmless
    db.row.update(enabled=False)
    await watch.refresh()
    assert first == [True, False] and last == [True]


async def test_the_running_watch_tells_listeners_once_per_change() -> None:
    """Started (broker wake-up and polling both running): each change is heard once, however
    many times the row is read again."""
    db = FakeDb()
    async with InProcessBroker() as broker:
        watch = MaintenanceWatch(db, broker, poll_s=0.02)
        heard: list[tuple[bool, str]] = []
        watch.add_listener(lambda s: heard.append((s.enabled, s.message)))
        await watch.start()
        try:
            db.row.update(enabled=True, message="upgrade")
            async with asyncio.timeout(2):
                while not heard:
                    await asyncio.sleep(0.01)
            reads = db.reads
            async with asyncio.timeout(2):
                while db.reads < reads + 5:  # several more polls of the same row
                    await asyncio.sleep(0.01)
            assert heard == [(True, "upgrade")]
        finally:
            await watch.close()


class NoBroker(InProcessBroker):
    """A broker the node-local notice must not use."""

    async def publish(self, channel: str, payload: bytes) -> None:
        raise AssertionError(f"published on {channel}: a node-local notice must not go through the broker")


def notices(sink: FakeSink) -> list[dict[str, Any]]:
    return [m for m in sink.messages() if m.get("type") == "notice"]


async def test_local_notice_reaches_every_local_client_of_every_room_once() -> None:
    hub = RoomHub(None, NoBroker())
    sinks: list[FakeSink] = []
    for _ in range(2):
        room = Room(hub, uuid.uuid4())
        hub.rooms[room.webinar_id] = room
        for role in ("viewer", "moderator", "speaker"):
            client, sink, _ = live_client(role)
            room.clients.add(client)
            sinks.append(sink)

    hub.local_notice(NOTICE_KIND, {"enabled": True, "message": "back at 6 <b>"}, for_joiners=True)
    await asyncio.sleep(0)
    for sink in sinks:
        assert notices(sink) == [{"type": "notice", "kind": "maintenance",
                                  "data": {"enabled": True, "message": "back at 6 <b>"}}]
    hub.local_notice(NOTICE_KIND, {"enabled": False, "message": ""}, for_joiners=True)
    await asyncio.sleep(0)
    for sink in sinks:
        assert [n["data"]["enabled"] for n in notices(sink)] == [True, False]


async def test_a_joining_client_gets_the_kept_notice_right_after_its_welcome() -> None:
    hub = RoomHub(None, NoBroker())
    room = Room(hub, uuid.uuid4())
    hub.rooms[room.webinar_id] = room
    hub.local_notice("maintenance", {"enabled": True, "message": "m"}, for_joiners=True)
    hub.local_notice("other", {"x": 1})  # not kept
    await asyncio.sleep(0)

    sink = FakeSink()  # a client joining through attach (live_client's is started by hand)
    client = Client(person(), sink, Closer())
    client.send_direct(b'{"type":"welcome"}')  # held: queued first, as rooms/ws.py does
    assert await room.attach(client, 0)  # nothing delivered yet: no catch-up read
    client.release()
    messages = sink.messages()
    assert [m["type"] for m in messages] == ["welcome", "notice"]
    assert messages[1] == {"type": "notice", "kind": "maintenance", "data": {"enabled": True, "message": "m"}}
    assert len(sink.writes) == 1, "the welcome and the notice go out in one write"

    hub.local_notice("maintenance", {"enabled": True, "message": "m"}, for_joiners=False)  # forget it
    late = FakeSink()
    other = Client(person(), late, Closer())
    other.send_direct(b'{"type":"welcome"}')
    assert await room.attach(other, 0)
    other.release()
    assert [m["type"] for m in late.messages()] == ["welcome"]


async def test_tell_rooms_turns_watch_changes_into_local_notices() -> None:
    db = FakeDb()
    hub = RoomHub(None, NoBroker())
    room = Room(hub, uuid.uuid4())
    hub.rooms[room.webinar_id] = room
    client, sink, _ = live_client()
    room.clients.add(client)
    watch = MaintenanceWatch(db, InProcessBroker())
    watch.add_listener(tell_rooms(hub))

    await watch.refresh()  # no change: nothing sent, nothing kept
    await asyncio.sleep(0)
    assert notices(sink) == [] and hub.join_notices == {}
    db.row.update(enabled=True, message="upgrade")
    await watch.refresh()
    await asyncio.sleep(0)
    assert [n["data"] for n in notices(sink)] == [{"enabled": True, "message": "upgrade"}]
    db.row.update(enabled=False, message="")
    await watch.refresh()
    await asyncio.sleep(0)
    assert [n["data"] for n in notices(sink)] == [{"enabled": True, "message": "upgrade"},
                                                  {"enabled": False, "message": ""}]
    # The latest (off) is kept: a page that was away while it went off hides its notice on return.
    assert json.loads(hub.join_notices[NOTICE_KIND]) == {"type": "notice", "kind": "maintenance",
                                                         "data": notice_data(watch.current)}
    assert notice_data(Maintenance(False, "stale")) == {"enabled": False, "message": ""}
