"""RTMP ingest core (sans-I/O): handshake (:mod:`.handshake`), chunk stream
(:mod:`.chunks`), server connection state machine and its events (:mod:`.session`),
protocol error (:mod:`.errors`). Import from those modules.

The asyncio listener around it is :mod:`ingest.rtmp_listener`.
"""
