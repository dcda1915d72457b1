"""Registration burst: registrations per second and p99 latency against a real PostgreSQL.

Ours: ``POST /w/{id}/register`` on ``webinar serve`` (one process), the real form:
CSRF cookie + token, qualification fields, both consent boxes, a question for the
speakers; each registration writes the registration, its participant, two consent
proofs, the question and five durable email jobs (confirmation, reminders, replay)
in one transaction.

Peer, in the same run: a bare starlette + asyncpg endpoint under the same uvicorn,
inserting the same registration row only (no validation, no consent, no jobs): the
floor that framework, HTTP and one PostgreSQL round trip cost on this machine.

Load: ``--clients`` concurrent HTTP/1.1 keep-alive clients (httpx) in one separate
process, for ``--seconds``; every request a new email. Figures: completed
registrations per second and p50/p99 latency (send to full response), medians of
``--repeat`` runs. Client and servers share the 2 cores.

    .venv/bin/python -m benchmarks.bench_registrations [--quick] [--write]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import textwrap
import uuid

from benchmarks.harness import PYTHON, REPO, Bench, Row, command_line, log, median, percentile, print_table, update_results
from tests.support.net import free_port

TARGET_RPS = 500
TARGET_P99_MS = 200

PEER_APP = textwrap.dedent('''
    import os, uuid
    import asyncpg
    from starlette.applications import Starlette
    from starlette.responses import HTMLResponse
    from starlette.routing import Route

    pool = None

    async def startup():
        global pool
        pool = await asyncpg.create_pool(os.environ["DATABASE_URL"], min_size=2, max_size=10)

    async def register(request):
        form = await request.form()
        await pool.execute(
            "INSERT INTO registrations (webinar_id, email, first_name, last_name, company) VALUES ($1, $2, $3, $4, $5)",
            uuid.UUID(request.path_params["webinar_id"]), form["email"].lower(), form["first_name"],
            form["last_name"], form["company"])
        return HTMLResponse("<p>registered</p>")

    from contextlib import asynccontextmanager
    @asynccontextmanager
    async def lifespan(app):
        await startup()
        yield
        await pool.close()

    app = Starlette(routes=[Route("/w/{webinar_id}/register", register, methods=["POST"])], lifespan=lifespan)
''')

CLIENT = textwrap.dedent('''
    import asyncio, json, re, sys, time, uuid
    import httpx

    base, webinar_id, clients, seconds, with_form = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), sys.argv[5] == "1"
    hidden = re.compile(r'<input type="hidden" name="(\\w+)" value="([^"]*)">')

    async def one(results):
        async with httpx.AsyncClient(base_url=base, timeout=30, limits=httpx.Limits(max_connections=1)) as c:
            fields = {}
            if with_form:
                page = await c.get(f"/w/{webinar_id}/register?lang=en")
                fields = dict(hidden.findall(page.text))
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                body = dict(fields, email=f"{uuid.uuid4().hex[:12]}@bench.example", first_name="Ada", last_name="Lovelace",
                            company="Analytical Engines", phone="+33 1 23 45 67 89", job_function="CTO",
                            question="Will the slides be shared?", consent_sponsor_share="1", consent_marketing="1")
                t0 = time.perf_counter()
                r = await c.post(f"/w/{webinar_id}/register", data=body)
                dt = time.perf_counter() - t0
                results.append((dt, r.status_code))

    async def main():
        results = []
        t0 = time.monotonic()
        await asyncio.gather(*(one(results) for _ in range(clients)))
        print(json.dumps({"elapsed": time.monotonic() - t0, "results": results}))

    asyncio.run(main())
''')


async def run_client(base: str, webinar_id: uuid.UUID, clients: int, seconds: float, with_form: bool) -> dict[str, float]:
    proc = await asyncio.create_subprocess_exec(
        PYTHON, "-c", CLIENT, base, str(webinar_id), str(clients), str(seconds), "1" if with_form else "0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=REPO)
    async with asyncio.timeout(seconds + 120):
        out, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"load client failed: {err.decode()[-2000:]}")
    data = json.loads(out)
    ok = [d for d, status in data["results"] if status in (200, 303)]
    bad = len(data["results"]) - len(ok)
    if bad:
        statuses = sorted({s for _, s in data["results"] if s not in (200, 303)})
        raise RuntimeError(f"{bad} registrations failed (statuses {statuses})")
    window = seconds  # the clients stop starting requests after `seconds`
    return {"rps": len(ok) / window, "p50_ms": percentile(ok, 50) * 1000, "p99_ms": percentile(ok, 99) * 1000,
            "count": float(len(ok))}


async def peer_server(database_url: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    app_dir = REPO / ".bench-tmp"
    app_dir.mkdir(exist_ok=True)
    (app_dir / "peer_register_app.py").write_text(PEER_APP)
    env = {**os.environ, "DATABASE_URL": database_url, "PYTHONPATH": str(app_dir)}
    proc = subprocess.Popen([PYTHON, "-m", "uvicorn", "peer_register_app:app", "--port", str(port), "--log-level", "warning"],
                            env=env, cwd=app_dir)
    import httpx

    async with httpx.AsyncClient(timeout=1) as client:
        for _ in range(100):
            try:
                await client.post(f"http://127.0.0.1:{port}/w/{uuid.uuid4()}/register")
                break
            except httpx.HTTPError:
                await asyncio.sleep(0.1)
    return proc, f"http://127.0.0.1:{port}"


async def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.repeat = 5.0, 1
    from benchmarks.harness import studio_webinars

    ours_runs, peer_runs = [], []
    async with Bench() as bench:
        async with bench.server(WEBINAR_RUN_JOBS="0") as server:
            webinar = (await studio_webinars(server.database_url, 1))[0]
            peer, peer_url = await peer_server(server.database_url)
            try:
                for rep in range(args.repeat):
                    log(f"repetition {rep + 1}/{args.repeat}: ours")
                    ours_runs.append(await run_client(server.url, webinar.id, args.clients, args.seconds, True))
                    log(f"repetition {rep + 1}/{args.repeat}: peer")
                    peer_runs.append(await run_client(peer_url, webinar.id, args.clients, args.seconds, False))
            finally:
                peer.terminate()
                peer.wait(timeout=10)
    ours = {k: median([r[k] for r in ours_runs]) for k in ours_runs[0]}
    theirs = {k: median([r[k] for r in peer_runs]) for k in peer_runs[0]}
    print_table(["", "registrations/s", "p50 ms", "p99 ms"],
                [["ours", f"{ours['rps']:.0f}", f"{ours['p50_ms']:.1f}", f"{ours['p99_ms']:.1f}"],
                 ["bare starlette+asyncpg", f"{theirs['rps']:.0f}", f"{theirs['p50_ms']:.1f}", f"{theirs['p99_ms']:.1f}"]])
    if args.write:
        command = command_line("benchmarks.bench_registrations", argv)
        met_rps = "✓" if ours["rps"] >= TARGET_RPS else "✗"
        met_p99 = "✓" if ours["p99_ms"] <= TARGET_P99_MS else "✗"
        update_results([
            Row("registrations_per_s", f"{ours['rps']:.0f}/s ({args.clients} clients)",
                f"{theirs['rps']:.0f}/s bare starlette+asyncpg insert", f"{ours['rps'] / theirs['rps']:.2f} {met_rps}",
                f"≥ {TARGET_RPS}/s", command),
            Row("registration_p99_ms", f"{ours['p99_ms']:.0f} ms (p50 {ours['p50_ms']:.0f})",
                f"{theirs['p99_ms']:.0f} ms (p50 {theirs['p50_ms']:.0f})", f"{ours['p99_ms'] / theirs['p99_ms']:.2f} {met_p99}",
                f"≤ {TARGET_P99_MS} ms", command),
        ], notes={"registrations": (
            f"{args.clients} keep-alive clients in one process for {args.seconds:.0f} s, median of {args.repeat}; ours = the real "
            "form (CSRF, validation, consents with proof, question, 5 email jobs, one transaction), job worker off so that "
            "sending does not compete; peer = the same row inserted by a bare starlette+asyncpg endpoint; "
            f"runs ours {[round(r['rps']) for r in ours_runs]}/s, peer {[round(r['rps']) for r in peer_runs]}/s.")})
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main(sys.argv[1:])))


