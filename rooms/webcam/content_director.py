"""Puts what the presenter chose into the webinar's program: turns a room's
content state (the data of a ``content.changed`` event) into a
:class:`~rooms.webcam.slides.SlidePicture` or a
:class:`~rooms.webcam.clip_player.ClipPlayer` in its
:class:`~rooms.webcam.sources.ContentSlot`.

One :class:`ContentDirector` per process (``services.extras["content"]``, also
``hub.extras["content"]`` for the room commands), run by :func:`content_service`.
Decoded slides are cached (:data:`SLIDE_CACHE` of them, least recently used
dropped); the page after the one shown is decoded ahead, so "next" is instant.
Each webinar has at most one clip player (one decoding thread).

A state is applied on the node that handled the command, after its commit;
:meth:`ContentDirector.restore` re-applies the stored state (a compositor
starting, a server restarting).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from rooms.webcam.clip_player import ClipPlayer
from rooms.webcam.content_store import ContentItem, clip_file, get_item, page_file
from rooms.webcam.slides import SlidePicture
from rooms.webcam.sources import ContentSlot, ContentSlots

log = logging.getLogger("rooms.webcam.content")

SLIDE_CACHE = 16
"""Decoded slides kept per process (each at most ~6 MB, usually 2.7 MB at 720p)."""
SEEK_TOLERANCE_S = 0.25
"""A clip already near the wanted position (seconds) is not re-seeked on play/pause."""
RESTORE_AT_START = 50
"""Rooms whose content is shown again at start-up, most recently changed first."""
PREROLL_TIMEOUT_S = 2.0
"""Longest wait for a clip's first frames after a seek before showing it anyway (seconds)."""


def label_of(item: ContentItem, page: int) -> str:
    if item.kind == "clip":
        return item.name
    return f"{item.name} {page + 1}/{item.pages}"


class ContentDirector:
    def __init__(self, db: Any, media_dir: Path, extras: dict[str, Any]) -> None:
        self.db = db
        self.media_dir = media_dir
        self._extras = extras
        self._slides: OrderedDict[tuple[int, int], SlidePicture] = OrderedDict()
        self._clips: dict[uuid.UUID, tuple[int, ClipPlayer]] = {}
        self._locks: dict[uuid.UUID, asyncio.Lock] = {}
        self._prefetch: set[asyncio.Task[Any]] = set()

    @property
    def slots(self) -> ContentSlots:
        """The process's content slots (registered by whoever starts first)."""
        return self._extras.setdefault("content_slots", ContentSlots())  # type: ignore[no-any-return]

    def slot(self, webinar_id: uuid.UUID) -> ContentSlot:
        return self.slots.slot(webinar_id)

    async def slide(self, item: ContentItem, page: int) -> SlidePicture:
        """The decoded page (from the cache, else decoded in a worker thread)."""
        key = (item.id, page)
        found = self._slides.get(key)
        if found is not None:
            self._slides.move_to_end(key)
            return found
        path = page_file(self.media_dir, item, page)
        if path is None:
            raise LookupError(f"item {item.id} has no page {page}")
        picture = await asyncio.to_thread(SlidePicture.load, path, label_of(item, page))
        self._slides[key] = picture
        while len(self._slides) > SLIDE_CACHE:
            self._slides.popitem(last=False)
        return picture

    async def apply(self, webinar_id: uuid.UUID, state: dict[str, Any]) -> None:
        """Show ``state`` (see :func:`rooms.webcam.content_commands.state_view`) in the slot."""
        lock = self._locks.setdefault(webinar_id, asyncio.Lock())
        async with lock:
            try:
                await self._apply(webinar_id, state)
            except Exception:  # the event is stored; the program keeps what it showed
                log.exception("webinar %s: content state could not be shown", webinar_id)

    async def _apply(self, webinar_id: uuid.UUID, state: dict[str, Any]) -> None:
        item_id = state.get("item_id")
        item = await get_item(self.db, webinar_id, int(item_id)) if item_id else None
        if item is None:
            self._stop_clip(webinar_id)
            self.slot(webinar_id).clear()
            return
        if item.kind == "clip":
            clip = state.get("clip") or {}
            current = self._clips.get(webinar_id)
            if current is None or current[0] != item.id:
                self._stop_clip(webinar_id)
                player = await asyncio.to_thread(ClipPlayer, clip_file(self.media_dir, item), label=item.name)
                self._clips[webinar_id] = (item.id, player)
            else:
                player = current[1]
            target = float(clip.get("position_s", 0.0))
            if current is None or current[0] != item.id or abs(player.position() - target) > SEEK_TOLERANCE_S:
                player.pause()
                player.seek(target)
                await asyncio.to_thread(player.wait_decoded, target, PREROLL_TIMEOUT_S)
            if clip.get("playing"):
                player.play()
            else:
                player.pause()
            self.slot(webinar_id).show(player, player, label_of(item, 0))
            return
        self._stop_clip(webinar_id)
        page = int(state.get("page", 0))
        picture = await self.slide(item, page)
        self.slot(webinar_id).show(picture, None, label_of(item, page))
        if page + 1 < item.pages and (item.id, page + 1) not in self._slides:
            task = asyncio.create_task(self._quietly(self.slide(item, page + 1)))
            self._prefetch.add(task)
            task.add_done_callback(self._prefetch.discard)

    @staticmethod
    async def _quietly(job: Any) -> None:
        try:
            await job
        except (OSError, LookupError, ValueError) as exc:  # shown later, it fails (and is logged) then
            log.debug("prefetch failed: %s", exc)

    def _stop_clip(self, webinar_id: uuid.UUID) -> None:
        current = self._clips.pop(webinar_id, None)
        if current is not None:
            current[1].close()

    def forget_item(self, item_id: int) -> None:
        """Drop cached slides of a deleted item."""
        for key in [k for k in self._slides if k[0] == item_id]:
            del self._slides[key]

    async def restore(self, webinar_id: uuid.UUID) -> None:
        """Apply the room's stored state to its slot (a program starting)."""
        from rooms.webcam.content_commands import read_state

        state = await read_state(self.db, webinar_id)
        await self.apply(webinar_id, state)

    async def restore_running(self) -> None:
        """At start-up: show again what the rooms before or during their live showed
        (a restarted server keeps its slides)."""
        rows = await self.db.fetch(
            """SELECT s.webinar_id FROM webcam_content_state s JOIN webinars w ON w.id = s.webinar_id
               WHERE s.content_id IS NOT NULL AND w.state IN ('announced', 'live') ORDER BY s.updated_at DESC
               LIMIT $1""", RESTORE_AT_START)
        for row in rows:
            await self.restore(row["webinar_id"])

    def forget(self, webinar_id: uuid.UUID) -> None:
        """The live ended: stop its clip, drop its slot."""
        self._stop_clip(webinar_id)
        self.slots.drop(webinar_id)
        self._locks.pop(webinar_id, None)

    def close(self) -> None:
        for webinar_id in list(self._clips):
            self._stop_clip(webinar_id)
        for task in self._prefetch:
            task.cancel()


@contextlib.asynccontextmanager
async def content_service(services: Any) -> AsyncIterator[ContentDirector]:
    """The process's director for the app's lifespan (``services.extras["content"]``, and the
    room hub's extras for the ``content.*``/``clip.*`` commands, which this registers)."""
    from rooms.webcam import content_commands  # noqa: F401  (registers the content.* and clip.* handlers)

    director = ContentDirector(services.db, services.settings.media_dir, services.extras)
    services.extras["content"] = director
    services.extras["rooms"].extras["content"] = director
    # Programs run only on the media node (setting enable_webcam): elsewhere there is nothing to
    # show the stored content in, and its files are not on this node's disk.
    restoring = asyncio.create_task(director.restore_running()) if services.settings.enable_webcam else None
    try:
        yield director
    finally:
        if restoring is not None:
            restoring.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await restoring
        director.close()
