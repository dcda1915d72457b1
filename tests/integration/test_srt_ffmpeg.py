"""SRT ingest end to end: the ffmpeg command line publishes to SRTListener over loopback.

Covers: H.264 + AAC arriving decodable with the right size and cadence,
refusals during the handshake (wrong key, playback mode, passphrase), two
publishers at once, a flooding and a refused publisher next to a good one,
and closing the listener in the middle of a publish.
"""

from __future__ import annotations

import asyncio
import shutil

import pytest

from ingest.srt import SRTListener, libsrt
from player.media import MediaSink
from tests.integration.srt_helpers import (
    CollectingSink,
    exit_code,
    free_udp_port,
    publisher,
    wait_for,
)


def _srt_ready() -> str | None:
    if shutil.which("ffmpeg") is None:
        return "ffmpeg CLI needed"
    try:
        libsrt.load()
    except libsrt.SRTUnavailable as exc:
        return str(exc)
    return None


pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(120),
    pytest.mark.skipif(_srt_ready() is not None, reason=str(_srt_ready())),
]

PASSPHRASE = "correct-horse-battery"


class Keys:
    """Authorization backed by a set of valid keys; records every call."""

    def __init__(self, *valid: str) -> None:
        self.valid = set(valid)
        self.prechecked: list[str] = []
        self.authorized: list[str] = []
        self.sinks: dict[str, CollectingSink] = {}

    def precheck(self, key: str) -> str | None:
        self.prechecked.append(key)
        return None if key in self.valid else "unknown stream key"

    async def authorize(self, key: str) -> MediaSink | str:
        self.authorized.append(key)
        sink = self.sinks[key] = CollectingSink(key)
        return sink


async def start_listener(keys: Keys, **options: object) -> SRTListener:
    listener = SRTListener("127.0.0.1", free_udp_port(), keys.authorize, precheck=keys.precheck, **options)  # type: ignore[arg-type]
    await listener.start()
    return listener


def assert_intact(sink: CollectingSink, width: int, height: int) -> None:
    """3 s at 30 fps, GOP 30, AAC 48 kHz mono: all there, all decodable."""
    config = sink.video_config()
    assert (config.codec, config.width, config.height) == ("h264", width, height)
    video = sink.video()
    assert 88 <= len(video) <= 90
    keyframes = [i for i, u in enumerate(video) if u.keyframe]
    assert keyframes[0] == 0 and all(i % 30 == 0 for i in keyframes) and len(keyframes) >= 2
    assert all(b.dts > a.dts for a, b in zip(video, video[1:]))
    frames = sink.decoded_video()
    assert len(frames) == len(video)
    assert {(f.width, f.height) for f in frames} == {(width, height)}
    audio_config = sink.audio_config()
    assert (audio_config.sample_rate, audio_config.channels) == (48000, 1)
    assert len(sink.audio()) >= 130
    assert len(sink.decoded_audio()) >= len(sink.audio()) - 1
    assert sink.ended == 1 and sink.after_end == 0


async def test_ffmpeg_publishes_h264_aac_with_access_control_stream_id() -> None:
    keys = Keys("good-key")
    listener = await start_listener(keys)
    try:
        async with publisher(listener.port, "#!::r=good-key,m=publish") as proc:
            assert await exit_code(proc) == 0
        assert await wait_for(lambda: "good-key" in keys.sinks and keys.sinks["good-key"].ended == 1)
    finally:
        await listener.close()
    assert keys.prechecked == ["good-key"] and keys.authorized == ["good-key"]
    assert_intact(keys.sinks["good-key"], 320, 240)
    assert listener.connections == 0


async def test_wrong_key_is_refused_during_handshake() -> None:
    keys = Keys("good-key")
    listener = await start_listener(keys)
    try:
        async with publisher(listener.port, "bad-key") as proc:
            assert await exit_code(proc) != 0
        async with publisher(listener.port, "#!::r=good-key,m=request") as proc:  # playback: not served
            assert await exit_code(proc) != 0
    finally:
        await listener.close()
    assert keys.prechecked == ["bad-key"]  # m=request never reached the key check
    assert keys.authorized == []
    assert listener.refused_handshakes == 2


async def test_passphrase_must_match() -> None:
    keys = Keys("good-key")
    listener = await start_listener(keys, passphrase=PASSPHRASE)
    try:
        async with publisher(listener.port, "good-key", passphrase="not-the-passphrase") as proc:
            assert await exit_code(proc) != 0
        async with publisher(listener.port, "good-key") as proc:  # no encryption at all
            assert await exit_code(proc) != 0
        assert keys.authorized == []
        async with publisher(listener.port, "good-key", seconds=1, passphrase=PASSPHRASE) as proc:
            assert await exit_code(proc) == 0
        assert await wait_for(lambda: "good-key" in keys.sinks and keys.sinks["good-key"].ended == 1)
    finally:
        await listener.close()
    assert keys.authorized == ["good-key"]
    sink = keys.sinks["good-key"]
    assert len(sink.video()) >= 25 and len(sink.decoded_video()) == len(sink.video())


async def test_two_publishers_in_parallel_arrive_intact() -> None:
    keys = Keys("alpha", "beta")
    listener = await start_listener(keys)
    try:
        async with publisher(listener.port, "alpha") as one, publisher(listener.port, "beta", size="160x120") as two:
            assert await exit_code(one) == 0 and await exit_code(two) == 0
        assert await wait_for(lambda: all(k in keys.sinks and keys.sinks[k].ended for k in ("alpha", "beta")))
    finally:
        await listener.close()
    assert sorted(keys.authorized) == ["alpha", "beta"]
    assert_intact(keys.sinks["alpha"], 320, 240)
    assert_intact(keys.sinks["beta"], 160, 120)


async def test_flooding_and_refused_publishers_do_not_affect_a_good_one() -> None:
    keys = Keys("good", "flood")
    listener = await start_listener(keys, max_bitrate=4_000_000)
    try:
        async with (
            publisher(listener.port, "good") as good,
            publisher(listener.port, "flood", seconds=5, extra=("-muxrate", "12000000")),
            publisher(listener.port, "intruder") as intruder,
        ):
            assert await exit_code(intruder) != 0
            assert await wait_for(lambda: "flood" in keys.sinks and keys.sinks["flood"].ended == 1)
            assert await exit_code(good) == 0
        assert await wait_for(lambda: "good" in keys.sinks and keys.sinks["good"].ended == 1)
    finally:
        await listener.close()
    assert "intruder" in keys.prechecked and "intruder" not in keys.authorized
    # dropped once ~500 kB (4 Mbit) arrived within one window: about 10 of its 150 frames, 40 at worst
    assert len(keys.sinks["flood"].video()) < 60
    assert keys.sinks["flood"].ended == 1
    assert_intact(keys.sinks["good"], 320, 240)


async def test_close_during_publish_ends_cleanly() -> None:
    keys = Keys("live")
    listener = await start_listener(keys)
    async with publisher(listener.port, "live", seconds=20) as proc:
        try:
            assert await wait_for(lambda: "live" in keys.sinks and len(keys.sinks["live"].video()) >= 10)
        finally:
            await listener.close()
        sink = keys.sinks["live"]
        assert sink.ended == 1 and listener.connections == 0
        received = len(sink.units)
        await asyncio.sleep(0.3)
        assert len(sink.units) == received and sink.after_end == 0
        assert len(sink.decoded_video()) == len(sink.video())
        # the encoder sees its connection go away and stops on its own
        assert await exit_code(proc, timeout=20) != 0
    await listener.close()  # idempotent
    assert sink.ended == 1
