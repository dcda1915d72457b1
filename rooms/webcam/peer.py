"""One aiortc ``RTCPeerConnection`` per connected speaker or moderator.

It receives the person's camera and microphone (aiortc decodes them: the latest
picture is kept for the compositor, the microphone goes to the room's
:class:`rooms.webcam.audio_mix.AudioMixer`) and sends back

- the program video: the SAME H.264 packets for every person
  (:class:`ProgramVideoTrack` returns ``av.Packet`` objects, which aiortc
  packetizes without re-encoding; the video transceiver only offers H.264), and
- their own audio mix (everyone but themselves), Opus-encoded by aiortc per person.

**Screen share.** An offer may carry a second video section (the speaker page adds it
``sendonly`` from the start and puts the ``getDisplayMedia`` track on it with
``replaceTrack``, so sharing needs no renegotiation). Its latest picture is kept as
:attr:`SpeakerPeer.screen`; :class:`ScreenPicture` shows it while pictures keep
coming: a share is over :data:`SCREEN_STALE_S` seconds after its last picture (the
browser stopped the track, or replaced it with none).

Queues are bounded: a person whose connection cannot keep up loses program
pictures up to the next keyframe (and asks for one) instead of delaying others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import av
import numpy as np
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError
from aiortc.sdp import SessionDescription, candidate_from_sdp

from rooms.webcam.sources import SAMPLE_RATE

log = logging.getLogger("rooms.webcam.peer")

VIDEO_QUEUE = 45
"""Program pictures queued per person (1.5 s at 30 fps) before dropping to the next keyframe."""
AUDIO_QUEUE = 10
"""Mix blocks (20 ms) queued per person; older blocks are dropped beyond."""
SCREEN_STALE_S = 2.5
"""Seconds without a new screen picture after which a share counts as stopped (browsers
send a still screen at a low frame rate, but at least every second or so)."""


class ProgramVideoTrack(MediaStreamTrack):
    """The program, pre-encoded: ``recv`` returns the shared H.264 ``av.Packet``s."""

    kind = "video"

    def __init__(self, want_keyframe: Callable[[], None]) -> None:
        super().__init__()
        self._queue: asyncio.Queue[av.Packet] = asyncio.Queue(VIDEO_QUEUE)
        self._waiting_key = True
        self._want_keyframe = want_keyframe

    def offer(self, packet: av.Packet, keyframe: bool) -> None:
        """Queue one program picture (called on the event loop thread)."""
        if self.readyState != "live":
            return
        if self._waiting_key and not keyframe:
            return
        if self._queue.full():
            while not self._queue.empty():
                self._queue.get_nowait()
            self._waiting_key = True
            self._want_keyframe()
            if not keyframe:
                return
        self._waiting_key = False
        self._queue.put_nowait(packet)

    async def recv(self) -> av.Packet:  # type: ignore[override]
        if self.readyState != "live":
            raise MediaStreamError
        return await self._queue.get()


class MixAudioTrack(MediaStreamTrack):
    """The person's audio mix as 20 ms int16 mono frames at 48 kHz."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._queue: asyncio.Queue[av.AudioFrame] = asyncio.Queue(AUDIO_QUEUE)
        self._pts = 0

    def offer(self, samples: np.ndarray) -> None:
        if self.readyState != "live":
            return
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        frame.pts = self._pts
        frame.time_base = Fraction(1, SAMPLE_RATE)
        self._pts += len(samples)
        if self._queue.full():
            self._queue.get_nowait()
        self._queue.put_nowait(frame)

    async def recv(self) -> av.AudioFrame:  # type: ignore[override]
        if self.readyState != "live":
            raise MediaStreamError
        return await self._queue.get()


def ice_servers(config: list[dict[str, Any]]) -> list[RTCIceServer]:
    """``WEBINAR_ICE_SERVERS`` entries (``{"urls", "username"?, "credential"?}``) for aiortc."""
    return [RTCIceServer(urls=entry["urls"], username=entry.get("username"), credential=entry.get("credential"))
            for entry in config]


class ScreenPicture:
    """A person's shared screen as a :class:`rooms.webcam.sources.PictureSource`: their latest
    screen picture while it is fresh (see :data:`SCREEN_STALE_S`), else None."""

    def __init__(self, peer: SpeakerPeer) -> None:
        self.peer = peer

    def picture(self, now_s: float) -> av.VideoFrame | None:
        """``now_s``: :func:`time.monotonic` seconds (the clock the peer stamps pictures with)."""
        if self.peer.screen is None or now_s - self.peer.screen_at > SCREEN_STALE_S:
            return None
        return self.peer.screen


class SpeakerPeer:
    """The WebRTC side of one person in a webcam room."""

    def __init__(self, person: uuid.UUID, *, ice: list[dict[str, Any]], want_keyframe: Callable[[], None],
                 on_samples: Callable[[uuid.UUID, np.ndarray], None], on_gone: Callable[[SpeakerPeer], None]) -> None:
        self.person = person
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=ice_servers(ice)))
        self.video_out = ProgramVideoTrack(want_keyframe)
        self.audio_out = MixAudioTrack()
        self.latest: av.VideoFrame | None = None
        """The latest decoded camera picture (None until the first arrives)."""
        self.frames_in = 0
        self.screen: av.VideoFrame | None = None
        """The latest picture of the person's shared screen (None: never shared)."""
        self.screen_at = 0.0
        """When :attr:`screen` arrived (:func:`time.monotonic` seconds)."""
        self.screen_picture = ScreenPicture(self)
        self._screen_track: MediaStreamTrack | None = None
        self.closed = False
        self._on_samples = on_samples
        self._on_gone = on_gone
        self._tasks: set[asyncio.Task[None]] = set()
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)

        @self.pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            reader = self._read_video(track) if track.kind == "video" else self._read_audio(track)
            task = asyncio.ensure_future(reader)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        @self.pc.on("connectionstatechange")
        async def on_state() -> None:
            log.info("peer of %s: connection %s", self.person, self.pc.connectionState)
            if self.pc.connectionState in ("failed", "closed"):
                await self.close()

    async def answer(self, offer_sdp: str) -> str:
        """Apply the person's offer; return the answer SDP (with all our ICE candidates).
        The offer must have one audio and one video (camera) section, and may have a second
        video section, the screen share, after the camera's (``ValueError`` otherwise)."""
        kinds = sorted(media.kind for media in SessionDescription.parse(offer_sdp).media)
        if kinds not in (["audio", "video"], ["audio", "video", "video"]):
            raise ValueError(f"the offer must have one audio and one or two video sections, not {kinds}")
        video = self.pc.addTransceiver(self.video_out, direction="sendrecv")
        video.setCodecPreferences([c for c in RTCRtpSender.getCapabilities("video").codecs
                                   if c.mimeType in ("video/H264", "video/rtx")])
        self.pc.addTransceiver(self.audio_out, direction="sendrecv")
        await self.pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
        videos = [t for t in self.pc.getTransceivers() if t.kind == "video" and t is not video]
        if videos:  # the second video section (aiortc created it recvonly): the screen
            self._screen_track = videos[0].receiver.track
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        return str(self.pc.localDescription.sdp)

    async def add_candidate(self, candidate: str, sdp_mid: str | None, sdp_mline_index: int | None) -> None:
        """A trickled candidate of the person (an empty one ends the list)."""
        if not candidate:
            return
        text = candidate.removeprefix("candidate:")
        parsed = candidate_from_sdp(text)
        parsed.sdpMid, parsed.sdpMLineIndex = sdp_mid, sdp_mline_index
        await self.pc.addIceCandidate(parsed)

    async def _read_video(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                if not isinstance(frame, av.VideoFrame):
                    continue
                if track is self._screen_track:
                    self.screen, self.screen_at = frame, time.monotonic()
                else:
                    self.latest = frame
                    self.frames_in += 1

    async def _read_audio(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                if not isinstance(frame, av.AudioFrame):
                    continue
                frame.pts = None  # the resampler keeps its own timing
                for mono in self._resampler.resample(frame):
                    self._on_samples(self.person, mono.to_ndarray().reshape(-1))

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.video_out.stop()
        self.audio_out.stop()
        for task in list(self._tasks):
            task.cancel()
        try:
            await self.pc.close()
        except Exception as exc:  # noqa: BLE001 -- closing a half-negotiated connection
            log.debug("closing peer of %s: %s", self.person, exc)
        self._on_gone(self)
