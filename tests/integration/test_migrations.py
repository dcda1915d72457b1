"""Migrations apply on an empty database, re-apply as a no-op, and refuse edited history."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest

from server.db import MigrationError, load_migrations, migrate
from tests.support.postgres import PostgresForTests


async def _empty_db(pg: PostgresForTests) -> asyncpg.Connection:
    import uuid

    name = "m_" + uuid.uuid4().hex[:12]
    admin = await asyncpg.connect(pg.server.dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    return await asyncpg.connect(pg.server.dsn_for(name))


async def test_apply_then_noop(pg: PostgresForTests) -> None:
    conn = await _empty_db(pg)
    try:
        applied = await migrate(conn)
        assert applied == [m.name for m in load_migrations()]
        assert applied, "there is at least one migration"
        tables = {r["tablename"] for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname='public'")}
        assert {"accounts", "users", "orders", "webinars", "sessions", "schema_migrations"} <= tables
        assert await migrate(conn) == []
        assert await conn.fetchval("SELECT count(*) FROM schema_migrations") == len(applied)
    finally:
        await conn.close()


async def test_changed_migration_is_refused(pg: PostgresForTests, tmp_path: Path) -> None:
    conn = await _empty_db(pg)
    try:
        (tmp_path / "0001_a.sql").write_text("CREATE TABLE a (x int);")
        assert await migrate(conn, tmp_path) == ["0001_a.sql"]
        (tmp_path / "0001_a.sql").write_text("CREATE TABLE a (x bigint);")
        with pytest.raises(MigrationError, match="changed after it was applied"):
            await migrate(conn, tmp_path)
    finally:
        await conn.close()


async def test_failed_migration_rolls_back(pg: PostgresForTests, tmp_path: Path) -> None:
    conn = await _empty_db(pg)
    try:
        (tmp_path / "0001_ok.sql").write_text("CREATE TABLE ok (x int);")
        (tmp_path / "0002_bad.sql").write_text("CREATE TABLE half (x int); SELECT no_such_function();")
        with pytest.raises(MigrationError, match="0002_bad.sql failed"):
            await migrate(conn, tmp_path)
        assert await conn.fetchval("SELECT to_regclass('half')") is None
        assert await conn.fetchval("SELECT count(*) FROM schema_migrations") == 1
    finally:
        await conn.close()


def test_bad_file_names(tmp_path: Path) -> None:
    (tmp_path / "1_x.sql").write_text("")
    with pytest.raises(MigrationError, match="NNNN"):
        load_migrations(tmp_path)
