"""What each client message does: checks, persistence, events.

Every handler runs inside one database transaction and returns the events it
appended; the caller acknowledges the sender only after the commit and then
publishes the events (persist before acknowledging). A refusal raises
:class:`CommandError` with a stable ``code`` the client shows. The busiest
one, ``chat.send``, is a single autocommitted statement instead
(:func:`rooms.events.append_chat`): it is registered with
``transaction=False`` and gets the pool rather than a connection.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from rooms import messages as m
from rooms.events import RoomEvent, append, append_chat
from rooms.helpbot import FaqEntry, best_answer
from rooms.hub import Room, RoomHub
from rooms.participants import Participant

log = logging.getLogger("rooms.commands")

CATEGORY: dict[type[m.ClientMessage], str] = {
    m.ChatSend: "chat", m.QaAsk: "qa", m.QaUpvote: "vote", m.PollVote: "vote",
    m.CtaImpression: "cta", m.CtaClick: "cta", m.CtaSubmit: "cta", m.RatingSubmit: "rating", m.HelpAsk: "help",
}
POLL_RESULTS_EVERY_S = 1.0
"""Poll results are published at most this often per poll (votes themselves are acknowledged at once)."""


class CommandError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Context:
    participant: Participant
    room: Room
    hub: RoomHub
    db: Any
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def webinar_id(self) -> uuid.UUID:
        return self.participant.webinar_id

    @property
    def is_moderator(self) -> bool:
        return self.participant.role == "moderator"


@dataclass
class Outcome:
    events: list[RoomEvent] = field(default_factory=list)
    ack: dict[str, Any] = field(default_factory=dict)
    after_commit: list[Callable[[], Awaitable[None]]] = field(default_factory=list)


Handler = Callable[[Context, Any, asyncpg.Connection, Outcome], Awaitable[None]]
HANDLERS: dict[type[m.ClientMessage], Handler] = {}
WITHOUT_TRANSACTION: set[type[m.ClientMessage]] = set()
"""Messages whose handler makes one autocommitted statement (it gets ``ctx.db``, not a connection)."""


def handles(kind: type[m.ClientMessage], *, transaction: bool = True) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        HANDLERS[kind] = fn
        if not transaction:
            WITHOUT_TRANSACTION.add(kind)
        return fn

    return register


async def execute(ctx: Context, message: m.ClientMessage) -> Outcome:
    """Run one message's handler in a transaction; publish its events after commit."""
    handler = HANDLERS.get(type(message))
    if handler is None:
        raise CommandError("unsupported", f"{type(message).__name__} is not handled here")
    if type(message) in m.MODERATOR_ONLY and not ctx.is_moderator:
        raise CommandError("forbidden", "only moderators may do this")
    outcome = Outcome()
    if type(message) in WITHOUT_TRANSACTION:
        await handler(ctx, message, ctx.db, outcome)
    else:
        async with ctx.db.acquire() as conn, conn.transaction():
            await handler(ctx, message, conn, outcome)
    await ctx.hub.publish(outcome.events)
    for task in outcome.after_commit:
        await task()
    if outcome.events and "event_id" not in outcome.ack:
        outcome.ack["event_id"] = outcome.events[0].id
    return outcome


def author(p: Participant) -> dict[str, Any]:
    return {"id": str(p.id), "name": p.display_name, "role": p.role}


# Chat and moderation ---------------------------------------------------------
def _filtered(text: str, words: tuple[str, ...]) -> bool:
    lowered = text.lower()
    return any(re.search(rf"(?<!\w){re.escape(w.lower())}(?!\w)", lowered) for w in words)


@handles(m.ChatSend, transaction=False)
async def chat_send(ctx: Context, msg: m.ChatSend, db: Any, out: Outcome) -> None:
    text = msg.text.strip()
    if not text:
        raise CommandError("empty", "the message is empty")
    if not ctx.is_moderator and ctx.room.slow_mode_s:
        last = ctx.room.last_chat.get(ctx.participant.id)
        now = asyncio.get_running_loop().time()
        if last is not None and now - last < ctx.room.slow_mode_s:
            raise CommandError("slow_mode", f"slow mode: one message every {ctx.room.slow_mode_s} s")
    if _filtered(text, ctx.room.word_filter) and not ctx.is_moderator:
        raise CommandError("filtered", "this message contains a word the moderators filter")
    event = await append_chat(db, ctx.webinar_id, ctx.participant.id, {"author": author(ctx.participant), "text": text},
                              text, may_while_muted=ctx.is_moderator)
    if event == "banned":
        raise CommandError("banned", "you were removed from this room")
    if event == "muted":
        raise CommandError("muted", "a moderator muted you for a while")
    assert isinstance(event, RoomEvent)
    out.events.append(event)
    out.ack["message_id"] = event.id
    ctx.room.last_chat[ctx.participant.id] = asyncio.get_running_loop().time()


@handles(m.ChatDelete)
async def chat_delete(ctx: Context, msg: m.ChatDelete, conn: asyncpg.Connection, out: Outcome) -> None:
    done = await conn.fetchval(
        "UPDATE chat_messages SET deleted_at = now() WHERE webinar_id = $1 AND event_id = $2 AND deleted_at IS NULL "
        "RETURNING 1", ctx.webinar_id, msg.message_id)
    if not done:
        raise CommandError("not_found", "no such message (or already deleted)")
    out.events.append(await append(conn, ctx.webinar_id, "chat.deleted", {"message_id": msg.message_id}))


async def _target(conn: asyncpg.Connection, ctx: Context, participant_id: uuid.UUID) -> asyncpg.Record:
    row = await conn.fetchrow("SELECT id, display_name FROM participants WHERE id = $1 AND webinar_id = $2",
                              participant_id, ctx.webinar_id)
    if row is None:
        raise CommandError("not_found", "no such participant in this room")
    return row


@handles(m.ParticipantMute)
async def participant_mute(ctx: Context, msg: m.ParticipantMute, conn: asyncpg.Connection, out: Outcome) -> None:
    row = await _target(conn, ctx, msg.participant_id)
    await conn.execute(
        "UPDATE participants SET muted_until = CASE WHEN $2 = 0 THEN NULL ELSE now() + make_interval(mins => $2) END "
        "WHERE id = $1", row["id"], msg.minutes)
    data = {"participant_id": str(row["id"]), "name": row["display_name"], "minutes": msg.minutes}
    out.events.append(await append(conn, ctx.webinar_id, "participant.muted", data, audience="moderators"))
    out.events.append(await append(conn, ctx.webinar_id, "participant.muted", data, audience=f"p:{row['id']}"))


@handles(m.ParticipantBan)
async def participant_ban(ctx: Context, msg: m.ParticipantBan, conn: asyncpg.Connection, out: Outcome) -> None:
    row = await _target(conn, ctx, msg.participant_id)
    if row["id"] == ctx.participant.id:
        raise CommandError("invalid", "you cannot ban yourself")
    await conn.execute("UPDATE participants SET banned_at = coalesce(banned_at, now()) WHERE id = $1", row["id"])
    data = {"participant_id": str(row["id"]), "name": row["display_name"]}
    out.events.append(await append(conn, ctx.webinar_id, "participant.banned", data, audience="moderators"))
    out.events.append(await append(conn, ctx.webinar_id, "participant.banned", data, audience=f"p:{row['id']}"))


@handles(m.ChatSlowMode)
async def chat_slow_mode(ctx: Context, msg: m.ChatSlowMode, conn: asyncpg.Connection, out: Outcome) -> None:
    await conn.execute(
        "INSERT INTO rooms (webinar_id, slow_mode_s) VALUES ($1, $2) "
        "ON CONFLICT (webinar_id) DO UPDATE SET slow_mode_s = $2", ctx.webinar_id, msg.seconds)
    out.events.append(await append(conn, ctx.webinar_id, "room.settings", {"slow_mode_s": msg.seconds}))


@handles(m.ChatFilter)
async def chat_filter(ctx: Context, msg: m.ChatFilter, conn: asyncpg.Connection, out: Outcome) -> None:
    words = sorted({w.strip().lower() for w in msg.words if w.strip()})
    await conn.execute(
        "INSERT INTO rooms (webinar_id, word_filter) VALUES ($1, $2) "
        "ON CONFLICT (webinar_id) DO UPDATE SET word_filter = $2", ctx.webinar_id, words)
    out.events.append(await append(conn, ctx.webinar_id, "room.filter", {"words": words}, audience="moderators"))


# Q&A -----------------------------------------------------------------------------
def question_view(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "question_id": row["id"], "text": row["text"], "status": row["status"], "upvotes": row["upvotes"],
        "source": row["source"], "author": None if row["anonymous"] else row["author_name"],
    }


@handles(m.QaAsk)
async def qa_ask(ctx: Context, msg: m.QaAsk, conn: asyncpg.Connection, out: Outcome) -> None:
    row = await conn.fetchrow(
        """INSERT INTO questions (webinar_id, participant_id, anonymous, text) VALUES ($1, $2, $3, $4)
           RETURNING id, text, status, upvotes, source, anonymous, $5::text AS author_name""",
        ctx.webinar_id, ctx.participant.id, msg.anonymous, msg.text.strip(), ctx.participant.display_name)
    assert row is not None
    out.events.append(await append(conn, ctx.webinar_id, "qa.question", question_view(row)))
    out.ack["question_id"] = row["id"]


@handles(m.QaUpvote)
async def qa_upvote(ctx: Context, msg: m.QaUpvote, conn: asyncpg.Connection, out: Outcome) -> None:
    status = await conn.fetchval("SELECT status FROM questions WHERE id = $1 AND webinar_id = $2 FOR UPDATE",
                                 msg.question_id, ctx.webinar_id)
    if status is None or status == "hidden":
        raise CommandError("not_found", "no such question")
    inserted = await conn.fetchval(
        "INSERT INTO question_votes (question_id, participant_id) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING 1",
        msg.question_id, ctx.participant.id)
    if not inserted:
        out.ack["already"] = True
        return
    upvotes = await conn.fetchval("UPDATE questions SET upvotes = upvotes + 1 WHERE id = $1 RETURNING upvotes",
                                  msg.question_id)
    out.events.append(await append(conn, ctx.webinar_id, "qa.upvoted", {"question_id": msg.question_id, "upvotes": upvotes}))


@handles(m.QaMark)
async def qa_mark(ctx: Context, msg: m.QaMark, conn: asyncpg.Connection, out: Outcome) -> None:
    done = await conn.fetchval("UPDATE questions SET status = $3 WHERE id = $1 AND webinar_id = $2 RETURNING 1",
                               msg.question_id, ctx.webinar_id, msg.status)
    if not done:
        raise CommandError("not_found", "no such question")
    out.events.append(await append(conn, ctx.webinar_id, "qa.status", {"question_id": msg.question_id, "status": msg.status}))


# Polls -----------------------------------------------------------------------------
async def poll_tally(conn: asyncpg.Connection, poll_id: int, options: int) -> dict[str, Any]:
    counts = [0] * options
    voters = 0
    for r in await conn.fetch("SELECT choices FROM poll_votes WHERE poll_id = $1", poll_id):
        voters += 1
        for choice in r["choices"]:
            if 0 <= choice < options:
                counts[choice] += 1
    return {"poll_id": poll_id, "counts": counts, "voters": voters}


def poll_view(row: asyncpg.Record) -> dict[str, Any]:
    options = row["options"] if isinstance(row["options"], list) else json.loads(row["options"])
    return {"poll_id": row["id"], "question": row["question"], "options": options, "multiple": row["multiple"],
            "results": row["results"], "state": row["state"]}


async def _poll(conn: asyncpg.Connection, ctx: Context, poll_id: int, lock: bool = False) -> asyncpg.Record:
    row = await conn.fetchrow(
        "SELECT * FROM polls WHERE id = $1 AND webinar_id = $2" + (" FOR UPDATE" if lock else ""), poll_id, ctx.webinar_id)
    if row is None:
        raise CommandError("not_found", "no such poll")
    return row


@handles(m.PollCreate)
async def poll_create(ctx: Context, msg: m.PollCreate, conn: asyncpg.Connection, out: Outcome) -> None:
    row = await conn.fetchrow(
        "INSERT INTO polls (webinar_id, question, options, multiple, results) VALUES ($1, $2, $3::jsonb, $4, $5) RETURNING *",
        ctx.webinar_id, msg.question.strip(), json.dumps([o.strip() for o in msg.options]), msg.multiple, msg.results)
    assert row is not None
    out.events.append(await append(conn, ctx.webinar_id, "poll.created", poll_view(row), audience="moderators"))
    out.ack["poll_id"] = row["id"]


@handles(m.PollOpen)
async def poll_open(ctx: Context, msg: m.PollOpen, conn: asyncpg.Connection, out: Outcome) -> None:
    row = await _poll(conn, ctx, msg.poll_id, lock=True)
    if row["state"] == "open":
        raise CommandError("invalid", "the poll is already open")
    row = await conn.fetchrow("UPDATE polls SET state = 'open' WHERE id = $1 RETURNING *", msg.poll_id)
    out.events.append(await append(conn, ctx.webinar_id, "poll.opened", poll_view(row)))


@handles(m.PollClose)
async def poll_close(ctx: Context, msg: m.PollClose, conn: asyncpg.Connection, out: Outcome) -> None:
    row = await _poll(conn, ctx, msg.poll_id, lock=True)
    if row["state"] != "open":
        raise CommandError("invalid", "the poll is not open")
    row = await conn.fetchrow("UPDATE polls SET state = 'closed' WHERE id = $1 RETURNING *", msg.poll_id)
    view = poll_view(row)
    tally = await poll_tally(conn, msg.poll_id, len(view["options"]))
    out.events.append(await append(conn, ctx.webinar_id, "poll.closed", {"poll_id": msg.poll_id}))
    audience = "all" if row["results"] == "everyone" else "moderators"
    out.events.append(await append(conn, ctx.webinar_id, "poll.results", tally, audience=audience))


@handles(m.PollVote)
async def poll_vote(ctx: Context, msg: m.PollVote, conn: asyncpg.Connection, out: Outcome) -> None:
    row = await _poll(conn, ctx, msg.poll_id)
    if row["state"] != "open":
        raise CommandError("poll_closed", "this poll is not open for votes")
    view = poll_view(row)
    choices = sorted(set(msg.choices))
    if any(c >= len(view["options"]) for c in choices):
        raise CommandError("invalid", "no such option")
    if not row["multiple"] and len(choices) != 1:
        raise CommandError("invalid", "choose exactly one option")
    await conn.execute(
        """INSERT INTO poll_votes (poll_id, participant_id, choices) VALUES ($1, $2, $3)
           ON CONFLICT (poll_id, participant_id) DO UPDATE SET choices = $3, updated_at = now()""",
        msg.poll_id, ctx.participant.id, choices)
    out.ack["choices"] = choices
    results = ctx.hub.extras.setdefault("poll_results", PollResultsPublisher(ctx.hub, ctx.db))
    out.after_commit.append(lambda: results.soon(ctx.webinar_id, msg.poll_id))


class PollResultsPublisher:
    """Publishes a poll's results at most every :data:`POLL_RESULTS_EVERY_S` while votes come in."""

    def __init__(self, hub: RoomHub, db: Any) -> None:
        self.hub = hub
        self.db = db
        self._scheduled: set[int] = set()

    async def soon(self, webinar_id: uuid.UUID, poll_id: int) -> None:
        if poll_id in self._scheduled:
            return
        self._scheduled.add(poll_id)
        asyncio.get_running_loop().call_later(
            POLL_RESULTS_EVERY_S, lambda: asyncio.ensure_future(self._publish(webinar_id, poll_id)))

    async def _publish(self, webinar_id: uuid.UUID, poll_id: int) -> None:
        self._scheduled.discard(poll_id)
        try:
            async with self.db.acquire() as conn, conn.transaction():
                row = await conn.fetchrow("SELECT * FROM polls WHERE id = $1", poll_id)
                if row is None or row["state"] != "open":
                    return
                tally = await poll_tally(conn, poll_id, len(poll_view(row)["options"]))
                audience = "all" if row["results"] == "everyone" else "moderators"
                event = await append(conn, webinar_id, "poll.results", tally, audience=audience)
            await self.hub.publish([event])
        except Exception:
            log.exception("poll %s: results could not be published", poll_id)


# Calls-to-action ----------------------------------------------------------------------
def cta_view(row: asyncpg.Record) -> dict[str, Any]:
    return {"cta_id": row["id"], "label": row["label"], "url": row["url"], "image_url": row["image_url"],
            "body": row["body"], "form_fields": list(row["form_fields"]), "consent_text": row["consent_text"]}


async def _cta(conn: asyncpg.Connection, ctx: Context, cta_id: int) -> asyncpg.Record:
    row = await conn.fetchrow("SELECT * FROM ctas WHERE id = $1 AND webinar_id = $2", cta_id, ctx.webinar_id)
    if row is None:
        raise CommandError("not_found", "no such call-to-action")
    return row


@handles(m.CtaPush)
async def cta_push(ctx: Context, msg: m.CtaPush, conn: asyncpg.Connection, out: Outcome) -> None:
    await _cta(conn, ctx, msg.cta_id)
    row = await conn.fetchrow("UPDATE ctas SET state = 'pushed' WHERE id = $1 RETURNING *", msg.cta_id)
    out.events.append(await append(conn, ctx.webinar_id, "cta.pushed", cta_view(row)))


@handles(m.CtaWithdraw)
async def cta_withdraw(ctx: Context, msg: m.CtaWithdraw, conn: asyncpg.Connection, out: Outcome) -> None:
    row = await _cta(conn, ctx, msg.cta_id)
    if row["state"] != "pushed":
        raise CommandError("invalid", "this call-to-action is not shown")
    await conn.execute("UPDATE ctas SET state = 'withdrawn' WHERE id = $1", msg.cta_id)
    out.events.append(await append(conn, ctx.webinar_id, "cta.withdrawn", {"cta_id": msg.cta_id}))


async def _interaction(conn: asyncpg.Connection, ctx: Context, cta_id: int, kind: str, mode: str,
                       data: dict[str, Any] | None = None, consent: bool = False) -> int:
    row = await _cta(conn, ctx, cta_id)
    if mode == "live" and row["state"] != "pushed":
        raise CommandError("invalid", "this call-to-action is not shown")
    value: int = await conn.fetchval(
        "INSERT INTO cta_interactions (cta_id, participant_id, kind, mode, data, consent) "
        "VALUES ($1, $2, $3, $4, $5::jsonb, $6) RETURNING id",
        cta_id, ctx.participant.id, kind, mode, json.dumps(data or {}), consent)
    return value


@handles(m.CtaImpression)
async def cta_impression(ctx: Context, msg: m.CtaImpression, conn: asyncpg.Connection, out: Outcome) -> None:
    out.ack["recorded"] = await _interaction(conn, ctx, msg.cta_id, "impression", msg.mode)


@handles(m.CtaClick)
async def cta_click(ctx: Context, msg: m.CtaClick, conn: asyncpg.Connection, out: Outcome) -> None:
    out.ack["recorded"] = await _interaction(conn, ctx, msg.cta_id, "click", msg.mode)


@handles(m.CtaSubmit)
async def cta_submit(ctx: Context, msg: m.CtaSubmit, conn: asyncpg.Connection, out: Outcome) -> None:
    row = await _cta(conn, ctx, msg.cta_id)
    allowed = set(row["form_fields"])
    if not allowed:
        raise CommandError("invalid", "this call-to-action has no form")
    unknown = set(msg.fields) - allowed
    if unknown:
        raise CommandError("invalid", f"unknown form fields: {', '.join(sorted(unknown))}")
    if not msg.consent:
        raise CommandError("consent_required", "the form is sent only with your consent")
    out.ack["recorded"] = await _interaction(conn, ctx, msg.cta_id, "submit", msg.mode, dict(msg.fields), consent=True)
    out.events.append(await append(conn, ctx.webinar_id, "cta.submitted",
                                   {"cta_id": msg.cta_id, "participant": author(ctx.participant)}, audience="moderators"))


# Ratings ------------------------------------------------------------------------------
@handles(m.RatingSubmit)
async def rating_submit(ctx: Context, msg: m.RatingSubmit, conn: asyncpg.Connection, out: Outcome) -> None:
    rating_id = await conn.fetchval(
        """INSERT INTO ratings (webinar_id, participant_id, stars, comment) VALUES ($1, $2, $3, $4)
           ON CONFLICT (webinar_id, participant_id)
           DO UPDATE SET stars = $3, comment = $4, created_at = now(), removed_at = NULL RETURNING id""",
        ctx.webinar_id, ctx.participant.id, msg.stars, msg.comment.strip())
    out.events.append(await append(conn, ctx.webinar_id, "rating.posted", {
        "rating_id": rating_id, "stars": msg.stars, "comment": msg.comment.strip(), "author": ctx.participant.display_name}))
    out.ack["rating_id"] = rating_id


@handles(m.RatingRemove)
async def rating_remove(ctx: Context, msg: m.RatingRemove, conn: asyncpg.Connection, out: Outcome) -> None:
    done = await conn.fetchval("UPDATE ratings SET removed_at = now() WHERE id = $1 AND webinar_id = $2 "
                               "AND removed_at IS NULL RETURNING 1", msg.rating_id, ctx.webinar_id)
    if not done:
        raise CommandError("not_found", "no such rating")
    out.events.append(await append(conn, ctx.webinar_id, "rating.removed", {"rating_id": msg.rating_id}))


# Help bot -----------------------------------------------------------------------------
@handles(m.HelpAsk)
async def help_ask(ctx: Context, msg: m.HelpAsk, conn: asyncpg.Connection, out: Outcome) -> None:
    rows = await conn.fetch(
        "SELECT f.id, f.variants, f.answer FROM help_faq f JOIN webinars w ON w.account_id = f.account_id "
        "WHERE w.id = $1 ORDER BY f.id", ctx.webinar_id)
    match = best_answer(msg.text, [FaqEntry(r["id"], tuple(r["variants"]), r["answer"]) for r in rows])
    request_id = await conn.fetchval(
        "INSERT INTO help_requests (webinar_id, participant_id, text, faq_id, score) VALUES ($1, $2, $3, $4, $5) RETURNING id",
        ctx.webinar_id, ctx.participant.id, msg.text.strip(), match.entry.id if match else None,
        match.score if match else None)
    me = f"p:{ctx.participant.id}"
    if match is not None:
        out.events.append(await append(conn, ctx.webinar_id, "help.answer",
                                       {"request_id": request_id, "question": msg.text.strip(), "answer": match.entry.answer},
                                       audience=me))
        out.ack["answered"] = True
    else:
        out.events.append(await append(conn, ctx.webinar_id, "help.forwarded",
                                       {"request_id": request_id, "question": msg.text.strip()}, audience=me))
        out.events.append(await append(conn, ctx.webinar_id, "help.unanswered",
                                       {"request_id": request_id, "question": msg.text.strip(),
                                        "participant": author(ctx.participant)}, audience="moderators"))
        out.ack["answered"] = False

