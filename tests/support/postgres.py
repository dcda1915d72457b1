"""A real PostgreSQL for tests: the same embedded manager the server uses, on a
free 127.0.0.1 port in a throw-away folder, with fsync off (test data only).

Databases for tests are cloned from a migrated template, so each costs one
``CREATE DATABASE ... TEMPLATE`` instead of a migration run.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from pathlib import Path

import asyncpg

from server.db import migrate
from server.pg_embedded import EmbeddedPostgres
from tests.support.net import free_port

TEMPLATE = "webinar_template"


class PostgresForTests:
    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="webinar-test-pg-"))
        self.server = EmbeddedPostgres(self.root, port=free_port(), fast_unsafe=True)

    async def start(self) -> None:
        self.server.start()
        conn = await asyncpg.connect(self.server.dsn)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE}"')
            await conn.execute(f'CREATE DATABASE "{TEMPLATE}"')
        finally:
            await conn.close()
        tconn = await asyncpg.connect(self.server.dsn_for(TEMPLATE))
        try:
            await migrate(tconn)
        finally:
            await tconn.close()

    async def new_database(self) -> str:
        """A fresh migrated database; returns its URL."""
        name = "t_" + uuid.uuid4().hex[:16]
        conn = await asyncpg.connect(self.server.dsn)
        try:
            await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE}"')
        finally:
            await conn.close()
        return self.server.dsn_for(name)

    def stop(self) -> None:
        try:
            self.server.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
