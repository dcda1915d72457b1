"""Web plumbing shared by every domain's pages: routes with an access level,
templates, language, CSRF, the current user and the error pages.

Every route is an :class:`AppRoute` that declares who may call it
(``access``). The authorization matrix test walks ``app.routes`` and checks
each non-public route against every role, so a new route is covered the
moment it is added.
"""

from __future__ import annotations

import hmac
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Literal

import jinja2
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.i18n import LANG_COOKIE, negotiate, translate
from server.maintenance import notice as maintenance_notice
from server.security import Signer
from server.sessions import COOKIE as SESSION_COOKIE
from server.sessions import session_user_id
from server.users import User, get_user

if TYPE_CHECKING:
    from server.app import Services

Access = Literal["public", "user", "organizer", "admin", "sponsor"]
"""``public``: anyone. ``user``: any logged-in user. ``organizer``: an organizer
of the object's account with an active contract, or an admin. ``admin``:
platform admins. ``sponsor``: a sponsor login or key covering the object.
Object-level checks happen in the endpoint; the level is the floor."""

CSRF_COOKIE = "wb_csrf"
CSRF_FIELD = "csrf_token"
MAX_FORM_BYTES = 1_000_000
"""Largest urlencoded form accepted (bytes); file uploads have their own limits."""


class AppRoute(Route):
    """A starlette Route that states its access level."""

    def __init__(self, path: str, endpoint: Callable[..., Any], *, access: Access, methods: list[str] | None = None,
                 name: str | None = None) -> None:
        super().__init__(path, endpoint, methods=methods, name=name)
        self.access: Access = access


class NotLoggedIn(Exception):
    """Raised by :func:`require_user`; answered with a redirect to the login page."""


class CSRFError(Exception):
    """A state-changing form without a valid CSRF token."""


class BadRequest(Exception):
    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def services(request: Request) -> "Services":
    return request.app.state.services  # type: ignore[no-any-return]


# Templates ---------------------------------------------------------------
_template_dirs: list[Path] = [Path(__file__).with_name("templates")]
_env: jinja2.Environment | None = None


def add_template_dir(path: Path) -> None:
    """Domains (player, rooms, billing) register their templates folder here at import."""
    global _env
    if path not in _template_dirs:
        _template_dirs.append(path)
        _env = None


def template_env() -> jinja2.Environment:
    global _env
    if _env is None:
        _env = jinja2.Environment(
            loader=jinja2.FileSystemLoader([str(p) for p in _template_dirs]),
            autoescape=jinja2.select_autoescape(default=True),
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
    return _env


@dataclass
class PageContext:
    lang: str
    user: User | None
    csrf: str
    flash: list[str] = field(default_factory=list)


async def current_user(request: Request) -> User | None:
    if "wb_user" in request.scope:
        return request.scope["wb_user"]  # type: ignore[no-any-return]
    svc = services(request)
    uid = await session_user_id(svc.db, request.cookies.get(SESSION_COOKIE))
    user = await get_user(svc.db, uid) if uid else None
    request.scope["wb_user"] = user
    return user


async def require_user(request: Request) -> User:
    user = await current_user(request)
    if user is None:
        raise NotLoggedIn()
    return user


def request_lang(request: Request, user: User | None = None) -> str:
    return negotiate(
        request.query_params.get("lang"),
        request.cookies.get(LANG_COOKIE),
        user.locale if user else None,
        request.headers.get("accept-language"),
    )


async def render(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    user = await current_user(request)
    lang = request_lang(request, user)

    def t(key: str, **params: Any) -> str:
        return translate(lang, key, **params)

    html = template_env().get_template(template).render(
        request=request, user=user, lang=lang, t=t, csrf_token=request.scope.get("wb_csrf", ""),
        maintenance=maintenance_notice(request), **context
    )
    response = HTMLResponse(html, status_code=status_code)
    if request.query_params.get("lang") in ("fr", "en"):
        response.set_cookie(LANG_COOKIE, lang, max_age=365 * 86400, samesite="lax")
    return response


async def read_form(request: Request, *, csrf: bool = True) -> FormData:
    """The posted form, after a size limit and the CSRF check (double-submit cookie).

    ``csrf=False`` is for the few forms that carry their own proof instead of the
    cookie (the cross-site embedded registration form, one-click unsubscribe):
    their callers document why that is safe."""
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > MAX_FORM_BYTES):
        raise BadRequest("form too large")
    try:
        form = await request.form(max_files=0, max_fields=200)
    except Exception as exc:  # multipart/urlencoded parse errors
        raise BadRequest(str(exc)[:200]) from None
    if not csrf:
        return form
    token = form.get(CSRF_FIELD)
    token = token if isinstance(token, str) else None
    cookie = request.cookies.get(CSRF_COOKIE)
    if cookie and cookie == request.scope.get("wb_csrf"):
        # CSRFCookieMiddleware already verified this cookie's signature: compare only.
        ok = token is not None and hmac.compare_digest(cookie.encode(), token.encode())
    else:
        ok = services(request).signer.csrf_ok(cookie, token)
    if not ok:
        raise CSRFError()
    return form


def form_str(form: FormData, name: str, *, max_len: int = 1000, required: bool = True) -> str:
    value = form.get(name)
    if value is None or not isinstance(value, str) or (required and not value.strip()):
        if required:
            raise BadRequest(f"missing field {name}")
        return ""
    if len(value) > max_len:
        raise BadRequest(f"field {name} longer than {max_len} characters")
    return value.strip()


def path_uuid(request: Request, name: str) -> uuid.UUID:
    from server.errors import NotFound

    try:
        return uuid.UUID(request.path_params[name])
    except (KeyError, ValueError):
        raise NotFound(name) from None


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


class CSRFCookieMiddleware:
    """Gives every browser a signed CSRF cookie (double-submit token) and puts its value in the scope."""

    def __init__(self, app: ASGIApp, signer_factory: Callable[[], Signer]) -> None:
        self.app = app
        self.signer_factory = signer_factory

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # /hls/ (playlists and media, GET only) gets no cookie: a Set-Cookie makes nginx and CDNs skip the cache.
        if scope["type"] != "http" or scope["path"].startswith("/hls/"):
            await self.app(scope, receive, send)
            return
        cookies = Request(scope).cookies
        existing = cookies.get(CSRF_COOKIE)
        signer = self.signer_factory()
        if existing and signer.csrf_ok(existing, existing):
            scope["wb_csrf"] = existing
            await self.app(scope, receive, send)
            return
        token = signer.new_csrf()
        scope["wb_csrf"] = token
        secure = scope.get("scheme") == "https"

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                cookie = f"{CSRF_COOKIE}={token}; Path=/; SameSite=Lax; HttpOnly" + ("; Secure" if secure else "")
                headers.append((b"set-cookie", cookie.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_cookie)


Endpoint = Callable[[Request], Awaitable[Response]]
