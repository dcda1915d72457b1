"""ingest.srt.streamid (stream id -> key) and the libsrt loader's failure mode."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest.srt import SRTListener, SRTUnavailable, libsrt
from ingest.srt.streamid import (
    REJ_BAD_MODE,
    REJ_BAD_REQUEST,
    REJ_NOTSUP_MEDIA,
    REJ_UNIMPLEMENTED,
    StreamIdError,
    parse_stream_id,
)


@pytest.mark.parametrize(
    ("stream_id", "key"),
    [
        ("abc123", "abc123"),
        (b"abc123", "abc123"),
        ("#!::r=abc123,m=publish", "abc123"),
        ("#!::m=publish,u=studio,r=abc123", "abc123"),
        ("#!::r=abc123", "abc123"),  # no mode: publishing is all we do
        ("#!::r=abc123,t=stream,m=publish,companyname_x=1", "abc123"),
        ("live/abc-123_X.y", "live/abc-123_X.y"),
    ],
)
def test_accepted_stream_ids(stream_id: str | bytes, key: str) -> None:
    assert parse_stream_id(stream_id) == key


@pytest.mark.parametrize(
    ("stream_id", "code"),
    [
        ("", REJ_BAD_REQUEST),
        ("a b", REJ_BAD_REQUEST),
        ("a,b", REJ_BAD_REQUEST),
        ("k" * 256, REJ_BAD_REQUEST),
        ("x" * 513, REJ_BAD_REQUEST),
        (b"\xff\xfe", REJ_BAD_REQUEST),
        ("#!::r=abc,m=request", REJ_BAD_MODE),
        ("#!::r=abc,m=bidirectional", REJ_BAD_MODE),
        ("#!::r=abc,m=sideways", REJ_BAD_REQUEST),
        ("#!::r=abc,t=file", REJ_NOTSUP_MEDIA),
        ("#!::m=publish", REJ_BAD_REQUEST),
        ("#!::r=,m=publish", REJ_BAD_REQUEST),
        ("#!::r=a,r=b", REJ_BAD_REQUEST),
        ("#!::r", REJ_BAD_REQUEST),
        ("#!:{r=abc}", REJ_UNIMPLEMENTED),
    ],
)
def test_refused_stream_ids(stream_id: str | bytes, code: int) -> None:
    with pytest.raises(StreamIdError) as info:
        parse_stream_id(stream_id)
    assert info.value.code == code


@given(st.one_of(st.binary(max_size=600), st.text(max_size=600)))
def test_only_stream_id_error_escapes(stream_id: str | bytes) -> None:
    try:
        key = parse_stream_id(stream_id)
    except StreamIdError as exc:
        assert 1000 <= exc.code < 2000
    else:
        assert 0 < len(key) <= 255 and key.isascii() and key.isprintable() and " " not in key


def test_missing_library_raises_srt_unavailable() -> None:
    with pytest.raises(SRTUnavailable, match="libsrt"):
        libsrt.load("/nonexistent/libsrt-missing.so.1")


async def test_listener_start_without_library_raises_srt_unavailable() -> None:
    async def authorize(key: str) -> str:
        return "unused"

    listener = SRTListener("127.0.0.1", 0, authorize, library="/nonexistent/libsrt-missing.so.1")
    with pytest.raises(SRTUnavailable):
        await listener.start()
    await listener.close()  # nothing started: a no-op


def test_listener_validates_its_options() -> None:
    async def authorize(key: str) -> str:
        return "unused"

    with pytest.raises(ValueError):
        SRTListener("127.0.0.1", 0, authorize, passphrase="short")
    with pytest.raises(ValueError):
        SRTListener("127.0.0.1", 0, authorize, pbkeylen=8)
    with pytest.raises(ValueError):
        SRTListener("127.0.0.1", 0, None)
