"""The ``stage.*`` and ``rtc.*`` messages of the room WebSocket (handlers of
:mod:`rooms.commands`; schemas in :mod:`rooms.messages`).

Only speakers and moderators of a webcam webinar may send them: viewers get
``forbidden``, a studio webinar ``not_webcam``. ``rtc.offer`` is answered in its
``ack``: ``{"answer": {"type": "answer", "sdp": ...}, "stage": {...}}`` (aiortc
gathers its ICE candidates before answering, so the server never trickles).
Stage changes are appended as program-timed room events in the command's
transaction (``stage.state`` for everyone, ``stage.backstage`` for staff).
``stage.join`` that would start a new live while maintenance mode is on is refused
with code ``maintenance`` (R-OPS-3; a running live goes on).
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import asyncpg

from rooms import messages as m
from rooms.commands import CommandError, Context, Outcome, handles
from rooms.events import append
from rooms.webcam.room import LIVE_STATES, WebcamRoom, WebcamRooms
from rooms.webcam.speak import stage_refusal
from rooms.webcam.stage import Change, StageError

log = logging.getLogger("rooms.webcam.signaling")


async def _room(ctx: Context, conn: asyncpg.Connection) -> WebcamRoom:
    if ctx.participant.role not in ("speaker", "moderator"):
        raise CommandError("forbidden", "only speakers and moderators take part in the webcam room")
    room_type = await conn.fetchval("SELECT room_type FROM webinars WHERE id = $1", ctx.webinar_id)
    if room_type != "webcam":
        raise CommandError("not_webcam", "this webinar is a studio room: it takes no camera from the browser")
    rooms: WebcamRooms | None = ctx.hub.extras.get("webcam")
    if rooms is None:
        raise CommandError("unavailable", "webcam rooms are not running on this server")
    return rooms.room(ctx.webinar_id)


async def _events(conn: asyncpg.Connection, ctx: Context, changes: list[Change], out: Outcome) -> None:
    for change in changes:
        out.events.append(await append(conn, ctx.webinar_id, change.kind, change.data, change.audience))


def _target(ctx: Context, participant_id: uuid.UUID | None) -> uuid.UUID:
    if participant_id is None or participant_id == ctx.participant.id:
        return ctx.participant.id
    if not ctx.is_moderator:
        raise CommandError("forbidden", "only moderators move someone else on or off stage")
    return participant_id


def _stage_call(fn: Any, *args: Any) -> list[Change]:
    try:
        return fn(*args)  # type: ignore[no-any-return]
    except StageError as exc:
        raise CommandError(exc.code, str(exc)) from None


@handles(m.StageJoin)
async def stage_join(ctx: Context, msg: m.StageJoin, conn: asyncpg.Connection, out: Outcome) -> None:
    room = await _room(ctx, conn)
    target = _target(ctx, msg.participant_id)
    member = room.stage.present.get(target)
    if member is not None and target not in room.stage.on_stage:
        refusal = stage_refusal(room.rooms.preflight, ctx.webinar_id, member.user_id)
        if refusal is not None:
            raise CommandError("preflight", refusal)
        in_maintenance = room.new_live_refusal()
        if in_maintenance is not None and await conn.fetchval(
                "SELECT state FROM webinars WHERE id = $1", ctx.webinar_id) in LIVE_STATES:
            raise CommandError("maintenance", in_maintenance)
    await _events(conn, ctx, _stage_call(room.stage.go_on, target), out)
    out.ack["stage"] = room.stage.state()
    out.after_commit.append(room.after_stage_change)


@handles(m.StageLeave)
async def stage_leave(ctx: Context, msg: m.StageLeave, conn: asyncpg.Connection, out: Outcome) -> None:
    room = await _room(ctx, conn)
    await _events(conn, ctx, _stage_call(room.stage.go_off, _target(ctx, msg.participant_id)), out)
    out.ack["stage"] = room.stage.state()


@handles(m.StageLayoutSet)
async def stage_layout(ctx: Context, msg: m.StageLayoutSet, conn: asyncpg.Connection, out: Outcome) -> None:
    room = await _room(ctx, conn)
    await _events(conn, ctx, _stage_call(room.stage.set_layout, msg.layout), out)
    out.ack["stage"] = room.stage.state()


@handles(m.StageSpotlight)
async def stage_spotlight(ctx: Context, msg: m.StageSpotlight, conn: asyncpg.Connection, out: Outcome) -> None:
    room = await _room(ctx, conn)
    await _events(conn, ctx, _stage_call(room.stage.set_spotlight, msg.participant_id), out)
    out.ack["stage"] = room.stage.state()


@handles(m.RtcOffer)
async def rtc_offer(ctx: Context, msg: m.RtcOffer, conn: asyncpg.Connection, out: Outcome) -> None:
    room = await _room(ctx, conn)

    async def negotiate() -> None:  # after the commit: ICE gathering must not hold a transaction
        try:
            answer, changes = await room.connect(ctx.participant, msg.sdp)
        except Exception as exc:  # noqa: BLE001 -- aiortc raises many kinds for a bad offer: all refused the same way
            log.info("webinar %s: offer of %s refused: %s", ctx.webinar_id, ctx.participant.id, exc)
            raise CommandError("rtc_failed", "the camera connection could not be set up (the browser must "
                               f"send H.264 video and Opus audio): {str(exc)[:200]}") from None
        out.ack["answer"] = {"type": "answer", "sdp": answer}
        out.ack["stage"] = room.stage.state()
        out.ack["backstage"] = room.stage.staff_state()["backstage"]
        await room.publish(changes)

    out.after_commit.append(negotiate)


@handles(m.RtcIce)
async def rtc_ice(ctx: Context, msg: m.RtcIce, conn: asyncpg.Connection, out: Outcome) -> None:
    room = await _room(ctx, conn)
    peer = room.peers.get(ctx.participant.id)
    if peer is None:
        raise CommandError("no_offer", "send rtc.offer before ICE candidates")
    try:
        await peer.add_candidate(msg.candidate, msg.sdp_mid, msg.sdp_mline_index)
    except Exception as exc:  # noqa: BLE001 -- a malformed candidate: refused
        raise CommandError("invalid", f"bad ICE candidate: {str(exc)[:200]}") from None


@handles(m.RtcHangup)
async def rtc_hangup(ctx: Context, msg: m.RtcHangup, conn: asyncpg.Connection, out: Outcome) -> None:
    room = await _room(ctx, conn)
    out.after_commit.append(lambda: room.hang_up(ctx.participant.id))
