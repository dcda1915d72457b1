"""The RTMP listener against real publishers: the ffmpeg command line (H.264 + AAC) and
PyAV's FFmpeg (enhanced RTMP HEVC), plus hostile raw TCP clients.

Every process is started with a timeout and killed in ``finally``; every
wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import struct
import sys
from collections.abc import AsyncIterator

import av
import pytest

from ingest import amf0
from ingest.rtmp_listener import RTMPListener
from player.media import AccessUnit, AudioConfig, MediaSink, TrackConfig, VideoConfig
from tests.unit.ingest.rtmp_client import ServerOutput, c0c1, publish_preamble
from tests.unit.ingest.rtmp_client import commands as rtmp_commands
from tests.unit.ingest.rtmp_client import media as rtmp_media

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="the ffmpeg command line is needed"),
]

GOOD_KEY = "good"
PROCESS_TIMEOUT = 40.0


class CollectingSink:
    """A MediaSink that keeps everything it gets."""

    def __init__(self, key: str, on_gone: dict[str, CollectingSink]) -> None:
        self.key = key
        self.configs: list[TrackConfig] = []
        self.units: list[AccessUnit] = []
        self.ended = 0
        self.clean: bool | None = None
        self._live = on_gone

    def on_config(self, config: TrackConfig) -> None:
        assert self.ended == 0
        self.configs.append(config)

    def on_access_unit(self, unit: AccessUnit) -> None:
        assert self.ended == 0
        assert any(c.kind == unit.kind for c in self.configs), "config before first unit"
        self.units.append(unit)

    def on_end(self, clean: bool = False) -> None:
        self.ended += 1
        self.clean = clean
        if self._live.get(self.key) is self:
            del self._live[self.key]

    def video(self) -> list[AccessUnit]:
        return [u for u in self.units if u.kind == "video"]

    def audio(self) -> list[AccessUnit]:
        return [u for u in self.units if u.kind == "audio"]


class Authority:
    """The rules the server applies: known key, one live publisher per key."""

    def __init__(self) -> None:
        self.live: dict[str, CollectingSink] = {}
        self.created: list[CollectingSink] = []
        self.refusals: list[tuple[str, str]] = []

    async def authorize(self, app: str, stream_key: str) -> MediaSink | str:
        if app != "live" or stream_key not in (GOOD_KEY, "other"):
            self.refusals.append((stream_key, "unknown stream key"))
            return "unknown stream key"
        if stream_key in self.live:
            self.refusals.append((stream_key, "a publisher is already live"))
            return "a publisher is already live on this stream key"
        sink = CollectingSink(stream_key, self.live)
        self.live[stream_key] = sink
        self.created.append(sink)
        return sink


@pytest.fixture
async def authority() -> Authority:
    return Authority()


@pytest.fixture
async def listener(authority: Authority) -> AsyncIterator[RTMPListener]:
    server = RTMPListener(
        authority.authorize, "127.0.0.1", 0, handshake_timeout=1.5, publish_timeout=3.0, idle_timeout=3.0
    )
    await server.start()
    try:
        yield server
    finally:
        await server.close()


def ffmpeg_args(port: int, key: str, seconds: float = 4, realtime: bool = False) -> list[str]:
    return [
        "ffmpeg",
        "-hide_banner",
        "-nostdin",
        "-loglevel",
        "error",
        *(["-re"] if realtime else []),
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=640x360:rate=30",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=44100",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-tune",
        "zerolatency",
        "-g",
        "30",
        "-c:a",
        "aac",
        "-t",
        str(seconds),
        "-f",
        "flv",
        f"rtmp://127.0.0.1:{port}/live/{key}",
    ]


async def run(args: list[str], timeout: float = PROCESS_TIMEOUT) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        *args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    try:
        _, stderr = await asyncio.wait_for(process.communicate(), timeout)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, stderr.decode(errors="replace")


async def wait_for(condition: object, timeout: float = 10.0) -> None:
    """Poll ``condition()`` every 20 ms, at most ``timeout`` seconds."""
    assert callable(condition)
    for _ in range(int(timeout / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met in time")


def assert_complete_h264_aac_publish(sink: CollectingSink) -> None:
    video_configs = [c for c in sink.configs if isinstance(c, VideoConfig)]
    audio_configs = [c for c in sink.configs if isinstance(c, AudioConfig)]
    assert len(video_configs) == 1 and len(audio_configs) == 1
    video_config, audio_config = video_configs[0], audio_configs[0]
    assert (video_config.codec, video_config.width, video_config.height) == ("h264", 640, 360)
    assert (audio_config.codec, audio_config.sample_rate, audio_config.channels) == ("aac", 44100, 1)

    video = sink.video()
    assert 115 <= len(video) <= 121
    dts = [u.dts for u in video]
    assert dts == sorted(dts)
    assert all(u.pts >= u.dts for u in video)
    assert dts[-1] - dts[0] == pytest.approx(119 * 3000, abs=2 * 90)  # 30 fps in 90 kHz ticks, ms rounding
    keyframes = [i for i, u in enumerate(video) if u.keyframe]
    assert keyframes == list(range(0, len(video), 30))

    audio = sink.audio()
    assert len(audio) >= 160  # 4 s of 1024-sample frames at 44.1 kHz is about 172
    assert all(u.keyframe and u.pts == u.dts for u in audio)

    decoder = av.CodecContext.create("h264", "r")
    decoder.extradata = video_config.extradata
    frames = []
    for unit in video:
        frames += decoder.decode(av.Packet(unit.data))
    frames += decoder.decode(None)
    assert len(frames) == len(video)
    assert {(f.width, f.height) for f in frames} == {(640, 360)}

    audio_decoder = av.CodecContext.create("aac", "r")
    audio_decoder.extradata = audio_config.extradata
    decoded = []
    for unit in audio[:20]:
        decoded += audio_decoder.decode(av.Packet(unit.data))
    assert decoded and decoded[0].sample_rate == 44100


async def test_ffmpeg_publishes_h264_and_aac(listener: RTMPListener, authority: Authority) -> None:
    code, stderr = await run(ffmpeg_args(listener.port, GOOD_KEY))
    assert code == 0, stderr
    await wait_for(lambda: authority.created and authority.created[0].ended)
    (sink,) = authority.created
    assert sink.ended == 1
    assert sink.clean is True, "ffmpeg ending normally unpublishes (FCUnpublish/deleteStream): a clean end"
    assert_complete_h264_aac_publish(sink)


async def test_wrong_key_is_refused(
    listener: RTMPListener, authority: Authority, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ingest.rtmp")
    code, stderr = await run(ffmpeg_args(listener.port, "not-a-key", seconds=1))
    assert code != 0
    assert "unknown stream key" in stderr  # ffmpeg prints the onStatus description
    assert authority.created == []
    assert authority.refusals == [("not-a-key", "unknown stream key")]
    assert any("publish refused" in r.getMessage() and "unknown stream key" in r.getMessage() for r in caplog.records)
    assert not any("not-a-key" in r.getMessage() for r in caplog.records), "stream keys are masked in logs"


async def test_second_publisher_on_a_live_key_is_refused(listener: RTMPListener, authority: Authority) -> None:
    first = asyncio.create_task(run(ffmpeg_args(listener.port, GOOD_KEY, seconds=4, realtime=True)))
    try:
        await wait_for(lambda: authority.created and authority.created[0].video())
        code, stderr = await run(ffmpeg_args(listener.port, GOOD_KEY, seconds=1))
        assert code != 0
        assert "already live" in stderr
        assert len(authority.created) == 1
        assert authority.created[0].ended == 0, "the live publisher is untouched"
        first_code, first_stderr = await first
    finally:
        await finish(first)
    assert first_code == 0, first_stderr
    await wait_for(lambda: authority.created[0].ended)
    assert_complete_h264_aac_publish(authority.created[0])


async def raw_client(port: int, payload: bytes, *, wait: float = 8.0) -> tuple[bytes, bool]:
    """Send ``payload``, then read until the server closes (or ``wait`` s pass).

    Returns what was read and whether the server closed the connection
    (end of stream or reset) before our own ``wait`` ran out.
    """
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    received = b""
    closed_by_server = False
    try:
        writer.write(payload)
        await writer.drain()
        async with asyncio.timeout(wait):
            while chunk := await reader.read(65536):
                received += chunk
            closed_by_server = True
    except ConnectionResetError:
        closed_by_server = True
    except TimeoutError:
        closed_by_server = False
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    return received, closed_by_server


async def finish(task: asyncio.Task[tuple[int, str]]) -> None:
    """Cancel a publisher task if still running and wait for its process cleanup."""
    if not task.done():
        task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def handshake_and_connect() -> bytes:
    c0c1 = b"\x03" + bytes(8) + bytes(range(256)) * 6
    connect = amf0.encode("connect", 1, {"app": "live", "tcUrl": "rtmp://127.0.0.1/live"})
    header = b"\x03" + bytes(3) + len(connect).to_bytes(3, "big") + b"\x14" + bytes(4)
    return c0c1[:1537] + bytes(1536) + header + connect


def chunk_size_message(size: int) -> bytes:
    return b"\x02" + bytes(3) + (4).to_bytes(3, "big") + b"\x01" + bytes(4) + struct.pack(">I", size)


async def test_hostile_clients_are_dropped_while_a_good_publish_completes(
    listener: RTMPListener, authority: Authority, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ingest.rtmp")
    good = asyncio.create_task(run(ffmpeg_args(listener.port, GOOD_KEY, seconds=4, realtime=True)))
    try:
        await wait_for(lambda: authority.created and authority.created[0].video())
        oversized_header = b"\x04" + bytes(3) + b"\xff\xff\xff" + b"\x09" + b"\x01" + bytes(3)  # 16 MiB - 1 video
        garbage, truncated, absurd, oversized, idle = await asyncio.gather(
            raw_client(listener.port, b"GET / HTTP/1.1\r\nHost: example\r\n\r\n"),
            raw_client(listener.port, b"\x03" + bytes(700)),  # C0 + part of C1, then silence
            raw_client(listener.port, handshake_and_connect() + chunk_size_message(0)),
            raw_client(listener.port, handshake_and_connect() + oversized_header),
            raw_client(listener.port, handshake_and_connect()),  # connects, never publishes
        )
        assert all(closed for _, closed in (garbage, truncated, absurd, oversized, idle)), "every one is dropped"
        assert garbage[0] == b""  # no reply to a non-RTMP client
        assert truncated[0] == b""  # no S0 before C1 is complete
        assert b"NetConnection.Connect.Success" in idle[0]  # connected fine, then dropped for not publishing
        assert authority.created[0].ended == 0, "the live publisher is untouched"
        code, stderr = await good
    finally:
        await finish(good)
    assert code == 0, stderr
    await wait_for(lambda: authority.created[0].ended)
    assert len(authority.created) == 1
    assert_complete_h264_aac_publish(authority.created[0])
    messages = [r.getMessage() for r in caplog.records]
    for expected in (
        "unsupported RTMP version byte 0x47",
        "handshake not completed within 1.5 s",
        "absurd chunk size 0",
        "exceeds the 8388608-byte limit",
        "no publish accepted within 3 s",
    ):
        assert any(expected in m for m in messages), (expected, messages)


HEVC_PUBLISHER = r"""
import sys, av
with av.open(sys.argv[1], "w", format="flv") as out:
    stream = out.add_stream("libx265", rate=30)
    stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
    stream.options = {"x265-params": "log-level=error:keyint=15"}
    for i in range(30):
        frame = av.VideoFrame(320, 240, "yuv420p")
        for k, plane in enumerate(frame.planes):
            row = bytes(((x + i * 5 + k * 40) & 0xFF) for x in range(plane.line_size))
            plane.update(row * (plane.buffer_size // plane.line_size))
        frame.pts = i
        for packet in stream.encode(frame):
            out.mux(packet)
    for packet in stream.encode():
        out.mux(packet)
"""


@pytest.mark.skipif("libx265" not in av.codecs_available, reason="PyAV's FFmpeg has no libx265")
async def test_enhanced_rtmp_hevc_from_pyav_ffmpeg(listener: RTMPListener, authority: Authority) -> None:
    code, stderr = await run([sys.executable, "-c", HEVC_PUBLISHER, f"rtmp://127.0.0.1:{listener.port}/live/other"])
    assert code == 0, stderr
    await wait_for(lambda: authority.created and authority.created[0].ended)
    (sink,) = authority.created
    (config,) = sink.configs
    assert isinstance(config, VideoConfig)
    assert (config.codec, config.width, config.height) == ("hevc", 320, 240)
    video = sink.video()
    assert len(video) == 30
    assert video[0].keyframe
    # keyint=15 at 30 fps: random access points every 500 ms of presentation time (decode order differs).
    assert [u.pts - video[0].pts for u in video if u.keyframe] == [0, 45_000]
    decoder = av.CodecContext.create("hevc", "r")
    decoder.extradata = config.extradata
    frames = []
    for unit in video:
        frames += decoder.decode(av.Packet(unit.data))
    frames += decoder.decode(None)
    assert len(frames) == 30


async def test_close_ends_a_live_publisher_once(authority: Authority) -> None:
    server = RTMPListener(authority.authorize, "127.0.0.1", 0)
    await server.start()
    publisher = asyncio.create_task(run(ffmpeg_args(server.port, GOOD_KEY, seconds=10, realtime=True)))
    try:
        await wait_for(lambda: authority.created and authority.created[0].video())
        await server.close()
        sink = authority.created[0]
        assert sink.ended == 1 and sink.clean is False, "a server shutdown is not the encoder's clean end"
        assert server.connection_count == 0
        units_at_close = len(sink.units)
        code, stderr = await publisher
        assert len(sink.units) == units_at_close  # nothing is delivered after on_end
        assert code != 0, stderr  # ffmpeg saw the server go away (instead of streaming on)
    finally:
        await server.close()
        await finish(publisher)


# --------------------------------------------------------------------------- scripted raw publishers


class ScriptedPublisher:
    """A hand-driven RTMP publisher over real TCP (bytes from tests.unit.ingest.rtmp_client)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.output = ServerOutput()
        self.commands: list[list[amf0.AMFValue]] = []

    @classmethod
    async def open(cls, port: int) -> ScriptedPublisher:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def read_until_status(self, timeout: float = 5.0) -> dict[str, amf0.AMFValue]:
        """Read replies until an onStatus arrives; return its information object."""
        async with asyncio.timeout(timeout):
            while True:
                chunk = await self.reader.read(65536)
                assert chunk, "server closed before onStatus"
                self.commands += rtmp_commands(self.output.feed(chunk))
                for values in self.commands:
                    if values[0] == "onStatus" and isinstance(values[3], dict):
                        return values[3]

    async def read_until_closed(self, timeout: float = 5.0) -> bool:
        try:
            async with asyncio.timeout(timeout):
                while await self.reader.read(65536):
                    pass
        except ConnectionResetError:
            pass
        return True

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


async def test_authorize_failure_refuses_with_internal_error(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="ingest.rtmp")

    async def broken_authorize(app: str, stream_key: str) -> MediaSink | str:
        raise RuntimeError("database down")

    async with RTMPListener(broken_authorize, "127.0.0.1", 0) as server:
        client = await ScriptedPublisher.open(server.port)
        try:
            await client.send(c0c1() + bytes(1536) + publish_preamble(GOOD_KEY))
            status = await client.read_until_status()
            assert (status["level"], status["code"], status["description"]) == (
                "error",
                "NetStream.Publish.BadName",
                "internal error",
            )
            assert await client.read_until_closed()
        finally:
            await client.close()
    assert any("authorize() failed" in r.getMessage() for r in caplog.records)


async def test_failing_sink_closes_only_its_connection(authority: Authority) -> None:
    class FailingSink(CollectingSink):
        def on_access_unit(self, unit: AccessUnit) -> None:
            raise RuntimeError("packager broke")

    failing = FailingSink("bad-sink", {})

    async def authorize(app: str, stream_key: str) -> MediaSink | str:
        if stream_key == "bad-sink":
            return failing
        return await authority.authorize(app, stream_key)

    async with RTMPListener(authorize, "127.0.0.1", 0) as server:
        client = await ScriptedPublisher.open(server.port)
        good = asyncio.create_task(run(ffmpeg_args(server.port, GOOD_KEY, seconds=2)))
        try:
            await client.send(c0c1() + bytes(1536) + publish_preamble("bad-sink"))
            status = await client.read_until_status()
            assert status["code"] == "NetStream.Publish.Start"
            await client.send(rtmp_media(8, b"\xaf\x00\x12\x10", 0) + rtmp_media(8, b"\xaf\x01\x21\x00", 23))
            assert await client.read_until_closed()
            assert failing.ended == 1 and len(failing.configs) == 1
            code, stderr = await good
            assert code == 0, stderr
        finally:
            await client.close()
            await finish(good)
    await wait_for(lambda: authority.created and authority.created[0].ended)
    assert len(authority.created[0].video()) == 60


async def test_connection_limit(authority: Authority, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="ingest.rtmp")
    async with RTMPListener(authority.authorize, "127.0.0.1", 0, max_connections=1) as server:
        first = await ScriptedPublisher.open(server.port)
        try:
            await first.send(c0c1())
            await wait_for(lambda: server.connection_count == 1)
            second, closed = await raw_client(server.port, c0c1())
            assert closed and second == b""
        finally:
            await first.close()
    assert any("connections already open" in r.getMessage() for r in caplog.records)


@contextlib.asynccontextmanager
async def live_publish(sink: CollectingSink) -> AsyncIterator[tuple[RTMPListener, ScriptedPublisher]]:
    """A listener (READ_COALESCE 0.1 s) whose publish "good" is live into ``sink``, its AAC config sent."""

    async def authorize(app: str, stream_key: str) -> MediaSink | str:
        return sink

    server = RTMPListener(authorize, "127.0.0.1", 0, read_coalesce=0.1)
    await server.start()
    client = await ScriptedPublisher.open(server.port)
    try:
        await client.send(c0c1() + bytes(1536) + publish_preamble("good"))
        assert (await client.read_until_status())["code"] == "NetStream.Publish.Start"
        await client.send(rtmp_media(8, b"\xaf\x00\x12\x10", 0))  # AAC config
        await wait_for(lambda: sink.configs)
        yield server, client
    finally:
        await client.close()
        await server.close()


async def test_live_reads_are_coalesced_and_close_reads_what_was_sent() -> None:
    """A live publish is read in bigger, fewer reads (READ_COALESCE); no unit is lost to it, even at close."""
    sink = CollectingSink("good", {})
    writes = 20
    async with live_publish(sink) as (server, client):
        reads_before = server._reads
        for i in range(writes):  # one write per unit, 5 ms apart: about 100 ms of media
            await client.send(rtmp_media(8, b"\xaf\x01\x21\x00" + bytes([i]), 23 * (i + 1)))
            await asyncio.sleep(0.005)
        # the last writes sit in the socket during a coalescing pause: close() must read them first
        await server.close()
    assert [u.data[-1] for u in sink.audio()] == list(range(writes)), "every unit, in order"
    assert sink.ended == 1
    assert server._reads - reads_before < writes, "one read per encoder write: coalescing did not happen"


class PartTimedSink(CollectingSink):
    """A sink whose packager says when its next part is due (player.media.PartClock)."""

    def __init__(self, name: str, seconds: float | None) -> None:
        super().__init__(name, {})
        self.seconds = seconds
        self.asked = 0

    def seconds_to_next_part(self) -> float | None:
        self.asked += 1
        return self.seconds


@pytest.mark.parametrize("seconds", [0.5, None])
async def test_live_reads_are_timed_by_the_packagers_next_part(seconds: float | None) -> None:
    """With a part clock the listener pauses until the next part is due (here 0.5 s), not
    READ_COALESCE; a clock that cannot tell (None) falls back to READ_COALESCE. No unit lost."""
    sink = PartTimedSink("good", seconds)
    writes = 60
    async with live_publish(sink) as (server, client):
        reads_before = server._reads
        started = asyncio.get_running_loop().time()
        for i in range(writes):  # one write per unit, 20 ms apart: 1.2 s
            await client.send(rtmp_media(8, b"\xaf\x01\x21\x00" + bytes([i]), 23 * (i + 1)))
            await asyncio.sleep(0.02)
        await wait_for(lambda: len(sink.audio()) == writes, timeout=5)
        elapsed = asyncio.get_running_loop().time() - started
        reads = server._reads - reads_before
    assert [u.data[-1] for u in sink.audio()] == list(range(writes)), "every unit, in order"
    assert sink.asked > 0
    pause = 0.1 if seconds is None else seconds
    # a pause of `pause` after each read: at most one read per pause (a busy machine only makes fewer)
    assert reads <= elapsed / pause + 2, (reads, elapsed)
    if seconds is not None:
        assert reads < writes / 10
