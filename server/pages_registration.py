"""Registration pages (R-REG-1): the public page, the embeddable iframe form, the
registrant's calendar invite, and the organizer's registration settings.

- ``GET/POST /w/{webinar_id}/register``: presentation and form; CSRF with the
  site's double-submit cookie (:func:`server.web.read_form`) like every form.
- ``GET/POST /w/{webinar_id}/embed``: the compact form for an ``<iframe>`` on
  a client's own site (``/static/embed.js`` creates it). See :func:`embed_submit`
  for why it has its own CSRF scheme and how it is framable.
- ``GET /w/{webinar_id}/calendar.ics?token=``: the ICS invite; the registrant's
  join token is the key.
- ``GET/POST /webinars/{webinar_id}/registration``: required fields, speaker
  question, speakers, sponsor name and logo (organizers).

Unknown or draft webinars answer 404 (not public yet); cancelled or removed
ones answer 410 with a clear message. A success page shows the personal join
link (``/w/{id}?token=``) and the calendar download.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections.abc import Mapping
from email.utils import parseaddr
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from rooms.participants import JoinRefused, from_token
from server.errors import NotFound
from server.i18n import translate
from server.ics import MEDIA_TYPE, Invite, invite_ics
from server.permissions import require_webinar_organizer
from server.rate_limit import WindowLimiter
from server.registrations import (
    COMPANY_SIZES,
    FIELDS,
    MAX_LENGTHS,
    SETTINGS_LIMITS,
    FormConfig,
    FormSettings,
    RegistrationClosed,
    RegistrationInvalid,
    SettingsInvalid,
    join_url,
    load_form_config,
    personal_links,
    register,
    update_form_settings,
)
from server.security import InvalidToken, Purpose
from server.web import AppRoute, read_form, redirect, render, request_lang, services

FALLBACK_TZ = "Europe/Paris"
"""Time zone of the date written by the server (the page's script shows the visitor's own)."""
EMBED_FORM_PURPOSE: Purpose = "embed-form"
EMBED_TOKEN_TTL_S = 2 * 3600
"""Lifetime of the embedded form's token (seconds); an older form is shown again, values kept."""
EMBED_POSTS_PER_MINUTE = 20
"""Embedded-form submissions accepted per client IP address and minute (per process)."""
EMBED_HEADERS = {"content-security-policy": "frame-ancestors *", "cache-control": "no-store"}
"""The embed pages may be framed by any site; they carry a per-visitor token: never cached."""
INPUTS: dict[str, tuple[str, str]] = {
    "first_name": ("text", "given-name"), "last_name": ("text", "family-name"), "email": ("email", "email"),
    "phone": ("tel", "tel"), "job_function": ("text", "organization-title"), "company": ("text", "organization"),
    "company_size": ("select", "off"), "department": ("text", "off"), "industry": ("text", "off"),
}
"""HTML input type and ``autocomplete`` value per field."""
_LIMITER_KEY = "registration.embed_limiter"


def _client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


def _client_tag(request: Request) -> str:
    """Binds an embed token to the address that fetched the form (see :func:`embed_submit`)."""
    return hashlib.sha256((_client_ip(request) or "-").encode()).hexdigest()[:16]


async def _public_config(request: Request) -> FormConfig:
    webinar_id = _webinar_id(request)
    config = await load_form_config(services(request).db, webinar_id)
    if config.state == "draft":
        raise NotFound("webinar")
    return config


def _webinar_id(request: Request) -> uuid.UUID:
    try:
        return uuid.UUID(request.path_params["webinar_id"])
    except (KeyError, ValueError):
        raise NotFound("webinar") from None


def _when(config: FormConfig, lang: str) -> dict[str, str]:
    """The start as ISO UTC (for the script) and as text in Europe/Paris (without script)."""
    local = config.starts_at.astimezone(ZoneInfo(FALLBACK_TZ))
    date = local.strftime("%d/%m/%Y" if lang == "fr" else "%Y-%m-%d")
    return {
        "iso": config.starts_at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "text": translate(lang, "register.when_fallback", date=date, time=local.strftime("%H:%M")),
    }


def _form_context(config: FormConfig, lang: str, *, values: Mapping[str, str], errors: Mapping[str, str],
                  action: str) -> dict[str, Any]:
    fields = [
        {"name": name, "type": INPUTS[name][0], "autocomplete": INPUTS[name][1], "required": config.required(name),
         "maxlength": MAX_LENGTHS[name], "value": values.get(name, ""),
         "error": translate(lang, f"register.error.{errors[name]}", max=MAX_LENGTHS[name]) if name in errors else ""}
        for name in FIELDS
    ]
    consents = [
        {"kind": kind, "wording": config.wording(lang, kind), "checked": values.get(f"consent_{kind}") == "1",
         "error": translate(lang, f"register.error.{errors['consent_' + kind]}") if f"consent_{kind}" in errors else ""}
        for kind in config.consent_kinds
    ]
    question_error = errors.get("question")
    return {
        "webinar": config, "when": _when(config, lang), "fields": fields, "company_sizes": COMPANY_SIZES,
        "consents": consents, "action": f"{action}?lang={lang}",
        "question": {"value": values.get("question", ""), "maxlength": MAX_LENGTHS["question"],
                     "error": translate(lang, f"register.error.{question_error}", max=MAX_LENGTHS["question"])
                     if question_error else ""},
        "form_error": translate(lang, f"register.error.{errors['_form']}") if "_form" in errors else "",
        "has_errors": bool(errors), "wording_digest": config.wording_digest(lang),
        "form_token": None, "done": None,
    }


async def _submit(request: Request, form: Mapping[str, Any], *, source: str, template: str,
                  extra: Mapping[str, Any]) -> Response:
    """Register from a posted form; the success page, or the form again with its errors."""
    svc = services(request)
    lang = request_lang(request)
    webinar_id = _webinar_id(request)
    action = f"/w/{webinar_id}/{'embed' if source == 'iframe' else 'register'}"
    try:
        result = await register(
            svc.db, webinar_id, form, ip=_client_ip(request), user_agent=request.headers.get("user-agent", ""),
            source=source, locale=lang, time_zone=form.get("time_zone") if isinstance(form.get("time_zone"), str) else None,
        )
    except RegistrationClosed as exc:
        return await _closed(request, exc.config, template, extra)
    except RegistrationInvalid as exc:
        context = _form_context(exc.config, lang, values=exc.values, errors=exc.errors, action=action)
        return await render(request, template, status_code=422, **{**context, **extra})
    links = personal_links(svc.settings.base_url, svc.signer, webinar_id, result.participant.id)
    # The success pages show the webinar and the links, not the form: no form context to build.
    context = {"webinar": result.webinar, "when": _when(result.webinar, lang),
               "done": {"created": result.created, "join_url": links.join_url, "calendar_url": links.calendar_url,
                        "name": result.participant.display_name}}
    return await render(request, "register_done.html" if source == "page" else template, **{**context, **extra})


async def _closed(request: Request, config: FormConfig, template: str, extra: Mapping[str, Any]) -> Response:
    if config.state == "draft":
        raise NotFound("webinar")
    lang = request_lang(request)
    context = _form_context(config, lang, values={}, errors={}, action="")
    return await render(request, template, status_code=410, **{**context, **extra})


# The public page -------------------------------------------------------------------
async def register_page(request: Request) -> Response:
    config = await _public_config(request)
    if not config.is_open:
        return await _closed(request, config, "register.html", {})
    context = _form_context(config, request_lang(request), values={}, errors={}, action=f"/w/{config.webinar_id}/register")
    return await render(request, "register.html", **context)


async def register_submit(request: Request) -> Response:
    form = await read_form(request)
    return await _submit(request, form, source="page", template="register.html", extra={})


# The embedded form ---------------------------------------------------------------------
def _embed_token(request: Request, webinar_id: uuid.UUID) -> str:
    return services(request).signer.sign(
        EMBED_FORM_PURPOSE, {"w": str(webinar_id), "c": _client_tag(request)}, ttl_s=EMBED_TOKEN_TTL_S)


def _embed_token_ok(request: Request, webinar_id: uuid.UUID, token: object) -> bool:
    if not isinstance(token, str):
        return False
    try:
        body = services(request).signer.unsign(EMBED_FORM_PURPOSE, token)
    except InvalidToken:
        return False
    return body.get("w") == str(webinar_id) and body.get("c") == _client_tag(request) and "exp" in body


def _embedded(response: Response) -> Response:
    response.headers.update(EMBED_HEADERS)
    return response


def _limiter(request: Request) -> WindowLimiter:
    extras = services(request).extras
    limiter = extras.get(_LIMITER_KEY)
    if limiter is None:
        limiter = extras[_LIMITER_KEY] = WindowLimiter(EMBED_POSTS_PER_MINUTE, 60.0)
    assert isinstance(limiter, WindowLimiter)
    return limiter


async def embed_page(request: Request) -> Response:
    """The compact form for an iframe on another site (framable: ``frame-ancestors *``)."""
    config = await _public_config(request)
    extra = {"form_token": _embed_token(request, config.webinar_id)}
    if not config.is_open:
        return _embedded(await _closed(request, config, "register_embed.html", extra))
    context = _form_context(config, request_lang(request), values={}, errors={}, action=f"/w/{config.webinar_id}/embed")
    return _embedded(await render(request, "register_embed.html", **{**context, **extra}))


async def embed_submit(request: Request) -> Response:
    """Register from the embedded form.

    Why not the site's CSRF cookie: the embedded form is posted from a frame
    inside another site, where the ``SameSite=Lax`` cookie ``wb_csrf`` is not
    sent (and third-party cookies may be blocked altogether). Why no Origin or
    Referer check: the form is meant to be posted from any site. Why this is
    safe: the only effect of this endpoint is creating or updating a
    registration, which anyone can do by filling the form; it reads nothing
    private and acts for no logged-in user, so there is no victim session to
    ride. What remains is abuse, and that is what the protections target:

    - a signed form token (purpose ``embed-form``, :data:`EMBED_TOKEN_TTL_S`),
      bound to the webinar and to the address that fetched the form, so a page
      cannot make its visitors' browsers post registrations blindly (it cannot
      read a token from our frame, and a token it fetched itself does not match
      their address). A bad, expired or foreign token shows the form again,
      with the person's values and a fresh token: nothing typed is lost;
    - a rate limit per client address (:data:`EMBED_POSTS_PER_MINUTE`), answered
      with 429 and the form with its values;
    - replaying a token within its lifetime only repeats an idempotent
      registration (same email: same row) under the same rate limit.
    """
    webinar_id = _webinar_id(request)
    retry_after = _limiter(request).hit(_client_ip(request) or "-")
    form = await read_form(request, csrf=False)
    extra = {"form_token": _embed_token(request, webinar_id)}
    if retry_after or not _embed_token_ok(request, webinar_id, form.get("form_token")):
        config = await _public_config(request)
        if not config.is_open:
            return _embedded(await _closed(request, config, "register_embed.html", extra))
        lang = request_lang(request)
        values = {k: v for k, v in form.items() if isinstance(v, str) and (k in FIELDS or k == "question"
                                                                           or k.startswith("consent_"))}
        error = "rate_limited" if retry_after else "form_expired"
        context = _form_context(config, lang, values=values, errors={"_form": error}, action=f"/w/{webinar_id}/embed")
        response = await render(request, "register_embed.html", status_code=429 if retry_after else 403,
                                **{**context, **extra})
        if retry_after:
            response.headers["retry-after"] = str(max(1, round(retry_after)))
        return _embedded(response)
    return _embedded(await _submit(request, form, source="iframe", template="register_embed.html", extra=extra))


# Calendar ------------------------------------------------------------------------------
async def calendar_download(request: Request) -> Response:
    """The registrant's ICS invite; ``?token=`` is their join token (404 when it is not valid)."""
    svc = services(request)
    webinar_id = _webinar_id(request)
    try:
        participant = await from_token(svc.db, svc.signer, webinar_id, request.query_params.get("token", ""))
    except JoinRefused:
        raise NotFound("registration") from None
    row = await svc.db.fetchrow(
        "SELECT id, email, first_name, last_name FROM registrations WHERE participant_id = $1 AND webinar_id = $2",
        participant.id, webinar_id,
    )
    if row is None:
        raise NotFound("registration")
    config = await load_form_config(svc.db, webinar_id)
    if config.state in ("draft", "removed"):
        raise NotFound("webinar")
    token = request.query_params["token"]
    invite = Invite(
        webinar_id=webinar_id, registration_id=row["id"], host=urlsplit(svc.settings.base_url).hostname or "localhost",
        title=config.title, description=config.description, starts_at=config.starts_at, ends_at=config.ends_at,
        sequence=config.schedule_version, join_url=join_url(svc.settings.base_url, webinar_id, token), organizer_name=config.organizer_name,
        organizer_email=parseaddr(svc.settings.mail_from)[1] or svc.settings.mail_from, attendee_email=row["email"],
        attendee_name=" ".join(p for p in (row["first_name"], row["last_name"]) if p),
        cancelled=config.state == "cancelled",
    )
    method = "CANCEL" if invite.cancelled else "REQUEST"
    return Response(invite_ics(invite), media_type=f"{MEDIA_TYPE}; charset=utf-8; method={method}", headers={
        "content-disposition": f'attachment; filename="webinar-{str(webinar_id)[:8]}.ics"',
        "cache-control": "no-store",
    })


# Organizer settings --------------------------------------------------------------------------
async def _settings_page(request: Request, config: FormConfig, *, status_code: int = 200,
                         values: FormSettings | None = None, errors: Mapping[str, str] | None = None) -> Response:
    lang = request_lang(request)
    shown = values or FormSettings(config.required_fields, config.speaker_question, config.speakers,
                                   config.sponsor_name, config.sponsor_logo_url)
    errors = errors or {}
    return await render(
        request, "register_settings.html", status_code=status_code, webinar=config, fields=FIELDS, values=shown,
        limits=SETTINGS_LIMITS,
        errors={k: translate(lang, f"register.error.{v}", max=SETTINGS_LIMITS.get(k, 0)) for k, v in errors.items()},
        saved=request.query_params.get("saved") == "1" and status_code == 200,
        register_url=f"{services(request).settings.base_url}/w/{config.webinar_id}/register",
    )


async def settings_page(request: Request) -> Response:
    _, webinar = await require_webinar_organizer(request, _webinar_id(request))
    return await _settings_page(request, await load_form_config(services(request).db, webinar.id))


async def settings_submit(request: Request) -> Response:
    _, webinar = await require_webinar_organizer(request, _webinar_id(request))
    form = await read_form(request)

    def text(name: str) -> str:
        value = form.get(name)
        return value if isinstance(value, str) else ""

    submitted = FormSettings(
        required_fields=frozenset(v for v in form.getlist("required") if isinstance(v, str)),
        speaker_question=text("speaker_question") == "1",
        speakers=text("speakers"), sponsor_name=text("sponsor_name"), sponsor_logo_url=text("sponsor_logo_url"),
    )
    db = services(request).db
    try:
        await update_form_settings(db, webinar.id, submitted)
    except SettingsInvalid as exc:
        return await _settings_page(request, await load_form_config(db, webinar.id), status_code=422,
                                    values=submitted, errors=exc.errors)
    return redirect(f"/webinars/{webinar.id}/registration?saved=1")


routes: list[BaseRoute] = [
    AppRoute("/w/{webinar_id}/register", register_page, access="public", methods=["GET"]),
    AppRoute("/w/{webinar_id}/register", register_submit, access="public", methods=["POST"]),
    AppRoute("/w/{webinar_id}/embed", embed_page, access="public", methods=["GET"]),
    AppRoute("/w/{webinar_id}/embed", embed_submit, access="public", methods=["POST"]),
    AppRoute("/w/{webinar_id}/calendar.ics", calendar_download, access="public", methods=["GET"]),
    AppRoute("/webinars/{webinar_id}/registration", settings_page, access="organizer", methods=["GET"]),
    AppRoute("/webinars/{webinar_id}/registration", settings_submit, access="organizer", methods=["POST"]),
]
