"""The ``webinar`` command: serve, migrate, createadmin, demo.

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
    import uvicorn

    from server.app import create_app

    app = create_app(settings)
    print(f"webinar: serving on {settings.base_url} (data in {settings.data_dir.resolve()})", flush=True)
    config = uvicorn.Config(
        app, host=settings.host, port=settings.port, log_config=None, proxy_headers=True,
        timeout_graceful_shutdown=30, ws_max_size=1 << 20, lifespan="on",
    )
    server = uvicorn.Server(config)
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
    return 2


if __name__ == "__main__":
    sys.exit(main())
