"""Client data return (R-OPS-2) on a real PostgreSQL with real media: two accounts with one
of everything; the export of one holds all of its rows (checked table by table against
the database, through every foreign key path) and none of the other's, no secrets, and its
replay files with matching checksums; the CLI writes the documented layout."""

from __future__ import annotations

import asyncio
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from server.account_export import (
    ACCOUNT_ROWS,
    PLATFORM_TABLES,
    ExportError,
    export_account,
    unclassified_tables,
)
from billing.personal_data import strings_in
from server.db import Database
from tests.support.account_data import AccountData, make_media, populate, sha256_tree
from tests.support.postgres import PostgresForTests
from tests.world import make_world

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def tmp() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="webinar-export-test-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


async def test_export_holds_all_of_one_account_and_nothing_of_the_other(db: Database, pg: PostgresForTests,
                                                                          tmp: Path) -> None:
    world = await make_world(db)
    a: AccountData = await populate(db, world.a, "A")
    b: AccountData = await populate(db, world.b, "B")
    media = tmp / "media"
    a_media = make_media(media, world.a.webinar.id, tone=440)
    b_media = make_media(media, world.b.webinar.id, tone=660)
    # a second webinar of A without a recording, and a platform-wide row that belongs to no account
    await db.execute("INSERT INTO login_attempts (email, ip, succeeded) VALUES ($1, '203.0.113.1', false)",
                     world.a.organizer.email)
    out = tmp / "export-a"
    result = await export_account(db, world.a.account_id, out, media)

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["account_id"] == str(world.a.account_id)
    readme = (out / "README.txt").read_text()
    assert "tables/<table>.json" in readme and "media/hls/<webinar id>/" in readme
    assert set(manifest["tables"]) == set(ACCOUNT_ROWS)
    async with db.acquire() as conn:
        assert await unclassified_tables(conn) == []  # every table is classified

    # every table: the exported rows are exactly the account's rows (counted in the database by
    # the same condition), the same in JSON and CSV, and none mention account B
    b_ids = {str(world.b.account_id), str(world.b.webinar.id), str(world.b.order_id),
             *(str(x) for x in b.registration_ids + b.participant_ids),
             *(str(u.id) for u in world.b.users.values()), *(u.email for u in world.b.users.values())}
    total = 0
    for table, info in manifest["tables"].items():
        rows = json.loads((out / info["json"]).read_text())
        with open(out / info["csv"], newline="", encoding="utf-8") as fh:  # noqa: ASYNC230 - a small local file
            csv_rows = list(csv.DictReader(fh))
        expected = await db.fetchval(f'SELECT count(*) FROM "{table}" WHERE {ACCOUNT_ROWS[table]}', world.a.account_id)
        assert len(rows) == len(csv_rows) == info["rows"] == expected, table
        total += len(rows)
        for row, csv_row in zip(rows, csv_rows):
            assert set(row) == set(csv_row), table
            assert "password_hash" not in row and "stream_key_hash" not in row and "token_hash" not in row
            leaked = b_ids & set(strings_in(row))
            assert not leaked, f"{table} holds B's {leaked}"
    assert result.rows == total
    for path in (out / "tables").iterdir():  # B's free texts (see tests/support/account_data.py)
        text = path.read_text()
        for marker in ("from account B", "Company B", "Sponsor B", "Q0 B", "Rating 0 B", "No sound B", "Webinar B"):
            assert marker not in text, (path.name, marker)
    assert "sessions" not in manifest["tables"] and "login_attempts" not in manifest["tables"]

    # all of A is there: each kind of thing A's people did, by id
    def ids(table: str, key: str) -> set[str]:
        return {str(r[key]) for r in json.loads((out / "tables" / f"{table}.json").read_text())}

    assert ids("registrations", "id") == {str(x) for x in a.registration_ids}
    assert {str(x) for x in a.participant_ids} <= ids("participants", "id")
    for table in ("chat_messages", "questions", "ratings", "help_requests", "attendance", "attendance_sessions"):
        # (questions asked at registration are stored without a participant)
        assert ids(table, "participant_id") - {"None"} == {str(x) for x in a.participant_ids}, table
    for table, n in (("poll_votes", 3), ("question_votes", 3), ("cta_interactions", 3), ("consents", 6),
                     ("emails_sent", 3), ("invoices", 1), ("invoice_lines", 1), ("fees", 1), ("downloads", 1),
                     ("orders", 1), ("webinars", 1), ("accounts", 1), ("help_faq", 1), ("polls", 1), ("ctas", 1)):
        assert manifest["tables"][table]["rows"] == n, table
    users = {r["email"]: r for r in json.loads((out / "tables" / "users.json").read_text())}
    assert set(users) == {u.email for u in world.a.users.values()}

    # its replay files, byte for byte; none of B's
    exported = sha256_tree(out / "media")
    assert exported == a_media
    assert {k: v["sha256"] for k, v in manifest["media"].items()} == a_media
    assert not set(exported) & set(b_media)
    assert result.media_files == len(a_media)


async def test_export_refuses_unknown_account_and_non_empty_folder(db: Database, tmp: Path) -> None:
    world = await make_world(db)
    with pytest.raises(ExportError, match="no account"):
        await export_account(db, uuid.uuid4(), tmp / "x", tmp / "media")
    assert not (tmp / "x").exists()
    (tmp / "full").mkdir()
    (tmp / "full" / "keep.txt").write_text("mine")
    with pytest.raises(ExportError, match="not an empty folder"):
        await export_account(db, world.a.account_id, tmp / "full", tmp / "media")
    assert (tmp / "full" / "keep.txt").read_text() == "mine"


async def test_cli_export_account(pg: PostgresForTests, tmp: Path) -> None:
    dsn = await pg.new_database()
    db = Database(dsn, min_size=1, max_size=2)
    await db.connect()
    try:
        world = await make_world(db)
        await populate(db, world.a, "A", people=1)
    finally:
        await db.close()
    media = make_media(tmp / "data" / "media", world.a.webinar.id, seconds=2)
    env = {**os.environ, "DATABASE_URL": dsn}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "server.cli", "export-account", *args,
                               "--data-dir", str(tmp / "data")], cwd=REPO, env=env, capture_output=True, text=True,
                              timeout=120, check=False)

    done = await asyncio.to_thread(run, str(world.a.account_id), str(tmp / "out"))
    assert done.returncode == 0, done.stderr
    assert f"account {world.a.account_id} exported" in done.stdout
    assert sha256_tree(tmp / "out" / "media") == media
    assert (tmp / "out" / "README.txt").exists() and (tmp / "out" / "tables" / "registrations.csv").exists()
    bad = await asyncio.to_thread(run, "not-a-uuid", str(tmp / "out2"))
    assert bad.returncode == 2 and "not an account id" in bad.stderr
    again = await asyncio.to_thread(run, str(world.a.account_id), str(tmp / "out"))
    assert again.returncode == 1 and "not an empty folder" in again.stderr


def test_platform_and_account_tables_do_not_overlap() -> None:
    assert not set(ACCOUNT_ROWS) & set(PLATFORM_TABLES)
