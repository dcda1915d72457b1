"""HTTP routes of shared content, for the webinar's organizers, moderators and
speakers (anyone else: 404; viewers have no login and no way in):

- ``GET  /webinars/{id}/content``: the items, the state shown, the limits (JSON);
- ``POST /webinars/{id}/content?name=deck.pdf[&set=ITEM]``: upload one file as the raw
  request body (no multipart), CSRF token in the ``X-CSRF-Token`` header; a PNG/JPEG
  starts an image set, or with ``set`` is added to one. 201 with the item, or the
  refusal as ``{"error": code, "message": text}`` (413 too large, 415 not a PDF, PNG,
  JPEG or MP4, 422 a bad file, 409 not a webcam room before its end) in the page's
  language. The kind is told from the content, never from the name.
- ``POST /webinars/{id}/content/{item}/delete`` (form with the CSRF token);
- ``GET  /webinars/{id}/content/{item}/pages/{index}``: a PDF page (PNG) or an image
  of a set, for the speaker and moderator UIs (thumbnails, preview).

The files are kept in the media folder of the node that runs the room's program: on a
node that does not (setting ``enable_webcam`` off) an upload or a deletion is refused
with 421 ``media_node`` (:func:`rooms.webcam.speak.media_node_refusal`) instead of
storing a file the program never sees; the proxy routes these paths to the media node.
"""

from __future__ import annotations

import contextlib
import uuid
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse, Response

from rooms.participants import staff_role
from rooms.webcam.content_commands import item_deleted, read_state, state_view
from rooms.webcam.content_limits import (
    CLIP_MAX_BYTES,
    IMAGES_MAX_BYTES,
    IMAGES_MAX_COUNT,
    PDF_MAX_BYTES,
    PDF_MAX_PAGES,
    UPLOAD_CEILING,
    ContentRefused,
    clean_name,
    in_mb,
)
from rooms.webcam.content_store import (
    delete_item,
    get_item,
    list_items,
    page_file,
    remove_files,
    store_upload,
    upload_limit,
    webinar_folder,
)
from rooms.webcam.speak import media_node_response
from rooms.webcam.uploads import drain, receive
from server.errors import NotFound
from server.i18n import translate
from server.users import User
from server.web import (
    CSRF_COOKIE,
    AppRoute,
    CSRFError,
    path_uuid,
    read_form,
    request_lang,
    require_user,
    services,
)

LIMITS = {"pdf_max_bytes": PDF_MAX_BYTES, "pdf_max_pages": PDF_MAX_PAGES, "images_max_count": IMAGES_MAX_COUNT,
          "images_max_bytes": IMAGES_MAX_BYTES, "clip_max_bytes": CLIP_MAX_BYTES}
FALLBACK_NAMES = {"pdf": "document.pdf", "png": "image.png", "jpeg": "image.jpg", "mp4": "clip.mp4"}


async def _staff(request: Request) -> tuple[uuid.UUID, User]:
    """The webinar and the caller, who must be one of its organizers (while the contract
    runs), moderators or speakers, or an admin; anyone else gets 404."""
    webinar_id = path_uuid(request, "webinar_id")
    user = await require_user(request)
    if await staff_role(services(request).db, user, webinar_id) not in ("speaker", "moderator"):
        raise NotFound("webinar")
    return webinar_id, user


def _refusal(request: Request, user: User, exc: ContentRefused) -> JSONResponse:
    message = translate(request_lang(request, user), exc.key, **exc.params)
    return JSONResponse({"error": exc.code, "message": message}, status_code=exc.status,
                        headers={"cache-control": "no-store"})


def _declared_length(request: Request) -> int | None:
    value = request.headers.get("content-length")
    if value is None:
        return None
    if not value.isdigit():
        raise ContentRefused("bad_length", 400)
    return int(value)


async def content_list(request: Request) -> Response:
    webinar_id, _ = await _staff(request)
    db = services(request).db
    items = await list_items(db, webinar_id)
    return JSONResponse({"items": [i.view() for i in items], "state": await read_state(db, webinar_id),
                         "limits": LIMITS}, headers={"cache-control": "no-store"})


async def content_upload(request: Request) -> Response:
    webinar_id, user = await _staff(request)
    svc = services(request)
    if not svc.signer.csrf_ok(request.cookies.get(CSRF_COOKIE), request.headers.get("x-csrf-token")):
        raise CSRFError()
    media_dir = svc.settings.media_dir
    chunks = request.stream()
    refused = media_node_response(svc.settings)
    if refused is not None:  # stored here, the file would never reach the program on the media node
        with contextlib.suppress(ClientDisconnect):
            await drain(chunks)
        return refused
    declared: int | None = None
    set_id: int | None = None
    try:
        declared = _declared_length(request)
        set_param = request.query_params.get("set")
        if set_param is not None and not set_param.isdigit():
            raise ContentRefused("no_such_set", 404)
        set_id = int(set_param) if set_param is not None else None
        limits = await upload_limit(svc.db, webinar_id, set_id)
        received = await receive(chunks, webinar_folder(media_dir, webinar_id), declared, limits.limit_for)
        name = clean_name(request.query_params.get("name"), FALLBACK_NAMES[received.file_type])
        item = await store_upload(svc.db, media_dir, webinar_id, received, name, user.id, set_id)
    except ClientDisconnect:
        return Response(status_code=400)
    except ContentRefused as exc:
        if exc.code == "too_large" and set_id is not None:  # what is left of the set's 12 MB
            exc = ContentRefused("images_bytes", 413, max_mb=in_mb(IMAGES_MAX_BYTES))
        if declared is None or declared <= UPLOAD_CEILING:
            with contextlib.suppress(ClientDisconnect):  # gone: nothing left to read
                await drain(chunks)  # so that the browser reads the refusal, not a reset connection
        return _refusal(request, user, exc)
    return JSONResponse({"item": item.view()}, status_code=201)


async def content_delete(request: Request) -> Response:
    webinar_id, user = await _staff(request)
    await read_form(request)
    item_id = int(request.path_params["item_id"])
    svc = services(request)
    refused = media_node_response(svc.settings)
    if refused is not None:  # the files and the program showing them are on the media node
        return refused
    by: dict[str, Any] = {"id": None, "name": user.name or user.email.split("@")[0], "role": "staff"}
    async with svc.db.acquire() as conn, conn.transaction():
        event = await item_deleted(conn, webinar_id, item_id, by)
        item = await delete_item(conn, webinar_id, item_id)
        if item is None:
            raise NotFound("content")
    remove_files(svc.settings.media_dir, item)
    director = svc.extras.get("content")
    if director is not None:
        director.forget_item(item.id)
    if event is not None:
        await svc.extras["rooms"].publish([event])
        if director is not None:
            await director.apply(webinar_id, state_view(None))
    return JSONResponse({"deleted": item.id}, headers={"cache-control": "no-store"})


async def content_page(request: Request) -> Response:
    webinar_id, _ = await _staff(request)
    svc = services(request)
    item = await get_item(svc.db, webinar_id, int(request.path_params["item_id"]))
    if item is None:
        raise NotFound("content")
    path = page_file(svc.settings.media_dir, item, int(request.path_params["index"]))
    if path is None or not path.is_file():
        raise NotFound("page")
    media_type = "image/jpeg" if path.suffix == ".jpg" else "image/png"
    # An item's pages never change (an image set only grows; ids are not reused).
    return FileResponse(path, media_type=media_type, headers={"cache-control": "private, max-age=86400, immutable"})


routes = [
    AppRoute("/webinars/{webinar_id}/content", content_list, access="user", methods=["GET"]),
    AppRoute("/webinars/{webinar_id}/content", content_upload, access="user", methods=["POST"]),
    AppRoute("/webinars/{webinar_id}/content/{item_id:int}/delete", content_delete, access="user", methods=["POST"]),
    AppRoute("/webinars/{webinar_id}/content/{item_id:int}/pages/{index:int}", content_page, access="user",
             methods=["GET"]),
]
