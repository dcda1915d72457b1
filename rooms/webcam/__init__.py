"""Webcam rooms: up to 4 speakers in their browsers (WebRTC via aiortc), composited
with shared content into one program that goes through the same LL-HLS packager,
live lifecycle and replay as studio rooms (R-ROOM-1, R-ROOM-4, R-ROOM-5)."""
