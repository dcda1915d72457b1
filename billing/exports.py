"""Streamed, logged file downloads: CSV and XLSX from a server-side cursor.

- **Flat memory.** Rows come from a PostgreSQL server-side cursor
  (:func:`cursor_batches`, :data:`BATCH_ROWS` rows at a time, inside a
  read-only repeatable-read transaction: the file is one consistent
  snapshot) and leave as soon as they are formatted. CSV is written to the
  connection batch by batch; the HTTP server's flow control pauses the cursor
  when the client reads slowly. XLSX is written by xlsxwriter in
  ``constant_memory`` mode into a temporary file (its worksheet data goes to
  disk row by row; the zip is built at the end), in a worker thread, then
  streamed from the file, which is deleted afterwards.
- **CSV injection.** Every text cell whose first non-blank character is
  ``=``, ``+``, ``-``, ``@``, a tab or a carriage return gets a leading
  apostrophe (:func:`neutralise`), in both formats, so a spreadsheet never
  takes a participant's input for a formula. Numbers and dates are typed
  cells, never text.
- **Logged (R-ANA-3).** :class:`LoggedDownload` writes a ``downloads`` row
  when the download starts (who: user or sponsor key; when; which file) and
  completes it at the end with the rows and bytes handed to the connection
  and whether the file went out complete. A client that goes away early, or
  an error half-way, leaves ``complete = false``. "Bytes sent" counts bytes
  given to the server's socket; the kernel may still hold the last few
  kilobytes when the client vanishes.
- **Bounded.** At most :data:`MAX_CONCURRENT` files are generated at once per
  process (each holds a database connection while its cursor runs); more get
  503 with ``Retry-After``.

CSV dialect: UTF-8 with a byte-order mark (so spreadsheets detect UTF-8),
comma separator, CRLF line ends, quotes where needed (RFC 4180).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import datetime as dt
import io
import logging
import os
import tempfile
import uuid
from dataclasses import dataclass
from typing import Any, AsyncGenerator, AsyncIterator, Callable, Literal, Sequence
from zoneinfo import ZoneInfo

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from server.db import Database

log = logging.getLogger("billing.exports")

BATCH_ROWS = 2000
"""Rows fetched from the cursor (and formatted) at a time."""
PREFETCH_WAIT_S = 30.0
"""When a download stops early, how long its fetch in flight may take to finish (s)."""
MAX_CONCURRENT = 4
"""Files generated at once per process; each holds one database connection."""
XLSX_READ_BYTES = 256 * 1024
PARIS = ZoneInfo("Europe/Paris")
"""Dates in files and reports are shown in the service's time zone."""
_TRIGGERS = frozenset("=+-@\t\r")
_MAYBE_TRIGGER = frozenset("=+-@\t\r \u00a0")
"""First characters worth a closer look (a blank may hide a trigger behind it)."""

ColumnType = Literal["text", "number", "datetime"]
Cell = str | int | float | dt.datetime | None


@dataclass(frozen=True, slots=True)
class Column:
    key: str
    header: str
    type: ColumnType = "text"


def neutralise(text: str) -> str:
    """The text, with a leading apostrophe when a spreadsheet would read it as a formula."""
    stripped = text.lstrip(" \u00a0")
    if stripped and stripped[0] in _TRIGGERS:
        return "'" + text
    return text


def csv_cell(value: Cell, kind: ColumnType) -> Cell:
    """How one value is written in CSV: text neutralised; numbers as they are (the writer prints them);
    dates ISO 8601 in Europe/Paris (text already formatted by the query is kept as it is)."""
    if value is None:
        return None
    if kind == "text":
        text = value if isinstance(value, str) else str(value)
        return neutralise(text) if text and text[0] in _MAYBE_TRIGGER else text
    if kind == "datetime" and isinstance(value, dt.datetime):
        return value.astimezone(PARIS).isoformat(timespec="seconds")
    return value


Format = Callable[[Sequence[Any]], list[Cell]]
"""Turns one database record into the row's cells, in column order."""


@contextlib.asynccontextmanager
async def cursor_batches(db: Database, query: str, *args: Any, batch: int = BATCH_ROWS) -> AsyncIterator[AsyncIterator[list[Any]]]:
    """``async with cursor_batches(db, sql, ...) as batches: async for rows in batches: ...``

    A server-side cursor in a read-only repeatable-read transaction (one
    snapshot for the whole file), in the Europe/Paris time zone (what
    ``to_char`` of a timestamptz shows). ``cursor_tuple_fraction = 1`` tells
    the planner the whole result will be read (else it favours fast-start
    plans, slow for a full export); no JIT (compiling a large export query
    costs seconds and saves little). The next batch is fetched while the
    caller formats the current one.
    """
    async with db.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        await conn.execute("SET LOCAL cursor_tuple_fraction = 1.0; SET LOCAL jit = off; "
                           "SET LOCAL timezone = 'Europe/Paris'")
        cursor = await conn.cursor(query, *args)

        async def batches() -> AsyncGenerator[list[Any], None]:
            pending = asyncio.ensure_future(cursor.fetch(batch))
            try:
                while True:
                    rows = await pending
                    if not rows:
                        return
                    pending = asyncio.ensure_future(cursor.fetch(batch)) if len(rows) == batch else None
                    yield rows
                    if pending is None:
                        return
            finally:  # let a fetch in flight finish (at most one batch) before the transaction ends
                if pending is not None:
                    if not pending.done():
                        try:
                            await asyncio.wait_for(asyncio.shield(pending), PREFETCH_WAIT_S)
                        except Exception:
                            pending.cancel()
                    if pending.done() and not pending.cancelled():
                        pending.exception()  # retrieved: its error, if any, is not the caller's concern now

        iterator = batches()
        try:
            yield iterator
        finally:
            await iterator.aclose()


class Counter:
    """Rows written so far (for the download log)."""

    def __init__(self) -> None:
        self.rows = 0


async def csv_stream(columns: Sequence[Column], batches: AsyncIterator[list[Any]], fmt: Format,
                     counter: Counter) -> AsyncIterator[bytes]:
    """The CSV file, one chunk per batch of rows."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    buffer.write("\ufeff")
    writer.writerow([neutralise(c.header) for c in columns])
    yield buffer.getvalue().encode()
    # Only text and date cells need work; numbers go to the writer as they are (one pass per column kind).
    checks = [(i, c.type) for i, c in enumerate(columns) if c.type != "number"]
    async for rows in batches:
        buffer.seek(0)
        buffer.truncate()
        out = []
        for row in rows:
            cells = fmt(row)
            for i, kind in checks:
                value = cells[i]
                if value and (not isinstance(value, str) or value[0] in _MAYBE_TRIGGER):
                    cells[i] = csv_cell(value, kind)
            out.append(cells)
        writer.writerows(out)
        counter.rows += len(out)
        yield buffer.getvalue().encode()


def _xlsx_writer(path: str, tmpdir: str, columns: Sequence[Column]) -> tuple[Any, Any, Callable[[int, list[list[Cell]]], None]]:
    import xlsxwriter  # imported here: only the XLSX export needs it

    workbook = xlsxwriter.Workbook(path, {"constant_memory": True, "tmpdir": tmpdir, "strings_to_numbers": False,
                                          "strings_to_formulas": False, "strings_to_urls": False})
    sheet = workbook.add_worksheet("participants")
    bold = workbook.add_format({"bold": True})
    date = workbook.add_format({"num_format": "yyyy-mm-dd hh:mm:ss"})
    for i, column in enumerate(columns):
        sheet.write_string(0, i, neutralise(column.header), bold)
        sheet.set_column(i, i, 22 if column.type == "datetime" else 16)
    kinds = [c.type for c in columns]

    def write_rows(first: int, rows: list[list[Cell]]) -> None:
        for r, cells in enumerate(rows, start=first):
            for c, (value, kind) in enumerate(zip(cells, kinds)):
                if value is None:
                    continue
                if kind == "text":
                    text = value if isinstance(value, str) else str(value)
                    sheet.write_string(r, c, neutralise(text) if text and text[0] in _MAYBE_TRIGGER else text)
                elif kind == "datetime":
                    if isinstance(value, dt.datetime):  # else: an Excel serial date computed by the query
                        sheet.write_datetime(r, c, value.astimezone(PARIS).replace(tzinfo=None), date)
                    else:
                        sheet.write_number(r, c, value, date)
                else:
                    sheet.write_number(r, c, value)

    return workbook, sheet, write_rows


async def xlsx_stream(columns: Sequence[Column], batches: AsyncIterator[list[Any]], fmt: Format,
                      counter: Counter) -> AsyncIterator[bytes]:
    """The XLSX file: built in a temporary folder by a worker thread, then streamed and deleted."""
    with tempfile.TemporaryDirectory(prefix="webinar-xlsx-") as tmpdir:
        path = os.path.join(tmpdir, "file.xlsx")
        workbook, _, write_rows = await asyncio.to_thread(_xlsx_writer, path, tmpdir, columns)
        try:
            next_row = 1
            async for rows in batches:
                cells = [fmt(row) for row in rows]
                await asyncio.to_thread(write_rows, next_row, cells)
                next_row += len(cells)
                counter.rows += len(cells)
        finally:
            await asyncio.to_thread(workbook.close)
        with open(path, "rb") as file:
            while chunk := await asyncio.to_thread(file.read, XLSX_READ_BYTES):
                yield chunk


# The download log and the response ------------------------------------------------------
@dataclass(frozen=True)
class Downloader:
    """Who downloads: a logged-in user or a sponsor key (exactly one)."""

    user_id: uuid.UUID | None = None
    sponsor_key_id: uuid.UUID | None = None

    def __post_init__(self) -> None:
        if (self.user_id is None) == (self.sponsor_key_id is None):
            raise ValueError("a download is made by exactly one user or one sponsor key")


async def log_start(db: Database, who: Downloader, *, account_id: uuid.UUID, webinar_id: uuid.UUID | None, file: str,
                    ip: str | None, user_agent: str) -> int:
    value: int = await db.fetchval(
        """INSERT INTO downloads (account_id, webinar_id, user_id, sponsor_key_id, file, ip, user_agent)
           VALUES ($1, $2, $3, $4, $5, $6::inet, $7) RETURNING id""",
        account_id, webinar_id, who.user_id, who.sponsor_key_id, file[:200], _inet(ip), user_agent[:300])
    return value


async def log_end(db: Database, download_id: int, *, rows: int, bytes_sent: int, complete: bool) -> None:
    await db.execute(
        "UPDATE downloads SET finished_at = now(), rows_sent = $2, bytes_sent = $3, complete = $4 WHERE id = $1",
        download_id, rows, bytes_sent, complete)


def _inet(ip: str | None) -> str | None:
    import ipaddress

    try:
        return str(ipaddress.ip_address(ip)) if ip else None
    except ValueError:
        return None


_slots = asyncio.Semaphore(MAX_CONCURRENT)


def content_disposition(filename: str) -> str:
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in filename)[:150]
    return f'attachment; filename="{safe}"'


MEDIA_TYPES = {"csv": "text/csv; charset=utf-8",
               "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}
Kind = Literal["csv", "xlsx"]


@dataclass(frozen=True)
class FileRequest:
    """What to put in one file and whom to log it for."""

    who: Downloader
    account_id: uuid.UUID
    webinar_id: uuid.UUID | None
    filename: str
    kind: Kind
    columns: Sequence[Column]
    query: str
    args: Sequence[Any]
    fmt: Format
    ip: str | None = None
    user_agent: str = ""


class LoggedDownload(Response):
    """Streams one :class:`FileRequest` and logs it in ``downloads`` (R-ANA-3).

    Everything is acquired inside :meth:`__call__` and released in its
    ``finally`` (a generation slot, the log row, the cursor's connection), so
    nothing leaks whatever ends the response: end of file, client gone, error,
    server shutdown. When :data:`MAX_CONCURRENT` files are already being made,
    answers 503 with ``Retry-After`` instead (and logs nothing).
    """

    def __init__(self, db: Database, file: FileRequest) -> None:
        self.db = db
        self.file = file
        self.status_code = 200
        self.background = None
        self.init_headers({"content-disposition": content_disposition(file.filename), "cache-control": "no-store",
                           "content-type": MEDIA_TYPES[file.kind]})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if _slots.locked():
            busy = Response("Busy: too many files are being prepared; try again in a few seconds.\n", status_code=503,
                            media_type="text/plain", headers={"retry-after": "10"})
            await busy(scope, receive, send)
            return
        async with _slots:
            await self._stream(receive, send)

    def _chunks(self, counter: Counter) -> AsyncIterator[bytes]:
        f = self.file
        stream = csv_stream if f.kind == "csv" else xlsx_stream

        async def chunks() -> AsyncIterator[bytes]:
            async with cursor_batches(self.db, f.query, *f.args) as batches:
                body = stream(f.columns, batches, f.fmt, counter)
                try:
                    async for chunk in body:
                        yield chunk
                finally:
                    await body.aclose()  # type: ignore[attr-defined]

        return chunks()

    async def _stream(self, receive: Receive, send: Send) -> None:
        f = self.file
        download_id = await log_start(self.db, f.who, account_id=f.account_id, webinar_id=f.webinar_id,
                                      file=f.filename, ip=f.ip, user_agent=f.user_agent)
        counter = Counter()
        chunks = self._chunks(counter)
        sent = 0
        complete = False
        gone = asyncio.Event()

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            gone.set()

        watcher = asyncio.create_task(watch())
        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            async for chunk in chunks:
                if gone.is_set():
                    break
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                if gone.is_set():
                    break
                sent += len(chunk)
            else:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                complete = not gone.is_set()
        except OSError:  # how a vanished client is reported under ASGI spec 2.4
            pass
        finally:
            watcher.cancel()
            with contextlib.suppress(BaseException):
                await watcher
            try:
                await chunks.aclose()  # type: ignore[attr-defined]
            except Exception:
                log.exception("closing download %s failed", download_id)
            try:
                await asyncio.shield(log_end(self.db, download_id, rows=counter.rows, bytes_sent=sent,
                                             complete=complete))
            except Exception:
                log.exception("download %s: could not log its end", download_id)
