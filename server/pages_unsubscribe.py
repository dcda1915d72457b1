"""``/unsubscribe/{token}``: the unsubscribe link of marketing mail (R-REG-4), no login.

- ``GET`` shows what the link does and a button; it changes nothing, because
  mail scanners and link previews fetch links on their own.
- ``POST`` unsubscribes. It serves both the page's button and RFC 8058
  one-click requests that mail programs send on the person's behalf (body
  ``List-Unsubscribe=One-Click``, no cookies).

There is deliberately **no CSRF check** on the POST: a one-click request
comes from the mail provider's servers and can never carry our CSRF cookie,
and it does not need one. CSRF protects an action performed with the
victim's ambient credentials (a session cookie); this route uses none. The
signed token in the URL is the whole authority, it only reaches the mail's
recipient, and all a forged request holding it could do is what the token
already allows: unsubscribe that one registration (idempotent, never
subscribing anyone). Without a valid token the answer is 404.
"""

from __future__ import annotations

import uuid

from starlette.requests import Request
from starlette.responses import Response

from server.errors import NotFound
from server.security import InvalidToken
from server.unsubscribe import Via, registration_from_token, unsubscribe
from server.web import AppRoute, BadRequest, render, services

MAX_BODY_BYTES = 4096
"""Largest POST body read (the one-click body is 26 bytes)."""
ONE_CLICK_BODY = b"List-Unsubscribe=One-Click"


def _registration(request: Request) -> uuid.UUID:
    try:
        return registration_from_token(services(request).signer, request.path_params["token"])
    except InvalidToken:
        raise NotFound("unsubscribe") from None


async def _small_body(request: Request) -> bytes:
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
        raise BadRequest("body too large")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise BadRequest("body too large")
    return body


async def unsubscribe_page(request: Request) -> Response:
    registration_id = _registration(request)
    row = await services(request).db.fetchrow(
        """SELECT r.email, r.unsubscribed_at, w.title FROM registrations r JOIN webinars w ON w.id = r.webinar_id
           WHERE r.id = $1""", registration_id)
    done = row is None or row["unsubscribed_at"] is not None
    return await render(request, "unsubscribe.html", token=request.path_params["token"], done=done,
                        email=row["email"] if row else "", title=row["title"] if row else "")


async def unsubscribe_submit(request: Request) -> Response:
    registration_id = _registration(request)
    body = await _small_body(request)
    via: Via = "one-click" if ONE_CLICK_BODY in body else "page"
    await unsubscribe(services(request).db, registration_id, via=via,
                      ip=request.client.host if request.client else None,
                      user_agent=request.headers.get("user-agent", ""))
    return await render(request, "unsubscribe.html", token=request.path_params["token"], done=True, email="", title="")


routes = [
    AppRoute("/unsubscribe/{token}", unsubscribe_page, access="public", methods=["GET"]),
    AppRoute("/unsubscribe/{token}", unsubscribe_submit, access="public", methods=["POST"]),
]
