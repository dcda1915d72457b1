"""Every WebSocket message of a room, with its schema, limits and version.

One module, so the protocol can be read in one place. Messages are JSON
objects with a ``type`` tag. Client messages may carry ``ref`` (an integer
the client chooses); the server's ``ack`` or ``error`` for that message
repeats it.

Decoding is strict (msgspec): unknown types, unknown fields, wrong types and
out-of-range values are refused with an ``error`` message, never a crash.
A frame larger than :data:`MAX_FRAME_BYTES` is refused before parsing.

Server → client::

    {"type": "welcome", "v": 1, "participant": {...}, "role": "viewer", "last_event_id": 812, "state": {...}}
    {"type": "events", "events": [{"id": 813, "kind": "chat.message", "t": 1234.5, "at": "...", "data": {...}}, ...]}
    {"type": "ack", "ref": 7, "event_id": 813}
    {"type": "error", "ref": 7, "code": "rate_limited", "message": "..."}
    {"type": "pong"}
    {"type": "notice", "kind": "maintenance", "data": {"enabled": true, "message": "Back at 6"}}

``events`` carries one or more room events in id order (ids grow by one per
room; a client keeps the last id it saw and gives it back in ``hello`` to
resume). ``t`` is the program time in seconds since the live started (null
before it), ``at`` the wall time.

``notice`` is ephemeral (not stored, not replayed, no id: :data:`rooms.hub.NOTICE_ID`):
live state, stream health, presence, and ``maintenance`` (R-OPS-3, from each node's
:class:`server.maintenance.MaintenanceWatch` to its own clients when the switch changes,
and the latest one right after a welcome; ``message`` is plain text of at most 500 characters).
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

PROTOCOL_VERSION = 1
MAX_FRAME_BYTES = 16 * 1024
"""Largest client frame accepted (bytes)."""

ChatText = Annotated[str, Meta(min_length=1, max_length=500)]
QuestionText = Annotated[str, Meta(min_length=3, max_length=500)]
Name = Annotated[str, Meta(min_length=1, max_length=80)]
Id = Annotated[int, Meta(ge=1, le=2**62)]
Ref = Annotated[int, Meta(ge=0, le=2**31)]
PollOption = Annotated[str, Meta(min_length=1, max_length=100)]
FilterWord = Annotated[str, Meta(min_length=1, max_length=50)]


class ClientMessage(Struct, tag_field="type", forbid_unknown_fields=True, kw_only=True):
    ref: Ref | None = None


class Hello(ClientMessage, tag="hello"):
    """First message: protocol version and the last event id the client saw (0: none)."""

    v: int = PROTOCOL_VERSION
    last_event_id: Annotated[int, Meta(ge=0, le=2**62)] = 0


class Ping(ClientMessage, tag="ping"):
    pass


class ChatSend(ClientMessage, tag="chat.send"):
    text: ChatText


class ChatDelete(ClientMessage, tag="chat.delete"):
    message_id: Id


class ParticipantMute(ClientMessage, tag="participant.mute"):
    participant_id: uuid.UUID
    minutes: Annotated[int, Meta(ge=0, le=24 * 60)] = 10
    """0 lifts the mute."""


class ParticipantBan(ClientMessage, tag="participant.ban"):
    participant_id: uuid.UUID


class ChatSlowMode(ClientMessage, tag="chat.slow_mode"):
    seconds: Annotated[int, Meta(ge=0, le=600)]


class ChatFilter(ClientMessage, tag="chat.filter"):
    words: Annotated[list[FilterWord], Meta(max_length=200)]


class QaAsk(ClientMessage, tag="qa.ask"):
    text: QuestionText
    anonymous: bool = False


class QaUpvote(ClientMessage, tag="qa.upvote"):
    question_id: Id


class QaMark(ClientMessage, tag="qa.mark"):
    question_id: Id
    status: Literal["open", "answered", "highlighted", "hidden"]


class PollCreate(ClientMessage, tag="poll.create"):
    question: Annotated[str, Meta(min_length=1, max_length=300)]
    options: Annotated[list[PollOption], Meta(min_length=2, max_length=10)]
    multiple: bool = False
    results: Literal["everyone", "moderators"] = "everyone"


class PollOpen(ClientMessage, tag="poll.open"):
    poll_id: Id


class PollClose(ClientMessage, tag="poll.close"):
    poll_id: Id


class PollVote(ClientMessage, tag="poll.vote"):
    poll_id: Id
    choices: Annotated[list[Annotated[int, Meta(ge=0, le=9)]], Meta(min_length=1, max_length=10)]


class CtaPush(ClientMessage, tag="cta.push"):
    cta_id: Id


class CtaWithdraw(ClientMessage, tag="cta.withdraw"):
    cta_id: Id


class CtaImpression(ClientMessage, tag="cta.impression"):
    cta_id: Id
    mode: Literal["live", "replay"] = "live"


class CtaClick(ClientMessage, tag="cta.click"):
    cta_id: Id
    mode: Literal["live", "replay"] = "live"


class CtaSubmit(ClientMessage, tag="cta.submit"):
    """The "request a demo / contact" form of a CTA; ``consent`` is the participant's explicit yes."""

    cta_id: Id
    fields: Annotated[dict[Annotated[str, Meta(max_length=40)], Annotated[str, Meta(max_length=500)]], Meta(max_length=10)] = msgspec.field(default_factory=dict)
    consent: bool = False
    mode: Literal["live", "replay"] = "live"


class RatingSubmit(ClientMessage, tag="rating.submit"):
    stars: Annotated[int, Meta(ge=1, le=5)]
    comment: Annotated[str, Meta(max_length=1000)] = ""


class RatingRemove(ClientMessage, tag="rating.remove"):
    rating_id: Id


class HelpAsk(ClientMessage, tag="help.ask"):
    text: Annotated[str, Meta(min_length=2, max_length=300)]


class Heartbeat(ClientMessage, tag="heartbeat"):
    """Player state, every ~15 s (audience data: see billing/)."""

    playing: bool
    visible: bool
    mode: Literal["live", "replay"]
    position: Annotated[float, Meta(ge=0, le=24 * 3600)] = 0.0


# Webcam rooms: the stage and WebRTC signaling (rooms/webcam/) -------------------
StageLayout = Literal["auto", "speaker_slide", "slide", "screen_pip"]
"""``auto``: grid of the 1-4 speakers on stage; ``speaker_slide``: the content with the
speakers in a column; ``slide``: the content alone; ``screen_pip``: the content (a
shared screen) full frame with the speakers as picture-in-picture."""
MAX_SDP_CHARS = 14_000
"""Longest SDP accepted (characters); an offer of one audio and one video section is 3-8 kB."""


class StageJoin(ClientMessage, tag="stage.join"):
    """Go on stage: a speaker for themselves; a moderator may name someone backstage."""

    participant_id: uuid.UUID | None = None


class StageLeave(ClientMessage, tag="stage.leave"):
    """Go back backstage: a speaker for themselves; a moderator may name anyone on stage."""

    participant_id: uuid.UUID | None = None


class StageLayoutSet(ClientMessage, tag="stage.layout"):
    layout: StageLayout


class StageSpotlight(ClientMessage, tag="stage.spotlight"):
    """Spotlight one speaker on stage (bigger tile); ``None`` clears it."""

    participant_id: uuid.UUID | None = None


class RtcOffer(ClientMessage, tag="rtc.offer"):
    """A speaker's or moderator's SDP offer (camera + microphone, receiving the program
    and the mix). The ``ack`` carries ``answer: {"type": "answer", "sdp": ...}`` (the
    server gathers its ICE candidates before answering) and ``stage`` (the stage state)."""

    sdp: Annotated[str, Meta(min_length=10, max_length=MAX_SDP_CHARS)]


class RtcIce(ClientMessage, tag="rtc.ice"):
    """A trickled ICE candidate of the client (optional: an offer may carry them all);
    an empty ``candidate`` marks the end of candidates."""

    candidate: Annotated[str, Meta(max_length=500)]
    sdp_mid: Annotated[str, Meta(max_length=32)] | None = None
    sdp_mline_index: Annotated[int, Meta(ge=0, le=16)] | None = None


class RtcHangup(ClientMessage, tag="rtc.hangup"):
    """Leave the webcam room (the peer connection closes; off stage)."""



# Webcam rooms: shared content in the program (rooms/webcam/content_commands.py) ---
PageIndex = Annotated[int, Meta(ge=0, le=99)]
"""A page of a PDF or an image of a set, 0-based (R-ROOM-1: 100 pages, 19 images at most)."""
ClipPosition = Annotated[float, Meta(ge=0, le=4 * 3600)]
"""A position in a clip, seconds from its start."""


class ContentShow(ClientMessage, tag="content.show"):
    """Show an uploaded item in the program: page/image ``index`` of a PDF or an image
    set; a clip is shown paused at ``index`` 0 (then ``clip.play``)."""

    item_id: Id
    index: PageIndex = 0


class ContentNext(ClientMessage, tag="content.next"):
    """Next page/image of the item shown."""


class ContentPrev(ClientMessage, tag="content.prev"):
    """Previous page/image of the item shown."""


class ContentClear(ClientMessage, tag="content.clear"):
    """Show no content."""


class ClipPlay(ClientMessage, tag="clip.play"):
    """Play the clip shown, from ``position_s`` or from where it is."""

    position_s: ClipPosition | None = None


class ClipPause(ClientMessage, tag="clip.pause"):
    pass


class ClipSeek(ClientMessage, tag="clip.seek"):
    position_s: ClipPosition


CONTENT_MESSAGES: tuple[type[ClientMessage], ...] = (
    ContentShow, ContentNext, ContentPrev, ContentClear, ClipPlay, ClipPause, ClipSeek)
"""Only speakers and moderators of a webcam room may send these (viewers are refused)."""


AnyClientMessage = (
    Hello | Ping | ChatSend | ChatDelete | ParticipantMute | ParticipantBan | ChatSlowMode | ChatFilter
    | QaAsk | QaUpvote | QaMark | PollCreate | PollOpen | PollClose | PollVote
    | CtaPush | CtaWithdraw | CtaImpression | CtaClick | CtaSubmit
    | RatingSubmit | RatingRemove | HelpAsk | Heartbeat
    | StageJoin | StageLeave | StageLayoutSet | StageSpotlight | RtcOffer | RtcIce | RtcHangup
    | ContentShow | ContentNext | ContentPrev | ContentClear | ClipPlay | ClipPause | ClipSeek
)

MODERATOR_ONLY: frozenset[type[ClientMessage]] = frozenset({
    ChatDelete, ParticipantMute, ParticipantBan, ChatSlowMode, ChatFilter, QaMark,
    PollCreate, PollOpen, PollClose, CtaPush, CtaWithdraw, RatingRemove,
    StageLayoutSet, StageSpotlight,
})
"""Messages only moderators (and organizers, admins) may send."""

_decoder = msgspec.json.Decoder(AnyClientMessage)
_encoder = msgspec.json.Encoder()


class ProtocolError(ValueError):
    """A client frame that is not a valid message; ``code`` is sent back."""

    def __init__(self, code: str, message: str, ref: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.ref = ref


def decode_client(frame: str | bytes) -> ClientMessage:
    """Parse and validate one client frame, or raise :class:`ProtocolError`."""
    raw = frame.encode() if isinstance(frame, str) else frame
    if len(raw) > MAX_FRAME_BYTES:
        raise ProtocolError("too_large", f"messages are limited to {MAX_FRAME_BYTES} bytes")
    try:
        message: ClientMessage = _decoder.decode(raw)
    except msgspec.ValidationError as exc:
        raise ProtocolError("invalid", str(exc)[:300], _ref_of(raw)) from None
    except msgspec.DecodeError:
        raise ProtocolError("malformed", "not a JSON message") from None
    return message


def _ref_of(raw: bytes) -> int | None:
    try:
        obj = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return None
    ref = obj.get("ref") if isinstance(obj, dict) else None
    return ref if isinstance(ref, int) and 0 <= ref <= 2**31 else None


def encode(message: dict[str, Any]) -> bytes:
    return _encoder.encode(message)


def error(code: str, message: str, ref: int | None = None) -> bytes:
    return encode({"type": "error", "ref": ref, "code": code, "message": message})


def ack(ref: int | None, event_id: int | None = None, **extra: Any) -> bytes:
    return encode({"type": "ack", "ref": ref, "event_id": event_id, **extra})
