"""``webinar demo``: a ready-to-try account, created idempotently.

Creates (or finds) a platform admin, a demo client account with an organizer
and a sponsor, an order, a studio webinar starting in 15 minutes and a webcam
webinar a few hours later. Passwords and the studio stream key are generated
once and kept in ``data_dir/demo-credentials.json`` (mode 0600) so every run
prints the same logins; demo webinars whose start has passed are moved to
"soon" again.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
from pathlib import Path
from typing import Any

from server.accounts import add_member, create_account
from server.db import Database
from server.orders import create_order
from server.settings import Settings
from server.urls import ingest_urls, webinar_urls
from server.users import create_user, get_user_by_email, set_password
from server.webinars import (
    create_webinar,
    get_webinar,
    rotate_stream_key,
    set_state,
    update_webinar,
    webinar_by_stream_key,
)

DEMO_ACCOUNT = "Demo"
ADMIN_EMAIL = "admin@demo.example"
ORGANIZER_EMAIL = "organizer@demo.example"
SPONSOR_EMAIL = "sponsor@demo.example"
STUDIO_TITLE = "Demo studio webinar"
WEBCAM_TITLE = "Demo webcam webinar"


def _credentials_path(settings: Settings) -> Path:
    return settings.data_dir / "demo-credentials.json"


def _load_credentials(settings: Settings) -> dict[str, Any]:
    path = _credentials_path(settings)
    if path.exists():
        data: dict[str, Any] = json.loads(path.read_text())
        return data
    return {}


def _save_credentials(settings: Settings, data: dict[str, Any]) -> None:
    path = _credentials_path(settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2)
    tmp.replace(path)


async def _ensure_user(db: Database, email: str, name: str, password: str, *, is_admin: bool = False) -> Any:
    user = await get_user_by_email(db, email)
    if user is None:
        return await create_user(db, email, name=name, password=password, is_admin=is_admin, locale="en")
    await set_password(db, user.id, password)
    return user


async def run_demo(db: Database, settings: Settings, now: dt.datetime | None = None) -> dict[str, Any]:
    now = now or dt.datetime.now(dt.UTC)
    creds = _load_credentials(settings)
    for role in ("admin", "organizer", "sponsor"):
        creds.setdefault(f"{role}_password", secrets.token_urlsafe(12))
    await _ensure_user(db, ADMIN_EMAIL, "Demo admin", creds["admin_password"], is_admin=True)
    organizer = await _ensure_user(db, ORGANIZER_EMAIL, "Demo organizer", creds["organizer_password"])
    sponsor = await _ensure_user(db, SPONSOR_EMAIL, "Demo sponsor", creds["sponsor_password"])

    account_id = await db.fetchval("SELECT id FROM accounts WHERE lower(name) = lower($1)", DEMO_ACCOUNT)
    if account_id is None:
        account_id = (await create_account(db, DEMO_ACCOUNT)).id
    await add_member(db, account_id, organizer.id, "organizer")
    await add_member(db, account_id, sponsor.id, "sponsor")

    today = now.date()
    order_id = await db.fetchval(
        "SELECT id FROM orders WHERE account_id = $1 AND contract_start <= $2 AND contract_end >= $2 + 30 LIMIT 1",
        account_id, today,
    )
    if order_id is None:
        order_id = (
            await create_order(
                db, account_id, reference=f"DEMO-{today.isoformat()}", signed_on=today,
                contract_start=today - dt.timedelta(days=1), contract_end=today + dt.timedelta(days=365),
                webinars_bought=20, kind="advertiser", studio_option=True, price_per_webinar_cents=450000,
            )
        ).id

    soon = (now + dt.timedelta(minutes=15)).replace(second=0, microsecond=0)
    plans = {"studio": (STUDIO_TITLE, soon), "webcam": (WEBCAM_TITLE, soon + dt.timedelta(hours=2))}
    result: dict[str, Any] = {
        "admin": {"email": ADMIN_EMAIL, "password": creds["admin_password"]},
        "organizer": {"email": ORGANIZER_EMAIL, "password": creds["organizer_password"]},
        "sponsor": {"email": SPONSOR_EMAIL, "password": creds["sponsor_password"]},
        "login_url": f"{settings.base_url}/login",
        "account_id": str(account_id),
        "webinars": [],
    }
    for room_type, (title, start) in plans.items():
        row = await db.fetchrow(
            """SELECT id FROM webinars WHERE account_id = $1 AND title = $2 AND room_type = $3
               AND state NOT IN ('cancelled', 'removed') ORDER BY created_at DESC LIMIT 1""",
            account_id, title, room_type,
        )
        if row is None:
            webinar = await create_webinar(
                db, account_id, title=title, starts_at=start, duration_minutes=60, room_type=room_type,
                description="A demonstration webinar created by `webinar demo`.", language="en", order_id=order_id,
            )
        else:
            webinar = await get_webinar(db, row["id"])
            if webinar.state in ("draft", "announced") and webinar.ends_at < now:
                webinar = await update_webinar(db, webinar.id, starts_at=start)
        if webinar.state == "draft":
            webinar = await set_state(db, webinar.id, "announced")
        key = creds.get(f"{room_type}_stream_key")
        if not key or (found := await webinar_by_stream_key(db, key)) is None or found.id != webinar.id:
            key = await rotate_stream_key(db, webinar.id)
            creds[f"{room_type}_stream_key"] = key
        entry = {"id": str(webinar.id), "title": webinar.title, "room_type": room_type, "state": webinar.state,
                 "starts_at": webinar.starts_at.isoformat(), "stream_key": key}
        entry.update(webinar_urls(settings, webinar.id))
        ingest = ingest_urls(settings, key)
        entry["rtmp_url"] = ingest["rtmp_full_url"]
        entry["srt_url"] = ingest["srt_url"]
        result["webinars"].append(entry)
    _save_credentials(settings, creds)
    return result


def format_demo(result: dict[str, Any]) -> str:
    lines = [
        f"Log in at {result['login_url']}",
        f"  admin      {result['admin']['email']}  /  {result['admin']['password']}",
        f"  organizer  {result['organizer']['email']}  /  {result['organizer']['password']}",
        f"  sponsor    {result['sponsor']['email']}  /  {result['sponsor']['password']}",
    ]
    for w in result["webinars"]:
        lines.append(f"{w['room_type']} webinar “{w['title']}” ({w['state']}, starts {w['starts_at']})")
        for key in ("manage_url", "viewer_url", "register_url", "moderator_url", "speaker_url", "hls_url", "rtmp_url", "srt_url"):
            lines.append(f"  {key:14} {w[key]}")
    return "\n".join(lines)
