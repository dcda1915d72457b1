"""Maintenance mode (R-OPS-3) against the real app: the admin switch (CSRF, admins
only, bad input), the notice on viewer and organizer pages in both languages,
/healthz, the ``webinar maintenance`` command, and ingest: a new RTMP or SRT
publish is refused by the ffmpeg command line's own report while a live that
was already running goes on to its normal end."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys

import httpx
import pytest

from server.broker import create_broker
from server.db import Database
from server.maintenance import (
    MAX_MESSAGE_LEN,
    POLL_S,
    REFUSAL,
    MaintenanceWatch,
    read_maintenance,
    set_maintenance,
)
from server.webinars import rotate_stream_key, set_state
from tests.conftest import Browser, LiveServer, browser
from tests.integration.test_studio_live import (
    finished,
    rtmp_url,
    srt_url,
    wait_playlist,
)
from tests.support.ffmpeg import finish, publisher
from tests.support.redis_server import RedisServer
from tests.world import PASSWORD, World, make_world

NOTICE_EN = "Maintenance in progress"
NOTICE_FR = "Maintenance en cours"


async def admin_on(adm: Browser, message: str = "") -> httpx.Response:
    await adm.get("/admin/maintenance")
    return await adm.post_form("/admin/maintenance", {"action": "on", "message": message})


async def healthz(live: LiveServer) -> httpx.Response:
    async with httpx.AsyncClient(timeout=10) as client:
        return await client.get(f"{live.url}/healthz")


async def test_admin_switch_notice_and_healthz(live: LiveServer) -> None:
    db = live.services.db
    world = await make_world(db)
    await set_state(db, world.a.webinar.id, "announced")  # the viewer page shows announced webinars
    r = await healthz(live)
    assert r.status_code == 200 and r.json()["status"] == "ok" and r.json()["maintenance"]["enabled"] is False
    async with browser(live) as adm, browser(live) as org, browser(live) as viewer:
        await adm.login(world.admin.email, PASSWORD)
        await org.login(world.a.organizer.email, PASSWORD)
        page = await adm.get("/admin/maintenance")
        assert page.status_code == 200 and 'data-enabled="off"' in page.text
        account_page = f"/accounts/{world.a.account_id}"
        quiet = await org.get(account_page)
        assert quiet.status_code == 200 and NOTICE_EN not in quiet.text

        # Bad input: no CSRF token, an unknown action, a message too long -> refused, nothing changed.
        assert (await adm.post("/admin/maintenance", data={"action": "on"})).status_code == 403
        assert (await adm.post_form("/admin/maintenance", {"action": "maybe"})).status_code == 400
        too_long = await adm.post_form("/admin/maintenance", {"action": "on", "message": "x" * (MAX_MESSAGE_LEN + 1)})
        assert too_long.status_code == 422 and "too long" in too_long.text
        # Organizers (and anyone but an admin) are refused.
        assert (await org.post_form("/admin/maintenance", {"action": "on"})).status_code in (403, 404)
        assert (await org.get("/admin/maintenance")).status_code in (403, 404)
        assert (await read_maintenance(db)).enabled is False

        r = await admin_on(adm, "Back at 6 <b>am</b>")
        assert r.status_code == 303 and r.headers["location"] == "/admin/maintenance"
        state = await read_maintenance(db)
        assert state.enabled and state.message == "Back at 6 <b>am</b>" and state.changed_by == world.admin.email
        page = await adm.get("/admin/maintenance")
        assert 'data-enabled="on"' in page.text and world.admin.email in page.text

        # The notice: organizer pages, the viewer page and the room panel, French and English; message escaped.
        for url, client in ((account_page, org), ("/admin", adm),
                            (f"/webinars/{world.a.webinar.id}", org), (f"/w/{world.a.webinar.id}", viewer),
                            (f"/w/{world.a.webinar.id}/panel", viewer)):
            en = await client.get(url, params={"lang": "en"})
            assert en.status_code == 200, url
            assert 'id="maintenance-notice"' in en.text and NOTICE_EN in en.text, url
            assert "Back at 6 &lt;b&gt;am&lt;/b&gt;" in en.text and "<b>am</b>" not in en.text
            fr = await client.get(url, params={"lang": "fr"})
            assert NOTICE_FR in fr.text, url

        r = await healthz(live)
        assert r.status_code == 200, "maintenance keeps nodes in the load balancer (running lives go on)"
        body = r.json()
        assert body["status"] == "maintenance" and body["database"] == "ok"
        assert body["maintenance"]["enabled"] is True and body["maintenance"]["message"] == "Back at 6 <b>am</b>"

        r = await adm.post_form("/admin/maintenance", {"action": "off"})
        assert r.status_code == 303
        assert not (await read_maintenance(db)).enabled
        quiet = await org.get(account_page)
        assert quiet.status_code == 200 and NOTICE_EN not in quiet.text
        assert (await healthz(live)).json()["status"] == "ok"


def cli(live: LiveServer, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": str(live.settings.database_url), "WEBINAR_LOG_JSON": "1"}
    env.pop("REDIS_URL", None)
    return subprocess.run([sys.executable, "-m", "server.cli", "maintenance", *args, "--data-dir",
                           str(live.settings.data_dir / "cli")], env=env, capture_output=True, text=True, timeout=60,
                          check=False)


async def test_cli_switch_is_seen_by_the_running_server(live: LiveServer) -> None:
    world = await make_world(live.services.db)
    bad = await asyncio.to_thread(cli, live, "on", "--message", "y" * (MAX_MESSAGE_LEN + 1))
    assert bad.returncode == 2 and "too long" in bad.stderr
    assert not (await read_maintenance(live.services.db)).enabled

    done = await asyncio.to_thread(cli, live, "on", "--message", "Upgrade to 2.0")
    assert done.returncode == 0, done.stderr
    assert "maintenance on: Upgrade to 2.0" in done.stdout
    assert (await healthz(live)).json()["status"] == "maintenance"  # /healthz reads the database
    # Pages use the node's cached state: refreshed by polling (no broker shared with the CLI here).
    async with browser(live) as org:
        await org.login(world.a.organizer.email, PASSWORD)
        async with asyncio.timeout(POLL_S * 3 + 5):
            while "Upgrade to 2.0" not in (await org.get(f"/accounts/{world.a.account_id}")).text:
                await asyncio.sleep(0.2)
        status = await asyncio.to_thread(cli, live, "status")
        assert status.returncode == 0 and "maintenance on: Upgrade to 2.0" in status.stdout
        off = await asyncio.to_thread(cli, live, "off")
        assert off.returncode == 0 and "maintenance off" in off.stdout
        async with asyncio.timeout(POLL_S * 3 + 5):
            while NOTICE_EN in (page := await org.get(f"/accounts/{world.a.account_id}")).text or page.status_code != 200:
                await asyncio.sleep(0.2)
    assert (await healthz(live)).json()["status"] == "ok"


async def _announced(live: LiveServer, world: World) -> tuple[str, str]:
    db = live.services.db
    keys = []
    for side in (world.a, world.b):  # two accounts: R-ACC-4 allows one live per account at a time
        await set_state(db, side.webinar.id, "announced")
        keys.append(await rotate_stream_key(db, side.webinar.id))
    return keys[0], keys[1]


@pytest.mark.settings(live_grace_s=1.0)
async def test_new_rtmp_live_refused_running_live_goes_on(live: LiveServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="ingest")
    db = live.services.db
    world = await make_world(db)
    key_a, key_b = await _announced(live, world)
    base_a = f"{live.url}/hls/{world.a.webinar.id}/index.m3u8"
    async with browser(live) as adm, httpx.AsyncClient(timeout=20) as client:
        await adm.login(world.admin.email, PASSWORD)
        async with publisher(rtmp_url(live, key_a), 10) as running:
            before = await wait_playlist(client, base_a, lambda p: len(finished(p)) >= 1)
            assert (await admin_on(adm, "Upgrade")).status_code == 303

            async with publisher(rtmp_url(live, key_b), 3) as refused:
                code, stderr = await finish(refused, 30)
            assert code != 0
            assert "maintenance" in stderr, stderr  # ffmpeg prints the onStatus description
            assert any("publish refused" in r.getMessage() and REFUSAL in r.getMessage() for r in caplog.records)
            assert await db.fetchval("SELECT state FROM webinars WHERE id=$1", world.b.webinar.id) == "announced"

            # The running live goes on: new segments after the switch, and a normal end.
            after = await wait_playlist(client, base_a, lambda p: len(finished(p)) >= len(finished(before)) + 2)
            assert finished(after)[-1].uri != finished(before)[-1].uri
            code, stderr = await finish(running, 30)
            assert code == 0, stderr
        vod = await wait_playlist(client, base_a, lambda p: p.is_endlist, timeout=30)
        assert len(finished(vod)) >= 4
        async with asyncio.timeout(15):  # the state is written just after the VOD playlist
            while await db.fetchval("SELECT state FROM webinars WHERE id=$1", world.a.webinar.id) not in ("ended", "replay"):
                await asyncio.sleep(0.1)

        # Off again: the same key that was refused now goes live.
        assert (await adm.post_form("/admin/maintenance", {"action": "off"})).status_code == 303
        async with publisher(rtmp_url(live, key_b), 4):
            playlist = await wait_playlist(client, f"{live.url}/hls/{world.b.webinar.id}/index.m3u8",
                                           lambda p: len(finished(p)) >= 1)
            assert finished(playlist)[0].uri


async def test_new_srt_live_refused(live: LiveServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="ingest")
    if not live.services.extras.get("listeners") or not any(
            type(x).__name__ == "SRTListener" for x in live.services.extras["listeners"]):
        pytest.fail("SRT listener did not start (libsrt missing?)")
    world = await make_world(live.services.db)
    key_a, _ = await _announced(live, world)
    async with browser(live) as adm:
        await adm.login(world.admin.email, PASSWORD)
        assert (await admin_on(adm)).status_code == 303
    async with publisher(srt_url(live, key_a), 3, fmt="mpegts") as proc:
        code, _stderr = await finish(proc, 30)
    assert code != 0, "the SRT handshake is rejected"
    assert any("refused" in r.getMessage() and REFUSAL in r.getMessage() for r in caplog.records)
    assert live.services.extras["live"].publication(world.a.webinar.id) is None
    assert await live.services.db.fetchval("SELECT state FROM webinars WHERE id=$1", world.a.webinar.id) == "announced"


async def test_change_is_announced_to_other_nodes_over_redis(db: Database) -> None:
    """Two processes' watches on a real Redis: the change reaches the other one through
    the broker (its polling is made too slow to be what notices it)."""
    async with RedisServer() as redis, create_broker(redis.url) as here, create_broker(redis.url) as there:
        watch = MaintenanceWatch(db, there, poll_s=3600)
        await watch.start()
        try:
            async with asyncio.timeout(10):
                while there.subscriber_count("maintenance") == 0:
                    await asyncio.sleep(0.02)
            await asyncio.sleep(0.2)  # let the SUBSCRIBE reach redis-server
            await set_maintenance(db, True, "db upgrade", changed_by="test", broker=here)
            async with asyncio.timeout(10):
                while not watch.current.enabled:
                    await asyncio.sleep(0.02)
            assert watch.current.message == "db upgrade" and watch.refusal() == REFUSAL
            await set_maintenance(db, False, changed_by="test", broker=here)
            async with asyncio.timeout(10):
                while watch.current.enabled:
                    await asyncio.sleep(0.02)
        finally:
            await watch.close()
