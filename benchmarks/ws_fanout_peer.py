"""The peer of :mod:`benchmarks.bench_ws_fanout`: a bare ``websockets`` broadcast server.

The ceiling of what Python can do for this job with the reference library:
``websockets.asyncio.server`` on uvloop (the event loop our server runs on
under uvicorn), no database, no authentication, no per-client queue, no
batching. A client's ``hello`` gets ``{"type":"welcome"}`` and joins the
room; every frame containing ``"chat.send"`` is relayed unchanged to every
client of the room with :func:`websockets.asyncio.server.broadcast` (the
frame is encoded once; no backpressure); anything else (heartbeats) is read
and ignored. No compression (our load client offers none, so uvicorn does not
negotiate it either). Pings every 20 s as uvicorn does.

    python -m benchmarks.ws_fanout_peer PORT

Prints ``ready`` on stdout when listening; stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import asyncio
import resource
import signal
import sys

from websockets.asyncio.server import ServerConnection, broadcast, serve

ROOM: set[ServerConnection] = set()


async def handler(ws: ServerConnection) -> None:
    try:
        while True:
            message = await ws.recv(decode=False)
            if b'"chat.send"' in message:
                broadcast(ROOM, message, text=True)
            elif b'"hello"' in message and ws not in ROOM:
                await ws.send('{"type":"welcome"}')
                ROOM.add(ws)
    except Exception:  # noqa: BLE001 - closed connections end here
        pass
    finally:
        ROOM.discard(ws)


async def main(port: int) -> None:
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    async with serve(handler, "127.0.0.1", port, backlog=4096, max_size=1 << 20, compression=None,
                     ping_interval=20, ping_timeout=20):
        print("ready", flush=True)
        await stop


if __name__ == "__main__":
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        import uvloop

        uvloop.run(main(int(sys.argv[1])))
    except ImportError:
        asyncio.run(main(int(sys.argv[1])))
