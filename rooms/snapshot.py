"""The state of a room as a newcomer needs it, consistent with an event id.

Read in one REPEATABLE READ transaction together with the room's last event
id, so "snapshot, then every event after its id" is exactly the room.
Bounded: the last :data:`CHAT_MESSAGES` chat messages, every visible
question, the polls, the calls-to-action on screen, the latest ratings.
"""

from __future__ import annotations

import json
from typing import Any

from rooms.commands import cta_view, poll_tally, poll_view, question_view
from rooms.participants import Participant
from rooms.webcam.content_commands import read_state as content_state

CHAT_MESSAGES = 100
RATINGS = 50


async def snapshot(db: Any, participant: Participant) -> tuple[int, dict[str, Any]]:
    """(last event id, state) for ``participant`` (moderators also see hidden questions and private results)."""
    webinar_id = participant.webinar_id
    moderator = participant.role == "moderator"
    async with db.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        room = await conn.fetchrow("SELECT last_event_id, slow_mode_s, word_filter FROM rooms WHERE webinar_id = $1", webinar_id)
        webinar = await conn.fetchrow("SELECT state, title, live_started_at FROM webinars WHERE id = $1", webinar_id)
        chat = await conn.fetch(
            """SELECT c.event_id, c.text, c.created_at, p.id AS pid, p.display_name FROM chat_messages c
               JOIN participants p ON p.id = c.participant_id
               WHERE c.webinar_id = $1 AND c.deleted_at IS NULL ORDER BY c.event_id DESC LIMIT $2""",
            webinar_id, CHAT_MESSAGES)
        questions = await conn.fetch(
            """SELECT q.*, p.display_name AS author_name FROM questions q LEFT JOIN participants p ON p.id = q.participant_id
               WHERE q.webinar_id = $1 AND ($2 OR q.status <> 'hidden') ORDER BY q.id""", webinar_id, moderator)
        polls = await conn.fetch("SELECT * FROM polls WHERE webinar_id = $1 AND ($2 OR state <> 'draft') ORDER BY id",
                                 webinar_id, moderator)
        poll_state = []
        for row in polls:
            view = poll_view(row)
            if moderator or row["results"] == "everyone":
                view["tally"] = await poll_tally(conn, row["id"], len(view["options"]))
            mine = await conn.fetchval("SELECT choices FROM poll_votes WHERE poll_id = $1 AND participant_id = $2",
                                       row["id"], participant.id)
            view["my_choices"] = list(mine) if mine is not None else None
            poll_state.append(view)
        ctas = await conn.fetch("SELECT * FROM ctas WHERE webinar_id = $1 AND ($2 OR state = 'pushed') ORDER BY id",
                                webinar_id, moderator)
        ratings = await conn.fetch(
            """SELECT r.id, r.stars, r.comment, p.display_name FROM ratings r JOIN participants p ON p.id = r.participant_id
               WHERE r.webinar_id = $1 AND r.removed_at IS NULL ORDER BY r.created_at DESC LIMIT $2""", webinar_id, RATINGS)
        upvoted = await conn.fetch(
            "SELECT v.question_id FROM question_votes v JOIN questions q ON q.id = v.question_id "
            "WHERE q.webinar_id = $1 AND v.participant_id = $2", webinar_id, participant.id)
        state: dict[str, Any] = {
            "webinar": {"state": webinar["state"] if webinar else None, "title": webinar["title"] if webinar else ""},
            "slow_mode_s": room["slow_mode_s"] if room else 0,
            "chat": [{"message_id": r["event_id"], "text": r["text"], "at": r["created_at"].isoformat(),
                      "author": {"id": str(r["pid"]), "name": r["display_name"]}} for r in reversed(chat)],
            "questions": [question_view(r) for r in questions],
            "my_upvotes": [r["question_id"] for r in upvoted],
            "polls": poll_state,
            "ctas": [{**cta_view(r), "state": r["state"]} for r in ctas],
            "ratings": [{"rating_id": r["id"], "stars": r["stars"], "comment": r["comment"], "author": r["display_name"]}
                        for r in ratings],
        }
        state["content"] = await content_state(conn, webinar_id)  # webcam rooms: what the program shows
        if moderator:
            state["word_filter"] = list(room["word_filter"]) if room else []
        return (int(room["last_event_id"]) if room else 0), json.loads(json.dumps(state, default=str))
