"""SRT ingest: a listener over the system libsrt, fed into MPEG-TS demuxing.

``SRTUnavailable`` is raised by :meth:`SRTListener.start` when libsrt is not
installed: the server then runs without SRT and says so. The submodules:

- :mod:`ingest.srt.libsrt`: the thin ctypes binding;
- :mod:`ingest.srt.streamid`: stream id -> stream key (sans-I/O);
- :mod:`ingest.srt.listener`: the listener thread and its asyncio side.
"""

from ingest.srt.libsrt import SRTError, SRTUnavailable
from ingest.srt.listener import DEFAULT_PORT, Authorize, Precheck, SRTListener
from ingest.srt.streamid import StreamIdError, parse_stream_id

__all__ = [
    "DEFAULT_PORT",
    "Authorize",
    "Precheck",
    "SRTError",
    "SRTListener",
    "SRTUnavailable",
    "StreamIdError",
    "parse_stream_id",
]
