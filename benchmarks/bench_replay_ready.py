"""(e) Replay available after the end of a live: VOD playlist and single MP4.

Each repetition publishes the 1080p30 6 Mbit/s clip for ``--live`` seconds
(``ffmpeg -re -stream_loop -1 -t LIVE -c copy``, which ends the RTMP stream
cleanly: ``FCUnpublish`` + ``deleteStream``) to ``webinar serve`` with the
production default ``WEBINAR_LIVE_GRACE_S`` (30 s, which only applies to a
dropped encoder: a clean unpublish ends the live at once) and, at the same
time, to nginx-rtmp. From the moment the publisher process exits, the
benchmark polls:

- ``/hls/<id>/index.m3u8`` every 50 ms until it carries ``#EXT-X-ENDLIST``:
  ``replay_vod_ready_s`` (what a viewer sees; nothing subtracted);
- ``/hls/<id>/replay.mp4`` every 100 ms until it answers 200:
  ``replay_mp4_ready_per_live_s`` = that time / the live's duration.

Peers in the same run: for the VOD, nginx-rtmp's playlist on disk until it
lists the final fragment (nginx-rtmp never writes ENDLIST: its playlist is
"final", not a VOD); for the MP4, ``ffmpeg -i vod.m3u8 -c copy -movflags
+faststart`` remuxing the same segments (timed after ours finished, so they
do not compete for the CPU).

    .venv/bin/python -m benchmarks.bench_replay_ready [--quick] [--write]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import time
from pathlib import Path

import httpx

from benchmarks.harness import (
    CLIP_1080P_6M,
    FFMPEG,
    Bench,
    NginxRtmp,
    Publisher,
    Row,
    add_common_options,
    clip,
    command_line,
    log,
    median,
    prepare_run,
    print_table,
    probe_bitrate_kbps,
    spread,
    studio_webinars,
    update_results,
)
from server.settings import Settings

METRIC_VOD = "replay_vod_ready_s"
METRIC_MP4 = "replay_mp4_ready_per_live_s"
MODULE = "benchmarks.bench_replay_ready"


async def until_endlist(client: httpx.AsyncClient, url: str, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = await client.get(url)
        if r.status_code == 200 and "#EXT-X-ENDLIST" in r.text:
            return time.monotonic()
        await asyncio.sleep(0.05)
    raise TimeoutError(f"no ENDLIST at {url} within {timeout:.0f} s")


async def until_mp4(client: httpx.AsyncClient, url: str, timeout: float) -> tuple[float, int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        async with client.stream("GET", url) as r:
            if r.status_code == 200:
                return time.monotonic(), int(r.headers.get("content-length", 0))
        await asyncio.sleep(0.1)
    raise TimeoutError(f"no replay MP4 at {url} within {timeout:.0f} s")


async def until_final(playlist: Path, fragments: Path, stem: str, timeout: float) -> float:
    """nginx-rtmp: the time its playlist lists every fragment written (the last one closed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if playlist.exists():
            text = playlist.read_text()
            written = {p.name for p in fragments.glob(f"{stem}-*.ts")}
            listed = {line.strip() for line in text.splitlines() if line.strip().endswith(".ts")}
            if written and written <= listed:
                return time.monotonic()
        await asyncio.sleep(0.05)
    raise TimeoutError("nginx-rtmp playlist never listed its last fragment")


async def ffmpeg_remux(folder: Path, out: Path) -> float:
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        FFMPEG, "-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-i", str(folder / "vod.m3u8"),
        "-c", "copy", "-movflags", "+faststart", str(out),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg remux failed: {err.decode(errors='replace')[-500:]}")
    return time.monotonic() - started


async def run(args: argparse.Namespace) -> dict[str, object]:
    await prepare_run(args)
    source = clip(CLIP_1080P_6M)
    kbps = probe_bitrate_kbps(source)
    reps = []
    async with Bench() as bench, bench.server(WEBINAR_LIVE_GRACE_S=f"{args.grace:g}") as server:
        webinars = await studio_webinars(server.database_url, args.reps)
        async with NginxRtmp(bench.tmp / "nginx-rtmp") as nginx, httpx.AsyncClient(timeout=30) as client:
            for rep, webinar in enumerate(webinars):
                base = f"{server.url}/hls/{webinar.id}"
                ours_pub = await Publisher(server.rtmp_url(webinar.key), source, args.live).start()
                nginx_pub = await Publisher(nginx.rtmp_url(f"rep{rep}"), source, args.live).start()
                codes = await asyncio.gather(ours_pub.wait(args.live + 60), nginx_pub.wait(args.live + 60))
                # ended = when each publisher process exited (Publisher.wait notes it)
                if any(c != 0 for c in codes):
                    raise RuntimeError(f"publisher failed {codes}: {ours_pub.stderr[-300:]!r} {server.log_tail()}")
                t_end = ours_pub.ended
                assert t_end is not None and nginx_pub.ended is not None
                vod_at, (mp4_at, mp4_size), nginx_at = await asyncio.gather(
                    until_endlist(client, f"{base}/index.m3u8", 60),
                    until_mp4(client, f"{base}/replay.mp4", 600),
                    until_final(nginx.hls_dir / f"rep{rep}.m3u8", nginx.hls_dir, f"rep{rep}", 60),
                )
                vod = (await client.get(f"{base}/index.m3u8")).text
                live_s = sum(float(line[8:].split(",")[0]) for line in vod.splitlines() if line.startswith("#EXTINF:"))
                folder = server.media_dir / str(webinar.id)
                ffmpeg_s = await ffmpeg_remux(folder, bench.tmp / f"ffmpeg-{rep}.mp4")
                remux_lines = server.log_lines(rf"replay MP4 of {webinar.id}")
                result = {
                    "live_s": live_s, "vod_s": vod_at - t_end, "mp4_s": mp4_at - t_end,
                    "nginx_final_s": nginx_at - nginx_pub.ended, "ffmpeg_s": ffmpeg_s, "mp4_mb": mp4_size / 1e6,
                    "remux_log": remux_lines[-1] if remux_lines else "",
                }
                result["mp4_per_live"] = result["mp4_s"] / live_s
                result["ffmpeg_per_live"] = ffmpeg_s / live_s
                reps.append(result)
                log(f"rep {rep + 1}/{args.reps}: live {live_s:.1f} s; VOD after {result['vod_s']:.2f} s "
                    f"(nginx-rtmp final playlist {result['nginx_final_s']:.2f} s); MP4 after {result['mp4_s']:.2f} s "
                    f"({result['mp4_per_live']:.4f} x live, {result['mp4_mb']:.0f} MB); ffmpeg remux "
                    f"{ffmpeg_s:.2f} s ({result['ffmpeg_per_live']:.4f} x live)")
                shutil.rmtree(folder, ignore_errors=True)  # keep the temp folder small between repetitions
    print(f"\nreplay after the end: {args.reps} lives of {args.live:.0f} s, 1080p30 at {kbps:.0f} kbit/s, "
          f"WEBINAR_LIVE_GRACE_S={args.grace:g}")
    print_table(
        ["rep", "live s", "VOD ready s", "nginx-rtmp final s", "MP4 ready s", "MP4/live", "ffmpeg remux s",
         "ffmpeg/live", "MP4 MB"],
        [[i + 1, f"{r['live_s']:.1f}", f"{r['vod_s']:.2f}", f"{r['nginx_final_s']:.2f}", f"{r['mp4_s']:.2f}",
          f"{r['mp4_per_live']:.4f}", f"{r['ffmpeg_s']:.2f}", f"{r['ffmpeg_per_live']:.4f}", f"{r['mp4_mb']:.0f}"]
         for i, r in enumerate(reps)],
    )
    summary = {key: median([r[key] for r in reps]) for key in
               ("vod_s", "nginx_final_s", "mp4_s", "mp4_per_live", "ffmpeg_s", "ffmpeg_per_live", "live_s")}
    summary.update({f"{key}_spread": spread([r[key] for r in reps], "{:.3g}") for key in
                    ("vod_s", "nginx_final_s", "mp4_per_live", "ffmpeg_per_live")})
    summary["reps"] = reps
    summary["kbps"] = kbps
    print(f"\nmedian: VOD ready {summary['vod_s']:.2f} s (target <= 5 s; nginx-rtmp final playlist "
          f"{summary['nginx_final_s']:.2f} s); MP4 ready {summary['mp4_s']:.2f} s = {summary['mp4_per_live']:.4f} x "
          f"live (target <= 0.05; ffmpeg remux alone {summary['ffmpeg_per_live']:.4f} x live)")
    for r in reps:
        if r["remux_log"]:
            print(f"  server: {r['remux_log'][:200]}")
    return summary


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_options(parser, quick="2 lives of 20 s (about 1.5 minutes)",
                       write="update the replay rows of benchmarks/RESULTS.md")
    parser.add_argument("--reps", type=int, help="repetitions (default 3, quick 2)")
    parser.add_argument("--live", type=float, help="live duration in seconds (default 60, quick 20)")
    parser.add_argument("--grace", type=float, default=Settings.live_grace_s,
                        help=f"WEBINAR_LIVE_GRACE_S (default {Settings.live_grace_s:g}, the server's default)")
    args = parser.parse_args(argv)
    args.reps = args.reps or (2 if args.quick else 3)
    args.live = args.live or (20.0 if args.quick else 60.0)
    s = asyncio.run(run(args))
    if args.write:
        command = command_line(MODULE, argv)
        vod_ratio = s["vod_s"] / s["nginx_final_s"] if s["nginx_final_s"] else float("inf")
        mp4_ratio = s["mp4_per_live"] / s["ffmpeg_per_live"] if s["ffmpeg_per_live"] else float("inf")
        update_results(
            [
                Row(METRIC_VOD, ours=f"{s['vod_s']:.2f} s ({s['vod_s_spread']})",
                    peer=f"{s['nginx_final_s']:.2f} s nginx-rtmp final playlist ({s['nginx_final_s_spread']})",
                    ratio=(f"{vod_ratio:.1f}×" if s["nginx_final_s"] >= 0.05 else "n/a (peer < 50 ms poll)")
                    + (" ✓" if s["vod_s"] <= 5 else " ✗"), target="≤ 5 s", command=command),
                Row(METRIC_MP4, ours=f"{s['mp4_per_live']:.4f} ({s['mp4_s']:.2f} s for {s['live_s']:.0f} s; "
                                     f"{s['mp4_per_live_spread']})",
                    peer=f"{s['ffmpeg_per_live']:.4f} ffmpeg -c copy ({s['ffmpeg_s']:.2f} s; {s['ffmpeg_per_live_spread']})",
                    ratio=f"{mp4_ratio:.1f}×{' ✓' if s['mp4_per_live'] <= 0.05 else ' ✗'}", target="≤ 0.05× live",
                    command=command),
            ],
            notes={"replay_ready": (
                f"{len(s['reps'])} lives of {args.live:.0f} s (1080p30, {s['kbps']:.0f} kbit/s), timed from the "
                f"publisher's exit; WEBINAR_LIVE_GRACE_S={args.grace:g}"
                + (" (the production default)" if args.grace == Settings.live_grace_s else " (NOT the default)")
                + ": ffmpeg ends with FCUnpublish + deleteStream, a clean end, which ends the live at once (the "
                "grace window only waits for dropped encoders); nothing subtracted. "
                "VOD = index.m3u8 with ENDLIST (polled every 50 ms); MP4 = replay.mp4 answers 200 (polled every "
                "100 ms), remuxed by the server in a child process. Peers: nginx-rtmp's playlist listing its last "
                "fragment (no ENDLIST ever: not a VOD); `ffmpeg -i vod.m3u8 -c copy -movflags +faststart` on the "
                f"same segments, timed alone. Other load on the machine when the run began: "
                f"{args.machine_busy_before:.2f} cores of 2."
            )},
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
