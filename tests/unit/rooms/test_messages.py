"""The room protocol: strict decoding, limits, and fuzzing (only ProtocolError may escape)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rooms import messages as m
from rooms.events import RoomEvent, batch_frame
from rooms.helpbot import FaqEntry, best_answer, normalise
from rooms.limits import ABUSE_ERRORS, Limiter, TokenBucket


def test_valid_messages_decode() -> None:
    msg = m.decode_client('{"type":"poll.vote","poll_id":3,"choices":[0,2],"ref":9}')
    assert isinstance(msg, m.PollVote) and msg.choices == [0, 2] and msg.ref == 9
    assert isinstance(m.decode_client(b'{"type":"hello","last_event_id":12}'), m.Hello)


@pytest.mark.parametrize(("frame", "code"), [
    ('{"type":"chat.send","text":"' + "a" * 501 + '"}', "invalid"),
    ('{"type":"chat.send","text":"hi","admin":true}', "invalid"),
    ('{"type":"qa.mark","question_id":1,"status":"deleted"}', "invalid"),
    ('{"type":"rating.submit","stars":6}', "invalid"),
    ('{"type":"poll.create","question":"q","options":["only one"]}', "invalid"),
    ('{"type":"chat.send","text":"x","ref":-1}', "invalid"),
    ("\xff\xfe", "malformed"),
    ("x" * (m.MAX_FRAME_BYTES + 1), "too_large"),
])
def test_bad_frames(frame: str, code: str) -> None:
    with pytest.raises(m.ProtocolError) as info:
        m.decode_client(frame)
    assert info.value.code == code


def test_ref_is_echoed_on_invalid() -> None:
    with pytest.raises(m.ProtocolError) as info:
        m.decode_client('{"type":"chat.send","ref":42}')
    assert info.value.ref == 42


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.binary(max_size=300), st.text(max_size=300),
                 st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                              lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
                                  st.sampled_from(["type", "text", "ref", "poll_id", "choices", "v", "fields", "x"]),
                                  inner, max_size=5), max_leaves=15).map(json.dumps)))
def test_fuzz_only_protocol_errors(frame: str | bytes) -> None:
    try:
        m.decode_client(frame)
    except m.ProtocolError:
        pass


def test_event_broker_roundtrip_and_batch() -> None:
    import uuid

    wid = uuid.uuid4()
    event = RoomEvent(wid, 7, "chat.message", "p:abc", b'{"id":7,"data":{"text":"a\\nb"}}')
    assert RoomEvent.from_broker(wid, event.to_broker()) == event
    frame = json.loads(batch_frame([event.wire, b'{"id":8}']))
    assert frame == {"type": "events", "events": [{"id": 7, "data": {"text": "a\nb"}}, {"id": 8}]}


def test_token_bucket_and_abuse() -> None:
    bucket = TokenBucket(rate=1.0, burst=2.0, stamp=0.0)
    assert bucket.take(0.0) and bucket.take(0.0) and not bucket.take(0.0)
    assert bucket.take(1.0) and not bucket.take(1.5)
    limiter = Limiter()
    assert not any(limiter.note_error(now=float(i) * 0.1) for i in range(ABUSE_ERRORS - 1))
    assert limiter.note_error(now=ABUSE_ERRORS * 0.1)
    slow = Limiter()
    assert not any(slow.note_error(now=float(i) * 11) for i in range(ABUSE_ERRORS * 2))  # spread out: never


def test_helpbot_scoring() -> None:
    faq = [FaqEntry(1, ("Où est le replay ?", "replay link"), "Sur cette page."),
           FaqEntry(2, ("How do I turn on subtitles?",), "Click CC.")]
    assert normalise("Où est le REPLAY ?!") == "ou est le replay"
    match = best_answer("ou est le replay", faq)
    assert match is not None and match.entry.id == 1 and match.score == 100
    assert best_answer("subtitles turn on how", faq).entry.id == 2  # type: ignore[union-attr]
    assert best_answer("Can I bring my dog?", faq) is None
    assert best_answer("", faq) is None
