"""Shared pieces of the media-path benchmarks.

- :class:`Bench`: a real PostgreSQL (``tests.support.postgres.PostgresForTests``)
  for the run, and :meth:`Bench.server` to start ``webinar serve`` as a child
  process on free ports with a fresh database.
- :func:`studio_webinars`: announced studio webinars with stream keys, made with
  the server's own functions (one account each: R-ACC-4 forbids two lives of
  one account at once).
- :func:`clip`: a test file encoded once (cached), published with
  ``ffmpeg -re -stream_loop -1 -i clip -c copy`` by :class:`Publisher`, so the
  encoder costs almost nothing and every server gets identical bytes.
- :class:`NginxRtmp`, :class:`NginxHttp`: the peers (Debian nginx, with the
  RTMP module for the former) in a throw-away prefix.
- CPU accounting from ``/proc/<pid>/stat`` (utime + stime of a process and its
  descendants) and of the whole machine from ``/proc/stat`` (the machine is
  shared: the benchmarks report how busy it was besides our processes).
- :func:`add_common_options` / :func:`prepare_run`: the options every benchmark
  shares (``--quick``, ``--write``, ``--steps``, ``--attempts``, ``--wait-quiet``,
  ``--nice``) with one meaning each, and applying the last two at the start of a run.
- :func:`update_results`: replace this benchmark's rows of ``RESULTS.md`` by
  metric name, keeping every other row and the notes; :func:`write_metric` for
  the usual one row and its note.

Every process started here is stopped by the context manager that started it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Iterable, Sequence

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.support.net import free_port, free_udp_port  # noqa: E402
from tests.support.postgres import PostgresForTests  # noqa: E402

PYTHON = str(REPO / ".venv" / "bin" / "python") if (REPO / ".venv" / "bin" / "python").exists() else sys.executable
FFMPEG = shutil.which("ffmpeg") or "/usr/bin/ffmpeg"
FFPROBE = shutil.which("ffprobe") or "/usr/bin/ffprobe"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
NGINX_RTMP_MODULE = Path("/usr/lib/nginx/modules/ngx_rtmp_module.so")
RESULTS = Path(__file__).with_name("RESULTS.md")
CACHE = Path(os.environ.get("WEBINAR_BENCH_CACHE", Path(tempfile.gettempdir()) / "webinar-bench-cache"))
CLK_TCK = os.sysconf("SC_CLK_TCK")
RESULTS_DATE = os.environ.get("WEBINAR_BENCH_DATE") or dt.date.today().isoformat()


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


NICE = 0


def _autogroup_nice(pid: int | str, value: int) -> None:
    # With sched_autogroup, CPU is first shared between sessions: a session's weight is its
    # autogroup's nice, whatever the nice of the processes in it.
    with contextlib.suppress(OSError):
        Path(f"/proc/{pid}/autogroup").write_text(str(value))


def set_nice(value: int) -> None:
    """Run this benchmark and every process it starts (servers, peers, publishers, load
    generators, PostgreSQL) at niceness ``value``: the processes inherit it, and the
    scheduler autogroups of this session and of the servers' sessions get it too.
    Negative values (root) shield the measurement from other work on a shared machine;
    0 = unchanged."""
    global NICE
    if value:
        NICE = value
        os.setpriority(os.PRIO_PROCESS, 0, value)
        _autogroup_nice("self", value)
        log(f"running at nice {os.getpriority(os.PRIO_PROCESS, 0)} "
            f"({Path('/proc/self/autogroup').read_text().strip() if Path('/proc/self/autogroup').exists() else ''})")


def raise_fd_limit(wanted: int = 65536) -> int:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(wanted, hard) if hard != resource.RLIM_INFINITY else wanted
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# ---------------------------------------------------------------- statistics


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
    return float(ordered[rank - 1])


def spread(values: Sequence[float], fmt: str = "{:.3g}") -> str:
    if not values:
        return "n/a"
    return f"{fmt.format(min(values))}–{fmt.format(max(values))}"


def print_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    rows = [[str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths))
    print(line)
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)))
    sys.stdout.flush()


# ---------------------------------------------------------------- CPU accounting


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # comm may hold spaces and parentheses: split after the last ')'
    return raw[raw.rindex(")") + 2 :].split()


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is None:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    return children


def process_tree(pid: int) -> list[int]:
    children = _children_map()
    out, stack = [], [pid]
    while stack:
        current = stack.pop()
        out.append(current)
        stack.extend(children.get(current, []))
    return out


def cpu_seconds(pid: int, tree: bool = False) -> float:
    """utime + stime of ``pid`` (and its live descendants when ``tree``), in seconds."""
    pids = process_tree(pid) if tree else [pid]
    total = 0
    for p in pids:
        fields = _stat_fields(p)
        if fields is not None:
            # after "pid (comm) ": state=0 ppid=1 ... utime=11 stime=12
            total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


def runqueue_wait_seconds(pid: int) -> float:
    """Seconds the process's main thread spent runnable but waiting for a CPU (/proc/<pid>/schedstat)."""
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e9
    except (FileNotFoundError, ProcessLookupError, PermissionError, IndexError, ValueError):
        return 0.0


def machine_busy_seconds() -> tuple[float, float]:
    """(busy CPU seconds, total CPU seconds) of the whole machine since boot (/proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    total = sum(fields[:8])
    return (total - idle) / CLK_TCK, total / CLK_TCK


class CpuWindow:
    """CPU seconds used by named processes between :meth:`start` and :meth:`stop`, and the
    machine's busy time over the same window (so "other load" = busy - ours)."""

    def __init__(self, pids: dict[str, tuple[int, bool]]) -> None:
        self.pids = pids  # name -> (pid, include descendants)
        self._start: dict[str, float] = {}
        self._machine0 = (0.0, 0.0)
        self._t0 = 0.0
        self.cpu: dict[str, float] = {}
        self.runq_wait: dict[str, float] = {}
        self._wait0: dict[str, float] = {}
        self.wall = 0.0
        self.machine_busy = 0.0
        self.machine_total = 0.0

    def start(self) -> "CpuWindow":
        self._t0 = time.monotonic()
        self._machine0 = machine_busy_seconds()
        self._start = {name: cpu_seconds(pid, tree) for name, (pid, tree) in self.pids.items()}
        self._wait0 = {name: runqueue_wait_seconds(pid) for name, (pid, _) in self.pids.items()}
        return self

    def stop(self) -> "CpuWindow":
        self.cpu = {name: cpu_seconds(pid, tree) - self._start[name] for name, (pid, tree) in self.pids.items()}
        self.runq_wait = {name: runqueue_wait_seconds(pid) - self._wait0[name] for name, (pid, _) in self.pids.items()}
        """Seconds each process's main thread was runnable but not running (CPU starvation)."""
        busy, total = machine_busy_seconds()
        self.machine_busy = busy - self._machine0[0]
        self.machine_total = total - self._machine0[1]
        self.wall = time.monotonic() - self._t0
        return self

    @property
    def cores(self) -> dict[str, float]:
        """CPU of each named process over the window, in cores (CPU seconds per wall second)."""
        return {name: cpu / self.wall if self.wall else 0.0 for name, cpu in self.cpu.items()}

    @property
    def starved(self) -> dict[str, float]:
        """Fraction of the window each named process's main thread was runnable but waiting for a CPU."""
        return {name: wait / self.wall if self.wall else 0.0 for name, wait in self.runq_wait.items()}

    @property
    def other_load_cores(self) -> float:
        """Cores busy with processes not listed (other work on the shared machine)."""
        return max(0.0, (self.machine_busy - sum(self.cpu.values())) / self.wall) if self.wall else 0.0


async def wait_quiet(max_wait_s: float, threshold_cores: float = 0.5, sample_s: float = 2.0) -> float:
    """Wait (at most ``max_wait_s``) until the shared machine is busy with less than
    ``threshold_cores`` cores; return the busy cores last seen (logged either way)."""
    deadline = time.monotonic() + max_wait_s
    while True:
        busy0, total0 = machine_busy_seconds()
        t0 = time.monotonic()
        await asyncio.sleep(sample_s)
        busy1, _ = machine_busy_seconds()
        cores = (busy1 - busy0) / (time.monotonic() - t0)
        if cores < threshold_cores or time.monotonic() >= deadline:
            log(f"machine busy with {cores:.2f} cores of other work before the run"
                + ("" if cores < threshold_cores else f" (waited {max_wait_s:.0f} s for < {threshold_cores})"))
            return cores
        await asyncio.sleep(1.0)


# ---------------------------------------------------------------- command line

WAIT_QUIET_HELP = "first wait up to S seconds for the shared machine to be under 0.5 busy cores"
NICE_HELP = "niceness for the run and all it starts (e.g. -10 on a shared machine; default 0)"
ATTEMPTS_HELP = "windows tried at a step before it counts as failed (default 2: the machine is shared)"


def ramp_steps(text: str) -> list[int]:
    """``--steps`` as argparse reads it: ``"30,10,30"`` -> ``[10, 30]`` (sorted, each once).

    Anything but comma-separated whole numbers > 0 is an argparse error (a usage message, no traceback).
    """
    try:
        steps = sorted({int(x) for x in text.split(",")})
    except ValueError:
        raise argparse.ArgumentTypeError(f"not comma-separated whole numbers: {text!r}") from None
    if steps[0] <= 0:
        raise argparse.ArgumentTypeError(f"steps must be above 0: {text!r}")
    return steps


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text!r}")
    return value


def add_common_options(parser: argparse.ArgumentParser, *, quick: str, write: str, steps: str | None = None,
                       attempts: bool = False, wait_quiet: bool = True, nice: bool = True) -> None:
    """Add the options the benchmarks share, each with one meaning (benchmarks/README.md).

    - ``--quick`` (``quick`` = its help: what the short run does) and ``--write`` (``write`` = its
      help: which rows of RESULTS.md it replaces);
    - ``--steps`` when ``steps`` (its help: what is counted, the default and quick ramps) is given:
      parsed by :func:`ramp_steps`, ``None`` when not on the command line;
    - ``--attempts`` (windows per ramp step, default 2, at least 1) when ``attempts``;
    - ``--wait-quiet S`` (seconds, default 0) and ``--nice N`` (default 0) unless switched off:
      :func:`prepare_run` applies them.
    """
    parser.add_argument("--quick", action="store_true", help=quick)
    parser.add_argument("--write", action="store_true", help=write)
    if steps is not None:
        parser.add_argument("--steps", type=ramp_steps, help=steps)
    if attempts:
        parser.add_argument("--attempts", type=_positive_int, default=2, help=ATTEMPTS_HELP)
    if wait_quiet:
        parser.add_argument("--wait-quiet", type=float, default=0.0, metavar="S", help=WAIT_QUIET_HELP)
    if nice:
        parser.add_argument("--nice", type=int, default=0, help=NICE_HELP)


async def prepare_run(args: argparse.Namespace) -> float:
    """Apply ``--wait-quiet`` then ``--nice`` (:func:`add_common_options`) before anything is started.

    The cores of other work seen before the run are kept as ``args.machine_busy_before`` and returned.
    """
    args.machine_busy_before = await wait_quiet(args.wait_quiet)
    set_nice(args.nice)
    return args.machine_busy_before


def largest_held(outcomes: Iterable[tuple[int, bool]]) -> int:
    """Largest step of a ramp that held, every smaller step having held too; 0 if the first did not.

    ``outcomes``: (step, held) per window in the order run; a step counts by its last window (attempts
    at a step stop at the first that holds).
    """
    last: dict[int, bool] = {}
    for step, held in outcomes:
        last[step] = held
    largest = 0
    for step in sorted(last):
        if not last[step]:
            break
        largest = step
    return largest


def ramp_figure(largest: int, top: int) -> str:
    """A ramp's figure for RESULTS.md: ``"≥ N"`` when even the largest step tried held."""
    return f"≥ {largest}" if largest == top else str(largest)


# ---------------------------------------------------------------- test media


@dataclass(frozen=True)
class ClipSpec:
    width: int
    height: int
    fps: int
    video_kbps: int
    audio_kbps: int = 128
    seconds: int = 20
    gop_s: int = 2

    @property
    def name(self) -> str:
        return f"{self.height}p{self.fps}_{self.video_kbps}k_{self.seconds}s"


CLIP_1080P_6M = ClipSpec(1920, 1080, 30, 6000)
CLIP_720P_3M = ClipSpec(1280, 720, 30, 3000)
CLIP_360P_500K = ClipSpec(640, 360, 30, 500, audio_kbps=64)


def clip(spec: ClipSpec) -> Path:
    """An FLV file (H.264 High + AAC-LC 48 kHz stereo), encoded once and cached.

    The picture is ``testsrc2`` with temporal noise so that x264 really spends the
    bit rate (a clean test pattern would undershoot it); constant bit rate
    (maxrate = bitrate), a keyframe every ``gop_s`` seconds, no scene cuts.
    """
    key = hashlib.sha1(repr(spec).encode()).hexdigest()[:10]
    path = CACHE / f"{spec.name}_{key}.flv"
    if path.exists():
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.flv")
    gop = spec.fps * spec.gop_s
    log(f"encoding test clip {path.name} (once; cached in {CACHE})")
    cmd = [
        FFMPEG, "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
        "-f", "lavfi", "-i", f"testsrc2=size={spec.width}x{spec.height}:rate={spec.fps}",
        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
        "-t", str(spec.seconds),
        "-vf", "noise=alls=12:allf=t",
        "-c:v", "libx264", "-preset", "veryfast", "-profile:v", "high", "-pix_fmt", "yuv420p",
        "-b:v", f"{spec.video_kbps}k", "-maxrate", f"{spec.video_kbps}k", "-bufsize", f"{spec.video_kbps}k",
        "-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0",
        "-c:a", "aac", "-b:a", f"{spec.audio_kbps}k", "-ac", "2", "-ar", "48000",
        "-f", "flv", str(tmp),
    ]
    subprocess.run(cmd, check=True)
    tmp.replace(path)
    return path


def probe_bitrate_kbps(path: Path) -> float:
    out = subprocess.run(
        [FFPROBE, "-v", "error", "-show_entries", "format=bit_rate,duration", "-of", "json", str(path)],
        check=True, capture_output=True, text=True,
    ).stdout
    fmt = json.loads(out)["format"]
    return float(fmt["bit_rate"]) / 1000


# ---------------------------------------------------------------- publishers


class Publisher:
    """``ffmpeg -re -stream_loop -1 -i CLIP -t SECONDS -c copy -f flv URL`` with -progress.

    ``progress`` holds (monotonic time, out_time seconds) every half second, so
    :meth:`min_speed` can tell whether the publisher ever ran slower than real
    time (a server that stops reading makes the TCP send block).
    """

    def __init__(self, url: str, source: Path, seconds: float, fmt: str = "flv", realtime: bool = True) -> None:
        self.realtime = realtime
        self.url = url
        self.source = source
        self.seconds = seconds
        self.fmt = fmt
        self.proc: asyncio.subprocess.Process | None = None
        self.progress: list[tuple[float, float]] = []
        self.started = 0.0
        self.ended: float | None = None
        self.stderr = b""
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> "Publisher":
        self.proc = await asyncio.create_subprocess_exec(
            FFMPEG, "-hide_banner", "-loglevel", "error", "-nostdin",
            *(["-re"] if self.realtime else []), "-stream_loop", "-1", "-i", str(self.source),
            "-t", f"{self.seconds:.3f}",
            "-c", "copy", "-f", self.fmt, "-progress", "pipe:1", "-stats_period", "0.5", self.url,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        self.started = time.monotonic()
        self._reader = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        async for raw in self.proc.stdout:
            line = raw.decode(errors="replace").strip()
            if line.startswith("out_time_us="):
                try:
                    self.progress.append((time.monotonic(), int(line.split("=", 1)[1]) / 1e6))
                except ValueError:
                    pass

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def min_speed(self, since: float, until: float | None = None, window: float = 2.0) -> float:
        """Lowest media-seconds-per-wall-second over any ``window`` s between ``since`` and
        ``until`` (monotonic times); inf when there is too little progress to tell."""
        points = [p for p in self.progress if p[0] >= since and (until is None or p[0] <= until)]
        worst = float("inf")
        j = 0
        for i in range(len(points)):
            while j < len(points) and points[j][0] - points[i][0] < window:
                j += 1
            if j >= len(points):
                break
            dt_wall = points[j][0] - points[i][0]
            worst = min(worst, (points[j][1] - points[i][1]) / dt_wall)
        return worst

    def lag_growth(self, since: float, until: float, ref_since: float | None = None) -> float:
        """How far (seconds) the publisher fell behind real time during [since, until], relative to
        the smallest lag it had in [ref_since, until] (default: since it started):
        ``lag = wall time since start - media time sent``. 0 for a publisher that kept real time;
        inf when there is no progress to tell."""
        lags = [(t, (t - self.started) - media) for t, media in self.progress if t <= until]
        before = [lag for t, lag in lags if ref_since is None or t >= ref_since]
        inside = [lag for t, lag in lags if t >= since]
        if not before or not inside:
            return float("inf")
        return max(0.0, max(inside) - min(before))

    async def wait(self, timeout: float) -> int:
        assert self.proc is not None
        try:
            async with asyncio.timeout(timeout):
                _, err = await asyncio.gather(self.proc.wait(), self.proc.stderr.read())  # type: ignore[union-attr]
                self.stderr = err
        except TimeoutError:
            await self.stop()
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._reader, 2)
        if self.ended is None:
            self.ended = time.monotonic()
        return self.proc.returncode if self.proc.returncode is not None else -1

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGINT)  # ffmpeg closes the stream cleanly
            try:
                await asyncio.wait_for(self.proc.wait(), 5)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                await self.proc.wait()
        if self.ended is None:
            self.ended = time.monotonic()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(BaseException):
                await self._reader


@contextlib.asynccontextmanager
async def publishers(urls: Sequence[str], source: Path, seconds: float) -> AsyncIterator[list[Publisher]]:
    started: list[Publisher] = []
    try:
        for url in urls:
            started.append(await Publisher(url, source, seconds).start())
        yield started
    finally:
        await asyncio.gather(*(p.stop() for p in started), return_exceptions=True)


# ---------------------------------------------------------------- our server


@dataclass
class ServerProcess:
    """``webinar serve`` in a child process (its own process group)."""

    port: int
    rtmp_port: int
    srt_port: int
    data_dir: Path
    database_url: str
    env_extra: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def rtmp_url(self, key: str) -> str:
        return f"rtmp://127.0.0.1:{self.rtmp_port}/live/{key}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def media_dir(self) -> Path:
        return self.data_dir / "media" / "hls"

    async def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("WEBINAR_")}
        env.update({
            "DATABASE_URL": self.database_url,
            "WEBINAR_LIVE_GRACE_S": "1",
            "WEBINAR_LOG_JSON": "1",
            "WEBINAR_SECRET_KEY": "benchmark-secret-key-not-for-production-0123456789",
        })
        env.update(self.env_extra)
        env.pop("REDIS_URL", None)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.data_dir / "server.log"
        log_file = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [PYTHON, "-m", "server.cli", "serve", "--port", str(self.port), "--rtmp-port", str(self.rtmp_port),
             "--srt-port", str(self.srt_port), "--data-dir", str(self.data_dir)],
            cwd=REPO, env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
        )
        log_file.close()
        if NICE:
            _autogroup_nice(self.proc.pid, NICE)  # its own session: its own scheduler autogroup
        import httpx

        async with httpx.AsyncClient(timeout=2) as client:
            deadline = time.monotonic() + 60
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"server exited ({self.proc.returncode}); log: {self.log_tail()}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{self.url}/healthz")).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"server not ready in 60 s; log: {self.log_tail()}")
                await asyncio.sleep(0.1)
        # the RTMP listener starts in the lifespan too, before /healthz answers

    def log_tail(self, lines: int = 30) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def log_lines(self, pattern: str) -> list[str]:
        if self.log_path is None or not self.log_path.exists():
            return []
        regex = re.compile(pattern)
        return [line for line in self.log_path.read_text(errors="replace").splitlines() if regex.search(line)]

    def kill(self) -> None:
        """SIGKILL the server and its children (its own process group): no shutdown work
        (lives are not ended, no replay is remuxed). For runs whose data is thrown away."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    async def stop(self, timeout: float = 20.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while proc.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        if proc.poll() is None:
            log(f"server {proc.pid} did not stop in {timeout:.0f} s: killing its process group")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        # replay remux children it may have left behind (same process group)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)


class Bench:
    """One PostgreSQL for the whole run; servers get a fresh database each."""

    def __init__(self) -> None:
        self.pg = PostgresForTests()
        self.tmp = Path(tempfile.mkdtemp(prefix="webinar-bench-"))

    async def __aenter__(self) -> "Bench":
        await self.pg.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.pg.stop()
        if not os.environ.get("WEBINAR_BENCH_KEEP"):
            shutil.rmtree(self.tmp, ignore_errors=True)

    def pg_pid(self) -> int | None:
        pidfile = self.pg.root / "data" / "postmaster.pid"
        with contextlib.suppress(OSError, ValueError, IndexError):
            return int(pidfile.read_text().splitlines()[0])
        return None

    @contextlib.asynccontextmanager
    async def server(self, **env: str) -> AsyncIterator[ServerProcess]:
        server = ServerProcess(
            port=free_port(), rtmp_port=free_port(), srt_port=free_udp_port(),
            data_dir=self.tmp / f"server-{uuid.uuid4().hex[:8]}",
            database_url=await self.pg.new_database(), env_extra=dict(env),
        )
        try:
            await server.start()
            yield server
        finally:
            await server.stop()


@dataclass(frozen=True)
class StudioWebinar:
    id: uuid.UUID
    key: str


async def studio_webinars(database_url: str, count: int) -> list[StudioWebinar]:
    """``count`` announced studio webinars with fresh stream keys, one account (and order) each."""
    from server.accounts import create_account
    from server.db import Database
    from server.orders import create_order
    from server.webinars import create_webinar, rotate_stream_key, set_state

    db = Database(database_url, min_size=1, max_size=4)
    await db.connect()
    try:
        today = dt.date.today()
        starts = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(minutes=5)

        async def one(i: int) -> StudioWebinar:
            account = await create_account(db, f"Bench {i} {uuid.uuid4().hex[:6]}")
            await create_order(
                db, account.id, reference=f"BENCH-{i}", signed_on=today, contract_start=today - dt.timedelta(days=1),
                contract_end=today + dt.timedelta(days=30), webinars_bought=1, kind="advertiser",
                studio_option=True, price_per_webinar_cents=0,
            )
            webinar = await create_webinar(db, account.id, title=f"Bench live {i}", starts_at=starts,
                                           duration_minutes=60, room_type="studio")
            await set_state(db, webinar.id, "announced")
            return StudioWebinar(webinar.id, await rotate_stream_key(db, webinar.id))

        made: list[StudioWebinar] = []
        for start in range(0, count, 4):
            made += await asyncio.gather(*(one(i) for i in range(start, min(count, start + 4))))
        return made
    finally:
        await db.close()


# ---------------------------------------------------------------- nginx peers


class _Nginx:
    """nginx in a throw-away prefix, ``daemon off``, one worker, stopped by its master pid."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.proc: subprocess.Popen[bytes] | None = None

    def conf(self) -> str:
        raise NotImplementedError

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        for sub in ("logs", "tmp"):
            (self.root / sub).mkdir(exist_ok=True)
        conf = self.root / "nginx.conf"
        conf.write_text(self.conf())
        self.proc = subprocess.Popen(
            [NGINX, "-p", str(self.root), "-c", str(conf), "-e", str(self.root / "logs" / "error.log")],
            stdout=subprocess.DEVNULL, stderr=open(self.root / "logs" / "stderr.log", "wb"),
        )
        await self._wait_ready()

    async def _wait_ready(self) -> None:
        port = self.port  # type: ignore[attr-defined]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"nginx exited: {(self.root / 'logs' / 'error.log').read_text(errors='replace')}")
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                return
            except OSError:
                await asyncio.sleep(0.05)
        raise RuntimeError("nginx did not listen in 10 s")

    async def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGQUIT)  # graceful: workers finish, then the master exits
        deadline = time.monotonic() + 10
        while proc.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            await asyncio.sleep(1)
        if proc.poll() is None:
            proc.kill()
        proc.wait()

    async def __aenter__(self) -> "_Nginx":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


class NginxRtmp(_Nginx):
    """nginx + libnginx-mod-rtmp doing RTMP -> HLS (MPEG-TS fragments) into ``hls_dir``."""

    def __init__(self, root: Path, port: int | None = None, fragment_s: float = 2.0) -> None:
        super().__init__(root)
        self.port = port or free_port()
        self.hls_dir = root / "hls"
        self.fragment_s = fragment_s

    def rtmp_url(self, key: str) -> str:
        return f"rtmp://127.0.0.1:{self.port}/live/{key}"

    def conf(self) -> str:
        self.hls_dir.mkdir(parents=True, exist_ok=True)
        return f"""
load_module {NGINX_RTMP_MODULE};
user root;
daemon off;
master_process on;
worker_processes 1;
pid {self.root}/nginx.pid;
error_log {self.root}/logs/error.log warn;
events {{ worker_connections 4096; }}
rtmp {{
    server {{
        listen 127.0.0.1:{self.port};
        chunk_size 4096;
        application live {{
            live on;
            record off;
            hls on;
            hls_path {self.hls_dir};
            hls_fragment {self.fragment_s:g}s;
            hls_playlist_length 3600s;
            hls_cleanup off;
        }}
    }}
}}
"""


class NginxHttp(_Nginx):
    """nginx serving ``docroot`` as static files over HTTP/1.1 keep-alive."""

    def __init__(self, root: Path, docroot: Path, port: int | None = None, workers: int = 1) -> None:
        super().__init__(root)
        self.port = port or free_port()
        self.docroot = docroot
        self.workers = workers

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def conf(self) -> str:
        tmp = self.root / "tmp"
        return f"""
user root;
daemon off;
master_process on;
worker_processes {self.workers};
worker_rlimit_nofile 65536;
pid {self.root}/nginx.pid;
error_log {self.root}/logs/error.log warn;
events {{ worker_connections 16384; multi_accept on; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 65s;
    keepalive_requests 1000000;
    open_file_cache max=10000 inactive=60s;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    types {{
        application/vnd.apple.mpegurl m3u8;
        video/iso.segment m4s;
        video/mp4 mp4;
    }}
    server {{
        listen 127.0.0.1:{self.port} backlog=8192;
        root {self.docroot};
        location / {{ add_header Cache-Control "no-cache"; }}
    }}
}}
"""


# ---------------------------------------------------------------- RESULTS.md

HEADER = "| metric | ours | peer | ratio | target | date | command |"
SEPARATOR = "| --- | --- | --- | --- | --- | --- | --- |"
_PREAMBLE = (
    "# Benchmark results\n\n"
    "Latest figures, one row per metric; each benchmark in `benchmarks/` runs our server and a\n"
    "peer in the same run and prints these (`--write` updates its own rows here). Medians of\n"
    "several repetitions on a noisy shared 2-core machine: see `benchmarks/README.md` for the\n"
    "method of each figure and the notes below for context.\n\n"
)


@dataclass
class Row:
    metric: str
    ours: str
    peer: str
    ratio: str
    target: str
    command: str
    date: str = RESULTS_DATE

    def line(self) -> str:
        cells = [self.metric, self.ours, self.peer, self.ratio, self.target, self.date, f"`{self.command}`"]
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def update_results(rows: Sequence[Row], notes: dict[str, str] | None = None, path: Path = RESULTS) -> None:
    """Replace (or append) ``rows`` in the results table by metric name; keep the others.

    ``notes`` maps a note key to its text: kept under ``## Notes`` as
    ``- **key**: text`` lines, replaced by key. Guarded by a lock file, since
    several benchmarks (and people) may write at once.
    """
    lock_path = path.with_name(".RESULTS.md.lock")
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            text = path.read_text() if path.exists() else _PREAMBLE + HEADER + "\n" + SEPARATOR + "\n"
            lines = text.splitlines()
            try:
                head = next(i for i, line in enumerate(lines) if line.strip().startswith("| metric |"))
            except StopIteration:
                lines += ["", HEADER, SEPARATOR]
                head = len(lines) - 2
            end = head + 2
            while end < len(lines) and lines[end].strip().startswith("|"):
                end += 1
            table = lines[head + 2 : end]
            by_metric = {r.metric: r for r in rows}
            kept: list[str] = []
            for line in table:
                metric = line.strip().strip("|").split("|")[0].strip()
                if metric in by_metric:
                    kept.append(by_metric.pop(metric).line())
                else:
                    kept.append(line)
            kept += [r.line() for r in rows if r.metric in by_metric]
            lines[head + 2 : end] = kept
            if notes:
                if "## Notes" not in [line.strip() for line in lines]:
                    lines += ["", "## Notes", ""]
                start = [line.strip() for line in lines].index("## Notes") + 1
                for key, body in notes.items():
                    entry = f"- **{key}**: {body}"
                    prefix = f"- **{key}**:"
                    for i in range(start, len(lines)):
                        if lines[i].startswith(prefix):
                            lines[i] = entry
                            break
                    else:
                        lines.append(entry)
            tmp = path.with_suffix(".md.tmp")
            tmp.write_text("\n".join(lines).rstrip("\n") + "\n")
            tmp.replace(path)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def write_metric(metric: str, *, ours: str, peer: str, ratio: str, target: str, module: str,
                 argv: Sequence[str], note: str, path: Path = RESULTS) -> None:
    """Replace one metric's row of RESULTS.md and its note (keyed by the metric name).

    The row's command is this run's (:func:`command_line` of ``module`` and ``argv``, ``--write`` left out).
    """
    update_results([Row(metric, ours=ours, peer=peer, ratio=ratio, target=target, command=command_line(module, argv))],
                   notes={metric: note}, path=path)


def command_line(module: str, argv: Sequence[str]) -> str:
    args = [a for a in argv if a != "--write"]
    return " ".join([".venv/bin/python", "-m", module, *args])


def fmt(value: float, digits: int = 3) -> str:
    if value != value:  # NaN
        return "n/a"
    return f"{value:.{digits}g}"


def as_json(data: Any) -> str:
    return json.dumps(data, default=str, indent=1)
