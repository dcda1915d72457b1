"""The ``webinar`` command: serve, migrate, createadmin, demo, maintenance, backup, restore,
export-account.

Every subcommand takes the same options (``--host``, ``--port``,
``--rtmp-port``, ``--srt-port``, ``--data-dir``) and works against the same
data whether or not a server is running (the embedded database is shared).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sys
from typing import Awaitable, Callable

from server.settings import Settings, SettingsError


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="HTTP listen address (WEBINAR_HOST, default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="HTTP port (WEBINAR_PORT, default 8000)")
    parser.add_argument("--rtmp-port", type=int, help="RTMP ingest TCP port (WEBINAR_RTMP_PORT, default 1935)")
    parser.add_argument("--srt-port", type=int, help="SRT ingest UDP port (WEBINAR_SRT_PORT, default 9000)")
    parser.add_argument("--data-dir", help="folder for everything the server writes (WEBINAR_DATA_DIR, default ./webinar-data)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="webinar", description="Self-hostable webinar and live-streaming server")
    sub = parser.add_subparsers(dest="command", required=True)
    _common(sub.add_parser("serve", help="run the server"))
    _common(sub.add_parser("migrate", help="apply database migrations (also done at start-up)"))
    admin = sub.add_parser("createadmin", help="create a platform admin (or reset its password)")
    _common(admin)
    admin.add_argument("--email", required=True)
    admin.add_argument("--password", help="default: $WEBINAR_ADMIN_PASSWORD, else asked on the terminal")
    demo = sub.add_parser("demo", help="create the demo account and webinars (idempotent) and print logins and URLs")
    _common(demo)
    demo.add_argument("--json", action="store_true", help="print one JSON object")
    maint = sub.add_parser("maintenance", help="turn maintenance mode on or off, or show it (R-OPS-3)")
    _common(maint)
    maint.add_argument("switch", choices=["on", "off", "status"])
    maint.add_argument("--message", default="", help="shown to everyone while on (at most 500 characters)")
    backup = sub.add_parser("backup", help="write a backup generation of the database and media (R-OPS-1)")
    _common(backup)
    backup.add_argument("--backup-dir", help="where generations go (WEBINAR_BACKUP_DIR, default DATA_DIR/backups)")
    backup.add_argument("--list", action="store_true", help="list the complete generations instead")
    backup.add_argument("--checksums", action="store_true",
                        help="also record every table's row checksum (restore then checks contents, not only row counts)")
    restore = sub.add_parser("restore", help="bring a fresh server (empty database and media) back from a backup")
    _common(restore)
    restore.add_argument("generation", help="a generation name (see `webinar backup --list`) or 'latest'")
    restore.add_argument("--backup-dir", help="where generations are (WEBINAR_BACKUP_DIR, default DATA_DIR/backups)")
    export = sub.add_parser("export-account", help="write one account's data (JSON, CSV) and replays to a folder (R-OPS-2)")
    _common(export)
    export.add_argument("account_id", help="the account's id (UUID)")
    export.add_argument("out_dir", help="a folder that does not exist yet or is empty")
    return parser


def settings_from_args(args: argparse.Namespace) -> Settings:
    return Settings.from_env(
        host=args.host, port=args.port, rtmp_port=args.rtmp_port, srt_port=args.srt_port, data_dir=args.data_dir
    )


def _with_db(settings: Settings, work: Callable[..., Awaitable[int]]) -> int:
    from server.app import open_database

    async def main() -> int:
        async with open_database(settings, adopt_embedded=False) as (db, _pg):
            return await work(db)

    return asyncio.run(main())


def cmd_serve(settings: Settings) -> int:
    import gc

    import uvicorn

    from server.app import create_app
    from server.uvicorn_server import Server
    from server.ws_protocol import uvicorn_options

    app = create_app(settings)
    # What start-up made lives as long as the process: out of the cyclic collector's reach,
    # and rarer collections for the many objects each connection holds (settings.gc_thresholds).
    gc.collect()
    gc.freeze()
    gc.set_threshold(*settings.gc_thresholds)
    print(f"webinar: serving on {settings.base_url} (data in {settings.data_dir.resolve()})", flush=True)
    config = uvicorn.Config(
        app, host=settings.host, port=settings.port, log_config=None, proxy_headers=True,
        timeout_graceful_shutdown=30, lifespan="on", **uvicorn_options(settings),
    )
    server = Server(config)
    server.run()
    return 0 if server.started else 1


def cmd_migrate(settings: Settings) -> int:
    async def work(db: object) -> int:
        print("migrations up to date", flush=True)
        return 0

    return _with_db(settings, work)


def cmd_createadmin(settings: Settings, email: str, password: str | None) -> int:
    from server.errors import RuleViolation
    from server.users import create_user, get_user_by_email, set_password

    password = password or os.environ.get("WEBINAR_ADMIN_PASSWORD")
    if not password:
        if not sys.stdin.isatty():
            print("error: give --password or WEBINAR_ADMIN_PASSWORD (no terminal to ask on)", file=sys.stderr)
            return 2
        password = getpass.getpass("Password for the new admin: ")

    async def work(db: object) -> int:
        try:
            user = await get_user_by_email(db, email)  # type: ignore[arg-type]
            if user is None:
                await create_user(db, email, password=password, is_admin=True, name="Admin", locale="en")  # type: ignore[arg-type]
                print(f"admin {email} created", flush=True)
            else:
                await set_password(db, user.id, password)  # type: ignore[arg-type]
                await db.execute("UPDATE users SET is_admin = true, disabled_at = NULL WHERE id = $1", user.id)  # type: ignore[attr-defined]
                print(f"admin {email} updated", flush=True)
        except RuleViolation as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        return 0

    return _with_db(settings, work)


def cmd_demo(settings: Settings, as_json: bool) -> int:
    from server.demo import format_demo, run_demo

    async def work(db: object) -> int:
        result = await run_demo(db, settings)  # type: ignore[arg-type]
        print(json.dumps(result) if as_json else format_demo(result), flush=True)
        return 0

    return _with_db(settings, work)


def cmd_maintenance(settings: Settings, switch: str, message: str) -> int:
    from server.broker import create_broker
    from server.errors import RuleViolation
    from server.maintenance import POLL_S, read_maintenance, set_maintenance

    async def work(db: object) -> int:
        if switch == "status":
            state = await read_maintenance(db)
        else:
            # With REDIS_URL every node hears the change at once; else they see it within POLL_S.
            broker = create_broker(settings.redis_url) if settings.redis_url else None
            try:
                if broker is not None:
                    await broker.start()
                state = await set_maintenance(db, switch == "on", message, changed_by="cli", broker=broker)
            except RuleViolation as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            finally:
                if broker is not None:
                    await broker.close()
            if broker is None:
                print(f"(no REDIS_URL: running nodes notice within {POLL_S:g} s)", flush=True)
        line = f"maintenance {'on' if state.enabled else 'off'}"
        print(line + (f": {state.message}" if state.message else ""), flush=True)
        return 0

    return _with_db(settings, work)


def _backup_settings(settings: Settings, backup_dir: str | None) -> Settings:
    from pathlib import Path

    return settings.replace(backup_dir=Path(backup_dir)) if backup_dir else settings


def cmd_backup(settings: Settings, list_only: bool, checksums: bool = False) -> int:
    from server.backup import (
        BackupError,
        list_generations,
        run_backup,
        unmigrated_database,
    )

    if list_only:
        generations = list_generations(settings.backups_dir)
        for g in generations:
            m = g.manifest
            print(f"{g.name}  {sum(t['rows'] for t in m['tables'].values())} rows in {len(m['tables'])} tables, "
                  f"{len(m['media'])} media files ({m['media_bytes'] / 1e6:.1f} MB)", flush=True)
        if not generations:
            print(f"no complete generation in {settings.backups_dir}", flush=True)
        return 0

    async def work() -> int:
        # no migration and no server import: a backup takes the database as it is
        try:
            async with unmigrated_database(settings) as dsn:
                result = await run_backup(dsn, settings.media_dir, settings.backups_dir, keep=settings.backup_keep,
                                          secret_key_file=settings.data_dir / "secret_key", checksums=checksums)
        except BackupError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(f"backup generation {result.generation.name} written to {result.generation.path} in "
              f"{result.duration_s:.1f} s: {result.media_files} media files ({result.media_copied} copied, "
              f"{result.media_linked} unchanged), {result.bytes_copied / 1e6:.1f} MB copied"
              + (f"; removed {', '.join(result.removed)}" if result.removed else ""), flush=True)
        return 0

    return asyncio.run(work())


def cmd_restore(settings: Settings, generation: str) -> int:
    from server.backup import BackupError, find_generation, restore, unmigrated_database

    async def main() -> int:
        try:
            gen = find_generation(settings.backups_dir, generation)
            async with unmigrated_database(settings) as dsn:
                result = await restore(gen, dsn, settings.media_dir, settings.data_dir)
        except BackupError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(f"restored generation {result.generation} in {result.duration_s:.1f} s: {result.rows} rows in "
              f"{result.tables} tables ({'checksums' if result.checksums else 'row counts'} match), "
              f"{result.media_files} media files "
              f"({result.media_bytes / 1e6:.1f} MB, sha256 match)"
              + ("; secret key restored into the data folder" if result.secret_key else ""), flush=True)
        if result.secret_key and settings.secret_key:
            print("note: WEBINAR_SECRET_KEY is set and wins over the restored secret_key file", flush=True)
        return 0

    return asyncio.run(main())


def cmd_export_account(settings: Settings, account_id: str, out_dir: str) -> int:
    import uuid
    from pathlib import Path

    from server.account_export import ExportError, export_account

    try:
        account = uuid.UUID(account_id)
    except ValueError:
        print(f"error: {account_id!r} is not an account id (a UUID)", file=sys.stderr)
        return 2

    async def work(db: object) -> int:
        try:
            result = await export_account(db, account, Path(out_dir), settings.media_dir)  # type: ignore[arg-type]
        except ExportError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(f"account {account} exported to {result.path}: {result.rows} rows in {result.tables} tables, "
              f"{result.media_files} replay files ({result.media_bytes / 1e6:.1f} MB); see README.txt inside",
              flush=True)
        return 0

    return _with_db(settings, work)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = settings_from_args(args)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from server.logs import configure_logging

    configure_logging(settings.log_level, settings.log_json)
    if args.command == "serve":
        return cmd_serve(settings)
    if args.command == "migrate":
        return cmd_migrate(settings)
    if args.command == "createadmin":
        return cmd_createadmin(settings, args.email, args.password)
    if args.command == "demo":
        return cmd_demo(settings, args.json)
    if args.command == "maintenance":
        return cmd_maintenance(settings, args.switch, args.message)
    if args.command == "backup":
        return cmd_backup(_backup_settings(settings, args.backup_dir), args.list, args.checksums)
    if args.command == "restore":
        return cmd_restore(_backup_settings(settings, args.backup_dir), args.generation)
    if args.command == "export-account":
        return cmd_export_account(settings, args.account_id, args.out_dir)
    return 2


if __name__ == "__main__":
    sys.exit(main())
