"""One of everything for an account (for backup and export tests): registrations with
consents, room activity (chat, Q&A and votes, a poll and votes, a CTA and its
interactions, a rating, a help request and FAQ), attendance, a download, an email
sent, an invoice and an extra fee, made with the server's own functions where
they exist; and real media files for its webinar, encoded by the ffmpeg CLI
(an fMP4 HLS recording and a replay.mp4) into ``media_dir/hls/<webinar id>/``."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from billing.invoices import issue_signature_invoice, record_extra
from rooms.events import append
from server.db import Database
from server.registrations import load_form_config, register
from server.webinars import set_state
from tests.support.ffmpeg import FFMPEG
from tests.world import Side


@dataclass
class AccountData:
    side: Side
    registration_ids: list[uuid.UUID] = field(default_factory=list)
    participant_ids: list[uuid.UUID] = field(default_factory=list)
    tag: str = ""


async def populate(db: Database, side: Side, tag: str, people: int = 3) -> AccountData:
    """Fill ``side``'s account with ``people`` registrants who each did one of everything."""
    wid = side.webinar.id
    data = AccountData(side, tag=tag)
    await db.execute("UPDATE webinars SET sponsor_name = $2 WHERE id = $1", wid, f"Sponsor {tag}")
    await set_state(db, wid, "announced")
    config = await load_form_config(db, wid)
    form = {"form_version": str(config.form_version), "wording_digest": config.wording_digest("en"),
            "consent_sponsor_share": "1", "consent_marketing": "1"}
    for i in range(people):
        email = f"person{i}-{tag.lower()}-{uuid.uuid4().hex[:6]}@example.org"
        reg = await register(db, wid, {**form, "first_name": f"First{i}{tag}", "last_name": f"Last{i}{tag}",
                                       "email": email, "company": f"Company {tag}", "question": f"Question {i} {tag}?"},
                             ip="203.0.113.7", user_agent=f"Agent {tag}", source="page", locale="en", time_zone=None)
        data.registration_ids.append(reg.registration_id)
        data.participant_ids.append(reg.participant.id)
        await db.execute("INSERT INTO emails_sent (registration_id, kind, to_email, message_id, marketing) "
                         "VALUES ($1, 'confirmation', $2, $3, false)", reg.registration_id, email,
                         f"<{uuid.uuid4().hex}@example.org>")
    await set_state(db, wid, "live")
    first = data.participant_ids[0]
    async with db.acquire() as conn, conn.transaction():
        poll = await conn.fetchval("INSERT INTO polls (webinar_id, question, options, state) "
                                   "VALUES ($1, $2, '[\"yes\",\"no\"]', 'open') RETURNING id", wid, f"Poll {tag}?")
        cta = await conn.fetchval("INSERT INTO ctas (webinar_id, label, form_fields, consent_text, state) "
                                  "VALUES ($1, $2, '{phone}', 'OK', 'pushed') RETURNING id", wid, f"CTA {tag}")
        faq = await conn.fetchval("INSERT INTO help_faq (account_id, variants, answer) VALUES ($1, $2, $3) RETURNING id",
                                  side.account_id, [f"sound {tag}"], f"Check your speakers ({tag})")
        for n, pid in enumerate(data.participant_ids):
            text = f"Hello {n} from account {tag}"
            event = await append(conn, wid, "chat.message", {"author": {"id": str(pid), "name": f"P{n}", "role": "viewer"},
                                                             "text": text})
            await conn.execute("INSERT INTO chat_messages (webinar_id, event_id, participant_id, text) "
                               "VALUES ($1, $2, $3, $4)", wid, event.id, pid, text)
            qid = await conn.fetchval("INSERT INTO questions (webinar_id, participant_id, text) VALUES ($1, $2, $3) "
                                      "RETURNING id", wid, pid, f"Q{n} {tag}")
            await conn.execute("INSERT INTO question_votes (question_id, participant_id) VALUES ($1, $2)", qid, first)
            await conn.execute("INSERT INTO poll_votes (poll_id, participant_id, choices) VALUES ($1, $2, $3)",
                               poll, pid, [n % 2])
            await conn.execute("INSERT INTO cta_interactions (cta_id, participant_id, kind, mode, data, consent) "
                               "VALUES ($1, $2, 'submit', 'live', $3::jsonb, true)", cta, pid,
                               json.dumps({"phone": f"+3361234567{n}"}))
            await conn.execute("INSERT INTO ratings (webinar_id, participant_id, stars, comment) VALUES ($1, $2, $3, $4)",
                               wid, pid, 1 + n % 5, f"Rating {n} {tag}")
            await conn.execute("INSERT INTO help_requests (webinar_id, participant_id, text, faq_id, score) "
                               "VALUES ($1, $2, $3, $4, 0.9)", wid, pid, f"No sound {tag}", faq)
            await conn.execute(
                "INSERT INTO attendance (participant_id, webinar_id, live_seconds, replay_seconds, attention_seconds, "
                "first_seen_at, last_seen_at) VALUES ($1, $2, $3, 60, 500, now(), now())", pid, wid, 600.0 + n)
            await conn.execute(
                "INSERT INTO attendance_sessions (id, webinar_id, participant_id, mode, started_at, last_beat_at, seconds) "
                "VALUES ($1, $2, $3, 'live', now(), now(), 600)", uuid.uuid4(), wid, pid)
        await conn.execute("INSERT INTO downloads (account_id, webinar_id, user_id, file, ip, user_agent) "
                           "VALUES ($1, $2, $3, 'participants.csv', '198.51.100.9', $4)",
                           side.account_id, wid, side.sponsor.id, f"Agent {tag}")
        await conn.execute("INSERT INTO audit_log (account_id, action, subject) VALUES ($1, 'test.populated', $2)",
                           side.account_id, tag)
    await issue_signature_invoice(db, side.order_id, today=dt.date.today())
    await record_extra(db, side.account_id, f"Extra service {tag}", 12345)
    return data


def make_media(media_dir: Path, webinar_id: uuid.UUID, seconds: float = 4.0, tone: int = 440) -> dict[str, str]:
    """A real recording of ``webinar_id`` made by ffmpeg: fMP4 HLS (``index.m3u8``, ``init.mp4``,
    ``seg*.m4s``) and ``replay.mp4``; returns relative path (from ``media_dir``) -> sha256."""
    folder = media_dir / "hls" / str(webinar_id)
    folder.mkdir(parents=True, exist_ok=True)
    source = ["-f", "lavfi", "-i", f"testsrc2=size=320x180:rate=25:duration={seconds}",
              "-f", "lavfi", "-i", f"sine=frequency={tone}:sample_rate=48000:duration={seconds}",
              "-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest"]
    base = [FFMPEG, "-hide_banner", "-loglevel", "error", "-nostdin", "-y"]
    subprocess.run([*base, *source, "-f", "hls", "-hls_segment_type", "fmp4", "-hls_time", "1",
                    "-hls_playlist_type", "vod", "-hls_fmp4_init_filename", "init.mp4",
                    "-hls_segment_filename", str(folder / "seg%d.m4s"), str(folder / "index.m3u8")],
                   check=True, timeout=120)
    subprocess.run([*base, *source, "-movflags", "+faststart", str(folder / "replay.mp4")], check=True, timeout=120)
    return sha256_tree(media_dir, folder)


def sha256_tree(root: Path, under: Path | None = None) -> dict[str, str]:
    """Relative path (from ``root``) -> sha256 of every file under ``under`` (default ``root``)."""
    out = {}
    for path in sorted((under or root).rglob("*")):
        if path.is_file():
            out[path.relative_to(root).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out
