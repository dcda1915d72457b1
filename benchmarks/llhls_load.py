"""Simulated LL-HLS viewers for :mod:`benchmarks.bench_llhls_viewers` (a load process).

Run as ``python -m benchmarks.llhls_load '<json config>'``; writes one JSON
object (the results) to the file named by the config's ``out``. A lean HTTP/1.1 keep-alive client on uvloop
(httpx costs ~10x more CPU per request, and the load generator shares the
machine with the server).

Modes
-----
``llhls`` (our server) -- each viewer does what hls.js does in low-latency
mode, on two keep-alive connections: a blocking playlist reload
``index.m3u8?_HLS_msn=M&_HLS_part=P&_HLS_skip=YES`` for the part named by the
last preload hint, and at the same time ``GET segM.P.m4s`` (the hinted part,
which the origin holds until it exists). When both have answered, the new
playlist gives the next hint; parts the viewer missed (it fell behind) are
fetched one after the other before going on.

``static`` (nginx, the reference) -- the same two connections and the same
bytes, paced by a clock instead of blocking requests: at every tick
``t0 + j * part_s`` (the live's mean part duration) every viewer GETs a static
copy of a playlist and the next part file (parts captured from our live).

Lateness
--------
A part is *produced* (advertised) when the origin first delivers it: its
first arrival at any viewer of this load process. ``fan-out lateness =
arrival at a viewer - first arrival``; the part is **late** for that viewer
when this exceeds the part's duration (its EXT-X-PART DURATION; static: the
tick period). This leaves out what is not the origin's doing (a publisher
that sends a frame 0.3 s late on a busy machine delays the part for every
viewer alike).

To catch an origin that delivers to everyone equally late (overloaded, so
behind the live edge), ``edge lateness`` is measured too: arrival - the
part's media end in wall time (llhls: segment EXT-X-PROGRAM-DATE-TIME + the
durations of the parts before it + its own; static: its tick) - the median
of the same with one lone viewer measured before the load (the baseline:
pipeline delay). A viewer **drifted** when that exceeds :data:`DRIFT_S`.
Errors (non-200, closed connections, timeouts) are counted separately.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import resource
import sys
import time
from dataclasses import dataclass, field
from typing import Any

_HINT = re.compile(rb'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="seg(\d+)\.(\d+)\.m4s"')
_PART = re.compile(r'#EXT-X-PART:DURATION=([0-9.]+),URI="seg(\d+)\.(\d+)\.m4s"')
DRIFT_S = 1.0
"""A viewer receiving a part more than this after its media end (+ baseline) has drifted behind the live edge."""
_CL = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.IGNORECASE)
_COOKIE = re.compile(rb"\r\nset-cookie:\s*([^;\r\n]+)", re.IGNORECASE)


class ConnectionFailed(Exception):
    pass


class HttpConn(asyncio.Protocol):
    """One HTTP/1.1 keep-alive connection, one request at a time; bodies with Content-Length."""

    def __init__(self, keep_body: bool) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.fut: asyncio.Future[tuple[int, bytes, float, int]] | None = None
        self.head_end = -1
        self.need = 0
        self.status = 0
        self.keep_body = keep_body
        self.closed = False
        self.cookie: bytes | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.fut is not None and not self.fut.done():
            self.fut.set_exception(ConnectionFailed(str(exc or "closed by server")))

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.fut is None:
            return
        if self.head_end < 0:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buf[:end + 2])
            self.status = int(head[9:12])
            match = _CL.search(head)
            if match is None:
                if not self.fut.done():
                    self.fut.set_exception(ConnectionFailed("response without content-length"))
                self.transport.close()  # type: ignore[union-attr]
                return
            cookie = _COOKIE.search(head)
            if cookie is not None:
                self.cookie = cookie.group(1)
            self.head_end = end + 4
            self.need = self.head_end + int(match.group(1))
        if len(self.buf) >= self.need:
            now = time.time()
            size = self.need - self.head_end
            body = bytes(self.buf[self.head_end:self.need]) if self.keep_body or self.status != 200 else b""
            del self.buf[:self.need]
            self.head_end = -1
            fut, self.fut = self.fut, None
            if not fut.done():  # the caller may have given up (timeout)
                fut.set_result((self.status, body, now, size))

    def get(self, path: str, cookie: bytes | None) -> "asyncio.Future[tuple[int, bytes, float, int]]":
        assert self.transport is not None
        fut = asyncio.get_running_loop().create_future()
        if self.closed:
            fut.set_exception(ConnectionFailed("connection closed"))
            return fut
        self.fut = fut
        extra = b"Cookie: " + cookie + b"\r\n" if cookie else b""
        self.transport.write(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n" + extra + b"\r\n")
        return fut


async def connect(host: str, port: int, keep_body: bool) -> HttpConn:
    loop = asyncio.get_running_loop()
    _, proto = await loop.create_connection(lambda: HttpConn(keep_body), host, port)
    return proto  # type: ignore[return-value]


@dataclass
class Timeline:
    """Part durations and segment program date-times seen in playlists (parsed once per new playlist)."""

    durations: dict[tuple[int, int], float] = field(default_factory=dict)
    pdt: dict[int, float] = field(default_factory=dict)
    seen: set[bytes] = field(default_factory=set)

    def learn(self, hint: bytes, text: bytes) -> None:
        if hint in self.seen:
            return
        self.seen.add(hint)
        import datetime as dt

        pending: float | None = None
        for line in text.decode().splitlines():
            if line.startswith("#EXT-X-PROGRAM-DATE-TIME:"):
                pending = dt.datetime.fromisoformat(line.split(":", 1)[1].replace("Z", "+00:00")).timestamp()
            elif line.startswith("#EXT-X-PART:"):
                match = _PART.match(line)
                if match:
                    msn, index = int(match.group(2)), int(match.group(3))
                    self.durations[(msn, index)] = float(match.group(1))
                    if pending is not None:
                        self.pdt.setdefault(msn, pending)
                        pending = None
            elif line and not line.startswith("#") and line.startswith("seg"):
                msn = int(line[3:].split(".", 1)[0])
                if pending is not None:
                    self.pdt.setdefault(msn, pending)
                    pending = None

    def between(self, after: tuple[int, int], before: tuple[int, int]) -> list[tuple[int, int]]:
        """Known parts strictly between two part ids."""
        out = []
        msn, index = after[0], after[1] + 1
        while (msn, index) < before and msn <= before[0]:
            if (msn, index) in self.durations:
                out.append((msn, index))
                index += 1
            else:
                msn, index = msn + 1, 0
        return out

    def media_end(self, msn: int, index: int) -> tuple[float, float] | None:
        """(wall time at the end of part (msn, index), its duration) when known."""
        if msn not in self.pdt:
            return None
        offset = 0.0
        for i in range(index + 1):
            duration = self.durations.get((msn, i))
            if duration is None:
                return None
            offset += duration
        return self.pdt[msn] + offset, self.durations[(msn, index)]


@dataclass
class Stats:
    arrivals: list[tuple[int, int, float, int]] = field(default_factory=list)  # (msn, index, wall, viewer)
    ticks: list[tuple[float, float, float]] = field(default_factory=list)  # static: (tick, arrival, duration)
    errors: dict[str, int] = field(default_factory=dict)
    first_errors: list[str] = field(default_factory=list)
    requests: int = 0
    bytes: int = 0
    captured_parts: dict[str, str] = field(default_factory=dict)
    captured_playlist: str = ""

    def error(self, kind: str, detail: str = "") -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1
        if len(self.first_errors) < 5:
            self.first_errors.append(f"{kind}: {detail}"[:200])


async def llhls_viewer(n: int, cfg: dict[str, Any], stats: Stats, timeline: Timeline, shared: dict[str, Any]) -> None:
    base = cfg["base_path"]
    host, port = cfg["host"], cfg["port"]
    capture = cfg.get("capture_dir") if n == 0 else None
    join_at = cfg["start_at"] + cfg["join_s"] * (n / max(1, cfg["viewers"]))
    await asyncio.sleep(max(0.0, join_at - time.time()))
    try:
        pl = await connect(host, port, keep_body=True)
        media = await connect(host, port, keep_body=bool(capture))
    except OSError as exc:
        stats.error("connect", str(exc))
        return
    cookie = shared.get("cookie")
    end_at = cfg["end_at"]
    hint: tuple[int, int] | None = None
    try:
        while time.time() < end_at:
            if hint is None:
                status, body, _, size = await pl.get(f"{base}/index.m3u8?_HLS_skip=YES", cookie)
                stats.requests += 1
                stats.bytes += size
                match = _HINT.search(body) if status == 200 else None
                if pl.cookie and not cookie:
                    cookie = shared["cookie"] = pl.cookie
                if match is None:
                    stats.error(f"playlist {status}", body[:80].decode(errors="replace"))
                    await asyncio.sleep(0.5)
                    continue
                hint = (int(match.group(1)), int(match.group(2)))
                timeline.learn(match.group(0), body)
            msn, index = hint
            pl_fut = pl.get(f"{base}/index.m3u8?_HLS_msn={msn}&_HLS_part={index}&_HLS_skip=YES", cookie)
            part_fut = media.get(f"{base}/seg{msn}.{index}.m4s", cookie)
            (p_status, p_body, _, p_size), (m_status, m_body, arrival, m_size) = await asyncio.gather(pl_fut, part_fut)
            stats.requests += 2
            stats.bytes += p_size + m_size
            if m_status == 200:
                stats.arrivals.append((msn, index, arrival, n))
                if capture and len(stats.captured_parts) < 21:
                    stats.captured_parts[f"{msn}.{index}"] = m_body.hex()
            else:
                stats.error(f"part {m_status}", m_body[:80].decode(errors="replace"))
            match = _HINT.search(p_body) if p_status == 200 else None
            if match is None:
                stats.error(f"blocking playlist {p_status}", p_body[:80].decode(errors="replace"))
                hint = None
                continue
            if capture and not stats.captured_playlist:
                stats.captured_playlist = p_body.decode()
            timeline.learn(match.group(0), p_body)
            new = (int(match.group(1)), int(match.group(2)))
            if new != (msn, index + 1) and new != (msn + 1, 0):
                # Parts published between the one we got and the new hint: the viewer fell behind.
                missed = timeline.between(hint, new)
            else:
                missed = []
            for m, i in missed:
                status, body, arrival, size = await media.get(f"{base}/seg{m}.{i}.m4s", cookie)
                stats.requests += 1
                stats.bytes += size
                if status == 200:
                    stats.arrivals.append((m, i, arrival, n))
                else:
                    stats.error(f"part {status}", body[:80].decode(errors="replace"))
            hint = new
    except ConnectionFailed as exc:
        stats.error("connection", str(exc))
    finally:
        for conn in (pl, media):
            if conn.transport is not None:
                conn.transport.close()


async def static_viewer(n: int, cfg: dict[str, Any], stats: Stats) -> None:
    host, port = cfg["host"], cfg["port"]
    part_s = cfg["part_s"]
    parts = cfg["part_names"]
    join_at = cfg["start_at"] + cfg["join_s"] * (n / max(1, cfg["viewers"]))
    await asyncio.sleep(max(0.0, join_at - time.time()))
    try:
        pl = await connect(host, port, keep_body=False)
        media = await connect(host, port, keep_body=False)
    except OSError as exc:
        stats.error("connect", str(exc))
        return
    t0 = cfg["clock_origin"]
    try:
        j = int((time.time() - t0) / part_s) + 1
        while True:
            tick = t0 + j * part_s
            if tick >= cfg["end_at"]:
                break
            await asyncio.sleep(max(0.0, tick - time.time()))
            pl_fut = pl.get("/index.m3u8", None)
            part_fut = media.get(f"/{parts[j % len(parts)]}", None)
            (p_status, _, _, p_size), (m_status, _, arrival, m_size) = await asyncio.gather(pl_fut, part_fut)
            stats.requests += 2
            stats.bytes += p_size + m_size
            if p_status != 200 or m_status != 200:
                stats.error(f"static {p_status}/{m_status}")
            else:
                stats.ticks.append((tick, arrival, part_s))
            # a viewer still busy at the next tick starts right away (and is late)
            j = max(j + 1, int((time.time() - t0) / part_s))
    except ConnectionFailed as exc:
        stats.error("connection", str(exc))
    finally:
        for conn in (pl, media):
            if conn.transport is not None:
                conn.transport.close()


def summarize(cfg: dict[str, Any], stats: Stats, timeline: Timeline, cpu_s: float, wall_s: float) -> dict[str, Any]:
    """Per part: ``fan-out lateness`` = arrival at a viewer - the part's first arrival at any viewer
    (of this process); late when above the part's duration. ``edge lateness`` = arrival - the part's
    media end (llhls: PDT-based; static: its tick) - the lone-viewer baseline; a viewer *drifts*
    when it exceeds :data:`DRIFT_S`. Parts count when their first arrival is inside the window."""
    w0, w1 = cfg["window"]
    baseline = cfg.get("baseline", 0.0)
    mean_part = (sum(timeline.durations.values()) / len(timeline.durations)) if timeline.durations else cfg.get("part_s", 0.3)
    by_part: dict[Any, list[tuple[float, int]]] = {}
    reference: dict[Any, tuple[float | None, float]] = {}  # part -> (media end or tick, duration)
    unknown = 0
    if cfg["mode"] == "llhls":
        for msn, index, arrival, viewer in stats.arrivals:
            by_part.setdefault((msn, index), []).append((arrival, viewer))
        for key in by_part:
            known = timeline.media_end(*key)
            if known is None:
                unknown += 1
                reference[key] = (None, timeline.durations.get(key, mean_part))
            else:
                reference[key] = known
    else:
        for tick, arrival, duration in stats.ticks:
            by_part.setdefault(tick, []).append((arrival, 0))
            reference[tick] = (tick, duration)
    fanout: list[float] = []
    edge: list[float] = []
    late = drifted = 0
    worst: list[tuple[float, str]] = []
    for key, arrivals in by_part.items():
        first = min(a for a, _ in arrivals)
        if not w0 <= first <= w1:
            continue
        end, duration = reference[key]
        for arrival, viewer in arrivals:
            value = arrival - first
            fanout.append(value)
            if value > duration:
                late += 1
                worst.append((value, f"viewer {viewer} part {key}"))
            if end is not None:
                behind = arrival - end - baseline
                edge.append(behind)
                if behind > DRIFT_S:
                    drifted += 1
    fanout.sort()
    edge.sort()

    def pct(values: list[float], q: float) -> float | None:
        if not values:
            return None
        return values[min(len(values) - 1, int(q / 100 * len(values)))]

    worst.sort(reverse=True)
    return {
        "viewers": cfg["viewers"], "parts": len(fanout), "late": late, "drifted": drifted, "unknown": unknown,
        "lateness_p50": pct(fanout, 50), "lateness_p99": pct(fanout, 99), "lateness_max": fanout[-1] if fanout else None,
        "edge_p50": pct(edge, 50), "edge_p99": pct(edge, 99), "edge_max": edge[-1] if edge else None,
        "errors": stats.errors, "first_errors": stats.first_errors, "requests": stats.requests, "bytes": stats.bytes,
        "cpu_s": cpu_s, "wall_s": wall_s, "worst": [w for _, w in worst[:3]],
        "captured_parts": stats.captured_parts, "captured_playlist": stats.captured_playlist,
        "part_mean_s": mean_part if timeline.durations else None,
    }


async def main_async(cfg: dict[str, Any]) -> dict[str, Any]:
    stats = Stats()
    timeline = Timeline()
    shared: dict[str, Any] = {}
    t_wall = time.monotonic()
    c0 = time.process_time()
    if cfg["mode"] == "llhls":
        tasks = [llhls_viewer(first, cfg, stats, timeline, shared) for first in range(cfg["first"], cfg["first"] + cfg["count"])]
    else:
        tasks = [static_viewer(first, cfg, stats) for first in range(cfg["first"], cfg["first"] + cfg["count"])]
    deadline = cfg["end_at"] + 15 - time.time()
    try:
        async with asyncio.timeout(max(1.0, deadline)):
            await asyncio.gather(*tasks)
    except TimeoutError:
        stats.error("viewer did not finish in time")
    return summarize(cfg, stats, timeline, time.process_time() - c0, time.monotonic() - t_wall)


def main() -> int:
    cfg = json.loads(sys.argv[1])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    result = asyncio.run(main_async(cfg))
    with open(cfg["out"], "w") as fh:  # a file: large results through a pipe can be cut short
        json.dump(result, fh)
    os._exit(0)  # skip slow interpreter teardown of thousands of transports


if __name__ == "__main__":
    raise SystemExit(main())
