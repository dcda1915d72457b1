"""Attendee analytics end to end, over a real server, WebSocket and PostgreSQL (issue "Attendee analytics").

Registrations with and without sponsor consent → a live with simulated viewers
(heartbeats, votes, questions, chat, CTA impressions and clicks) → replay
viewing → the sponsor's file holds exactly the consenting registrants with
the right live, replay and attention figures; a sponsor of another account
gets 403, an expired key 403; every download is logged. Viewer time is
simulated: the recorder's clock is a fake that moves 15 s per round, inside a
live placed an hour in the past (so the database's ``now()`` stays after it).
"""

from __future__ import annotations

import asyncio
import csv
import io
import re
import socket
import uuid
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import dataclass
from typing import Any

import pytest

from billing.engagement import engagement_score
from billing.figures import minutes
from rooms.participants import Participant, join_token
from server.sponsor_keys import create_sponsor_key
from server.webinars import set_state
from tests.conftest import LiveServer, browser
from tests.support.billing_app import billing_on
from tests.support.room_client import RoomClient
from tests.world import PASSWORD, make_world

SPONSOR = "Acme Analytics"


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Person:
    email: str
    participant_id: uuid.UUID
    token: str


async def registrant(live: LiveServer, webinar_id: uuid.UUID, email: str, consents: list[tuple[bool, str]],
                     **fields: str) -> Person:
    """A registration with its room participant and its ``sponsor_share`` consent rows, oldest first."""
    db = live.services.db
    name = fields.get("first_name", email.split("@")[0])
    pid = await db.fetchval("INSERT INTO participants (webinar_id, display_name, email) VALUES ($1, $2, $3) RETURNING id",
                            webinar_id, name, email)
    rid = await db.fetchval(
        """INSERT INTO registrations (webinar_id, email, first_name, last_name, company, phone, job_function,
                                      participant_id, created_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now() - interval '2 days') RETURNING id""",
        webinar_id, email, name, fields.get("last_name", "Doe"), fields.get("company", ""), fields.get("phone", ""),
        fields.get("job_function", ""), pid)
    for i, (granted, sponsor) in enumerate(consents):
        await db.execute(
            """INSERT INTO consents (registration_id, kind, granted, at, form_version, wording, sponsor_name)
               VALUES ($1, 'sponsor_share', $2, now() - interval '2 days' + make_interval(mins => $3), 1, 'w', $4)""",
            rid, granted, i, sponsor)
    token = join_token(live.services.signer, Participant(pid, webinar_id, name, "viewer"))
    return Person(email, pid, token)


async def staff_cookie(live: LiveServer, email: str) -> str:
    async with browser(live) as b:
        await b.login(email, PASSWORD)
        return f"wb_session={b.cookies['wb_session']}"


async def finished_downloads(db: Any, webinar_id: uuid.UUID, n: int) -> list[Any]:
    """The webinar's download log once ``n`` downloads have ended (the end is logged just after the last byte)."""
    for _ in range(300):  # bounded: 30 s
        rows = await db.fetch("SELECT * FROM downloads WHERE webinar_id = $1 ORDER BY id", webinar_id)
        if len(rows) >= n and all(r["finished_at"] is not None for r in rows):
            return list(rows)
        await asyncio.sleep(0.1)
    raise AssertionError(f"{n} finished downloads expected, log: {rows}")


def read_csv(body: bytes) -> list[dict[str, str]]:
    text = body.decode("utf-8")
    assert text.startswith("\ufeff")
    return list(csv.DictReader(io.StringIO(text[1:])))


def read_xlsx(body: bytes) -> list[list[str]]:
    """Rows of the first sheet as text (shared or inline strings, numbers as written)."""
    ns = {"m": "http://schemas.openxmlformats.org/spreadsheetml/2006/main"}
    with zipfile.ZipFile(io.BytesIO(body)) as z:
        shared: list[str] = []
        if "xl/sharedStrings.xml" in z.namelist():
            for si in ET.fromstring(z.read("xl/sharedStrings.xml")).findall("m:si", ns):
                shared.append("".join(t.text or "" for t in si.iter(f"{{{ns['m']}}}t")))
        sheet = ET.fromstring(z.read("xl/worksheets/sheet1.xml"))
    rows = []
    for row in sheet.iter(f"{{{ns['m']}}}row"):
        cells = []
        for c in row.findall("m:c", ns):
            kind = c.get("t")
            if kind == "s":
                cells.append(shared[int(c.find("m:v", ns).text)])  # type: ignore[union-attr,arg-type]
            elif kind == "inlineStr":
                cells.append("".join(t.text or "" for t in c.iter(f"{{{ns['m']}}}t")))
            else:
                v = c.find("m:v", ns)
                cells.append(v.text if v is not None and v.text else "")
        rows.append(cells)
    return rows


async def test_sponsor_file_after_a_live_and_a_replay(live: LiveServer) -> None:
    db = live.services.db
    world = await make_world(db)
    wid = world.a.webinar.id
    await db.execute("UPDATE webinars SET sponsor_name = $2 WHERE id = $1", wid, SPONSOR)
    await set_state(db, wid, "announced")
    alice = await registrant(live, wid, "alice@example.com", [(True, SPONSOR)], first_name="Alice",
                             company="=HYPERLINK(\"http://evil\")", phone="+33 6 12 34 56 78", job_function="CTO")
    bob = await registrant(live, wid, "bob@example.com", [(False, SPONSOR)], first_name="Bob")
    carol = await registrant(live, wid, "carol@example.com", [(True, SPONSOR), (False, SPONSOR)])  # withdrew
    await registrant(live, wid, "dave@example.com", [(False, SPONSOR), (True, SPONSOR)], first_name="Dave")  # no-show
    await registrant(live, wid, "erin@example.com", [(True, "Old Sponsor Inc")])  # another sponsor's consent
    await registrant(live, wid, "frank@example.com", [])  # never asked
    url = f"ws://127.0.0.1:{live.settings.port}/ws/rooms/{wid}"

    async with billing_on(live) as recorder:
        await set_state(db, wid, "live")
        started = await db.fetchval("UPDATE webinars SET live_started_at = now() - interval '1 hour' WHERE id = $1 "
                                    "RETURNING extract(epoch FROM live_started_at)::float8", wid)
        clock = FakeClock(started + 10)
        recorder.clock = clock
        await recorder.refresh_phases([wid])
        async with browser(live) as b:
            await b.get("/login")
            guest_token = (await b.post_form(f"/w/{wid}/join", {"name": "Guest"})).json()["token"]
        mod = RoomClient(url, cookie=await staff_cookie(live, world.a.moderator.email), origin=live.url)
        viewers = {"alice": RoomClient(url, token=alice.token), "bob": RoomClient(url, token=bob.token),
                   "carol": RoomClient(url, token=carol.token), "guest": RoomClient(url, token=guest_token)}
        for c in (mod, *viewers.values()):
            await c.connect()
        try:
            # A poll, a CTA, a question and a chat message during the live.
            poll_id = (await mod.send("poll.create", question="Useful?", options=["Yes", "No"]))["poll_id"]
            await mod.send("poll.open", poll_id=poll_id)
            cta_id = await db.fetchval("INSERT INTO ctas (webinar_id, label, url) VALUES ($1, 'Book a demo', "
                                       "'https://example.com/demo') RETURNING id", wid)
            assert (await mod.send("cta.push", cta_id=cta_id))["type"] == "ack"
            # Five rounds of heartbeats, 15 s apart: alice watches attentively, bob hides his tab after
            # the first interval, carol pauses, the moderator's beats are not audience.
            for round_ in range(6):
                for name, client in viewers.items():
                    ack = await client.send("heartbeat", playing=name != "carol" or round_ == 0,
                                            visible=name != "bob" or round_ == 0, mode="live", position=15.0 * round_)
                    assert ack == {"type": "ack", "ref": ack["ref"], "event_id": None, "counted": True}
                assert (await mod.send("heartbeat", playing=True, visible=True, mode="live"))["counted"] is False
                if round_ == 1:
                    assert (await viewers["alice"].send("poll.vote", poll_id=poll_id, choices=[0]))["type"] == "ack"
                    assert (await viewers["bob"].send("poll.vote", poll_id=poll_id, choices=[1]))["type"] == "ack"
                    for who in ("alice", "bob"):
                        await viewers[who].send("cta.impression", cta_id=cta_id)
                    assert (await viewers["alice"].send("cta.click", cta_id=cta_id))["type"] == "ack"
                    assert (await viewers["alice"].send("qa.ask", text="Will there be a replay?"))["type"] == "ack"
                    assert (await viewers["alice"].send("chat.send", text="Hello from Lyon"))["type"] == "ack"
                if round_ == 2:
                    # Forged: a burst of beats and a replay beat during the live add nothing.
                    for _ in range(10):
                        await viewers["alice"].send("heartbeat", playing=True, visible=True, mode="live")
                    forged = await viewers["alice"].send("heartbeat", playing=True, visible=True, mode="replay")
                    assert forged["counted"] is False
                clock.now += 15
            # The live ends 5 s after the last beat; the viewers leave 2 s later.
            clock.now -= 10
            await set_state(db, wid, "ended")
            live_end = await db.fetchval("UPDATE webinars SET live_ended_at = to_timestamp($2) WHERE id = $1 "
                                         "RETURNING extract(epoch FROM live_ended_at)::float8", wid, clock.now)
            await recorder.refresh_phases([wid])
            clock.now += 2
        finally:
            for c in (mod, *viewers.values()):
                await c.close()
        await asyncio.sleep(0.2)
        assert recorder.connections == 0
        await set_state(db, wid, "replay")
        # Alice comes back for the replay: 30 s, then leaves 3 s after her last beat.
        clock.now = live_end + 600
        again = RoomClient(url, token=alice.token)
        await again.connect()
        try:
            for round_ in range(3):
                ack = await again.send("heartbeat", playing=True, visible=True, mode="replay", position=15.0 * round_)
                assert ack["counted"] is True
                assert (await again.send("heartbeat", playing=True, visible=True, mode="live"))["counted"] is False
                clock.now += 15
            clock.now -= 12
        finally:
            await again.close()
        await asyncio.sleep(0.2)
        await recorder.flush()

        # What the database holds, per the rules (billing/attention.py).
        totals = {r["participant_id"]: r for r in await db.fetch("SELECT * FROM attendance WHERE webinar_id = $1", wid)}
        assert (totals[alice.participant_id]["live_seconds"], totals[alice.participant_id]["replay_seconds"],
                totals[alice.participant_id]["attention_seconds"]) == (80, 33, 113)
        assert (totals[bob.participant_id]["live_seconds"], totals[bob.participant_id]["attention_seconds"]) == (80, 15)
        assert (totals[carol.participant_id]["live_seconds"], totals[carol.participant_id]["attention_seconds"]) == (15, 15)
        assert len(totals) == 4  # alice, bob, carol, the guest; never the moderator
        sessions = await db.fetch("SELECT mode, ended_at, started_at FROM attendance_sessions "
                                  "WHERE participant_id = $1 ORDER BY started_at", alice.participant_id)
        assert [s["mode"] for s in sessions] == ["live", "replay"]
        assert sessions[0]["ended_at"].timestamp() == pytest.approx(live_end)

        # The sponsor's file: exactly the consenting registrants, with their figures.
        async with browser(live) as sponsor:
            await sponsor.login(world.a.sponsor.email, PASSWORD)
            page = await sponsor.get(f"/sponsor/webinars/{wid}")
            assert f'/sponsor/webinars/{wid}/participants.xlsx' in page.text
            response = await sponsor.get(f"/sponsor/webinars/{wid}/participants.csv")
            assert response.status_code == 200, response.text
            assert response.headers["content-type"].startswith("text/csv")
            assert "attachment" in response.headers["content-disposition"]
            rows = read_csv(response.content)
            rows.sort(key=lambda r: r["Email"])  # the file is in no guaranteed order
            assert [r["Email"] for r in rows] == ["alice@example.com", "dave@example.com"]
            a, d = rows
            assert a["Company"] == "'=HYPERLINK(\"http://evil\")" and a["Phone"] == "'+33 6 12 34 56 78"
            assert (a["Live (min)"], a["Replay (min)"], a["Attention (min)"]) == (
                str(minutes(80)), str(minutes(33)), str(minutes(113)))
            assert (a["Attended"], d["Attended"]) == ("live and replay", "no")
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+0[12]:00", a["Registered at"])  # Paris time
            assert a["First seen"] and a["Last seen"] and d["First seen"] == ""
            assert (a["Poll answers"], a["Questions"], a["Chat messages"], a["CTA impressions"], a["CTA clicks"]) == (
                "1", "1", "1", "1", "1")
            expected = engagement_score(attention_s=113, reference_s=live_end - started, polls=1, questions=1, chat=1,
                                        cta_clicks=1)
            assert a["Engagement score"] == str(expected) == "86"
            assert (d["Live (min)"], d["Engagement score"]) == ("0.0", "0")
            xlsx = await sponsor.get(f"/sponsor/webinars/{wid}/participants.xlsx")
            assert xlsx.status_code == 200
            sheet = read_xlsx(xlsx.content)
            header = sheet[0]
            body = sorted(sheet[1:], key=lambda r: r[header.index("Email")])
            assert [r[header.index("Email")] for r in body] == ["alice@example.com", "dave@example.com"]
            assert body[0][header.index("Company")] == "'=HYPERLINK(\"http://evil\")"
            assert float(body[0][header.index("Live (min)")]) == minutes(80)
            assert float(body[0][header.index("Attention (min)")]) == minutes(113)
            registered = float(body[0][header.index("Registered at")])  # an Excel serial date, Paris time
            assert 40000 < registered < 80000
            french = await sponsor.get(f"/sponsor/webinars/{wid}/participants.csv?lang=fr")
            assert read_csv(french.content)[0]["E-mail"] == "alice@example.com"

        # Every download is logged: who, what, bytes, complete.
        logged = await finished_downloads(db, wid, 3)
        assert [(r["user_id"], r["complete"], r["rows_sent"]) for r in logged] == [(world.a.sponsor.id, True, 2)] * 3
        assert logged[0]["bytes_sent"] == len(response.content) and logged[0]["file"].endswith(".csv")
        assert logged[1]["bytes_sent"] == len(xlsx.content) and logged[1]["file"].endswith(".xlsx")

        # A sponsor of another account: 403. An expired key: 403. A key of another account: 403.
        async with browser(live) as other:
            await other.login(world.b.sponsor.email, PASSWORD)
            for kind in ("csv", "xlsx"):
                assert (await other.get(f"/sponsor/webinars/{wid}/participants.{kind}")).status_code == 403
        signer = live.services.signer
        key = await create_sponsor_key(db, signer, world.a.account_id, webinar_id=wid, ttl_days=3)
        expired = await create_sponsor_key(db, signer, world.a.account_id, webinar_id=None, ttl_days=3)
        await db.execute("UPDATE sponsor_keys SET expires_at = now() - interval '1 minute' "
                         "WHERE account_id = $1 AND webinar_id IS NULL", world.a.account_id)  # the second key
        foreign = await create_sponsor_key(db, signer, world.b.account_id, webinar_id=None, ttl_days=3)
        async with browser(live) as anonymous:
            assert (await anonymous.get(f"/sponsor/webinars/{wid}/participants.csv")).status_code == 303  # to login
            assert (await anonymous.get(f"/sponsor/webinars/{wid}/participants.csv", params={"key": expired})
                    ).status_code == 403
            assert (await anonymous.get(f"/sponsor/webinars/{wid}/participants.xlsx", params={"key": foreign})
                    ).status_code == 403
            by_key = await anonymous.get(f"/sponsor/webinars/{wid}/participants.csv", params={"key": key})
            assert by_key.status_code == 200 and len(read_csv(by_key.content)) == 2
        key_row = (await finished_downloads(db, wid, 4))[-1]
        assert key_row["sponsor_key_id"] is not None and key_row["user_id"] is None and key_row["complete"]
        assert await db.fetchval("SELECT count(*) FROM downloads WHERE webinar_id = $1", wid) == 4  # refusals: no file

        # The organizer: analytics page with charts and tables, attendance and CTA exports.
        async with browser(live) as org:
            await org.login(world.a.organizer.email, PASSWORD)
            page = await org.get(f"/webinars/{wid}/analytics")
            assert page.status_code == 200
            html = page.text
            assert html.count('<svg class="chart"') >= 6 and 'role="img"' in html
            assert "Book a demo" in html and "Useful?" in html and "Hello" not in html
            peak = re.search(r"Peak concurrent viewers</dt><dd>(\d+)</dd>", html)
            assert peak and peak.group(1) == "4"
            assert re.search(r"Attendees \(counted once\)</dt><dd>(\d+)</dd>", html).group(1) == "4"  # type: ignore[union-attr]
            att = await org.get(f"/webinars/{wid}/analytics/attendance.csv")
            sessions_csv = read_csv(att.content)
            assert len(sessions_csv) == 5  # 4 live sessions + alice's replay
            alice_rows = [r for r in sessions_csv if r["Email"] == "alice@example.com"]
            assert [r["Mode"] for r in alice_rows] == ["live", "replay"]
            assert all(r["Joined at"] and r["Left at"] for r in sessions_csv)
            cta = read_csv((await org.get(f"/webinars/{wid}/analytics/cta.csv")).content)
            assert [(r["Call-to-action"], r["Impressions"], r["Clicks"]) for r in cta] == [("Book a demo", "2", "1")]
            # The organizer may not take the sponsor's file.
            assert (await org.get(f"/sponsor/webinars/{wid}/participants.csv")).status_code == 403


async def test_a_download_cut_short_is_logged_incomplete(live: LiveServer) -> None:
    db = live.services.db
    world = await make_world(db)
    wid = world.a.webinar.id
    await db.execute("UPDATE webinars SET sponsor_name = $2 WHERE id = $1", wid, SPONSOR)
    # 60,000 consenting registrants (about 9 MB of CSV): more than the socket buffers hold.
    await db.execute(
        """WITH p AS (INSERT INTO participants (webinar_id, display_name, email)
                      SELECT $1, 'P' || i, 'p' || i || '@example.com' FROM generate_series(1, 60000) i RETURNING id, email),
                r AS (INSERT INTO registrations (webinar_id, email, first_name, last_name, company, participant_id)
                      SELECT $1, p.email, 'First', 'Last', 'Company with a long enough name', p.id FROM p RETURNING id)
           INSERT INTO consents (registration_id, kind, granted, form_version, wording, sponsor_name)
           SELECT r.id, 'sponsor_share', true, 1, 'w', $2 FROM r""", wid, SPONSOR)
    async with billing_on(live), browser(live) as b:
        await b.login(world.a.sponsor.email, PASSWORD)
        cookie = f"wb_session={b.cookies['wb_session']}"
        reader = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        reader.settimeout(10)
        try:
            await asyncio.to_thread(reader.connect, ("127.0.0.1", live.settings.port))
            request = (f"GET /sponsor/webinars/{wid}/participants.csv HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                       f"Cookie: {cookie}\r\n\r\n").encode()
            await asyncio.to_thread(reader.sendall, request)
            received = b""
            while len(received) < 100_000:  # bounded by the socket timeout
                chunk = await asyncio.to_thread(reader.recv, 4096)
                assert chunk, "the server closed first"
                received += chunk
            assert received.startswith(b"HTTP/1.1 200")
        finally:
            reader.close()  # gone after the first 100 kB
        (row,) = await finished_downloads(db, wid, 1)
        assert row["complete"] is False and row["user_id"] == world.a.sponsor.id
        assert 0 < row["bytes_sent"] < 2_000_000 and 0 < row["rows_sent"] < 60000, dict(row.items())
        # The server is fine and the next complete download is logged complete.
        complete = await b.get(f"/sponsor/webinars/{wid}/participants.csv")
        assert complete.status_code == 200 and complete.content.count(b"\r\n") == 60001
        last = (await finished_downloads(db, wid, 2))[-1]
        assert last["complete"] and last["bytes_sent"] == len(complete.content) and last["rows_sent"] == 60000


async def test_billing_routes_pass_the_authorization_matrix(live: LiveServer) -> None:
    """The matrix of test_authz_matrix.py covers billing's routes (mounted by server/app.py)."""
    from tests.integration import test_authz_matrix as matrix

    paths = {path for path, _, _ in matrix.app_routes(live)}
    assert {"/webinars/{webinar_id}/analytics", "/sponsor/webinars/{webinar_id}/participants.xlsx"} <= paths
    await matrix.test_routes_refuse_other_accounts_objects(live)
    await matrix.test_positive_control_every_get_route_answers_its_role(live)
