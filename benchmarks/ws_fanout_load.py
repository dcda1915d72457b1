"""Load generator of :mod:`benchmarks.bench_ws_fanout`: many lean WebSocket viewers in one process.

Run by the benchmark as a child process (several of them for large N), never
by hand::

    python -m benchmarks.ws_fanout_load CONFIG.json

The client is a small raw RFC 6455 implementation on uvloop (an
``asyncio.Protocol`` per connection) rather than the ``websockets`` client:
at 10,000 viewers and 10 chat messages/s a load process receives up to
100,000 frames/s, several times what the library's per-frame cost allows on
the core this process may use. The same client runs against our server and
the bare ``websockets`` peer. It does what the room protocol asks of a
viewer: the upgrade handshake (no compression offered), ``hello``, a
``heartbeat`` every ``heartbeat_s`` (randomly phased), masked client frames,
answers to pings, the closing handshake. The first frame after ``hello`` is
the ``welcome`` (ours, or the peer's one-line one): the viewer is then
counted as connected.

Chatters (some connections, chosen by the parent) send ``chat.send`` at
``chat_rate`` messages/s each, phased so the whole room gets an even stream;
the text carries ``ts=<time.time()>``. Every viewer (chatters included)
counts the ``ts=`` in each frame it receives (one ``events`` frame may carry
several messages); one viewer in ``latency_every`` (and every chatter) also
records arrival - send time of each. Deliveries arriving in the measurement
window are counted and the recorded latencies written (float64, native order)
to ``latency_file``.

Cost per received frame is what limits a load process (it shares the 2 cores
with the server): a whole small frame in one read takes a fast path, counting
is ``bytes.count``, and parsing timestamps is left to the sampled viewers.

Control: JSON lines. stdout: ``{"event": "connected", ...}`` once every
connection was tried, ``{"event": "done", ...}`` after the measurement.
stdin: ``{"cmd": "measure", "chat_start", "win_start", "win_end",
"chat_end", "finish"}`` (``time.time()`` values), then ``{"cmd": "close"}``.
The process exits by itself ``max_life_s`` after it started, whatever
happens.
"""

from __future__ import annotations

import array
import asyncio
import base64
import datetime
import hashlib
import json
import os
import random
import re
import resource
import sys
import time
from typing import Any

TS = re.compile(rb"ts=(\d+\.\d+)")
STAMPED = re.compile(rb'"at":"([^"]+)","data":\{[^{}]*\{[^{}]*\}[^{}]*?"text":"ts=(\d+\.\d+)')
"""Our events: the server's wall time ``at`` (when the transaction that stored it began) and the send time."""
ACK_REF = re.compile(rb'"type":"ack","ref":(\d+)')
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
ERROR_MARK = b'"type":"error"'
CONNECT_TIMEOUT_S = 60.0


class Stats:
    def __init__(self) -> None:
        self.win_start = float("inf")
        self.win_end = float("inf")
        self.latencies = array.array("d")
        self.delivered_window = 0
        self.delivered_total = 0
        self.frames_window = 0
        self.frames_total = 0
        self.errors: dict[str, int] = {}
        self.closes: dict[str, int] = {}
        self.closed_in_window = 0
        self.sent_chat = 0
        self.sent_heartbeats = 0
        # measured on chatter connections only (a few): where the latency comes from
        self.ack_latencies = array.array("d")   # chat.send -> its ack
        self.ingest_latencies = array.array("d")  # send -> the event's "at" (our server)
        self.fanout_latencies = array.array("d")  # "at" -> arrival (our server)

    def count(self, table: dict[str, int], key: str) -> None:
        table[key] = table.get(key, 0) + 1


def _iso_ts(raw: bytes) -> float | None:
    try:
        return datetime.datetime.fromisoformat(raw.decode()).timestamp()
    except ValueError:
        return None


def _mask(payload: bytes) -> bytes:
    mask = os.urandom(4)
    n = len(payload)
    if n == 0:
        return mask
    key = int.from_bytes((mask * (n // 4 + 1))[:n], "big")
    return mask + (int.from_bytes(payload, "big") ^ key).to_bytes(n, "big")


def frame(opcode: int, payload: bytes) -> bytes:
    """A masked client frame (FIN set)."""
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        head = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
    return head + _mask(payload)


class Viewer(asyncio.Protocol):
    """One WebSocket connection (client side)."""

    def __init__(self, host: str, port: int, path: str, stats: Stats, heartbeat_s: float) -> None:
        self.host = host
        self.port = port
        self.path = path
        self.stats = stats
        self.heartbeat_s = heartbeat_s
        self.transport: asyncio.Transport | None = None
        self.key = base64.b64encode(os.urandom(16))
        self.upgraded = False
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.welcomed = False
        self.buf = b""
        self.fragments: list[bytes] | None = None
        self.closed = False
        self.started = time.monotonic()
        self._hb: asyncio.TimerHandle | None = None
        self.chatter = False
        self.sampled = True
        """Records the latency of each delivery (else only counts them)."""
        self.pending_acks: dict[int, float] = {}

    # -- transport callbacks -------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        request = (
            f"GET {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {self.key.decode()}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        transport.write(request.encode())  # type: ignore[attr-defined]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed:
            self.closed = True
            self.stats.count(self.stats.closes, "dropped")
            if time.time() < self.stats.win_end:
                self.stats.closed_in_window += 1
        if self._hb is not None:
            self._hb.cancel()
        if not self.ready.done():
            self.ready.set_exception(ConnectionError("connection lost before welcome"))

    def data_received(self, data: bytes) -> None:
        if self.upgraded and not self.buf and len(data) > 2 and data[0] == 0x81 and data[1] == len(data) - 2:
            self._message(data[2:])  # the usual case: one whole small text frame
            return
        if self.buf:
            data = self.buf + data
            self.buf = b""
        if not self.upgraded:
            end = data.find(b"\r\n\r\n")
            if end < 0:
                self.buf = data
                return
            head, data = data[:end], data[end + 4:]
            status = head.split(b"\r\n", 1)[0]
            accept = base64.b64encode(hashlib.sha1(self.key + GUID).digest())
            if b" 101 " not in status or accept not in head:
                if not self.ready.done():
                    self.ready.set_exception(ConnectionError(status.decode(errors="replace")[:60]))
                self.closed = True
                self.transport.close()  # type: ignore[union-attr]
                return
            self.upgraded = True
            self.send_text(b'{"type":"hello","v":1,"last_event_id":0}')
        self._frames(data)

    # -- frames ----------------------------------------------------------------
    def _frames(self, buf: bytes) -> None:
        pos = 0
        n = len(buf)
        while n - pos >= 2:
            b0 = buf[pos]
            ln = buf[pos + 1] & 0x7F
            hdr = 2
            if ln == 126:
                if n - pos < 4:
                    break
                ln = (buf[pos + 2] << 8) | buf[pos + 3]
                hdr = 4
            elif ln == 127:
                if n - pos < 10:
                    break
                ln = int.from_bytes(buf[pos + 2:pos + 10], "big")
                hdr = 10
            end = pos + hdr + ln
            if end > n:
                break
            payload = buf[pos + hdr:end]
            pos = end
            opcode = b0 & 0x0F
            if opcode == 1 or opcode == 2:
                if b0 & 0x80:
                    self._message(payload)
                else:
                    self.fragments = [payload]
            elif opcode == 0 and self.fragments is not None:
                self.fragments.append(payload)
                if b0 & 0x80:
                    whole, self.fragments = b"".join(self.fragments), None
                    self._message(whole)
            elif opcode == 9:
                self.transport.write(frame(0xA, payload))  # type: ignore[union-attr]
            elif opcode == 8:
                code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
                if not self.closed:
                    self.closed = True
                    reason = payload[2:].decode(errors="replace")
                    self.stats.count(self.stats.closes, f"{code} {reason}".strip())
                    if time.time() < self.stats.win_end:
                        self.stats.closed_in_window += 1
                    self.transport.write(frame(0x8, payload[:2]))  # type: ignore[union-attr]
                self.transport.close()  # type: ignore[union-attr]
                return
        if pos < n:
            self.buf = buf[pos:]

    def _message(self, payload: bytes) -> None:
        now = time.time()
        st = self.stats
        st.frames_total += 1
        if not self.welcomed:
            if payload.startswith(b'{"type":"welcome"'):
                self.welcomed = True
                if not self.ready.done():
                    self.ready.set_result(None)
                self._hb = asyncio.get_running_loop().call_later(random.uniform(0, self.heartbeat_s), self._heartbeat)
            elif not self.ready.done():
                self.ready.set_exception(ConnectionError(payload[:80].decode(errors="replace")))
            return
        in_window = st.win_start <= now < st.win_end
        if in_window:
            st.frames_window += 1
        at = payload.find(b"ts=")
        if at >= 0:
            count = payload.count(b"ts=", at)
            st.delivered_total += count
            if in_window:
                st.delivered_window += count
                if self.sampled:
                    for match in TS.finditer(payload, at):
                        st.latencies.append(now - float(match.group(1)))
            if self.chatter and in_window:
                for match in STAMPED.finditer(payload):
                    stamp = _iso_ts(match.group(1))
                    if stamp is not None:
                        st.ingest_latencies.append(stamp - float(match.group(2)))
                        st.fanout_latencies.append(now - stamp)
        elif self.chatter and (ack := ACK_REF.search(payload)) is not None:
            sent = self.pending_acks.pop(int(ack.group(1)), None)
            if sent is not None and in_window:
                st.ack_latencies.append(now - sent)
        elif ERROR_MARK in payload:
            try:
                code = json.loads(payload).get("code", "?")
            except ValueError:
                code = "?"
            st.count(st.errors, str(code))

    # -- sending -----------------------------------------------------------------
    def send_text(self, data: bytes) -> None:
        if not self.closed and self.transport is not None and not self.transport.is_closing():
            self.transport.write(frame(0x1, data))

    def _heartbeat(self) -> None:
        position = time.monotonic() - self.started
        self.send_text(b'{"type":"heartbeat","playing":true,"visible":true,"mode":"live","position":%.1f}' % position)
        self.stats.sent_heartbeats += 1
        self._hb = asyncio.get_running_loop().call_later(self.heartbeat_s, self._heartbeat)

    def close(self) -> None:
        if self._hb is not None:
            self._hb.cancel()
        if not self.closed and self.transport is not None:
            self.closed = True
            self.send_text_close()
            self.transport.close()

    def send_text_close(self) -> None:
        assert self.transport is not None
        if not self.transport.is_closing():
            self.transport.write(frame(0x8, (1000).to_bytes(2, "big")))


async def connect_all(cfg: dict[str, Any], stats: Stats) -> tuple[list[Viewer | None], dict[str, int], float]:
    loop = asyncio.get_running_loop()
    targets: list[list[Any]] = cfg["targets"]  # [host, port, path] per connection
    viewers: list[Viewer | None] = [None] * len(targets)
    failures: dict[str, int] = {}
    gate = asyncio.Semaphore(int(cfg.get("connect_concurrency", 100)))
    t0 = time.monotonic()

    async def one(i: int) -> None:
        host, port, path = targets[i]
        async with gate:
            try:
                _, viewer = await asyncio.wait_for(
                    loop.create_connection(lambda: Viewer(host, port, path, stats, cfg["heartbeat_s"]), host, port),
                    CONNECT_TIMEOUT_S)
                await asyncio.wait_for(asyncio.shield(viewer.ready), CONNECT_TIMEOUT_S)
                viewers[i] = viewer
            except Exception as exc:  # noqa: BLE001 - counted and reported
                key = f"{type(exc).__name__}: {exc}"[:80]
                failures[key] = failures.get(key, 0) + 1

    await asyncio.gather(*(one(i) for i in range(len(targets))))
    return viewers, failures, time.monotonic() - t0


async def chat(viewer: Viewer, chatter: int, offset: float, rate: float, start: float, end: float,
               stats: Stats) -> None:
    k = 0
    while True:
        at = start + offset + k / rate
        if at >= end:
            return
        delay = at - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        if viewer.closed:
            return
        now = time.time()
        text = f"ts={now:.6f} c={chatter} k={k}"
        viewer.pending_acks[k + 1] = now
        viewer.send_text(json.dumps({"type": "chat.send", "ref": k + 1, "text": text}).encode())
        stats.sent_chat += 1
        k += 1


async def readline() -> dict[str, Any]:
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    if not line:
        return {"cmd": "close"}
    return json.loads(line)  # type: ignore[no-any-return]


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def cpu_now() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def main_async(cfg: dict[str, Any]) -> None:
    stats = Stats()
    viewers, failures, connect_s = await connect_all(cfg, stats)
    every = max(1, int(cfg.get("latency_every", 1)))
    for i, viewer in enumerate(viewers):
        if viewer is not None:
            viewer.sampled = i % every == 0
    live = [v for v in viewers if v is not None]
    emit({"event": "connected", "ok": len(live), "failed": sum(failures.values()), "failures": failures,
          "connect_s": round(connect_s, 2)})
    cmd = await readline()
    if cmd.get("cmd") == "measure":
        stats.win_start, stats.win_end = cmd["win_start"], cmd["win_end"]
        tasks = []
        total = int(cfg["chatters_total"])
        for local, chatter in cfg["chatters"]:  # [connection index, global chatter number]
            viewer = viewers[local]
            if viewer is not None:
                viewer.chatter = True
                viewer.sampled = True
                offset = chatter / (total * cfg["chat_rate"])
                tasks.append(asyncio.create_task(
                    chat(viewer, chatter, offset, cfg["chat_rate"], cmd["chat_start"], cmd["chat_end"], stats)))
        await asyncio.sleep(max(0.0, cmd["win_start"] - time.time()))
        cpu0 = cpu_now()
        await asyncio.sleep(max(0.0, cmd["win_end"] - time.time()))
        cpu_window = cpu_now() - cpu0
        await asyncio.sleep(max(0.0, cmd["finish"] - time.time()))
        for task in tasks:
            task.cancel()
        with open(cfg["latency_file"], "wb") as fh:
            stats.latencies.tofile(fh)
        split = {name: list(getattr(stats, f"{name}_latencies"))[:100000] for name in ("ack", "ingest", "fanout")}
        emit({"event": "done", "delivered_window": stats.delivered_window, "delivered_total": stats.delivered_total,
              "frames_window": stats.frames_window, "frames_total": stats.frames_total, "errors": stats.errors,
              "closes": stats.closes, "closed_in_window": stats.closed_in_window, "sent_chat": stats.sent_chat,
              "sent_heartbeats": stats.sent_heartbeats, "viewers": len(live),
              "open_at_end": sum(1 for v in live if not v.closed), "cpu_window_s": round(cpu_window, 3),
              "split": split})
        cmd = await readline()
    for viewer in live:
        viewer.close()
    await asyncio.sleep(0.5)


def main() -> None:
    with open(sys.argv[1]) as fh:
        cfg = json.load(fh)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    async def bounded() -> None:
        try:
            async with asyncio.timeout(cfg.get("max_life_s", 600)):
                await main_async(cfg)
        except TimeoutError:
            emit({"event": "timeout"})

    try:
        import uvloop
        uvloop.run(bounded())
    except ImportError:
        asyncio.run(bounded())


if __name__ == "__main__":
    main()
