"""The room WebSocket when the server is busy: limits count when frames arrived
(real server, database and clients)."""

from __future__ import annotations

import asyncio
import json

from tests.conftest import LiveServer
from tests.integration.test_rooms_ws import connect_viewer, setup_room


async def test_one_message_a_second_is_never_refused_while_the_room_is_held_up(live: LiveServer) -> None:
    """The room's counter row is locked for 6 s (as a long transaction would): the chatter's
    messages wait in its connection, then are processed at once; the chat limit (1/s, burst 5)
    counts when each arrived, so none is refused, and none is lost or reordered."""
    world, url = await setup_room(live)
    wid = world.a.webinar.id
    chatter = await connect_viewer(live, url, wid, "Steady")
    watcher = await connect_viewer(live, url, wid, "Watcher")
    try:
        first = await chatter.send("chat.send", text="warm-up")
        assert first["type"] == "ack"
        total = 12
        async with live.services.db.acquire() as conn, conn.transaction():
            await conn.execute("SELECT 1 FROM rooms WHERE webinar_id = $1 FOR UPDATE", wid)
            for i in range(8):  # sent while the room is held: they queue up
                await chatter.send_raw(json.dumps({"type": "chat.send", "ref": 100 + i, "text": f"steady {i}"}))
                await asyncio.sleep(1.0 if i < 7 else 0.0)
            assert not [r for r in chatter.replies.values() if r.get("ref", 0) >= 100], "still waiting on the lock"
        for i in range(8, total):
            await chatter.send_raw(json.dumps({"type": "chat.send", "ref": 100 + i, "text": f"steady {i}"}))
            await asyncio.sleep(1.0)
        await chatter.wait(lambda: len([r for r in chatter.replies if r >= 100]) == total, 15)
        replies = [chatter.replies[100 + i] for i in range(total)]
        assert [r["type"] for r in replies] == ["ack"] * total, [r.get("code") for r in replies]
        ids = [r["event_id"] for r in replies]
        assert ids == sorted(ids) and len(set(ids)) == total
        await watcher.event("chat.message", lambda e: e["id"] == ids[-1], timeout=10)
        seen = [e["data"]["text"] for e in watcher.events if e["kind"] == "chat.message"]
        assert seen == ["warm-up"] + [f"steady {i}" for i in range(total)]
        stored = await live.services.db.fetchval(
            "SELECT count(*) FROM chat_messages WHERE webinar_id = $1 AND text LIKE 'steady %'", wid)
        assert stored == total
    finally:
        await chatter.close()
        await watcher.close()

