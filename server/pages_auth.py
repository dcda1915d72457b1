"""Login, logout, the home redirect and invitation links."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from server.errors import RuleViolation
from server.i18n import translate
from server.invitations import accept_invitation, open_invitation
from server.security import InvalidToken
from server.sessions import COOKIE as SESSION_COOKIE
from server.sessions import create_session, end_session
from server.users import LoginRefused, authenticate, create_user, get_user_by_email
from server.web import AppRoute, current_user, form_str, read_form, redirect, render, request_lang, services


def _client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


def _safe_next(value: str | None) -> str:
    """Only local paths: ``/x`` but not ``//host`` or ``/\\host`` (open-redirect guard)."""
    if value and value.startswith("/") and not value.startswith(("//", "/\\")) and len(value) < 500:
        return value
    return "/dashboard"


def _login_response(request: Request, token: str, target: str) -> Response:
    svc = services(request)
    response = redirect(target)
    response.set_cookie(
        SESSION_COOKIE, token, max_age=svc.settings.session_max_age_s, httponly=True, samesite="lax",
        secure=svc.settings.cookie_secure, path="/",
    )
    return response


async def home(request: Request) -> Response:
    user = await current_user(request)
    if user is None:
        return redirect("/login")
    return redirect("/admin" if user.is_admin else "/dashboard")


async def login_page(request: Request) -> Response:
    return await render(request, "login.html", error=None, email="", next=_safe_next(request.query_params.get("next")))


async def login_submit(request: Request) -> Response:
    svc = services(request)
    form = await read_form(request)
    email = form_str(form, "email", max_len=254, required=False)
    password = form_str(form, "password", max_len=1000, required=False)
    target = _safe_next(form_str(form, "next", max_len=500, required=False))
    s = svc.settings
    try:
        user = await authenticate(
            svc.db, email, password, ip=_client_ip(request), max_failures=s.login_max_failures,
            max_failures_per_ip=s.login_max_failures_per_ip, window_s=s.login_window_s,
        )
    except LoginRefused as exc:
        status = 429 if exc.code == "rate_limited" else 401 if exc.code == "bad_credentials" else 403
        return await render(request, "login.html", status_code=status, error=f"login.{exc.code}", email=email, next=target)
    token = await create_session(
        svc.db, user.id, max_age_s=s.session_max_age_s, ip=_client_ip(request), user_agent=request.headers.get("user-agent")
    )
    if target == "/dashboard" and user.is_admin:
        target = "/admin"
    return _login_response(request, token, target)


async def logout(request: Request) -> Response:
    await read_form(request)
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        await end_session(services(request).db, token)
    response = redirect("/login")
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


async def invitation_page(request: Request) -> Response:
    svc = services(request)
    token = request.path_params["token"]
    try:
        inv = await open_invitation(svc.db, svc.signer, token)
    except InvalidToken as exc:
        key = "error.expired_link" if exc.expired else "error.invalid_link"
        return await render(request, "message.html", status_code=410 if exc.expired else 404, message_key=key)
    user = await current_user(request)
    existing = await get_user_by_email(svc.db, inv["email"])
    if request.method == "POST":
        form = await read_form(request)
        if user is not None and user.email == inv["email"]:
            await accept_invitation(svc.db, inv["id"], user.id)
            return redirect(f"/invite/{token}/done")
        if existing is None:
            name = form_str(form, "name", max_len=200)
            password = form_str(form, "password", max_len=1000, required=False)
            try:
                new_user = await create_user(svc.db, inv["email"], name=name, password=password,
                                             locale=request_lang(request))
            except RuleViolation as exc:
                return await render(request, "invite.html", status_code=422, inv=inv, existing=False,
                                    error=translate(request_lang(request), f"rule.{exc.code}", **exc.params))
            await accept_invitation(svc.db, inv["id"], new_user.id)
            session = await create_session(svc.db, new_user.id, max_age_s=svc.settings.session_max_age_s,
                                           ip=_client_ip(request), user_agent=request.headers.get("user-agent"))
            return _login_response(request, session, f"/invite/{token}/done")
    return await render(request, "invite.html", inv=inv, existing=existing is not None, error=None)


async def invitation_done(request: Request) -> Response:
    return await render(request, "message.html", message_key="invite.accepted")


routes = [
    AppRoute("/", home, access="public", methods=["GET"]),
    AppRoute("/login", login_page, access="public", methods=["GET"]),
    AppRoute("/login", login_submit, access="public", methods=["POST"]),
    AppRoute("/logout", logout, access="public", methods=["POST"]),
    AppRoute("/invite/{token}", invitation_page, access="public", methods=["GET", "POST"]),
    AppRoute("/invite/{token}/done", invitation_done, access="public", methods=["GET"]),
]
