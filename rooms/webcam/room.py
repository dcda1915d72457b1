"""A webcam room at run time: the stage, the peers, the program loop and the live.

**Program loop.** While at least one person is connected, the room composes
the program at :data:`rooms.webcam.compositor.FPS` (compositor + one libx264
encode in a worker thread, so the event loop stays free) and mixes audio every
20 ms. Each encoded picture goes to every connected person (the same packets)
and, once the live runs, to the LL-HLS packager through the
:class:`player.live.LiveManager` sink, with the AAC-encoded program mix (each picture
once the audio up to its end has gone, see :meth:`WebcamRoom._release_video`).
A screen shared by someone in the room (second video track, see
:mod:`rooms.webcam.peer`) is shown full frame with the speakers as pictures in picture
(layout ``screen_pip``) while its pictures keep coming, in place of the content slot,
which is shown again when the share stops (the slot itself is left to the content director).

**Live.** The live starts when the first person goes on stage (the stage going
live *is* the start, as an encoder connecting is for a studio room); the
webinar must be ``announced`` or ``live``, and maintenance mode (R-OPS-3) refuses a
*new* live (:func:`server.maintenance.new_live_refusal`, as for RTMP and SRT): going on
stage is then refused with code ``maintenance`` (see :meth:`WebcamRoom.new_live_refusal`),
while a live already running (or in its grace window) goes on. When the last person leaves the room
the program stops and the live manager's grace window applies (someone back in
time continues the live; otherwise it ends). The 4-hour cut and the moderator's
"end" reach the room as :class:`player.live.SourceClosed`: the program keeps
running for the people connected but no longer feeds a live.

Per process: a webcam webinar's peers and program live on the node that holds
its speakers' WebSockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import av
import numpy as np

from player.live import SourceClosed
from player.media import TIMESCALE, AccessUnit, MediaSink, TrackConfig
from rooms.events import append
from rooms.participants import Participant
from rooms.webcam.audio_mix import BLOCK_SAMPLES, AudioMixer
from rooms.webcam.compositor import FPS, HEIGHT, WIDTH, Compositor, Scene, Tile
from rooms.webcam.peer import SpeakerPeer
from rooms.webcam.program import (
    AAC_FRAME,
    AudioEncoder,
    EncodedPicture,
    VideoEncoder,
    picture_pts,
)
from rooms.webcam.sources import SAMPLE_RATE, ContentSlots
from rooms.webcam.speak import PreflightResults
from rooms.webcam.stage import Change, Member, Stage
from server.maintenance import MaintenanceWatch, new_live_refusal, watch_of

log = logging.getLogger("rooms.webcam.room")

LIVE_STATES = ("announced", "live")
"""Webinar states in which going on stage starts (or continues) the live."""
MAX_LATE_FRAMES = 5
"""A program loop this many frames behind real time skips ahead instead of catching up."""
MAX_HELD_PICTURES = 6
"""Program pictures (200 ms at 30 fps) the live sink may hold back waiting for the audio of their
instant (see :meth:`WebcamRoom._release_video`); beyond, the oldest goes without waiting."""
_FRAME_TICKS = TIMESCALE // FPS
_AAC_FRAME_TICKS = AAC_FRAME * TIMESCALE // SAMPLE_RATE


class WebcamRoom:
    """The run-time state of one webcam webinar on this node."""

    def __init__(self, rooms: WebcamRooms, webinar_id: uuid.UUID) -> None:
        self.rooms = rooms
        self.webinar_id = webinar_id
        self.stage = Stage()
        self.mixer = AudioMixer()
        self.peers: dict[uuid.UUID, SpeakerPeer] = {}
        self.compositor = Compositor()
        self._video: VideoEncoder | None = None
        self._audio: AudioEncoder | None = None
        self._executor: ThreadPoolExecutor | None = None
        """The program's worker thread (compose + encode), while the program runs."""
        self._sink: MediaSink | None = None
        self._sink_video_started = False
        self._held: deque[TrackConfig | AccessUnit] = deque()
        """Video configs and access units for the live sink, waiting for the audio of their instant."""
        self._audio_fed_end: int | None = None
        """End (90 kHz ticks, program clock) of the audio fed to the live sink so far."""
        self._tasks: list[asyncio.Task[None]] = []
        self._opening = asyncio.Lock()
        self.frames_out = 0
        self.live_refused: str | None = None

    # People ------------------------------------------------------------------------
    async def connect(self, participant: Participant, offer_sdp: str) -> tuple[str, list[Change]]:
        """A person's offer: (re)create their peer; return the answer and the stage changes."""
        old = self.peers.pop(participant.id, None)
        if old is not None:
            await old.close()
        peer = SpeakerPeer(participant.id, ice=self.rooms.ice_servers, want_keyframe=self._want_keyframe,
                           on_samples=self.mixer.push, on_gone=self._peer_gone)
        try:
            answer = await peer.answer(offer_sdp)
        except Exception:
            await peer.close()
            raise
        if self.rooms.rooms.setdefault(self.webinar_id, self) is not self:  # retired meanwhile (it was empty)
            await peer.close()
            raise RuntimeError("the room was being reset: try again")
        self.peers[participant.id] = peer
        self.mixer.add(participant.id)
        self._start_program()
        self._want_keyframe()
        return answer, self.stage.arrive(
            Member(participant.id, participant.display_name, participant.role, participant.user_id))

    def _peer_gone(self, peer: SpeakerPeer) -> None:
        if self.peers.get(peer.person) is not peer:
            return
        del self.peers[peer.person]
        log.info("webinar %s: %s left the webcam room (%d still there)", self.webinar_id, peer.person, len(self.peers))
        self.mixer.remove(peer.person)
        changes = self.stage.depart(peer.person)
        self.rooms.spawn(self.publish(changes))
        if not self.peers:
            self.rooms.spawn(self._retire_if_empty())

    async def hang_up(self, person: uuid.UUID) -> None:
        peer = self.peers.get(person)
        if peer is not None:
            await peer.close()

    async def publish(self, changes: list[Change]) -> None:
        """Persist stage changes as program-timed room events, then publish them."""
        if not changes:
            return
        async with self.rooms.db.acquire() as conn, conn.transaction():
            events = [await append(conn, self.webinar_id, c.kind, c.data, c.audience) for c in changes]
        await self.rooms.hub.publish(events)

    def new_live_refusal(self) -> str | None:
        """Why someone going on stage may not start a live now (maintenance mode), or None.
        A live of this webinar already running on this node (program on air, or the
        publication waiting in its grace window for the room to come back) goes on."""
        if self._sink is not None:
            return None
        return new_live_refusal(self.rooms.maintenance, self.rooms.live.publication(self.webinar_id) is not None)

    async def after_stage_change(self) -> None:
        """Start the live when someone is on stage and it is not running yet."""
        if self.stage.on_stage and self._sink is None:
            await self._open_live()

    # Live ----------------------------------------------------------------------------
    async def _open_live(self) -> None:
        async with self._opening:
            if self._sink is not None or not self.stage.on_stage:
                return
            state = await self.rooms.db.fetchval(
                "SELECT state FROM webinars WHERE id = $1 AND room_type = 'webcam'", self.webinar_id)
            if state not in LIVE_STATES:
                self.live_refused = f"the webinar is {state}: it cannot go live"
                return
            in_maintenance = self.new_live_refusal()  # checked at stage.join too; this closes the race
            if in_maintenance is not None:
                self.live_refused = in_maintenance
                log.warning("webinar %s: program not sent to the live: %s", self.webinar_id, in_maintenance)
                return
            sink = await self.rooms.live.open_source(self.webinar_id)
            if isinstance(sink, str):
                self.live_refused = sink
                log.warning("webinar %s: program not sent to the live: %s", self.webinar_id, sink)
                return
            self.live_refused = None
            self._sink = sink
            self._sink_video_started = False
            self._held.clear()
            self._audio_fed_end = None
            self._want_keyframe()
            log.info("webinar %s: webcam program on air", self.webinar_id)

    def _feed(self, call: Any, *args: Any) -> None:
        sink = self._sink
        if sink is None:
            return
        try:
            call(sink, *args)
        except SourceClosed:
            log.info("webinar %s: the live ended; the program no longer feeds it", self.webinar_id)
            self._sink = None
            self._held.clear()
        except Exception:
            log.exception("webinar %s: the packager refused a program unit", self.webinar_id)

    def _end_live_source(self) -> None:
        self._release_video(flush=True)
        self._held.clear()
        sink, self._sink = self._sink, None
        if sink is not None:
            log.info("webinar %s: the program leaves the air (nobody in the room)", self.webinar_id)
            sink.on_end()

    # Program ---------------------------------------------------------------------------
    def _want_keyframe(self) -> None:
        if self._video is not None:
            self._video.request_keyframe()

    def _start_program(self) -> None:
        if self._tasks:
            return
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"program-{str(self.webinar_id)[:8]}")
        self._video = VideoEncoder(WIDTH, HEIGHT, FPS)
        self._audio = AudioEncoder()
        started = time.monotonic()
        self._tasks = [asyncio.ensure_future(self._video_loop(started)),
                       asyncio.ensure_future(self._audio_loop(started))]

    async def stop_program(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._end_live_source()
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False)

    async def _retire_if_empty(self) -> None:
        """Nobody left: stop the program (the live's grace window starts) and forget the room."""
        await self.stop_program()
        if not self.peers and self.rooms.rooms.get(self.webinar_id) is self:
            del self.rooms.rooms[self.webinar_id]

    def shared_screen(self, now: float) -> av.VideoFrame | None:
        """The freshest screen picture shared by someone in the room (see :mod:`rooms.webcam.peer`)."""
        best: tuple[float, av.VideoFrame] | None = None
        for peer in self.peers.values():
            picture = peer.screen_picture.picture(now)
            if picture is not None and (best is None or peer.screen_at > best[0]):
                best = (peer.screen_at, picture)
        return best[1] if best is not None else None

    def _scene(self) -> Scene:
        slot = self.rooms.content_slots.slot(self.webinar_id)
        now = time.monotonic()
        content = None
        layout = self.stage.layout
        screen = self.shared_screen(now)
        if screen is not None:  # a screen share wins over the slot's content while it lasts
            content, layout = screen, "screen_pip"
        elif slot.picture is not None:
            try:
                content = slot.picture.picture(now)
            except Exception:
                log.exception("webinar %s: content picture failed", self.webinar_id)
        tiles = []
        for member in self.stage.speakers():
            peer = self.peers.get(member.id)
            tiles.append(Tile(member.name, peer.latest if peer is not None else None))
        return Scene(layout, tiles, content, spotlight=self.stage.spotlight is not None)

    def _render_encode(self, scene: Scene, pts: int) -> list[EncodedPicture]:
        """Worker thread: compose and encode one picture."""
        assert self._video is not None
        return self._video.encode(self.compositor.render(scene), pts)

    async def _video_loop(self, started: float) -> None:
        loop = asyncio.get_running_loop()
        index = 0
        while True:
            delay = started + index / FPS - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            elif -delay * FPS > MAX_LATE_FRAMES:
                index = int((time.monotonic() - started) * FPS)
            pts = picture_pts(index, FPS)
            try:
                pictures = await loop.run_in_executor(self._executor, self._render_encode, self._scene(), pts)
            except Exception:
                log.exception("webinar %s: program picture %d failed", self.webinar_id, index)
                pictures = []
            for picture in pictures:
                self._send_picture(picture)
            index += 1

    def _send_picture(self, picture: EncodedPicture) -> None:
        self.frames_out += 1
        for peer in list(self.peers.values()):
            peer.video_out.offer(picture.packet, picture.keyframe)
        if self._sink is None or self._video is None:
            return
        if not self._sink_video_started and not picture.keyframe:
            return
        config, unit = self._video.access_units(picture)
        if not self._sink_video_started:
            if config is None:  # first unit to this sink: send the config again
                config = self._video.config
            self._feed(lambda s, c: s.on_config(c), config)
            if self._audio is not None:
                self._feed(lambda s, c: s.on_config(c), self._audio.config)
            self._sink_video_started = True
            if unit is not None:  # the first keyframe opens the live at once
                self._feed(lambda s, u: s.on_access_unit(u), unit)
            return
        if config is not None:
            self._held.append(config)
        if unit is not None:
            self._held.append(unit)
        self._release_video()

    def _release_video(self, *, flush: bool = False) -> None:
        """Feed the held video to the live sink, in order, once the audio fed covers it.

        The packager cuts parts (and hls.js times them) on the video units: a picture
        of instant ``t`` goes to the sink only after the program audio up to the end of
        that picture (``t`` + one frame), so every part's audio starts after and ends
        after its video. The AAC encoder delivers the audio of an instant ~20-60 ms
        after the picture of that instant is encoded; were the picture fed first, each
        part would begin with audio from before its keyframe and end short of its video,
        hls.js would take the audio as its time reference, and at a segment boundary
        its buffer end would fall inside the segment already loaded (it then loads
        nothing until that segment's parts leave the playlist: a stall). Costs that
        ~40 ms of latency. Without audio (``flush``, or more than
        :data:`MAX_HELD_PICTURES` held) the video goes anyway.
        """
        held = self._held
        while held and self._sink is not None:
            item = held[0]
            if isinstance(item, AccessUnit):
                pictures = sum(1 for h in held if isinstance(h, AccessUnit))
                covered = self._audio_fed_end is not None and self._audio_fed_end >= item.pts + _FRAME_TICKS
                if not (flush or covered or pictures > MAX_HELD_PICTURES):
                    return
                held.popleft()
                self._feed(lambda s, u: s.on_access_unit(u), item)
            else:
                held.popleft()
                self._feed(lambda s, c: s.on_config(c), item)

    async def _audio_loop(self, started: float) -> None:
        block = 0
        block_s = BLOCK_SAMPLES / SAMPLE_RATE
        while True:
            delay = started + block * block_s - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            elif -delay > 10 * block_s:  # far behind (a stalled loop): skip, do not burst
                block = int((time.monotonic() - started) / block_s)
            slot = self.rooms.content_slots.slot(self.webinar_id)
            content: np.ndarray | None = None
            if slot.sound is not None:
                try:
                    content = slot.sound.sound(time.monotonic(), BLOCK_SAMPLES)
                except Exception:
                    log.exception("webinar %s: content sound failed", self.webinar_id)
            mix = self.mixer.mix(self.stage.on_stage, content)
            for person, samples in mix.per_person.items():
                peer = self.peers.get(person)
                if peer is not None:
                    peer.audio_out.offer(samples)
            if self._sink is not None and self._sink_video_started and self._audio is not None:
                for unit in self._audio.encode(mix.program, block * BLOCK_SAMPLES):
                    self._feed(lambda s, u: s.on_access_unit(u), unit)
                    self._audio_fed_end = unit.pts + _AAC_FRAME_TICKS
                self._release_video()
            block += 1

    async def close(self) -> None:
        for peer in list(self.peers.values()):
            await peer.close()
        await self.stop_program()


class WebcamRooms:
    """Every webcam room of this process (``services.extras["webcam"]``, and the hub's extras)."""

    def __init__(self, *, db: Any, hub: Any, live: Any, content_slots: ContentSlots,
                 ice_servers: list[dict[str, Any]], maintenance: MaintenanceWatch | None = None) -> None:
        self.db = db
        self.maintenance = maintenance
        """The process's maintenance switch (None: no gate, as in tools and unit tests)."""
        self.hub = hub
        self.live = live
        self.content_slots = content_slots
        self.ice_servers = ice_servers
        self.preflight = PreflightResults()
        """Upload rates measured by the speaker page (R-ROOM-4), shared with :mod:`rooms.webcam.speak`."""
        self.rooms: dict[uuid.UUID, WebcamRoom] = {}
        self._background: set[asyncio.Task[Any]] = set()

    def room(self, webinar_id: uuid.UUID) -> WebcamRoom:
        found = self.rooms.get(webinar_id)
        if found is None:
            found = self.rooms[webinar_id] = WebcamRoom(self, webinar_id)
        return found

    def spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        task.add_done_callback(_log_failure)

    async def close(self) -> None:
        for room in list(self.rooms.values()):
            await room.close()
        self.rooms.clear()
        if self._background:
            await asyncio.wait(self._background, timeout=10)


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("webcam background task failed", exc_info=task.exception())


@contextlib.asynccontextmanager
async def webcam_service(svc: Any) -> AsyncIterator[WebcamRooms]:
    """Webcam rooms for the app's lifespan (after the live manager and the hub exist)."""
    from rooms.webcam import signaling  # noqa: F401  (registers the stage.* and rtc.* handlers)

    slots = svc.extras.setdefault("content_slots", ContentSlots())
    rooms = WebcamRooms(db=svc.db, hub=svc.extras["rooms"], live=svc.extras["live"], content_slots=slots,
                        ice_servers=svc.settings.ice_server_list, maintenance=watch_of(svc))
    rooms.preflight = svc.extras.setdefault("preflight", rooms.preflight)
    svc.extras["webcam"] = rooms
    svc.extras["rooms"].extras["webcam"] = rooms
    try:
        yield rooms
    finally:
        await rooms.close()
