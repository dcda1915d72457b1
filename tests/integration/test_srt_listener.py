"""SRTListener against a libsrt caller driven by the test (cases ffmpeg cannot produce).

Rejection codes seen by the caller, idle and non-TS publishers, a refusal by
``authorize``, the per-connection queue bound and the connection limit.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ingest.mpegts import TSDemuxer
from ingest.srt import SRTListener, libsrt
from ingest.srt.libsrt import LibSRT, SRTError
from player.media import MediaSink
from tests.integration.srt_helpers import CollectingSink, free_udp_port, wait_for

try:
    LIB: LibSRT | None = libsrt.load()
except libsrt.SRTUnavailable:
    LIB = None

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(60),
    pytest.mark.skipif(LIB is None, reason="libsrt not installed"),
]


class Caller:
    """A blocking SRT caller (live mode) on the test's own libsrt binding."""

    def __init__(self, port: int, stream_id: str) -> None:
        assert LIB is not None
        self.lib = LIB
        self.port = port
        self.lib.startup()
        self.sock = self.lib.create_socket()
        self.lib.set_int(self.sock, libsrt.SRTO_TRANSTYPE, libsrt.SRTT_LIVE)
        self.lib.set_str(self.sock, libsrt.SRTO_STREAMID, stream_id)
        self.lib.set_int(self.sock, libsrt.SRTO_CONNTIMEO, 3000)

    def connect(self) -> None:
        self.lib.connect(self.sock, "127.0.0.1", self.port)

    def send(self, data: bytes) -> None:
        for i in range(0, len(data), 1316):
            self.lib.send(self.sock, data[i : i + 1316])

    def state(self) -> int:
        return self.lib.state(self.sock)

    def close(self) -> None:
        self.lib.close(self.sock)
        self.lib.cleanup()


@pytest.fixture
def callers() -> Iterator[list[Caller]]:
    made: list[Caller] = []
    yield made
    for caller in made:
        caller.close()


@pytest.fixture(scope="module")
def ts_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg CLI needed")
    path: Path = tmp_path_factory.mktemp("srt") / "a.ts"
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=30",
         "-t", "1", "-c:v", "libx264", "-preset", "ultrafast", "-g", "30", "-f", "mpegts", str(path)],
        check=True, timeout=60,
    )  # fmt: skip
    return path.read_bytes()


class Gate:
    """authorize() that records calls and can be held until released."""

    def __init__(self, answer: str | None = None, hold: bool = False) -> None:
        self.answer = answer
        self.calls: list[str] = []
        self.sinks: list[CollectingSink] = []
        self.released = asyncio.Event()
        if not hold:
            self.released.set()

    async def authorize(self, key: str) -> MediaSink | str:
        self.calls.append(key)
        await self.released.wait()
        if self.answer is not None:
            return self.answer
        sink = CollectingSink(key)
        self.sinks.append(sink)
        return sink


async def connect(callers: list[Caller], port: int, stream_id: str) -> Caller:
    caller = Caller(port, stream_id)
    callers.append(caller)
    await asyncio.to_thread(caller.connect)
    return caller


async def test_rejection_codes_reach_the_caller(callers: list[Caller]) -> None:
    gate = Gate()
    listener = SRTListener("127.0.0.1", 0, gate.authorize, precheck=lambda k: None if k == "ok" else "nope")
    await listener.start()
    try:
        for stream_id, code in (("nope", 1403), ("#!::r=ok,m=request", 1405), ("", 1400), ("a b", 1400)):
            with pytest.raises(SRTError) as info:
                await connect(callers, listener.port, stream_id)
            assert info.value.code == libsrt.SRT_ECONNREJ
            assert callers[-1].lib.reject_reason(callers[-1].sock) == code
    finally:
        await listener.close()
    assert gate.calls == [] and listener.refused_handshakes == 4


async def test_connection_limit(callers: list[Caller]) -> None:
    gate = Gate()
    listener = SRTListener("127.0.0.1", free_udp_port(), gate.authorize, max_connections=1)
    await listener.start()
    try:
        await connect(callers, listener.port, "first")
        assert await wait_for(lambda: listener.connections == 1)
        with pytest.raises(SRTError):
            await connect(callers, listener.port, "second")
        assert callers[-1].lib.reject_reason(callers[-1].sock) == 1402
    finally:
        await listener.close()
    assert gate.calls == ["first"]
    assert [s.ended for s in gate.sinks] == [1]


async def test_idle_publisher_is_dropped(callers: list[Caller]) -> None:
    gate = Gate()
    listener = SRTListener("127.0.0.1", 0, gate.authorize, idle_timeout=0.5)
    await listener.start()
    try:
        caller = await connect(callers, listener.port, "quiet")
        assert await wait_for(lambda: len(gate.sinks) == 1 and gate.sinks[0].ended == 1)
        assert await wait_for(lambda: caller.state() in (libsrt.SRTS_BROKEN, libsrt.SRTS_CLOSED, libsrt.SRTS_NONEXIST))
        assert listener.connections == 0
    finally:
        await listener.close()
    assert gate.sinks[0].units == [] and gate.sinks[0].ended == 1


async def test_non_ts_publisher_is_dropped_and_others_continue(callers: list[Caller], ts_bytes: bytes) -> None:
    gate = Gate()
    listener = SRTListener(
        "127.0.0.1", 0, gate.authorize, demuxer_factory=lambda: TSDemuxer(max_garbage=20_000)
    )
    await listener.start()
    try:
        good = await connect(callers, listener.port, "good")
        bad = await connect(callers, listener.port, "bad")
        rng = random.Random(1)
        garbage = bytes(rng.choice(range(0x48, 0x100)) for _ in range(40 * 1316))
        await asyncio.to_thread(bad.send, garbage)
        await asyncio.to_thread(good.send, ts_bytes)
        sinks = {s.name: s for s in gate.sinks}
        assert await wait_for(lambda: "bad" in sinks and sinks["bad"].ended == 1)
        assert await wait_for(lambda: len(sinks["good"].video()) >= 29)
        assert sinks["good"].ended == 0
    finally:
        await listener.close()
    assert sinks["bad"].units == []
    assert sinks["good"].ended == 1 and len(sinks["good"].decoded_video()) == len(sinks["good"].video())


async def test_refusal_by_authorize_closes_the_connection(callers: list[Caller]) -> None:
    gate = Gate(answer="webinar already ended")
    listener = SRTListener("127.0.0.1", 0, gate.authorize)
    await listener.start()
    try:
        caller = await connect(callers, listener.port, "late")
        assert await wait_for(lambda: caller.state() in (libsrt.SRTS_BROKEN, libsrt.SRTS_CLOSED, libsrt.SRTS_NONEXIST))
        assert listener.connections == 0
    finally:
        await listener.close()
    assert gate.calls == ["late"] and gate.sinks == []


async def test_queue_bound_drops_a_publisher_the_loop_cannot_absorb(callers: list[Caller], ts_bytes: bytes) -> None:
    # authorize() holds: everything received waits in the connection's queue
    gate = Gate(hold=True)
    listener = SRTListener("127.0.0.1", 0, gate.authorize, max_queue_bytes=20_000)
    await listener.start()
    try:
        caller = await connect(callers, listener.port, "fast")
        assert await wait_for(lambda: gate.calls == ["fast"])
        await asyncio.to_thread(caller.send, ts_bytes[: 40 * 1316])
        assert await wait_for(lambda: listener.connections == 0)  # dropped while authorize still runs
        gate.released.set()
        assert await wait_for(lambda: len(gate.sinks) == 1 and gate.sinks[0].ended == 1)
    finally:
        await listener.close()
    assert gate.sinks[0].units == [] and gate.sinks[0].ended == 1


async def test_libsrt_starts_with_the_first_caller(callers: list[Caller], ts_bytes: bytes) -> None:
    """Until an SRT caller comes, the port is a plain UDP socket watched by the loop (no
    libsrt thread polling); the first handshake packet hands it to libsrt, and that
    caller connects. Later callers, accepted or refused, are served
    by the same libsrt listener, also after a quiet spell with nobody connected."""
    gate = Gate()
    listener = SRTListener("127.0.0.1", 0, gate.authorize, precheck=lambda k: None if k != "refused" else "nope")
    await listener.start()
    try:
        assert not listener.awake
        for round_ in range(2):
            caller = await connect(callers, listener.port, f"round{round_}")
            assert listener.awake
            await asyncio.to_thread(caller.send, ts_bytes)
            sink = gate.sinks[round_]
            assert await wait_for(lambda sink=sink: len(sink.video()) >= 29)
            caller.close()
            callers.remove(caller)
            assert await wait_for(lambda sink=sink: sink.ended == 1 and listener.connections == 0)
        with pytest.raises(SRTError):
            await connect(callers, listener.port, "refused")
        assert callers[-1].lib.reject_reason(callers[-1].sock) == 1403
    finally:
        await listener.close()
    assert [s.ended for s in gate.sinks] == [1, 1]


async def test_close_while_awake_and_while_asleep() -> None:
    gate = Gate()
    for wake in (False, True):
        listener = SRTListener("127.0.0.1", 0, gate.authorize)
        await listener.start()
        port = listener.port
        if wake:
            caller = Caller(port, "x")
            try:
                await asyncio.to_thread(caller.connect)
                assert listener.awake
            finally:
                caller.close()
        await listener.close()
        assert not listener.awake
        # the port is free again
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            for _ in range(40):  # libsrt releases its copy of the socket from its GC thread (about 1 s)
                try:
                    probe.bind(("127.0.0.1", port))
                    break
                except OSError:
                    await asyncio.sleep(0.1)
            else:
                pytest.fail(f"UDP port {port} still bound after close")
        finally:
            probe.close()
