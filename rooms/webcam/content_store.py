"""Shared content items of a webcam room: checking an upload, storing its files
under the media folder and its metadata in PostgreSQL, listing, deleting.

Files of an item live in ``<media dir>/content/<webinar id>/<item id>/``:
``deck.pdf`` and ``pages/page-NNN.png`` for a PDF, ``images/NN.png|jpg``
for an image set, ``clip.mp4`` for a clip. A file is checked in a bounded
child process (:mod:`rooms.webcam.content_sandbox`) before the item exists;
a refused upload leaves nothing behind, and an accepted one never changes
what was accepted before (an image added to a set past its limits is refused
and the set stays as it was).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rooms.webcam import content_sandbox
from rooms.webcam.content_limits import (
    CLIP_MAX_BYTES,
    IMAGES_MAX_BYTES,
    IMAGES_MAX_COUNT,
    MB,
    PDF_MAX_BYTES,
    ContentRefused,
    FileType,
    Kind,
    byte_limit,
)
from rooms.webcam.uploads import Received, remove

MAX_ITEMS = 50
"""Content items one webinar may hold (disk use is bounded: 50 × 300 MB at worst)."""
UPLOAD_STATES = ("draft", "announced", "live")
"""Webinar states in which content may be added (before and during the live)."""


@dataclass(frozen=True)
class ContentItem:
    id: int
    webinar_id: uuid.UUID
    kind: Kind
    name: str
    pages: int
    """Pages of a PDF, images of a set, 0 for a clip."""
    size_bytes: int
    sha256: str
    meta: dict[str, Any]
    created_by: uuid.UUID | None
    created_at: dt.datetime

    def view(self) -> dict[str, Any]:
        """What the speaker and moderator UIs get (JSON)."""
        out: dict[str, Any] = {"id": self.id, "kind": self.kind, "name": self.name, "pages": self.pages,
                               "size_bytes": self.size_bytes, "sha256": self.sha256,
                               "created_at": self.created_at.isoformat()}
        if self.kind == "clip":
            out["clip"] = {k: self.meta.get(k) for k in ("duration_s", "width", "height", "video", "audio")}
        elif self.kind == "images":
            out["images"] = [{"name": i["name"], "width": i["width"], "height": i["height"]} for i in self.meta["images"]]
        return out


def _item(row: Any) -> ContentItem:
    meta = row["meta"] if isinstance(row["meta"], dict) else json.loads(row["meta"])
    return ContentItem(row["id"], row["webinar_id"], row["kind"], row["name"], row["pages"], row["size_bytes"],
                       row["sha256"], meta, row["created_by"], row["created_at"])


def webinar_folder(media_dir: Path, webinar_id: uuid.UUID) -> Path:
    return media_dir / "content" / str(webinar_id)


def item_folder(media_dir: Path, item: ContentItem) -> Path:
    return webinar_folder(media_dir, item.webinar_id) / str(item.id)


def page_file(media_dir: Path, item: ContentItem, index: int) -> Path | None:
    """The image shown for page/image ``index`` (0-based) of a PDF or an image set; None otherwise."""
    if not 0 <= index < item.pages:
        return None
    if item.kind == "pdf":
        return item_folder(media_dir, item) / "pages" / f"page-{index:03d}.png"
    if item.kind == "images":
        return item_folder(media_dir, item) / "images" / str(item.meta["images"][index]["file"])
    return None


def clip_file(media_dir: Path, item: ContentItem) -> Path:
    return item_folder(media_dir, item) / "clip.mp4"


async def list_items(db: Any, webinar_id: uuid.UUID) -> list[ContentItem]:
    return [_item(r) for r in await db.fetch("SELECT * FROM webcam_content WHERE webinar_id = $1 ORDER BY id", webinar_id)]


async def get_item(db: Any, webinar_id: uuid.UUID, item_id: int) -> ContentItem | None:
    row = await db.fetchrow("SELECT * FROM webcam_content WHERE id = $1 AND webinar_id = $2", item_id, webinar_id)
    return _item(row) if row else None


async def check_webinar(db: Any, webinar_id: uuid.UUID) -> None:
    """Content belongs to webcam rooms before or during their live (R-ROOM-1)."""
    row = await db.fetchrow("SELECT room_type, state FROM webinars WHERE id = $1", webinar_id)
    if row is None or row["room_type"] != "webcam":
        raise ContentRefused("studio_room", 409)
    if row["state"] not in UPLOAD_STATES:
        raise ContentRefused("room_closed", 409)


async def upload_limit(db: Any, webinar_id: uuid.UUID, set_id: int | None) -> UploadLimits:
    """What the next upload may weigh, given the webinar's items and the image set it adds to."""
    await check_webinar(db, webinar_id)
    if set_id is not None:
        row = await db.fetchrow("SELECT kind, pages, size_bytes FROM webcam_content WHERE id = $1 AND webinar_id = $2",
                                set_id, webinar_id)
        if row is None or row["kind"] != "images":
            raise ContentRefused("no_such_set", 404)
        if row["pages"] >= IMAGES_MAX_COUNT:
            raise ContentRefused("images_count", max=IMAGES_MAX_COUNT)
        return UploadLimits(set_id=set_id, images_left=IMAGES_MAX_BYTES - int(row["size_bytes"]))
    count = await db.fetchval("SELECT count(*) FROM webcam_content WHERE webinar_id = $1", webinar_id)
    if count >= MAX_ITEMS:
        raise ContentRefused("too_many_items", 409, max=MAX_ITEMS)
    return UploadLimits(set_id=None, images_left=IMAGES_MAX_BYTES)


@dataclass(frozen=True)
class UploadLimits:
    set_id: int | None
    images_left: int
    """Bytes an image may still weigh in its set."""

    def limit_for(self, file_type: FileType) -> int:
        if file_type in ("png", "jpeg"):
            return max(0, self.images_left)
        if self.set_id is not None:
            raise ContentRefused("set_needs_image", 415)
        return byte_limit(file_type)


async def store_upload(db: Any, media_dir: Path, webinar_id: uuid.UUID, received: Received, name: str,
                       user_id: uuid.UUID | None, set_id: int | None = None) -> ContentItem:
    """Check the received file by its content and make it an item (or add it to image set
    ``set_id``). Consumes ``received.path`` (moved into place or removed)."""
    folder = webinar_folder(media_dir, webinar_id)
    staging = folder / f".staging-{uuid.uuid4().hex}"
    try:
        if received.file_type == "pdf":
            if received.size > PDF_MAX_BYTES:
                raise ContentRefused("too_large", 413, max_mb=PDF_MAX_BYTES // MB)
            facts = await content_sandbox.run("pdf", received.path, staging / "pages",
                                              timeout_s=content_sandbox.PDF_TIMEOUT_S)
            (received.path).rename(staging / "deck.pdf")
            return await _insert(db, media_dir, staging, webinar_id, "pdf", name, int(facts["pages"]), received.size,
                                 received.sha256, {"sizes": facts["sizes"]}, user_id)
        if received.file_type == "mp4":
            if received.size > CLIP_MAX_BYTES:
                raise ContentRefused("too_large", 413, max_mb=CLIP_MAX_BYTES // MB)
            facts = await content_sandbox.run("clip", received.path, timeout_s=content_sandbox.CLIP_TIMEOUT_S)
            staging.mkdir(parents=True)
            received.path.rename(staging / "clip.mp4")
            return await _insert(db, media_dir, staging, webinar_id, "clip", name, 0, received.size, received.sha256,
                                 facts, user_id)
        facts = await content_sandbox.run("image", received.path, timeout_s=content_sandbox.IMAGE_TIMEOUT_S)
        image = {"name": name, "bytes": received.size, "sha256": received.sha256, "width": facts["width"],
                 "height": facts["height"]}
        if set_id is None:
            image["file"] = f"00.{'png' if received.file_type == 'png' else 'jpg'}"
            (staging / "images").mkdir(parents=True)
            received.path.rename(staging / "images" / image["file"])
            return await _insert(db, media_dir, staging, webinar_id, "images", name, 1, received.size,
                                 _set_digest([image]), {"images": [image]}, user_id)
        return await _append_image(db, media_dir, webinar_id, set_id, received, image)
    finally:
        remove(received.path)
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _set_digest(images: list[dict[str, Any]]) -> str:
    return hashlib.sha256("".join(i["sha256"] for i in images).encode()).hexdigest()


async def _insert(db: Any, media_dir: Path, staging: Path, webinar_id: uuid.UUID, kind: Kind, name: str, pages: int,
                  size: int, sha256: str, meta: dict[str, Any], user_id: uuid.UUID | None) -> ContentItem:
    async with db.acquire() as conn, conn.transaction():
        # The webinar row lock serialises uploads of one webinar, so MAX_ITEMS holds.
        await conn.execute("SELECT 1 FROM webinars WHERE id = $1 FOR UPDATE", webinar_id)
        if await conn.fetchval("SELECT count(*) FROM webcam_content WHERE webinar_id = $1", webinar_id) >= MAX_ITEMS:
            raise ContentRefused("too_many_items", 409, max=MAX_ITEMS)
        row = await conn.fetchrow(
            """INSERT INTO webcam_content (webinar_id, kind, name, pages, size_bytes, sha256, meta, created_by)
               VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8) RETURNING *""",
            webinar_id, kind, name, pages, size, sha256, json.dumps(meta), user_id)
        item = _item(row)
        staging.rename(item_folder(media_dir, item))  # inside the transaction: no row without its files
    return item


async def _append_image(db: Any, media_dir: Path, webinar_id: uuid.UUID, set_id: int, received: Received,
                        image: dict[str, Any]) -> ContentItem:
    async with db.acquire() as conn, conn.transaction():
        row = await conn.fetchrow("SELECT * FROM webcam_content WHERE id = $1 AND webinar_id = $2 FOR UPDATE",
                                  set_id, webinar_id)
        if row is None or row["kind"] != "images":
            raise ContentRefused("no_such_set", 404)
        item = _item(row)
        images = list(item.meta["images"])
        if len(images) >= IMAGES_MAX_COUNT:
            raise ContentRefused("images_count", max=IMAGES_MAX_COUNT)
        if item.size_bytes + received.size > IMAGES_MAX_BYTES:
            raise ContentRefused("images_bytes", 413, max_mb=IMAGES_MAX_BYTES // MB)
        taken = {str(i["file"]) for i in images}
        number = len(images)
        while f"{number:02d}.png" in taken or f"{number:02d}.jpg" in taken:
            number += 1
        image["file"] = f"{number:02d}.{'png' if received.file_type == 'png' else 'jpg'}"
        images.append(image)
        updated = await conn.fetchrow(
            "UPDATE webcam_content SET pages = $2, size_bytes = $3, sha256 = $4, meta = $5::jsonb WHERE id = $1 RETURNING *",
            set_id, len(images), item.size_bytes + received.size, _set_digest(images), json.dumps({"images": images}))
        target = item_folder(media_dir, item) / "images" / image["file"]
        received.path.rename(target)  # committed just after; a failed commit leaves an unlisted file only
    return _item(updated)


async def delete_item(conn: Any, webinar_id: uuid.UUID, item_id: int) -> ContentItem | None:
    """Delete an item's row (in the caller's transaction); remove its files after the
    commit with :func:`remove_files`. The room's state forgets it (ON DELETE SET NULL)."""
    row = await conn.fetchrow("DELETE FROM webcam_content WHERE id = $1 AND webinar_id = $2 RETURNING *",
                              item_id, webinar_id)
    return _item(row) if row else None


def remove_files(media_dir: Path, item: ContentItem) -> None:
    shutil.rmtree(item_folder(media_dir, item), ignore_errors=True)
