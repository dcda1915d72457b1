"""A lower rendition made from the live: decode, scale to 480 lines, encode H.264.

:class:`Transcoder` is a :class:`player.media.MediaSink` that sits beside the
source rendition's :class:`~player.publication.Publication` (the live manager
tees the source into both) and feeds a second Publication, the ``480p``
rendition (:mod:`player.renditions`). The source rendition never waits for it.

Pipeline (one worker thread per live)
-------------------------------------
source units --(event loop: admission, bounded queue)--> worker thread:
PyAV decoder (``h264`` or ``hevc``, opened with the config record as
extradata) -> swscale to :attr:`TranscodeOptions.height` lines (aspect kept,
even width, never more lines than the source) -> libx264
(``tune=zerolatency``, no B-frames, ABR with a VBV cap)
--(``loop.call_soon_threadsafe``)--> the 480p Publication, in source order.
Audio is passed through unchanged, in its place in the stream. PyAV
releases the GIL while it decodes, scales and encodes, so the loop keeps
running.

Alignment with the source rendition
-----------------------------------
The two renditions must cut segments at the same instants, so that segment
``msn`` N of one covers the same media time as segment N of the other:

- the encoder makes a keyframe (IDR, ``forced-idr``) exactly on each source
  keyframe and nowhere else (no scene cut, no periodic keyframe);
- output timestamps are the source's: ``pts`` is the decoded frame's pts,
  ``dts = pts - D`` where ``D`` is the composition delay of the first source
  keyframe after a (re)start (0 for a source without B-frames), so each
  keyframe has the same decode time in both renditions and both segmenters
  take the same decisions;
- a source config change makes a new encoder whose parameter sets carry a
  new ``sps-id``, so the 480p rendition starts a new init generation at the
  same point as the source; a publisher drop flushes decoder and encoder
  before the 480p Publication is told (``source_lost``), at the same point
  of the stream; so does a clock jump of the source;
- audio before the first encoded keyframe is dropped (the segmenter would
  drop it too; it must not start the 480p rendition audio-only).

Backpressure (the loop never waits, the source never stalls)
-------------------------------------------------------------
Admission is decided on the event loop, per GOP, from the number of video
frames waiting for the worker:

- a GOP whose keyframe arrives while more than
  :attr:`TranscodeOptions.max_backlog_frames` wait is dropped from the 480p
  rendition except its keyframe: the keyframe is transcoded (so the segment
  boundary, hence the segment numbering, stays aligned) and then held as a
  still picture: every :attr:`TranscodeOptions.hold_interval_s` the same
  picture is encoded again (no decoding, no scaling; a cheap skip frame), so
  parts keep their target duration and the playlist its exact timeline;
- inside an admitted GOP, past :attr:`TranscodeOptions.max_queued_frames`
  frames waiting, the rest of the GOP is dropped the same way (a GOP's tail
  can go without breaking decoding); a frame the decoder refuses does the
  same on the worker's side;
- past :attr:`TranscodeOptions.max_queued_items` events waiting (audio
  included) the worker is stuck: the transcoder fails.

Failure and end
---------------
Any error other than an undecodable frame (encoder, unexpected exception)
*fails* the transcoder: the worker stops, :attr:`Transcoder.failed` is set,
the source rendition goes on; the 480p Publication is left as it is (it
leaves the multivariant playlist; players switch away from a rendition that
stops growing) and is ended with the live. :meth:`Transcoder.on_end` flushes
decoder and encoder, then ends the 480p Publication;
:meth:`Transcoder.wait_closed` waits for that at most a given time, then
ends it regardless.

CPU cost: with the defaults the worker does all the work (single-threaded
decoder, one libx264 thread), so the worker's ``time.thread_time()`` is the
whole cost: :attr:`TranscoderStats.cpu_seconds`, against
:attr:`TranscoderStats.media_seconds` of media. Measured figures are in the
report of ``tests/integration/test_low_rendition.py``.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Protocol

import av
from av.video.reformatter import VideoReformatter

from player.media import TIMESCALE, AccessUnit, TrackConfig, VideoConfig
from player.nal import NALError, avc_decoder_config, h264_nal_type, length_prefixed, split_annexb
from player.segmenter import BACKWARD_JUMP, FORWARD_JUMP

__all__ = ["RenditionSink", "TranscodeOptions", "Transcoder", "TranscoderStats", "output_size"]

log = logging.getLogger("player.transcode")

_TIME_BASE = Fraction(1, TIMESCALE)
_GLOBAL_HEADER = 1 << 22  # AV_CODEC_FLAG_GLOBAL_HEADER: parameter sets in extradata, not in frames
_KEYINT_NEVER = 1 << 20
"""libx264 keyint: no periodic keyframe (keyframes come from the source only)."""
_PARAMETER_SET_TYPES = frozenset({7, 8, 9})  # SPS, PPS, AUD: in the avcC, not in samples
_DECODERS = {"h264": "h264", "hevc": "hevc"}
_MIN_FPS, _MAX_FPS = 1, 240
_VIDEO_EVENTS = frozenset({"video", "hold"})


class RenditionSink(Protocol):
    """What the transcoder feeds: a :class:`~player.publication.Publication`."""

    def on_config(self, config: TrackConfig) -> None: ...

    def on_access_unit(self, unit: AccessUnit) -> None: ...

    def source_lost(self) -> None: ...

    def on_end(self) -> None: ...


@dataclass(frozen=True, slots=True)
class TranscodeOptions:
    """Settings of the lower rendition. Sizes in pixels, rates in bits/s."""

    height: int = 480
    """Output lines (even); a source with fewer lines keeps its own height."""
    bitrate: int = 1_000_000
    """Average video bit rate aimed at (libx264 ABR)."""
    maxrate: int = 1_200_000
    """VBV maximum rate: caps the peaks a phone on a weak network must fetch."""
    bufsize: int = 1_200_000
    """VBV buffer in bits (one second at ``maxrate``)."""
    preset: str = "veryfast"
    """libx264 preset; ``veryfast`` or faster on this class of machine."""
    threads: int = 1
    """libx264 threads. 1 keeps every cycle on the worker thread (measurable,
    and leaves the other core to the rest of the server)."""
    default_fps: int = 30
    """Frame rate given to the rate control when the source's SPS has no timing info."""
    max_backlog_frames: int = 30
    """A GOP whose keyframe arrives with more video frames waiting than this is
    reduced to its keyframe (about one second behind at 30 fps)."""
    max_queued_frames: int = 90
    """Video frames waiting beyond which the rest of the current GOP is dropped."""
    max_queued_items: int = 2048
    """Events waiting (video, audio, control) beyond which the transcoder fails (~20 s of a live)."""
    hold_interval_s: float = 0.1
    """Seconds between repeats of the still picture that stands for dropped frames
    (at most a third of the part target, so parts keep their duration)."""

    def __post_init__(self) -> None:
        if self.height < 16 or self.height % 2:
            raise ValueError("height must be an even number of lines, at least 16")
        if min(self.bitrate, self.maxrate, self.bufsize) <= 0 or self.maxrate < self.bitrate:
            raise ValueError("need 0 < bitrate <= maxrate and bufsize > 0")
        if not 0 < self.max_backlog_frames <= self.max_queued_frames < self.max_queued_items:
            raise ValueError("need 0 < max_backlog_frames <= max_queued_frames < max_queued_items")
        if not 1 <= self.threads <= 16 or not _MIN_FPS <= self.default_fps <= _MAX_FPS:
            raise ValueError("threads must be 1-16 and default_fps 1-240")
        if not 0 < self.hold_interval_s <= 1:
            raise ValueError("hold_interval_s must be in (0, 1] seconds")


@dataclass(slots=True)
class TranscoderStats:
    """Counters of one transcoder (each written by one thread, read anywhere)."""

    frames_in: int = 0
    """Source video frames queued for full transcoding (loop)."""
    frames_dropped: int = 0
    """Source video frames not transcoded: reduced GOPs, dropped tails, before a keyframe (loop)."""
    gops_thinned: int = 0
    """GOPs reduced to their keyframe because the worker was behind (loop)."""
    frames_out: int = 0
    """Encoded frames handed to the 480p rendition, held pictures included (worker)."""
    held_frames: int = 0
    """Of which repeats of a still picture standing for dropped frames (worker)."""
    decode_errors: int = 0
    """Source frames the decoder refused (worker)."""
    cpu_seconds: float = 0.0
    """CPU time of the worker thread: decode + scale + encode when ``threads=1`` (worker)."""
    media_seconds: float = 0.0
    """Media time covered by the encoded frames, seconds (worker)."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "frames_in": self.frames_in,
            "frames_dropped": self.frames_dropped,
            "gops_thinned": self.gops_thinned,
            "frames_out": self.frames_out,
            "held_frames": self.held_frames,
            "decode_errors": self.decode_errors,
            "cpu_seconds": round(self.cpu_seconds, 3),
            "media_seconds": round(self.media_seconds, 3),
        }


def output_size(width: int, height: int, lines: int) -> tuple[int, int]:
    """Output ``(width, height)`` for a ``width x height`` picture scaled to ``lines``
    lines: aspect kept (square pixels), both even, never larger than the source."""
    if width <= 0 or height <= 0:
        raise ValueError(f"bad picture size {width}x{height}")
    out_h = max(2, min(lines, height - height % 2))
    out_w = max(2, round(width * out_h / height / 2) * 2)
    return out_w, out_h


_Event = tuple[Any, ...]
"""Worker input: ("config", TrackConfig), ("video", AccessUnit, key_only), ("hold", pts),
("audio", AccessUnit), ("lost",), ("end",). Worker output (to the loop): ("config",
TrackConfig), ("unit", AccessUnit), ("lost",), ("end",), ("failed", reason)."""


class Transcoder:
    """Makes the 480p rendition of a live; a :class:`~player.media.MediaSink`.

    Create it on the event loop that calls it: ``on_config``,
    ``on_access_unit``, ``source_lost`` and ``on_end`` come from that loop and
    never block. ``output`` gets the 480p rendition's configs and units on the
    same loop, in order. The worker thread starts at once and stops at the end,
    on a failure, or when :meth:`wait_closed` gives up.
    """

    def __init__(self, output: RenditionSink, options: TranscodeOptions = TranscodeOptions(), *,
                 name: str = "transcoder") -> None:
        self.options = options
        self.stats = TranscoderStats()
        self.failed = False
        """True once the transcoder gave up (the source rendition is not affected)."""
        self.cut = False
        """True when :meth:`wait_closed` gave up waiting: the 480p rendition lacks its end."""
        self.frame_rate: float | None = None
        """Frames per second the encoder was told (source SPS timing, else the default)."""
        self.name = name
        self._output = output
        self._loop = asyncio.get_running_loop()
        self._done: asyncio.Future[None] = self._loop.create_future()
        self._output_ended = False
        self._hold_ticks = round(options.hold_interval_s * TIMESCALE)
        # shared with the worker, under _lock
        self._lock = threading.Condition()
        self._queue: collections.deque[_Event] = collections.deque()
        self._queued_video = 0
        self._stop = False
        # loop side
        self._ended = False
        self._mode = "wait"  # "wait" for a keyframe, "admit" the GOP, "thin": holds only
        self._last_queued_dts = 0
        self._video_codec: str | None = None
        # worker side
        self._decoder: Any = None
        self._decoder_config: VideoConfig | None = None
        self._epoch = -1  # +1 per distinct source video config: the encoder's sps-id
        self._encoder: Any = None
        self._emitted_video: VideoConfig | None = None
        self._reformatter = VideoReformatter()
        self._still: Any = None  # the last scaled picture, repeated for dropped frames
        self._delay: int | None = None  # D: composition delay of the first keyframe since (re)start
        self._key_pts: set[int] = set()
        self._skip_to_key = False
        self._last_pts: int | None = None
        self._last_dts: int | None = None  # of the last source video unit, to notice clock jumps
        self._interval: int | None = None
        self._out: list[_Event] = []
        self._thread = threading.Thread(target=self._run, name=f"{name} worker", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ MediaSink (event loop)

    def on_config(self, config: TrackConfig) -> None:
        """A source config: a video one (re)initialises the decoder, audio passes through."""
        if self._closed_for_input():
            return
        if isinstance(config, VideoConfig):
            if config.codec not in _DECODERS:
                self._fail_now(f"cannot decode {config.codec!r} video")
                return
            self._video_codec = config.codec
            self._mode = "wait"  # a new decoder starts at a keyframe
        self._put(("config", config))

    def on_access_unit(self, unit: AccessUnit) -> None:
        """Queue a source unit for the worker, or drop it (see the backpressure rules)."""
        if self._closed_for_input():
            return
        if unit.kind != "video":
            self._put(("audio", unit))
            return
        if self._video_codec is None:
            return
        options = self.options
        stats = self.stats
        with self._lock:
            waiting = self._queued_video
        if unit.keyframe:
            key_only = waiting > options.max_backlog_frames
            if key_only:
                stats.gops_thinned += 1
                log.info("%s: worker %d frames behind: this GOP is reduced to its keyframe", self.name, waiting)
            self._mode = "thin" if key_only else "admit"
            self._queue_video(("video", unit, key_only), unit.dts)
            stats.frames_in += not key_only
            stats.frames_dropped += key_only
            return
        if self._mode == "admit" and waiting >= options.max_queued_frames:
            log.info("%s: worker %d frames behind: dropping the rest of this GOP", self.name, waiting)
            self._mode = "thin"
        if self._mode == "admit":
            stats.frames_in += 1
            self._queue_video(("video", unit, False), unit.dts)
            return
        stats.frames_dropped += 1
        if self._mode == "thin" and unit.dts - self._last_queued_dts >= self._hold_ticks:
            self._queue_video(("hold", unit.pts), unit.dts)

    def source_lost(self) -> None:
        """The publisher dropped (the live goes on): flush, then tell the 480p rendition."""
        if self._closed_for_input():
            return
        self._mode = "wait"
        self._put(("lost",))

    def on_end(self) -> None:
        """The live is over: flush decoder and encoder, end the 480p rendition, stop the worker."""
        if self._ended:
            return
        self._ended = True
        if self.failed:
            self._end_output()
            return
        self._put(("end",), force=True)

    async def wait_closed(self, timeout: float) -> bool:
        """Wait until the 480p rendition has ended (calls :meth:`on_end` if needed), at
        most ``timeout`` seconds; then end it regardless and stop the worker. True when
        it ended on its own."""
        if not self._ended:
            self.on_end()
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(self._done)
                if self._thread.is_alive():  # it is closing its codecs: a moment
                    await asyncio.to_thread(self._thread.join, timeout)
            return not self.cut
        except TimeoutError:
            log.warning("%s: still busy %.1f s after the end; the 480p rendition is cut", self.name, timeout)
            self.cut = True
            self._stop_worker()
            self._end_output()
            return False

    @property
    def running(self) -> bool:
        """True while the worker thread is alive."""
        return self._thread.is_alive()

    # ------------------------------------------------------------------ loop helpers

    def _closed_for_input(self) -> bool:
        return self._ended or self.failed

    def _queue_video(self, event: _Event, dts: int) -> None:
        self._last_queued_dts = dts
        self._put(event)

    def _put(self, event: _Event, *, force: bool = False) -> None:
        with self._lock:
            overflow = not force and len(self._queue) >= self.options.max_queued_items
            if not overflow:
                self._queue.append(event)
                if event[0] in _VIDEO_EVENTS:
                    self._queued_video += 1
                self._lock.notify()
        if overflow:
            self._fail_now(f"worker stuck: {self.options.max_queued_items} events waiting")

    def _fail_now(self, reason: str) -> None:
        """Fail from the loop side: stop the worker; the 480p rendition stays as it is."""
        if self.failed:
            return
        log.error("%s failed: %s; the source rendition goes on", self.name, reason)
        self.failed = True
        self._stop_worker()
        if self._ended:
            self._end_output()

    def _stop_worker(self) -> None:
        with self._lock:
            self._stop = True
            self._queue.clear()
            self._queued_video = 0
            self._lock.notify()

    def _end_output(self) -> None:
        if self._output_ended:
            return
        self._output_ended = True
        try:
            self._output.on_end()
        except Exception:
            log.exception("%s: ending the 480p rendition failed", self.name)
        if not self._done.done():
            self._done.set_result(None)

    def _deliver(self, events: list[_Event]) -> None:
        """On the loop: hand the worker's output to the 480p rendition, in order."""
        output = self._output
        for event in events:
            if self._output_ended:
                return
            kind = event[0]
            try:
                if kind == "config":
                    output.on_config(event[1])
                elif kind == "unit":
                    output.on_access_unit(event[1])
                elif kind == "lost":
                    output.source_lost()
                elif kind == "end":
                    self._end_output()
                elif kind == "failed":
                    if not self.failed:
                        log.error("%s failed: %s; the source rendition goes on", self.name, event[1])
                    self.failed = True
                    if self._ended:
                        self._end_output()
            except Exception:  # the Publication refuses bad input itself; never break the loop
                log.exception("%s: the 480p rendition refused %s", self.name, kind)

    # ------------------------------------------------------------------ worker thread

    def _run(self) -> None:
        started = time.thread_time()
        try:
            while True:
                with self._lock:
                    while not self._queue and not self._stop:
                        self._lock.wait()
                    if self._stop:
                        return
                    event = self._queue.popleft()
                    if event[0] in _VIDEO_EVENTS:
                        self._queued_video -= 1
                self._handle(event)
                self.stats.cpu_seconds = time.thread_time() - started
                if self._out:
                    out, self._out = self._out, []
                    if not self._send(out):
                        return
                if event[0] == "end":
                    return
        except Exception as exc:  # an encoder failure or a bug: this rendition stops, the live goes on
            log.exception("%s: worker failed", self.name)
            self._send([("failed", f"{type(exc).__name__}: {exc}")])
        finally:
            self._close_codecs()
            self.stats.cpu_seconds = time.thread_time() - started

    def _send(self, events: list[_Event]) -> bool:
        try:
            self._loop.call_soon_threadsafe(self._deliver, events)
        except RuntimeError:  # the loop is closed (shutdown)
            return False
        return True

    def _handle(self, event: _Event) -> None:
        kind = event[0]
        if kind == "video":
            self._video(event[1], key_only=event[2])
        elif kind == "hold":
            self._hold(event[1])
        elif kind == "audio":
            # Not before the 480p rendition's first keyframe: it must not start audio-only.
            if self._emitted_video is not None or self._decoder_config is None:
                self._out.append(("unit", event[1]))
        elif kind == "config":
            config = event[1]
            if isinstance(config, VideoConfig):
                self._new_video_config(config)
            else:
                self._out.append(event)
        elif kind in ("lost", "end"):
            self._flush_video()
            self._out.append(event)

    # video ------------------------------------------------------------------

    def _new_video_config(self, config: VideoConfig) -> None:
        current = self._decoder_config
        if current is not None and (config.codec, config.extradata) == (current.codec, current.extradata):
            return  # the same config again (the segmenter ignores it too)
        self._flush_video()
        self._decoder_config = config
        self._epoch += 1

    def _video(self, unit: AccessUnit, key_only: bool) -> None:
        if self._decoder_config is None:
            return
        if self._last_dts is not None and not -BACKWARD_JUMP <= unit.dts - self._last_dts <= FORWARD_JUMP:
            # The source clock jumped (reset, wrap): the segmenters re-base and wait for a
            # keyframe; start a fresh decoder and encoder there too.
            self._flush_video()
        self._last_dts = unit.dts
        if unit.keyframe:
            self._skip_to_key = False
            self._key_pts.add(unit.pts)
            if self._delay is None:
                self._delay = max(0, unit.pts - unit.dts)
        elif self._skip_to_key or self._delay is None:
            self._hold(unit.pts)
            return
        if self._decoder is None:
            decoder = av.CodecContext.create(_DECODERS[self._decoder_config.codec], "r")
            decoder.extradata = self._decoder_config.extradata
            decoder.thread_count = 1
            self._decoder = decoder
        packet = av.Packet(unit.data)
        packet.pts = unit.pts
        packet.dts = unit.dts
        packet.time_base = _TIME_BASE
        try:
            frames = list(self._decoder.decode(packet))
            if key_only:  # the keyframe now, not after the decoder's reorder delay
                frames += self._decoder.decode(None)
                self._decoder.flush_buffers()
        except av.FFmpegError as exc:
            self.stats.decode_errors += 1
            self._skip_to_key = True
            log.warning("%s: undecodable frame at %d (%s); waiting for a keyframe", self.name, unit.pts, exc)
            return
        for frame in frames:
            self._encode(frame)

    def _encode(self, frame: Any) -> None:
        pts = frame.pts
        if pts is None:
            return
        keyframe = pts in self._key_pts
        if self._key_pts:
            self._key_pts = {p for p in self._key_pts if p > pts}
        if self._last_pts is not None and pts <= self._last_pts:
            return  # output times only go forward
        if self._encoder is None:
            if not keyframe:
                return  # pictures before the first keyframe (leading pictures of an open GOP)
            self._open_encoder(frame)
        scaled = self._reformatter.reformat(frame, self._encoder.width, self._encoder.height, "yuv420p",
                                            interpolation="AREA")
        self._still = scaled
        self._submit(scaled, pts, keyframe)

    def _hold(self, pts: int) -> None:
        """Encode the last picture again at ``pts``: stands for dropped frames."""
        if self._encoder is None or self._still is None:
            return
        if self._last_pts is not None and pts - self._last_pts < self._hold_ticks:
            return
        self.stats.held_frames += 1
        self._submit(self._still, pts, False)

    def _submit(self, picture: Any, pts: int, keyframe: bool) -> None:
        if self._last_pts is not None and pts <= self._last_pts:
            return
        picture.pts = pts
        picture.time_base = _TIME_BASE
        picture.pict_type = av.video.frame.PictureType.I if keyframe else av.video.frame.PictureType.NONE
        if self._last_pts is not None:
            self._interval = pts - self._last_pts
            self.stats.media_seconds += self._interval / TIMESCALE
        self._last_pts = pts
        self._write(self._encoder.encode(picture))

    def _open_encoder(self, frame: Any) -> None:
        width, height = output_size(frame.width, frame.height, self.options.height)
        options = self.options
        fps = self._decoder.framerate if self._decoder is not None else None
        if not fps or not _MIN_FPS <= float(fps) <= _MAX_FPS:
            fps = Fraction(options.default_fps)
        encoder = av.CodecContext.create("libx264", "w")
        encoder.width = width
        encoder.height = height
        encoder.pix_fmt = "yuv420p"
        encoder.time_base = _TIME_BASE
        encoder.framerate = Fraction(fps)  # x264's rate control budgets bits per frame from it
        encoder.bit_rate = options.bitrate
        encoder.max_b_frames = 0
        encoder.gop_size = _KEYINT_NEVER
        encoder.thread_count = options.threads
        encoder.flags |= _GLOBAL_HEADER
        for attribute in ("colorspace", "color_range", "color_primaries", "color_trc"):
            try:  # scaling keeps the source's matrix and range: say so in the VUI
                setattr(encoder, attribute, getattr(frame, attribute))
            except (AttributeError, TypeError, ValueError):
                pass
        encoder.options = {
            "preset": options.preset,
            "tune": "zerolatency",
            "forced-idr": "1",
            "sc_threshold": "0",
            "maxrate": str(options.maxrate),
            "bufsize": str(options.bufsize),
            "x264-params": f"sps-id={self._epoch % 32}:scenecut=0",
        }
        encoder.open()
        nals = split_annexb(bytes(encoder.extradata or b""))
        try:
            record = avc_decoder_config([n for n in nals if h264_nal_type(n) == 7],
                                        [n for n in nals if h264_nal_type(n) == 8])
        except NALError as exc:
            raise RuntimeError(f"libx264 gave no usable parameter sets: {exc}") from exc
        self._encoder = encoder
        self.frame_rate = float(fps)
        emitted = self._emitted_video
        if emitted is None or emitted.extradata != record:
            # A new encoder after a drop makes the same record (same source config):
            # the 480p rendition then continues its init generation, like the source.
            config = VideoConfig("h264", record, width, height)
            self._out.append(("config", config))
            self._emitted_video = config

    def _write(self, packets: Any) -> None:
        delay = self._delay or 0
        for packet in packets:
            if packet.pts is None:
                continue
            nals = [n for n in split_annexb(bytes(packet)) if h264_nal_type(n) not in _PARAMETER_SET_TYPES]
            if not nals:
                continue
            pts = int(packet.pts)
            unit = AccessUnit("video", pts - delay, pts, length_prefixed(nals), bool(packet.is_keyframe))
            self._out.append(("unit", unit))
            self.stats.frames_out += 1

    def _flush_video(self) -> None:
        """Drain decoder and encoder (a drop, a config change, a clock jump, the end);
        the next source starts with fresh ones at its first keyframe."""
        if self._decoder is not None:
            try:
                frames = self._decoder.decode(None)
            except av.FFmpegError as exc:
                log.warning("%s: decoder flush failed: %s", self.name, exc)
                frames = []
            for frame in frames:
                self._encode(frame)
        if self._encoder is not None:
            self._write(self._encoder.encode(None))
        self._close_codecs()
        self._still = None
        self._delay = None
        self._key_pts.clear()
        self._skip_to_key = False
        self._last_pts = None
        self._last_dts = None

    def _close_codecs(self) -> None:
        """Let the codec contexts go (PyAV frees them, and libx264's state, when dropped)."""
        self._decoder = None
        self._encoder = None
