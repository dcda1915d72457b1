"""The ``content.*`` and ``clip.*`` messages of the room WebSocket: the presenter
or a moderator drives what the program shows (handlers of :mod:`rooms.commands`;
schemas in :mod:`rooms.messages`).

Only speakers and moderators of a webcam webinar may send them: viewers get
``forbidden``, a studio webinar ``not_webcam``. Each change updates the room's
content state (``webcam_content_state``, row-locked, so two presenters
clicking "next" at once move two pages, in order) and appends one
program-timed room event ``content.changed`` for everyone, whose data is the
whole new state (:func:`state_view`) plus ``action`` and ``by``: the replay
and a reconnecting client need only the latest one; newcomers get it in their
snapshot (``state.content``). After the commit the state is applied to the
webinar's program (:mod:`rooms.webcam.content_director`).
"""

from __future__ import annotations

import json
from typing import Any

import asyncpg

from rooms import messages as m
from rooms.commands import CommandError, Context, Outcome, author, handles
from rooms.events import append

STATE_SQL = """
SELECT s.content_id, s.page, s.clip_playing, s.clip_position_ms,
       extract(epoch FROM clock_timestamp() - s.updated_at)::float8 AS since_s,
       c.kind, c.name, c.pages, c.meta
FROM webcam_content_state s LEFT JOIN webcam_content c ON c.id = s.content_id
WHERE s.webinar_id = $1"""


def state_view(row: Any) -> dict[str, Any]:
    """The content state as events and snapshots carry it: ``item_id`` (None: nothing
    shown), ``kind``, ``name``, ``page``, ``pages``, ``clip`` (``playing``,
    ``position_s`` at the time of the event, ``duration_s``) for a clip."""
    if row is None or row["content_id"] is None or row["kind"] is None:
        return {"item_id": None, "kind": None, "name": "", "page": 0, "pages": 0, "clip": None}
    view: dict[str, Any] = {"item_id": row["content_id"], "kind": row["kind"], "name": row["name"], "page": row["page"],
                            "pages": row["pages"], "clip": None}
    if row["kind"] == "clip":
        meta = row["meta"] if isinstance(row["meta"], dict) else json.loads(row["meta"])
        duration = float(meta.get("duration_s") or 0.0)
        position = row["clip_position_ms"] / 1000 + (float(row["since_s"] or 0.0) if row["clip_playing"] else 0.0)
        view["clip"] = {"playing": bool(row["clip_playing"]) and position < duration,
                        "position_s": round(min(position, duration), 3), "duration_s": duration}
    return view


async def read_state(db: Any, webinar_id: Any) -> dict[str, Any]:
    """The room's content state now (for snapshots and :meth:`ContentDirector.restore`)."""
    return state_view(await db.fetchrow(STATE_SQL, webinar_id))


async def _lock_state(ctx: Context, conn: asyncpg.Connection) -> dict[str, Any]:
    if ctx.participant.role not in ("speaker", "moderator"):
        raise CommandError("forbidden", "only speakers and moderators change the content shown")
    room_type = await conn.fetchval("SELECT room_type FROM webinars WHERE id = $1", ctx.webinar_id)
    if room_type != "webcam":
        raise CommandError("not_webcam", "this webinar is a studio room: it has no shared content")
    await conn.execute("INSERT INTO webcam_content_state (webinar_id) VALUES ($1) ON CONFLICT DO NOTHING",
                       ctx.webinar_id)
    return state_view(await conn.fetchrow(STATE_SQL + " FOR UPDATE OF s", ctx.webinar_id))


async def _save(ctx: Context, conn: asyncpg.Connection, out: Outcome, action: str, item_id: int | None,
                page: int = 0, playing: bool = False, position_s: float = 0.0) -> None:
    await conn.execute(
        """UPDATE webcam_content_state SET content_id = $2, page = $3, clip_playing = $4, clip_position_ms = $5,
                  updated_at = clock_timestamp() WHERE webinar_id = $1""",
        ctx.webinar_id, item_id, page, playing, round(position_s * 1000))
    state = state_view(await conn.fetchrow(STATE_SQL, ctx.webinar_id))
    data = {**state, "action": action, "by": author(ctx.participant)}
    event = await append(conn, ctx.webinar_id, "content.changed", data)
    await conn.execute("UPDATE webcam_content_state SET event_id = $2 WHERE webinar_id = $1", ctx.webinar_id, event.id)
    out.events.append(event)
    out.ack["content"] = state
    director = ctx.hub.extras.get("content")
    if director is not None:
        webinar_id = ctx.webinar_id

        async def show() -> None:
            await director.apply(webinar_id, state)

        out.after_commit.append(show)


def _paged(state: dict[str, Any]) -> None:
    if state["kind"] not in ("pdf", "images"):
        raise CommandError("no_pages", "no PDF or image set is shown")


def _clip(state: dict[str, Any]) -> dict[str, Any]:
    if state["kind"] != "clip":
        raise CommandError("no_clip", "no clip is shown")
    clip: dict[str, Any] = state["clip"]
    return clip


@handles(m.ContentShow)
async def content_show(ctx: Context, msg: m.ContentShow, conn: asyncpg.Connection, out: Outcome) -> None:
    await _lock_state(ctx, conn)
    row = await conn.fetchrow("SELECT kind, pages FROM webcam_content WHERE id = $1 AND webinar_id = $2",
                              msg.item_id, ctx.webinar_id)
    if row is None:
        raise CommandError("not_found", "no such content in this webinar")
    if row["kind"] == "clip":
        if msg.index != 0:
            raise CommandError("no_page", "a clip has no pages")
    elif msg.index >= row["pages"]:
        raise CommandError("no_page", f"this item has {row['pages']} pages (index from 0)")
    await _save(ctx, conn, out, "show", msg.item_id, msg.index)


@handles(m.ContentNext)
async def content_next(ctx: Context, msg: m.ContentNext, conn: asyncpg.Connection, out: Outcome) -> None:
    state = await _lock_state(ctx, conn)
    _paged(state)
    if state["page"] + 1 >= state["pages"]:
        raise CommandError("no_page", "this is the last page")
    await _save(ctx, conn, out, "next", state["item_id"], state["page"] + 1)


@handles(m.ContentPrev)
async def content_prev(ctx: Context, msg: m.ContentPrev, conn: asyncpg.Connection, out: Outcome) -> None:
    state = await _lock_state(ctx, conn)
    _paged(state)
    if state["page"] == 0:
        raise CommandError("no_page", "this is the first page")
    await _save(ctx, conn, out, "prev", state["item_id"], state["page"] - 1)


@handles(m.ContentClear)
async def content_clear(ctx: Context, msg: m.ContentClear, conn: asyncpg.Connection, out: Outcome) -> None:
    await _lock_state(ctx, conn)
    await _save(ctx, conn, out, "clear", None)


@handles(m.ClipPlay)
async def clip_play(ctx: Context, msg: m.ClipPlay, conn: asyncpg.Connection, out: Outcome) -> None:
    state = await _lock_state(ctx, conn)
    clip = _clip(state)
    position = clip["position_s"] if msg.position_s is None else min(msg.position_s, clip["duration_s"])
    if position >= clip["duration_s"]:
        position = 0.0  # "play" on a clip that ended plays it again
    await _save(ctx, conn, out, "play", state["item_id"], 0, True, position)


@handles(m.ClipPause)
async def clip_pause(ctx: Context, msg: m.ClipPause, conn: asyncpg.Connection, out: Outcome) -> None:
    state = await _lock_state(ctx, conn)
    clip = _clip(state)
    await _save(ctx, conn, out, "pause", state["item_id"], 0, False, clip["position_s"])


@handles(m.ClipSeek)
async def clip_seek(ctx: Context, msg: m.ClipSeek, conn: asyncpg.Connection, out: Outcome) -> None:
    state = await _lock_state(ctx, conn)
    clip = _clip(state)
    position = min(msg.position_s, clip["duration_s"])
    await _save(ctx, conn, out, "seek", state["item_id"], 0, clip["playing"] and position < clip["duration_s"], position)


async def item_deleted(conn: Any, webinar_id: Any, item_id: int, by: dict[str, Any]) -> Any:
    """When the item shown is deleted: clear the state, return the ``content.changed`` event
    to publish (None when the item was not shown)."""
    shown = await conn.fetchval(
        "SELECT 1 FROM webcam_content_state WHERE webinar_id = $1 AND content_id = $2 FOR UPDATE", webinar_id, item_id)
    if not shown:
        return None
    await conn.execute("UPDATE webcam_content_state SET content_id = NULL, page = 0, clip_playing = false, "
                       "clip_position_ms = 0, updated_at = clock_timestamp() WHERE webinar_id = $1", webinar_id)
    state = state_view(None)
    event = await append(conn, webinar_id, "content.changed", {**state, "action": "deleted", "by": by})
    await conn.execute("UPDATE webcam_content_state SET event_id = $2 WHERE webinar_id = $1", webinar_id, event.id)
    return event
