"""Client data return (R-OPS-2): one account's data as JSON and CSV, plus its media files.

``webinar export-account <account-id> <dir>`` writes::

    <dir>/
      README.txt              what is here, in words (written from :data:`README_TEXT`)
      manifest.json           format, account, time of the export, per table: file names and
                              row count, per media file: size and sha256
      tables/<table>.json     the account's rows of that table: a JSON array of objects
      tables/<table>.csv      the same rows as CSV (UTF-8, header line, RFC 4180 quoting;
                              arrays and objects as JSON text, empty cell = NULL)
      media/hls/<webinar id>/...      each webinar's recording: VOD playlist, segments, replay.mp4
      media/content/<webinar id>/...  files uploaded for webcam rooms (slides, clips)

Which rows are the account's is said per table in :data:`ACCOUNT_ROWS` (a SQL
condition on the table, ``$1`` = the account id): the account itself, its orders,
webinars and everything that happened in them (participants, registrations and
consents, emails sent, attendance, chat, Q&A, polls, CTAs, ratings, help
requests, room events), its invoices and fees, its sponsor keys and downloads,
its audit and processing logs, and its users (the account's members and the
staff of its webinars). Tables that are the platform's, not a client's
(:data:`PLATFORM_TABLES`: the job queue, sessions and login attempts, rates,
the invoice issuer, breach records, migrations...) are left out. A table added
later that neither list names is still exported when it has an ``account_id``
or ``webinar_id`` column, and is listed by :func:`unclassified_tables`
otherwise (a test fails until it is classified).

Values are read as the personal-data export reads them (:mod:`billing.personal_data`):
secrets of the service (password hashes, token and stream key hashes) and binary
columns are never written. Everything is read in one read-only REPEATABLE READ
transaction, so the files describe one moment. Rows are streamed (a cursor, 1,000
at a time): memory does not grow with the size of a table.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from billing.personal_data import SECRET_COLUMNS, _jsonable
from server.db import Database

FORMAT = "webinar-account-export/1"
WEBINARS = "SELECT id FROM webinars WHERE account_id = $1"

ACCOUNT_ROWS: dict[str, str] = {
    "accounts": "id = $1",
    "account_members": "account_id = $1",
    "users": ("id IN (SELECT user_id FROM account_members WHERE account_id = $1"
              f" UNION SELECT user_id FROM webinar_members WHERE webinar_id IN ({WEBINARS}))"),
    "orders": "account_id = $1",
    "webinars": "account_id = $1",
    "webinar_members": f"webinar_id IN ({WEBINARS})",
    "invitations": f"webinar_id IN ({WEBINARS})",
    "sponsor_keys": "account_id = $1",
    "audit_log": "account_id = $1",
    "participants": f"webinar_id IN ({WEBINARS})",
    "rooms": f"webinar_id IN ({WEBINARS})",
    "room_events": f"webinar_id IN ({WEBINARS})",
    "chat_messages": f"webinar_id IN ({WEBINARS})",
    "questions": f"webinar_id IN ({WEBINARS})",
    "question_votes": f"question_id IN (SELECT id FROM questions WHERE webinar_id IN ({WEBINARS}))",
    "polls": f"webinar_id IN ({WEBINARS})",
    "poll_votes": f"poll_id IN (SELECT id FROM polls WHERE webinar_id IN ({WEBINARS}))",
    "ctas": f"webinar_id IN ({WEBINARS})",
    "cta_interactions": f"cta_id IN (SELECT id FROM ctas WHERE webinar_id IN ({WEBINARS}))",
    "ratings": f"webinar_id IN ({WEBINARS})",
    "help_faq": "account_id = $1",
    "help_requests": f"webinar_id IN ({WEBINARS})",
    "registrations": f"webinar_id IN ({WEBINARS})",
    "consents": f"registration_id IN (SELECT id FROM registrations WHERE webinar_id IN ({WEBINARS}))",
    "emails_sent": f"registration_id IN (SELECT id FROM registrations WHERE webinar_id IN ({WEBINARS}))",
    "schedule_changes": f"webinar_id IN ({WEBINARS})",
    "fees": "account_id = $1",
    "attendance": f"webinar_id IN ({WEBINARS})",
    "attendance_sessions": f"webinar_id IN ({WEBINARS})",
    "downloads": "account_id = $1",
    "invoices": "account_id = $1",
    "invoice_lines": "invoice_id IN (SELECT id FROM invoices WHERE account_id = $1)",
    "metered_attendees": f"webinar_id IN ({WEBINARS})",
    "processing_log": "account_id = $1",
    "webcam_content": f"webinar_id IN ({WEBINARS})",
    "webcam_content_state": f"webinar_id IN ({WEBINARS})",
}
"""Table -> SQL condition selecting the account's rows (``$1`` = account id)."""

PLATFORM_TABLES: dict[str, str] = {
    "schema_migrations": "the database schema's version",
    "jobs": "the platform's job queue (what the account's jobs did is in emails_sent)",
    "sessions": "login sessions: security secrets of the service",
    "login_attempts": "security log of the platform, by address",
    "ecb_rates": "reference interest rates",
    "invoice_issuer": "the operator's own invoicing details (printed on each invoice anyway)",
    "invoice_counters": "the operator's invoice numbering",
    "data_breaches": "the operator's breach register",
    "maintenance": "the platform's maintenance switch",
}
"""Tables that hold no client's data, with the reason."""

MEDIA_FOLDERS = ("hls", "content")
"""Folders of the media folder holding one sub-folder per webinar id."""

README_TEXT = """\
Data export of account "{name}" ({account_id})
Made on {exported_at} (UTC) by `webinar export-account`. Format: {format}.

All the data this platform holds for the account, as it was at that moment:

tables/<table>.json   the account's rows of each table: a JSON array of objects,
                      one per row, keys = column names. Times are ISO 8601 with
                      their UTC offset, dates YYYY-MM-DD, ids are UUIDs or integers.
tables/<table>.csv    the same rows as CSV: UTF-8, comma separated, a header line,
                      double quotes around values that need them. Arrays and objects
                      are JSON text; an empty cell is an absent value (NULL).
media/hls/<webinar id>/       each webinar's recording: index.m3u8 (the replay
                      playlist), its segments (fMP4: init.mp4 + seg*.m4s, playable
                      with any HLS player, e.g. `ffplay index.m3u8`) and replay.mp4
                      when it was made.
media/content/<webinar id>/   files uploaded for webcam rooms (slides, images, clips).
manifest.json         for checking: the row count of each table, the size and
                      SHA-256 of each media file.

Tables, with their number of rows:
{tables}

Not included: secrets of the service (password hashes, session and stream key
hashes) and data that is the platform's rather than the account's:
{platform}
"""


class ExportError(RuntimeError):
    """The export cannot be made (unknown account, target folder not empty...); says why."""


@dataclass
class ExportResult:
    path: Path
    tables: int
    rows: int
    media_files: int
    media_bytes: int


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def _public_tables(conn: asyncpg.Connection) -> dict[str, set[str]]:
    rows = await conn.fetch(
        """SELECT table_name, array_agg(column_name::text) AS cols FROM information_schema.columns
           WHERE table_schema = 'public' GROUP BY table_name""")
    return {r["table_name"]: set(r["cols"]) for r in rows}


async def unclassified_tables(conn: asyncpg.Connection) -> list[str]:
    """Tables neither :data:`ACCOUNT_ROWS` nor :data:`PLATFORM_TABLES` names and that have no
    ``account_id``/``webinar_id`` column to export them by: their rows are not exported."""
    tables = await _public_tables(conn)
    return sorted(t for t, cols in tables.items()
                  if t not in ACCOUNT_ROWS and t not in PLATFORM_TABLES and not cols & {"account_id", "webinar_id"})


async def _plan(conn: asyncpg.Connection) -> dict[str, str]:
    """Table -> condition, for every table of the account (known ones and later generic ones)."""
    tables = await _public_tables(conn)
    plan = {t: cond for t, cond in ACCOUNT_ROWS.items() if t in tables}
    for t, cols in sorted(tables.items()):
        if t in plan or t in PLATFORM_TABLES:
            continue
        if "account_id" in cols:
            plan[t] = "account_id = $1"
        elif "webinar_id" in cols:
            plan[t] = f"webinar_id IN ({WEBINARS})"
    return plan


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


async def _export_table(conn: asyncpg.Connection, table: str, condition: str, account_id: uuid.UUID,
                        folder: Path) -> int:
    """Stream the account's rows of ``table`` to ``<table>.json`` and ``<table>.csv``; the row count."""
    stmt = await conn.prepare(f"SELECT * FROM public.{_ident(table)} WHERE {condition} ORDER BY 1")
    attrs = [(a.name, a.type.name) for a in stmt.get_attributes()]
    columns = [(n, t) for n, t in attrs if n not in SECRET_COLUMNS and t != "bytea"]
    count = 0
    # buffered local writes between cursor fetches; the export runs in the CLI, not in the server's loop
    with open(folder / f"{table}.json", "w", encoding="utf-8") as js, \
            open(folder / f"{table}.csv", "w", encoding="utf-8", newline="") as cs:  # noqa: ASYNC230
        writer = csv.writer(cs)
        writer.writerow([n for n, _ in columns])
        js.write("[")
        async for record in stmt.cursor(account_id, prefetch=1000):
            row = {n: _jsonable(record[n], t) for n, t in columns}
            js.write(("\n " if count == 0 else ",\n ") + json.dumps(row, ensure_ascii=False))
            writer.writerow([_cell(row[n]) for n, _ in columns])
            count += 1
        js.write("\n]\n" if count else "]\n")
    return count


def _copy_media(media_dir: Path, webinar_ids: list[uuid.UUID], dest: Path) -> dict[str, dict[str, Any]]:
    """Copy each webinar's media folders into ``dest``; relative path -> size, sha256.
    Names starting with ``.`` (files being written) are left out."""
    out: dict[str, dict[str, Any]] = {}
    for folder in MEDIA_FOLDERS:
        for webinar_id in webinar_ids:
            src_root = media_dir / folder / str(webinar_id)
            if not src_root.is_dir():
                continue
            for root, dirs, files in os.walk(src_root):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(files):
                    src = Path(root) / name
                    if name.startswith(".") or src.is_symlink() or not src.is_file():
                        continue
                    rel = src.relative_to(media_dir).as_posix()
                    target = dest / rel
                    target.parent.mkdir(parents=True, exist_ok=True)
                    h = hashlib.sha256()
                    size = 0
                    with open(src, "rb") as fin, open(target, "wb") as fout:
                        while chunk := fin.read(1 << 20):
                            h.update(chunk)
                            fout.write(chunk)
                            size += len(chunk)
                    out[rel] = {"size": size, "sha256": h.hexdigest()}
    return out


async def export_account(db: Database, account_id: uuid.UUID, out_dir: Path, media_dir: Path) -> ExportResult:
    """Write the export of ``account_id`` into ``out_dir`` (created; refused when it holds files).
    On failure the folder is removed again if this call created it."""
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ExportError(f"{out_dir} exists and is not an empty folder: give a new folder")
    created = not out_dir.exists()
    async with db.acquire() as conn:
        name = await conn.fetchval("SELECT name FROM accounts WHERE id = $1", account_id)
        if name is None:
            raise ExportError(f"no account {account_id}")
    try:
        return await _export(db, account_id, name, out_dir, media_dir)
    except BaseException:
        if created:
            shutil.rmtree(out_dir, ignore_errors=True)
        else:
            for child in out_dir.iterdir():
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        raise


async def _export(db: Database, account_id: uuid.UUID, name: str, out_dir: Path, media_dir: Path) -> ExportResult:
    import asyncio

    tables_dir = out_dir / "tables"
    tables_dir.mkdir(parents=True, exist_ok=True)
    exported_at = dt.datetime.now(dt.UTC).replace(microsecond=0)
    counts: dict[str, int] = {}
    async with db.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        plan = await _plan(conn)
        for table, condition in sorted(plan.items()):
            counts[table] = await _export_table(conn, table, condition, account_id, tables_dir)
        webinar_ids = [r["id"] for r in await conn.fetch(WEBINARS + " ORDER BY id", account_id)]
        unclassified = await unclassified_tables(conn)
    media = await asyncio.to_thread(_copy_media, media_dir, webinar_ids, out_dir / "media")
    manifest: dict[str, Any] = {
        "format": FORMAT, "account_id": str(account_id), "account_name": name,
        "exported_at": exported_at.isoformat(),
        "tables": {t: {"rows": n, "json": f"tables/{t}.json", "csv": f"tables/{t}.csv"} for t, n in counts.items()},
        "media": media,
        "not_exported": {**PLATFORM_TABLES, **{t: "unclassified: no account_id or webinar_id" for t in unclassified}},
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n")
    (out_dir / "README.txt").write_text(README_TEXT.format(
        name=name, account_id=account_id, exported_at=exported_at.isoformat(), format=FORMAT,
        tables="\n".join(f"  {t:<24} {n:>9}" for t, n in counts.items()),
        platform="\n".join(f"  {t:<24} {why}" for t, why in manifest["not_exported"].items()),
    ), encoding="utf-8")
    return ExportResult(out_dir, len(counts), sum(counts.values()), len(media),
                        sum(m["size"] for m in media.values()))
