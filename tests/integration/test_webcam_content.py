"""Shared content of webcam rooms against a real server, database and files: uploads
over HTTP (checked by content, refusals with their message), list, page images,
delete; slide changes over the room WebSocket (persisted, broadcast, in the
snapshot, applied to the webinar's ContentSlot)."""

from __future__ import annotations

import asyncio
import io
import os
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from rooms.webcam import content_sandbox
from rooms.webcam.clip_player import ClipPlayer
from rooms.webcam.slides import SlidePicture
from server.webinars import set_state
from tests.conftest import Browser, LiveServer, browser
from tests.integration.test_rooms_ws import connect_viewer, staff_cookie
from tests.support import content_files as cf
from tests.support.browser import Chromium, chromium_available
from tests.support.room_client import RoomClient
from tests.world import PASSWORD, World, make_world

RED, BLUE, WHITE = (255, 0, 0), (0, 0, 255), (255, 255, 255)
PLAYLIST_FRESH_S = 1.5
"""Playlists may be up to a second old: waiting this long after a change makes sure the next
segment the playlist lists ends after the change."""
CHROMIUM_FAKE_MEDIA = True
"""The end-to-end test puts a speaker on stage from Chromium (fake camera and microphone)."""


async def webcam_world(live: LiveServer) -> World:
    world = await make_world(live.services.db)
    for side in (world.a, world.b):
        await live.services.db.execute("UPDATE webinars SET room_type = 'webcam' WHERE id = $1", side.webinar.id)
        await set_state(live.services.db, side.webinar.id, "announced")
    return world


async def upload(b: Browser, webinar_id: uuid.UUID, data: bytes, name: str, **params: Any) -> httpx.Response:
    """POST the file as the raw body. The client waits as long as the server may take to check
    a PDF (its child process is cut at PDF_TIMEOUT_S), plus a margin for a loaded machine."""
    if "wb_csrf" not in b.cookies:
        await b.get("/login")
    return await b.post(f"/webinars/{webinar_id}/content", params={"name": name, **params}, content=data,
                        headers={"x-csrf-token": b.csrf, "content-type": "application/octet-stream"},
                        timeout=content_sandbox.PDF_TIMEOUT_S + 60)


def near(colour: tuple[int, ...], expected: tuple[int, int, int], tolerance: int = 40) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(colour, expected))


def pixel(frame: Any, x: int, y: int) -> tuple[int, int, int]:
    return tuple(int(v) for v in frame.to_ndarray(format="rgb24")[y, x])  # type: ignore[return-value]


async def test_upload_list_pages_delete_and_refusals(live: LiveServer, tmp_path: Path) -> None:
    world = await webcam_world(live)
    wid = world.a.webinar.id
    db = live.services.db
    async with browser(live) as org:
        await org.login(world.a.organizer.email, PASSWORD)
        empty = await org.get(f"/webinars/{wid}/content")
        assert empty.status_code == 200 and empty.json()["items"] == []
        assert empty.json()["limits"]["pdf_max_pages"] == 100

        # A PDF becomes page images.
        deck = cf.slides_pdf(tmp_path / "deck.pdf", 3).read_bytes()
        r = await upload(org, wid, deck, "Quarterly deck.pdf")
        assert r.status_code == 201, r.text
        item = r.json()["item"]
        assert (item["kind"], item["name"], item["pages"], item["size_bytes"]) == ("pdf", "Quarterly deck.pdf", 3, len(deck))
        row = await db.fetchrow("SELECT * FROM webcam_content WHERE id = $1", item["id"])
        import hashlib

        assert row["sha256"] == hashlib.sha256(deck).hexdigest() and row["created_by"] == world.a.organizer.id
        page = await org.get(f"/webinars/{wid}/content/{item['id']}/pages/0")
        assert page.status_code == 200 and page.headers["content-type"] == "image/png"
        x, y, w, h = cf.RED_RECT_PT
        assert near(Image.open(io.BytesIO(page.content)).convert("RGB").getpixel((x + w // 2, y + h // 2)), RED)
        assert (await org.get(f"/webinars/{wid}/content/{item['id']}/pages/3")).status_code == 404

        # Refusals: by content, with a clear message, nothing stored.
        exe = b"MZ\x90\x00\x03\x00\x00\x00" + os.urandom(5000)
        r = await upload(org, wid, exe, "slides.pdf")
        assert r.status_code == 415 and r.json()["error"] == "unknown_type"
        assert "not a PDF, PNG, JPEG or MP4" in r.json()["message"]
        r = await upload(org, wid, cf.slides_pdf(tmp_path / "long.pdf", 101).read_bytes(), "long.pdf")
        assert r.status_code == 422 and r.json() == {
            "error": "pdf_pages", "message": "This PDF has 101 pages: 100 at most (R-ROOM-1)."}
        big = cf.heavy_pdf(tmp_path / "big.pdf", 13).read_bytes()
        r = await upload(org, wid, big, "big.pdf")
        assert r.status_code == 413 and r.json()["message"] == "The file is too large: 12 MB at most (R-ROOM-1)."
        r = await upload(org, wid, cf.encrypted_pdf(tmp_path / "e.pdf").read_bytes(), "e.pdf")
        assert r.status_code == 422 and r.json()["error"] == "pdf_encrypted"
        r = await upload(org, wid, cf.bomb_pdf(tmp_path / "bomb.pdf").read_bytes(), "bomb.pdf")
        assert r.status_code == 422 and r.json()["error"] in ("timeout", "too_complex")
        clip = cf.colour_clip(tmp_path / "c.mp4").read_bytes()
        r = await upload(org, wid, clip[: len(clip) * 6 // 10], "cut.mp4")
        assert r.status_code == 422 and r.json()["error"] == "clip_corrupt"
        r = await upload(org, wid, cf.png_bomb(tmp_path / "bomb.png").read_bytes(), "bomb.png")
        assert r.status_code == 422 and r.json()["error"] == "image_dimensions"
        org.cookies.set("wb_lang", "fr")
        r = await upload(org, wid, exe, "x.pdf")
        assert r.status_code == 415 and "ni un PDF" in r.json()["message"]
        org.cookies.set("wb_lang", "en")
        no_csrf = await org.post(f"/webinars/{wid}/content", content=deck)
        assert no_csrf.status_code == 403
        assert await db.fetchval("SELECT count(*) FROM webcam_content WHERE webinar_id = $1", wid) == 1
        folder = live.settings.media_dir / "content" / str(wid)
        assert sorted(p.name for p in folder.iterdir()) == [str(item["id"])]  # no leftovers of refused uploads

        # An image set: a PNG starts it, a JPEG joins it.
        r = await upload(org, wid, cf.image(tmp_path / "a.png", RED).read_bytes(), "a.png")
        assert r.status_code == 201, r.text
        images = r.json()["item"]
        r = await upload(org, wid, cf.image(tmp_path / "b.jpg", BLUE, fmt="JPEG").read_bytes(), "b.jpg", set=images["id"])
        assert r.status_code == 201, r.text
        assert r.json()["item"]["pages"] == 2 and [i["name"] for i in r.json()["item"]["images"]] == ["a.png", "b.jpg"]
        second = await org.get(f"/webinars/{wid}/content/{images['id']}/pages/1")
        assert second.headers["content-type"] == "image/jpeg"
        assert near(Image.open(io.BytesIO(second.content)).getpixel((10, 10)), BLUE)
        r = await upload(org, wid, deck, "deck.pdf", set=images["id"])
        assert r.status_code == 415 and r.json()["error"] == "set_needs_image"

        # A clip.
        r = await upload(org, wid, clip, "Intro.mp4")
        assert r.status_code == 201, r.text
        assert r.json()["item"]["clip"] == {"duration_s": 3.0, "width": 320, "height": 240, "video": "h264", "audio": "aac"}

        listed = (await org.get(f"/webinars/{wid}/content")).json()["items"]
        assert [i["kind"] for i in listed] == ["pdf", "images", "clip"]

        # Delete.
        r = await org.post_form(f"/webinars/{wid}/content/{item['id']}/delete")
        assert r.status_code == 200 and r.json() == {"deleted": item["id"]}
        assert not (folder / str(item["id"])).exists()
        assert (await org.get(f"/webinars/{wid}/content/{item['id']}/pages/0")).status_code == 404
        assert (await org.post_form(f"/webinars/{wid}/content/{item['id']}/delete")).status_code == 404

        # A studio webinar takes no content.
        await db.execute("UPDATE webinars SET room_type = 'studio' WHERE id = $1", wid)
        r = await upload(org, wid, deck, "deck.pdf")
        assert r.status_code == 409 and r.json()["error"] == "studio_room"


async def test_who_may_upload(live: LiveServer, tmp_path: Path) -> None:
    world = await webcam_world(live)
    wid = world.a.webinar.id
    png = cf.image(tmp_path / "a.png").read_bytes()
    for role in ("speaker", "moderator"):
        async with browser(live) as b:
            await b.login(world.a.users[role].email, PASSWORD)
            r = await upload(b, wid, png, f"{role}.png")
            assert r.status_code == 201, (role, r.text)
            assert (await b.get(f"/webinars/{wid}/content")).status_code == 200
    # Not staff of this webinar: a sponsor of the account, B's organizer, anyone anonymous.
    for who in (world.a.sponsor, world.b.organizer):
        async with browser(live) as b:
            await b.login(who.email, PASSWORD)
            assert (await upload(b, wid, png, "x.png")).status_code == 404
            assert (await b.get(f"/webinars/{wid}/content")).status_code == 404
    async with browser(live) as anonymous:
        r = await upload(anonymous, wid, png, "x.png")
        assert r.status_code == 303 and r.headers["location"].startswith("/login")
    assert await live.services.db.fetchval("SELECT count(*) FROM webcam_content WHERE webinar_id = $1", wid) == 2


async def test_slide_changes_are_room_events_and_reach_the_program(live: LiveServer, tmp_path: Path) -> None:
    world = await webcam_world(live)
    wid = world.a.webinar.id
    db = live.services.db
    async with browser(live) as mod_http:
        await mod_http.login(world.a.moderator.email, PASSWORD)
        r = await upload(mod_http, wid, cf.slides_pdf(tmp_path / "deck.pdf", 3).read_bytes(), "deck.pdf")
        assert r.status_code == 201, r.text
        deck = r.json()["item"]
        r = await upload(mod_http, wid, cf.colour_clip(tmp_path / "c.mp4").read_bytes(), "clip.mp4")
        clip = r.json()["item"]
    url = f"ws://127.0.0.1:{live.settings.port}/ws/rooms/{wid}"
    mod = RoomClient(url, cookie=await staff_cookie(live, world.a.moderator.email), origin=live.url)
    await mod.connect()
    speaker = RoomClient(url, cookie=await staff_cookie(live, world.a.speaker.email), origin=live.url)
    await speaker.connect()
    viewer = await connect_viewer(live, url, wid, "Viewer")
    slot = live.services.extras["content_slots"].slot(wid)
    try:
        assert mod.welcome["state"]["content"]["item_id"] is None  # type: ignore[index]
        ack = await mod.send("content.show", item_id=deck["id"], index=0)
        assert ack["type"] == "ack", ack
        assert ack["content"]["page"] == 0 and ack["content"]["pages"] == 3
        for client in (viewer, speaker):
            event = await client.event("content.changed", lambda e: e["id"] == ack["event_id"])
            assert event["data"]["item_id"] == deck["id"] and event["data"]["page"] == 0
            assert event["data"]["action"] == "show" and event["data"]["by"]["role"] == "moderator"
        stored = await db.fetchrow("SELECT kind, data FROM room_events WHERE webinar_id = $1 AND id = $2",
                                   wid, ack["event_id"])
        assert stored["kind"] == "content.changed"
        # The program's content slot shows the page (after the commit, in the server's loop).
        async with asyncio.timeout(10):
            while not (isinstance(slot.picture, SlidePicture) and slot.label == "deck.pdf 1/3"):
                await asyncio.sleep(0.02)
        x, y, w, h = cf.RED_RECT_PT
        assert near(pixel(slot.picture.picture(0.0), x + w // 2, y + h // 2), RED)

        # The speaker moves on; the slot follows.
        nxt = await speaker.send("content.next")
        assert nxt["type"] == "ack" and nxt["content"]["page"] == 1
        await viewer.event("content.changed", lambda e: e["data"]["page"] == 1)
        async with asyncio.timeout(10):
            while slot.label != "deck.pdf 2/3":
                await asyncio.sleep(0.02)
        assert near(pixel(slot.picture.picture(0.0), x + w // 2, y + h // 2), BLUE)  # type: ignore[union-attr]

        # A viewer may not drive the content; nothing changes.
        refused = await viewer.send("content.show", item_id=deck["id"], index=2)
        assert refused["type"] == "error" and refused["code"] == "forbidden"
        assert (await viewer.send("content.next"))["code"] == "forbidden"
        assert (await viewer.send("clip.play"))["code"] == "forbidden"
        assert await db.fetchval("SELECT page FROM webcam_content_state WHERE webinar_id = $1", wid) == 1
        bad = await mod.send("content.show", item_id=deck["id"], index=3)
        assert bad["code"] == "no_page"
        assert (await mod.send("clip.play"))["code"] == "no_clip"

        # A newcomer (or a reconnecting client without a recent id) sees the current slide.
        late = await connect_viewer(live, url, wid, "Late")
        assert late.welcome["state"]["content"]["page"] == 1  # type: ignore[index]
        assert late.welcome["state"]["content"]["item_id"] == deck["id"]  # type: ignore[index]
        await late.close()

        # A clip: shown paused, then played into the program (picture and sound).
        shown = await mod.send("content.show", item_id=clip["id"])
        assert shown["content"]["clip"] == {"playing": False, "position_s": 0.0, "duration_s": 3.0}
        played = await mod.send("clip.play")
        assert played["content"]["clip"]["playing"] is True
        async with asyncio.timeout(10):
            while not (isinstance(slot.picture, ClipPlayer) and slot.picture.playing):
                await asyncio.sleep(0.02)
        player = slot.picture
        assert slot.sound is player
        assert await asyncio.to_thread(player.wait_decoded, 0.0, 5.0)
        assert near(pixel(player.picture(500.0), 160, 120), RED)
        assert player.sound(500.0, 960) is not None
        paused = await mod.send("clip.pause")
        assert paused["content"]["clip"]["playing"] is False
        sought = await mod.send("clip.seek", position_s=2.5)
        assert sought["content"]["clip"] == {"playing": False, "position_s": 2.5, "duration_s": 3.0}
        async with asyncio.timeout(10):
            while abs(player.position() - 2.5) > 1e-6:
                await asyncio.sleep(0.02)
        assert await asyncio.to_thread(player.wait_decoded, 2.5, 5.0)
        assert near(pixel(player.picture(600.0), 160, 120), BLUE)

        cleared = await speaker.send("content.clear")
        assert cleared["content"]["item_id"] is None
        async with asyncio.timeout(10):
            while slot.picture is not None:
                await asyncio.sleep(0.02)
        kinds = [r["data"] for r in await db.fetch(
            "SELECT data->>'action' AS data FROM room_events WHERE webinar_id = $1 AND kind = 'content.changed' ORDER BY id",
            wid)]
        assert kinds == ["show", "next", "show", "play", "pause", "seek", "clear"]
    finally:
        for c in (mod, speaker, viewer):
            await c.close()


async def test_deleting_the_item_shown_clears_the_program(live: LiveServer, tmp_path: Path) -> None:
    world = await webcam_world(live)
    wid = world.a.webinar.id
    url = f"ws://127.0.0.1:{live.settings.port}/ws/rooms/{wid}"
    async with browser(live) as org:
        await org.login(world.a.organizer.email, PASSWORD)
        item = (await upload(org, wid, cf.image(tmp_path / "a.png").read_bytes(), "a.png")).json()["item"]
        mod = RoomClient(url, cookie=await staff_cookie(live, world.a.moderator.email), origin=live.url)
        await mod.connect()
        try:
            assert (await mod.send("content.show", item_id=item["id"]))["type"] == "ack"
            slot = live.services.extras["content_slots"].slot(wid)
            async with asyncio.timeout(10):
                while slot.picture is None:
                    await asyncio.sleep(0.02)
            r = await org.post_form(f"/webinars/{wid}/content/{item['id']}/delete")
            assert r.status_code == 200
            event = await mod.event("content.changed", lambda e: e["data"]["action"] == "deleted")
            assert event["data"]["item_id"] is None
            assert slot.picture is None
        finally:
            await mod.close()


async def program_after_change(live: LiveServer, wid: uuid.UUID, attempts: int = 3) -> list[Any]:
    """Frames of the newest program segment that ended after a change made just before: the
    other module's reader (40 s each), retried a bounded number of times when the program
    is starved (on this 2-core machine other test runs can slow it to a few frames a second)."""
    from tests.integration.test_webcam_room import latest_program

    await asyncio.sleep(PLAYLIST_FRESH_S)
    for attempt in range(attempts):
        try:
            frames, _ = await latest_program(live, wid, after_segments=1)
            return frames
        except AssertionError as exc:
            if "did not grow" not in str(exc) or attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


@pytest.mark.browser
@pytest.mark.skipif(not chromium_available(), reason="Debian's chromium is needed")
@pytest.mark.settings(live_grace_s=2.0)
async def test_pdf_upload_becomes_slides_and_a_slide_change_shows_in_the_program(
        live: LiveServer, chromium: Chromium, tmp_path: Path) -> None:
    """A speaker on stage (Chromium), a moderator uploads a PDF, switches to the slide layout and
    changes slides: the program's HLS, decoded, shows each page where the layout puts it."""
    from rooms.webcam.compositor import layout_regions
    from tests.integration.test_webcam_room import go_on_stage, speaker_page, until_live

    world = await webcam_world(live)
    wid = world.a.webinar.id
    async with browser(live) as mod_http:
        await mod_http.login(world.a.moderator.email, PASSWORD)
        r = await upload(mod_http, wid, cf.slides_pdf(tmp_path / "deck.pdf", 3).read_bytes(), "deck.pdf")
        assert r.status_code == 201, r.text
        deck = r.json()["item"]
    page, _ = await speaker_page(chromium, live, wid, world.a.speaker)
    await go_on_stage(page)
    await until_live(live, wid)
    url = f"ws://127.0.0.1:{live.settings.port}/ws/rooms/{wid}"
    mod = RoomClient(url, cookie=await staff_cookie(live, world.a.moderator.email), origin=live.url)
    await mod.connect()
    try:
        assert (await mod.send("stage.layout", layout="slide"))["type"] == "ack"
        assert (await mod.send("content.show", item_id=deck["id"], index=0))["type"] == "ack"
        region = layout_regions("slide", 0).content
        assert region is not None and (region.w, region.h) == (1280, 720)  # the page fills the frame
        x, y, w, h = cf.RED_RECT_PT  # 1280 x 720 pt page, rendered 1:1

        def at(frame: Any, px: int, py: int) -> tuple[int, int, int]:
            return pixel(frame, region.x + px * region.w // 1280, region.y + py * region.h // 720)

        frames = await program_after_change(live, wid)
        assert near(at(frames[-1], x + w // 2, y + h // 2), RED, 50), at(frames[-1], x + w // 2, y + h // 2)
        assert near(at(frames[-1], x + w + 150, y + h // 2), WHITE, 50)
        assert (await mod.send("content.next"))["content"]["page"] == 1
        frames = await program_after_change(live, wid)
        assert near(at(frames[-1], x + w // 2, y + h // 2), BLUE, 50), at(frames[-1], x + w // 2, y + h // 2)
        program_ms = await live.services.db.fetchval(
            "SELECT program_ms FROM room_events WHERE webinar_id = $1 AND kind = 'content.changed' ORDER BY id DESC "
            "LIMIT 1", wid)
        assert program_ms is not None and program_ms > 0  # program-timed: the replay shows it in step
    finally:
        await mod.close()
        await page.close()


async def test_image_set_limits_keep_what_was_accepted(live: LiveServer, tmp_path: Path) -> None:
    """R-ROOM-1: 19 images and 12 MB per set; the image past a limit is refused, the set stays."""
    world = await webcam_world(live)
    wid = world.a.webinar.id
    async with browser(live) as org:
        await org.login(world.a.organizer.email, PASSWORD)
        first = await upload(org, wid, cf.image(tmp_path / "0.png", (0, 0, 0), size=(32, 32)).read_bytes(), "0.png")
        set_id = first.json()["item"]["id"]
        for i in range(1, 19):
            colour = (i * 13 % 256, 40, 200)
            r = await upload(org, wid, cf.image(tmp_path / f"{i}.png", colour, size=(32, 32)).read_bytes(), f"{i}.png",
                             set=set_id)
            assert r.status_code == 201, r.text
        assert r.json()["item"]["pages"] == 19
        r = await upload(org, wid, cf.image(tmp_path / "20.png", size=(32, 32)).read_bytes(), "20.png", set=set_id)
        assert r.status_code == 422 and r.json() == {"error": "images_count",
                                                     "message": "An image set holds 19 images at most (R-ROOM-1)."}

        noise = [cf.noise_png(tmp_path / f"noise{i}.png", 4.5) for i in range(3)]
        r = await upload(org, wid, noise[0].read_bytes(), "n0.png")
        assert r.status_code == 201, r.text
        heavy = r.json()["item"]
        r = await upload(org, wid, noise[1].read_bytes(), "n1.png", set=heavy["id"])
        assert r.status_code == 201, r.text
        before = r.json()["item"]
        r = await upload(org, wid, noise[2].read_bytes(), "n2.png", set=heavy["id"])  # 13.5 MB in all
        assert r.status_code == 413 and r.json()["error"] == "images_bytes"
        assert r.json()["message"] == "An image set weighs 12 MB at most in total (R-ROOM-1)."
        listed = {i["id"]: i for i in (await org.get(f"/webinars/{wid}/content")).json()["items"]}
        assert listed[heavy["id"]]["pages"] == 2 and listed[heavy["id"]]["sha256"] == before["sha256"]
        assert listed[set_id]["pages"] == 19
        files = live.settings.media_dir / "content" / str(wid) / str(heavy["id"]) / "images"
        assert len(list(files.iterdir())) == 2
