"""An MP4 clip played into the program: :class:`ClipPlayer` is both a
:class:`~rooms.webcam.sources.PictureSource` and a
:class:`~rooms.webcam.sources.SoundSource`.

One worker thread per player demuxes and decodes (PyAV) ahead of the program
clock, into a bounded queue of video frames (:data:`AHEAD_FRAMES`) and a
bounded buffer of audio resampled to int16 mono at
:data:`~rooms.webcam.sources.SAMPLE_RATE` Hz (:data:`AHEAD_AUDIO_S`); memory
is bounded whatever the clip's length. ``picture``/``sound`` only take what
is ready, under a lock held for microseconds: they never block the event loop.

Timeline: positions are seconds from the clip's start. ``play``, ``pause``
and ``seek`` are called from the event loop (room commands); playback is
anchored to the program clock at the next ``picture``/``sound`` call, so the
player needs no clock of its own. At the end the last frame stays on screen
and the sound stops.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import numpy

from rooms.webcam.sources import SAMPLE_RATE

log = logging.getLogger("rooms.webcam.clip")

AHEAD_FRAMES = 24
"""Video frames decoded ahead at most (720p: ~33 MB; 1080p: ~75 MB)."""
AHEAD_AUDIO_S = 1.0
"""Audio decoded ahead at most, in seconds."""
RESYNC_SAMPLES = SAMPLE_RATE // 20
"""``sound`` reads continue where the previous read stopped unless the program asks for a
position more than this many samples away (50 ms): no clicks from float rounding."""


class ClipPlayer:
    """Plays one MP4 file (already checked at upload) into the program."""

    def __init__(self, path: Path, *, label: str = "", ahead_frames: int = AHEAD_FRAMES,
                 ahead_audio_s: float = AHEAD_AUDIO_S) -> None:
        self.path = path
        self.label = label
        self.ahead_frames = max(2, ahead_frames)
        self.ahead_samples = max(SAMPLE_RATE // 10, int(ahead_audio_s * SAMPLE_RATE))
        with av.open(str(path)) as probe:
            self.duration_s = float(probe.duration or 0) / 1_000_000
            self.has_video = bool(probe.streams.video)
            self.has_audio = bool(probe.streams.audio)
        self._cond = threading.Condition()
        # Decoder side (guarded by _cond).
        self._generation = 0
        self._decode_from = 0.0
        self._frames: deque[tuple[float, av.VideoFrame]] = deque()
        self._audio = numpy.zeros(0, dtype=numpy.int16)
        self._audio_start = 0
        """Clip sample index of ``_audio[0]``."""
        self._decoded_all = False
        self._stopped = False
        # Timeline (event loop side).
        self.playing = False
        self._anchor_pos = 0.0
        self._anchor_now: float | None = None
        self._last_now: float | None = None
        self._current: av.VideoFrame | None = None
        self._cursor: int | None = None
        self._thread = threading.Thread(target=self._decode_loop, name=f"clip:{path.name}", daemon=True)
        self._thread.start()

    # Timeline -----------------------------------------------------------------------
    def position(self, now_s: float | None = None) -> float:
        """The clip position (seconds) at program time ``now_s`` (default: the last read)."""
        if not self.playing:
            return self._anchor_pos
        now = self._last_now if now_s is None else now_s
        if now is None or self._anchor_now is None:
            return self._anchor_pos
        return min(self.duration_s, self._anchor_pos + max(0.0, now - self._anchor_now))

    def ended(self, now_s: float | None = None) -> bool:
        return self.position(now_s) >= self.duration_s

    def play(self) -> None:
        if not self.playing:
            self._anchor_pos = self.position()
            self._anchor_now = None
            self.playing = True

    def pause(self) -> None:
        if self.playing:
            self._anchor_pos = self.position()
            self.playing = False

    def seek(self, position_s: float) -> None:
        """Jump to ``position_s`` (clamped to the clip); keeps playing or paused."""
        position = min(max(0.0, position_s), self.duration_s)
        self._anchor_pos, self._anchor_now, self._cursor = position, None, None
        with self._cond:
            self._generation += 1
            self._decode_from = position
            self._frames.clear()
            self._audio = numpy.zeros(0, dtype=numpy.int16)
            self._audio_start = round(position * SAMPLE_RATE)
            self._decoded_all = False
            self._cond.notify_all()

    def _now(self, now_s: float) -> float:
        self._last_now = now_s
        if self.playing and self._anchor_now is None:
            self._anchor_now = now_s
        return self.position(now_s)

    # Sources --------------------------------------------------------------------------
    def picture(self, now_s: float) -> av.VideoFrame | None:
        position = self._now(now_s)
        with self._cond:
            popped = False
            while self._frames and self._frames[0][0] <= position + 1e-6:
                self._current = self._frames.popleft()[1]
                popped = True
            if popped:
                self._cond.notify_all()
        return self._current

    def sound(self, now_s: float, samples: int) -> numpy.ndarray | None:
        position = self._now(now_s)
        if not self.playing or not self.has_audio or samples <= 0 or position >= self.duration_s:
            return None
        start = round(position * SAMPLE_RATE)
        if self._cursor is not None and abs(start - self._cursor) <= RESYNC_SAMPLES:
            start = self._cursor
        end = start + samples
        out = numpy.zeros(samples, dtype=numpy.int16)
        with self._cond:
            have_from, have_to = self._audio_start, self._audio_start + len(self._audio)
            lo, hi = max(start, have_from), min(end, have_to)
            if hi > lo:
                out[lo - start:hi - start] = self._audio[lo - have_from:hi - have_from]
            if end > have_from:
                drop = min(len(self._audio), end - have_from)
                self._audio = self._audio[drop:]
                self._audio_start += drop
                self._cond.notify_all()
            got = hi > lo
            finished = self._decoded_all and not len(self._audio)
        self._cursor = end
        if not got and finished:
            return None
        return out

    def wait_decoded(self, position_s: float, timeout_s: float) -> bool:
        """Block (a worker thread or a test, never the event loop) until what is shown at
        ``position_s`` is decoded, the buffers are full or the clip is decoded to its end."""
        def ready() -> bool:
            if self._decoded_all or self._stopped:
                return True
            video_ok = not self.has_video or bool(self._frames and self._frames[-1][0] >= position_s) \
                or len(self._frames) >= self.ahead_frames
            audio_ok = not self.has_audio or self._audio_start + len(self._audio) >= round(position_s * SAMPLE_RATE) \
                or len(self._audio) >= self.ahead_samples
            return video_ok and audio_ok

        with self._cond:
            return self._cond.wait_for(ready, timeout_s)

    def close(self) -> None:
        """Stop the worker thread (it exits within one decoded packet)."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    # Worker thread --------------------------------------------------------------------
    def _decode_loop(self) -> None:
        try:
            with av.open(str(self.path)) as container:
                while True:
                    with self._cond:
                        if self._stopped:
                            return
                        generation, start = self._generation, self._decode_from
                    self._decode_from_position(container, generation, start)
                    with self._cond:
                        if self._generation == generation:
                            self._decoded_all = True
                            self._cond.notify_all()
                        self._cond.wait_for(self._moved_on(generation))
        except Exception:
            log.exception("clip %s: decoding failed", self.path)
            with self._cond:
                self._decoded_all = True
                self._cond.notify_all()

    def _moved_on(self, generation: int) -> Callable[[], bool]:
        return lambda: self._stopped or self._generation != generation

    def _decode_from_position(self, container: av.container.InputContainer, generation: int, start: float) -> None:
        video = container.streams.video[0] if self.has_video else None
        audio = container.streams.audio[0] if self.has_audio else None
        streams = [s for s in (video, audio) if s is not None]
        v_start = _start_s(video)
        a_start = _start_s(audio)
        frame_s = float(1 / video.average_rate) if video is not None and video.average_rate else 1 / 30
        container.seek(int(start * 1_000_000), backward=True, any_frame=False)
        resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE) if audio is not None else None
        first_sample = round(start * SAMPLE_RATE)
        next_sample: int | None = None
        for packet in container.demux(*streams):
            for frame in packet.decode():
                if isinstance(frame, av.VideoFrame):
                    t = float(frame.time or 0.0) - v_start
                    if t + frame_s <= start:
                        continue
                    if not self._put_frame(generation, max(t, 0.0), frame):
                        return
                elif resampler is not None and isinstance(frame, av.AudioFrame):
                    if next_sample is None:
                        next_sample = round((float(frame.time or 0.0) - a_start) * SAMPLE_RATE)
                    for out in resampler.resample(frame):
                        pcm = out.to_ndarray().reshape(-1).astype(numpy.int16, copy=False)
                        if not self._put_audio(generation, next_sample, pcm, first_sample):
                            return
                        next_sample += len(pcm)
        if resampler is not None and next_sample is not None:
            for out in resampler.resample(None):
                pcm = out.to_ndarray().reshape(-1).astype(numpy.int16, copy=False)
                if not self._put_audio(generation, next_sample, pcm, first_sample):
                    return
                next_sample += len(pcm)

    def _put_frame(self, generation: int, t: float, frame: av.VideoFrame) -> bool:
        with self._cond:
            self._cond.wait_for(lambda: self._stopped or self._generation != generation
                                or len(self._frames) < self.ahead_frames)
            if self._stopped or self._generation != generation:
                return False
            self._frames.append((t, frame))
            self._cond.notify_all()
            return True

    def _put_audio(self, generation: int, at_sample: int, pcm: numpy.ndarray, first_sample: int) -> bool:
        if at_sample < first_sample:  # before the seek position: drop the head
            pcm = pcm[first_sample - at_sample:]
            at_sample = first_sample
        if not len(pcm):
            return True
        with self._cond:
            self._cond.wait_for(lambda: self._stopped or self._generation != generation
                                or len(self._audio) < self.ahead_samples)
            if self._stopped or self._generation != generation:
                return False
            have_to = self._audio_start + len(self._audio)
            if at_sample > have_to:  # a gap in the clip's audio: silence
                self._audio = numpy.concatenate([self._audio, numpy.zeros(at_sample - have_to, dtype=numpy.int16)])
            elif at_sample < have_to:  # overlap (or already consumed): keep what is new
                pcm = pcm[have_to - at_sample:]
            self._audio = numpy.concatenate([self._audio, pcm])
            self._cond.notify_all()
            return True


def _start_s(stream: Any) -> float:
    """A stream's first timestamp in seconds (0 when unknown)."""
    if stream is None or stream.start_time is None or stream.time_base is None:
        return 0.0
    return float(stream.start_time * stream.time_base)
