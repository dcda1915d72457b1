"""Live interaction over the room WebSocket, against a real server and database."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest

from server.webinars import set_state
from tests.conftest import LiveServer, browser
from tests.support.room_client import RoomClient
from tests.world import PASSWORD, World, make_world


async def setup_room(live: LiveServer) -> tuple[World, str]:
    world = await make_world(live.services.db)
    await set_state(live.services.db, world.a.webinar.id, "announced")
    return world, f"ws://127.0.0.1:{live.settings.port}/ws/rooms/{world.a.webinar.id}"


async def guest(live: LiveServer, webinar_id: uuid.UUID, name: str) -> str:
    async with browser(live) as b:
        await b.get("/login")
        r = await b.post_form(f"/w/{webinar_id}/join", {"name": name})
        assert r.status_code == 200, r.text
        return str(r.json()["token"])


async def staff_cookie(live: LiveServer, email: str) -> str:
    async with browser(live) as b:
        await b.login(email, PASSWORD)
        return f"wb_session={b.cookies['wb_session']}"


async def connect_viewer(live: LiveServer, url: str, webinar_id: uuid.UUID, name: str) -> RoomClient:
    client = RoomClient(url, token=await guest(live, webinar_id, name))
    await client.connect()
    return client


async def connect_moderator(live: LiveServer, url: str, world: World) -> RoomClient:
    client = RoomClient(url, cookie=await staff_cookie(live, world.a.moderator.email), origin=live.url)
    await client.connect()
    assert client.welcome and client.welcome["role"] == "moderator"
    return client


async def test_chat_roundtrip_moderation_and_snapshot(live: LiveServer) -> None:
    world, url = await setup_room(live)
    wid = world.a.webinar.id
    alice = await connect_viewer(live, url, wid, "Alice")
    bob = await connect_viewer(live, url, wid, "<img src=x onerror=alert(1)>")
    mod = await connect_moderator(live, url, world)
    try:
        ack = await alice.send("chat.send", text="Hello <b>everyone</b>")
        assert ack["type"] == "ack" and ack["message_id"] > 0
        stored = await live.services.db.fetchval("SELECT text FROM chat_messages WHERE event_id = $1", ack["message_id"])
        assert stored == "Hello <b>everyone</b>"  # persisted before the ack; escaping is the page's job
        for client in (bob, mod):
            event = await client.event("chat.message", lambda e: e["id"] == ack["event_id"])
            assert event["data"]["text"] == "Hello <b>everyone</b>" and event["data"]["author"]["name"] == "Alice"
        # A viewer may not moderate.
        refused = await bob.send("chat.delete", message_id=ack["message_id"])
        assert refused["type"] == "error" and refused["code"] == "forbidden"
        deleted = await mod.send("chat.delete", message_id=ack["message_id"])
        assert deleted["type"] == "ack"
        for client in (alice, bob):
            await client.event("chat.deleted", lambda e: e["data"]["message_id"] == ack["message_id"])
        # A newcomer's snapshot has the room as it is now: the deleted message is gone.
        await bob.send("chat.send", text="second")
        carol = await connect_viewer(live, url, wid, "Carol")
        texts = [c["text"] for c in carol.welcome["state"]["chat"]]  # type: ignore[index]
        assert texts == ["second"]
        assert carol.welcome["state"]["chat"][0]["author"]["name"] == "<img src=x onerror=alert(1)>"  # type: ignore[index]
        await carol.close()
    finally:
        for c in (alice, bob, mod):
            await c.close()


async def test_resume_gets_missed_events_once(live: LiveServer) -> None:
    world, url = await setup_room(live)
    wid = world.a.webinar.id
    token = await guest(live, wid, "Resumer")
    dave = RoomClient(url, token=token)
    await dave.connect()
    talker = await connect_viewer(live, url, wid, "Talker")
    try:
        await talker.send("chat.send", text="before")
        await dave.event("chat.message", lambda e: e["data"]["text"] == "before")
        seen = dave.last_event_id
        await dave.close()
        sent = []
        for i in range(8):  # within the chat rate limit (a burst of 5, then one a second)
            sent.append((await talker.send("chat.send", text=f"missed {i}"))["event_id"])
            await asyncio.sleep(0.0 if i < 3 else 1.0)
        again = RoomClient(url, token=token)
        welcome = await again.connect(last_event_id=seen)
        assert welcome["resumed"] is True and welcome["state"] is None
        await again.event("chat.message", lambda e: e["id"] == sent[-1])
        ids = [e["id"] for e in again.events]
        assert ids == sorted(set(ids)), "no duplicates, in order"
        assert set(sent) <= set(ids) and min(ids) > seen
        await again.close()
    finally:
        await talker.close()


async def test_hostile_input_never_breaks_the_room(live: LiveServer) -> None:
    world, url = await setup_room(live)
    wid = world.a.webinar.id
    victim = await connect_viewer(live, url, wid, "Victim")
    attacker = await connect_viewer(live, url, wid, "Attacker")
    try:
        for raw, code in [("x" * 20000, "too_large"), ("{not json", "malformed"), ('{"type":"nope"}', "invalid"),
                          ('{"type":"chat.send","text":""}', "invalid"), ('[1,2,3]', "invalid"),
                          ('{"type":"poll.vote","poll_id":1,"choices":[99]}', "invalid")]:
            before = len(attacker.errors)
            await attacker.send_raw(raw)
            await attacker.wait(lambda: len(attacker.errors) > before)
            assert attacker.errors[-1]["code"] == code, raw[:40]
        for kind, fields in [("participant.ban", {"participant_id": str(uuid.uuid4())}), ("chat.slow_mode", {"seconds": 60}),
                             ("poll.create", {"question": "q", "options": ["a", "b"]}), ("cta.push", {"cta_id": 1})]:
            reply = await attacker.send(kind, **fields)
            assert reply["code"] == "forbidden", kind
        # A flood: rate limited, then the connection is closed; the victim does not notice.
        for i in range(80):
            try:
                await attacker.send_raw(json.dumps({"type": "chat.send", "text": f"spam {i}"}))
            except Exception:
                break
        await attacker.wait(lambda: attacker.closed_code is not None, 10)
        assert attacker.closed_code == 1008
        assert any(e["code"] == "rate_limited" for e in attacker.errors)
        ok = await victim.send("chat.send", text="still here")
        assert ok["type"] == "ack"
        spam = await live.services.db.fetchval("SELECT count(*) FROM chat_messages WHERE text LIKE 'spam%'")
        assert spam <= 6  # the burst, not the flood
    finally:
        await victim.close()
        await attacker.close()


async def test_refused_connections(live: LiveServer) -> None:
    world, url = await setup_room(live)
    import websockets

    for bad_url, headers in [(url + "?token=forged", {}), (url, {}),
                             (f"ws://127.0.0.1:{live.settings.port}/ws/rooms/{world.b.webinar.id}?token="
                              + await guest(live, world.a.webinar.id, "x"), {})]:
        with pytest.raises(websockets.InvalidStatus):
            async with websockets.connect(bad_url, additional_headers=headers, open_timeout=5):
                pass
    # Staff cookie from another site's page (cross-site WebSocket hijacking) is refused.
    cookie = await staff_cookie(live, world.a.moderator.email)
    with pytest.raises(websockets.InvalidStatus):
        async with websockets.connect(url, additional_headers={"Cookie": cookie}, origin="http://evil.example",
                                      open_timeout=5):
            pass
    # Account B's organizer is not staff of A's room.
    cookie_b = await staff_cookie(live, world.b.organizer.email)
    with pytest.raises(websockets.InvalidStatus):
        async with websockets.connect(url, additional_headers={"Cookie": cookie_b}, origin=live.url, open_timeout=5):
            pass
    # No hello in time / something else first.
    client = RoomClient(url, token=await guest(live, world.a.webinar.id, "Late"))
    client.ws = await websockets.connect(client.url)
    await client.ws.send(json.dumps({"type": "chat.send", "text": "hi"}))
    reply = json.loads(await client.ws.recv())
    assert reply["code"] == "hello_first"
    await client.ws.close()


async def test_polls_questions_ctas_ratings_help(live: LiveServer) -> None:
    world, url = await setup_room(live)
    wid = world.a.webinar.id
    db = live.services.db
    viewer = await connect_viewer(live, url, wid, "Vera")
    other = await connect_viewer(live, url, wid, "Otto")
    mod = await connect_moderator(live, url, world)
    try:
        # Polls: created as a draft (moderators see it), opened, voted, results, closed.
        created = await mod.send("poll.create", question="Best day?", options=["Mon", "Tue", "Wed"], results="everyone")
        poll_id = created["poll_id"]
        assert "poll.created" not in viewer.kinds()
        await mod.send("poll.open", poll_id=poll_id)
        await viewer.event("poll.opened", lambda e: e["data"]["poll_id"] == poll_id)
        assert (await viewer.send("poll.vote", poll_id=poll_id, choices=[0, 1]))["code"] == "invalid"  # single choice
        assert (await viewer.send("poll.vote", poll_id=poll_id, choices=[1]))["type"] == "ack"
        assert (await viewer.send("poll.vote", poll_id=poll_id, choices=[2]))["type"] == "ack"  # changed her mind
        assert (await other.send("poll.vote", poll_id=poll_id, choices=[2]))["type"] == "ack"
        results = await other.event("poll.results", lambda e: e["data"]["voters"] == 2, timeout=5)
        assert results["data"]["counts"] == [0, 0, 2]
        await mod.send("poll.close", poll_id=poll_id)
        late = await other.send("poll.vote", poll_id=poll_id, choices=[0])
        assert late["code"] == "poll_closed"
        # Private results reach moderators only.
        private = (await mod.send("poll.create", question="Secret?", options=["y", "n"], results="moderators"))["poll_id"]
        await mod.send("poll.open", poll_id=private)
        await viewer.send("poll.vote", poll_id=private, choices=[0])
        await mod.event("poll.results", lambda e: e["data"]["poll_id"] == private, timeout=5)
        await asyncio.sleep(0.2)
        assert not [e for e in viewer.events if e["kind"] == "poll.results" and e["data"]["poll_id"] == private]
        # Q&A: ask (anonymously too), upvote once, hide.
        asked = await viewer.send("qa.ask", text="Will slides be shared?", anonymous=True)
        question = await other.event("qa.question", lambda e: e["data"]["question_id"] == asked["question_id"])
        assert question["data"]["author"] is None
        assert (await other.send("qa.upvote", question_id=asked["question_id"]))["type"] == "ack"
        assert (await other.send("qa.upvote", question_id=asked["question_id"])).get("already") is True
        await viewer.event("qa.upvoted", lambda e: e["data"]["upvotes"] == 1)
        await mod.send("qa.mark", question_id=asked["question_id"], status="hidden")
        await viewer.event("qa.status", lambda e: e["data"]["status"] == "hidden")
        assert (await other.send("qa.upvote", question_id=asked["question_id"]))["code"] == "not_found"
        # CTAs: pushed, impression and click recorded per participant, form only with consent.
        cta_id = await db.fetchval(
            "INSERT INTO ctas (webinar_id, label, url, form_fields, consent_text) VALUES ($1, 'Book a demo', "
            "'https://example.com/demo', '{company,phone}', 'I agree to be contacted') RETURNING id", wid)
        assert (await viewer.send("cta.click", cta_id=cta_id))["code"] == "invalid"  # not on screen yet
        await mod.send("cta.push", cta_id=cta_id)
        pushed = await viewer.event("cta.pushed")
        assert pushed["data"]["label"] == "Book a demo"
        await viewer.send("cta.impression", cta_id=cta_id)
        await viewer.send("cta.click", cta_id=cta_id)
        assert (await viewer.send("cta.submit", cta_id=cta_id, fields={"company": "Acme"}))["code"] == "consent_required"
        assert (await viewer.send("cta.submit", cta_id=cta_id, fields={"salary": "1"}, consent=True))["code"] == "invalid"
        assert (await viewer.send("cta.submit", cta_id=cta_id, fields={"company": "Acme"}, consent=True))["type"] == "ack"
        await mod.event("cta.submitted")
        kinds = [r["kind"] for r in await db.fetch("SELECT kind FROM cta_interactions WHERE cta_id = $1 ORDER BY id", cta_id)]
        assert kinds == ["impression", "click", "submit"]
        await mod.send("cta.withdraw", cta_id=cta_id)
        await other.event("cta.withdrawn")
        # Ratings: shown at once, removable by moderators.
        rated = await other.send("rating.submit", stars=4, comment="Clear and useful")
        posted = await viewer.event("rating.posted")
        assert posted["data"]["stars"] == 4 and posted["data"]["comment"] == "Clear and useful"
        await mod.send("rating.remove", rating_id=rated["rating_id"])
        await viewer.event("rating.removed")
        # Help bot: a known question is answered to the asker only; an unknown one reaches moderators.
        await db.execute("INSERT INTO help_faq (account_id, variants, answer) VALUES ($1, $2, $3)", world.a.account_id,
                         ["Where can I watch the replay?", "replay link"], "The replay is on this page after the live.")
        answered = await viewer.send("help.ask", text="where is the REPLAY link?")
        assert answered["answered"] is True
        answer = await viewer.event("help.answer")
        assert "replay is on this page" in answer["data"]["answer"]
        unknown = await viewer.send("help.ask", text="Can I bring my dog to the studio?")
        assert unknown["answered"] is False
        await mod.event("help.unanswered", lambda e: "dog" in e["data"]["question"])
        await asyncio.sleep(0.2)
        assert "help.answer" not in other.kinds() and "help.unanswered" not in viewer.kinds()
    finally:
        for c in (viewer, other, mod):
            await c.close()


async def test_mute_ban_slow_mode_and_filter(live: LiveServer) -> None:
    world, url = await setup_room(live)
    wid = world.a.webinar.id
    token = await guest(live, wid, "Troll")
    troll = RoomClient(url, token=token)
    await troll.connect()
    mod = await connect_moderator(live, url, world)
    nice = await connect_viewer(live, url, wid, "Nice")
    try:
        troll_id = troll.welcome["participant"]["id"]  # type: ignore[index]
        await mod.send("chat.filter", words=["darn"])
        refused = await nice.send("chat.send", text="Darn it")
        assert refused["code"] == "filtered"
        assert (await nice.send("chat.send", text="darnation is fine"))["type"] == "ack"
        await mod.send("chat.slow_mode", seconds=30)
        await nice.event("room.settings", lambda e: e["data"]["slow_mode_s"] == 30)
        assert (await nice.send("chat.send", text="one"))["type"] == "error"  # within 30 s of the previous one
        await mod.send("chat.slow_mode", seconds=0)
        await nice.event("room.settings", lambda e: e["data"]["slow_mode_s"] == 0)
        await mod.send("participant.mute", participant_id=troll_id, minutes=5)
        await troll.event("participant.muted")
        assert (await troll.send("chat.send", text="let me talk"))["code"] == "muted"
        await mod.send("participant.ban", participant_id=troll_id)
        await troll.wait(lambda: troll.closed_code is not None, 5)
        assert troll.closed_code == 4403
        import websockets

        with pytest.raises(websockets.InvalidStatus):
            async with websockets.connect(url + f"?token={token}", open_timeout=5):
                pass
        assert "participant.banned" not in nice.kinds()  # moderators and the person only
        await mod.event("participant.banned")
    finally:
        for c in (troll, mod, nice):
            await c.close()


async def test_guest_join_validation(live: LiveServer) -> None:
    world, _ = await setup_room(live)
    async with browser(live) as b:
        await b.get("/login")
        assert (await b.post_form(f"/w/{world.a.webinar.id}/join", {"name": "   "})).status_code == 422
        assert (await b.post_form(f"/w/{world.a.webinar.id}/join", {"name": "x" * 81})).status_code == 422
        assert (await b.post_form(f"/w/{uuid.uuid4()}/join", {"name": "Ann"})).status_code == 404
        assert (await b.post_form(f"/w/{world.b.webinar.id}/join", {"name": "Ann"})).status_code == 404  # a draft
        assert (await b.post(f"/w/{world.a.webinar.id}/join", data={"name": "Ann"})).status_code == 403  # no CSRF




async def test_presence_notices_reach_moderators_only(live: LiveServer) -> None:
    from rooms import hub as hub_module

    world, url = await setup_room(live)
    original = hub_module.PRESENCE_EVERY_S
    hub_module.PRESENCE_EVERY_S = 0.2
    try:
        mod = await connect_moderator(live, url, world)
        viewer = await connect_viewer(live, url, world.a.webinar.id, "Counted")
        await mod.wait(lambda: any(n["kind"] == "presence.node" and n["data"]["count"] == 2 for n in mod.notices), 5)
        await asyncio.sleep(0.3)
        assert not viewer.notices
        await hub_module_notice(live, world.a.webinar.id)
        await viewer.wait(lambda: any(n["kind"] == "live.interrupted" for n in viewer.notices), 5)
        await mod.close()
        await viewer.close()
    finally:
        hub_module.PRESENCE_EVERY_S = original


async def hub_module_notice(live: LiveServer, webinar_id: uuid.UUID) -> None:
    await live.services.extras["rooms"].notice(webinar_id, "live.interrupted", {"grace_s": 30})
