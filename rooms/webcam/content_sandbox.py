"""Runs :mod:`rooms.webcam.content_worker` in a child process with bounds, from asyncio.

Bounds per run: address space :data:`MEMORY_BYTES` (``RLIMIT_AS``), CPU time
and wall time ``timeout_s`` (the child is killed at the wall limit); at most
:data:`CONCURRENT` children at once on this process (the machine has few
cores; uploads queue). A child that dies, runs out of memory or time, or
prints nothing usable becomes a :class:`ContentRefused` (``too_complex``
or ``timeout``): the file is refused, the server is untouched.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sys
from pathlib import Path
from typing import Any

from rooms.webcam.content_limits import ContentRefused

MEMORY_BYTES = 1024 * 1024 * 1024
"""Address-space limit of a child (bytes): the interpreter, PyAV and pdfium take ~300 MB."""
PDF_TIMEOUT_S = 120.0
"""Wall time to check and render a whole PDF (100 simple pages take ~10 s here)."""
IMAGE_TIMEOUT_S = 20.0
CLIP_TIMEOUT_S = 120.0
"""Wall time to probe an MP4 (a full demux pass over 300 MB takes a few seconds)."""
CONCURRENT = 2
OUTPUT_LIMIT = 64 * 1024
"""Largest answer read from a child (bytes)."""

_ROOT = Path(__file__).resolve().parents[2]
_slots: asyncio.Semaphore | None = None


def _limits(memory_bytes: int, cpu_s: int) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 1))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


async def run(task: str, *args: str | Path, timeout_s: float, memory_bytes: int = MEMORY_BYTES) -> dict[str, Any]:
    """The worker's facts for ``task`` on ``args``; raises :class:`ContentRefused` for
    a refused file, including one that exhausted the bounds."""
    global _slots
    if _slots is None:
        _slots = asyncio.Semaphore(CONCURRENT)
    async with _slots:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(_ROOT), os.environ.get("PYTHONPATH")])),
               "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
        cpu_s = max(1, int(timeout_s) + 1)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "rooms.webcam.content_worker", task, *map(str, args),
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
            env=env, preexec_fn=lambda: _limits(memory_bytes, cpu_s),
        )
        try:
            async with asyncio.timeout(timeout_s):
                out = await proc.stdout.read(OUTPUT_LIMIT) if proc.stdout else b""
                await proc.wait()
        except TimeoutError:
            raise ContentRefused("timeout", seconds=round(timeout_s)) from None
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    try:
        answer = json.loads(out.decode().strip().splitlines()[-1])
    except (ValueError, IndexError):
        answer = None
    if proc.returncode != 0 or not isinstance(answer, dict):
        raise ContentRefused("too_complex")
    if not answer.get("ok"):
        found = answer.get("params")
        params: dict[str, Any] = found if isinstance(found, dict) else {}
        raise ContentRefused(str(answer.get("code", "too_complex")), **params)
    return {k: v for k, v in answer.items() if k != "ok"}
