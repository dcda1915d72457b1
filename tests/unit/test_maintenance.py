"""Maintenance mode without services: message rules, the watch's cache (broker
wake-up and polling, over a stand-in database), the ingest gateway's SRT
precheck, the node header and its setting."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest
from starlette.types import Message, Receive, Scope, Send

from ingest.gateway import IngestGateway
from server.broker import InProcessBroker
from server.errors import RuleViolation
from server.maintenance import (
    MAX_MESSAGE_LEN,
    REFUSAL,
    Maintenance,
    MaintenanceWatch,
    announce,
    clean_message,
    new_live_refusal,
)
from server.node_header import NodeHeaderMiddleware
from server.security import token_digest
from server.settings import Settings, SettingsError


class FakeDb:
    """Answers the one query the watch makes, counting reads."""

    def __init__(self) -> None:
        self.row = {"enabled": False, "message": "", "changed_at": dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
                    "changed_by": ""}
        self.reads = 0

    async def fetchrow(self, query: str, *args: Any) -> dict[str, Any]:
        assert "FROM maintenance" in query
        self.reads += 1
        return dict(self.row)


def test_message_is_cleaned_and_limited() -> None:
    assert clean_message("  back\n at   six ") == "back at six"
    assert clean_message("x" * MAX_MESSAGE_LEN) == "x" * MAX_MESSAGE_LEN
    with pytest.raises(RuleViolation) as too_long:
        clean_message("x" * (MAX_MESSAGE_LEN + 1))
    assert too_long.value.code == "maintenance_message_too_long"
    with pytest.raises(RuleViolation) as control:
        clean_message("bell \x07")
    assert control.value.code == "bad_value"


async def wait_until(predicate: Any, timeout: float = 2.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


async def test_watch_wakes_on_the_broker() -> None:
    db = FakeDb()
    async with InProcessBroker() as broker:
        watch = MaintenanceWatch(db, broker, poll_s=3600)  # polling can not be what refreshes it here
        await watch.start()
        try:
            assert watch.current.enabled is False and watch.refusal() is None
            await wait_until(lambda: broker.subscriber_count("maintenance") == 1)
            db.row.update(enabled=True, message="upgrade")
            await announce(broker)
            await wait_until(lambda: watch.current.enabled)
            assert watch.current.message == "upgrade" and watch.refusal() == REFUSAL
        finally:
            await watch.close()


async def test_watch_polls_without_a_message() -> None:
    db = FakeDb()
    async with InProcessBroker() as broker:
        watch = MaintenanceWatch(db, broker, poll_s=0.05)
        await watch.start()
        try:
            db.row.update(enabled=True)
            await wait_until(lambda: watch.current.enabled)
            reads = db.reads
            await asyncio.sleep(0.3)
            assert 2 <= db.reads - reads <= 12, "about one read per poll interval"
        finally:
            await watch.close()


def static_watch(enabled: bool) -> MaintenanceWatch:
    """A watch that is never started: its cached state is set by hand."""
    watch = MaintenanceWatch(FakeDb(), InProcessBroker())
    watch.current = Maintenance(enabled)
    return watch


def gateway(enabled: bool) -> IngestGateway:
    g = IngestGateway(None, None, maintenance=static_watch(enabled))  # type: ignore[arg-type]  # no database or lives needed
    g._publishable = frozenset({token_digest("announced-key"), token_digest("live-key")})
    g._live_keys = frozenset({token_digest("live-key")})
    return g


def test_the_gate_lets_running_lives_finish() -> None:
    on, off = static_watch(True), static_watch(False)
    assert new_live_refusal(on, already_running=False) == REFUSAL
    assert new_live_refusal(on, already_running=True) is None
    assert new_live_refusal(off, already_running=False) is None
    assert new_live_refusal(None, already_running=False) is None  # no watch (tools, tests): no gate


def test_srt_precheck_refuses_new_lives_in_maintenance() -> None:
    off, on = gateway(False), gateway(True)
    assert off.precheck("announced-key") is None
    assert off.precheck("live-key") is None
    assert on.precheck("announced-key") == REFUSAL
    assert on.precheck("live-key") is None, "a running live's encoder may reconnect"
    assert on.precheck("unknown-key") == REFUSAL


async def run_asgi(app: Any, scope_type: str) -> list[Message]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request"}

    async def send(message: Message) -> None:
        sent.append(message)

    await app({"type": scope_type}, receive, send)
    return sent


async def test_node_header_on_http_and_websocket_answers() -> None:
    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200, "headers": [(b"a", b"1")]})
            await send({"type": "http.response.body", "body": b""})
        else:
            await send({"type": "websocket.accept"})

    named = NodeHeaderMiddleware(inner, node_name="node-a")
    http = await run_asgi(named, "http")
    assert http[0]["headers"] == [(b"a", b"1"), (b"x-webinar-node", b"node-a")]
    ws = await run_asgi(named, "websocket")
    assert ws[0]["headers"] == [(b"x-webinar-node", b"node-a")]
    unnamed = await run_asgi(NodeHeaderMiddleware(inner, node_name=""), "http")
    assert unnamed[0]["headers"] == [(b"a", b"1")]


def test_node_name_setting() -> None:
    assert Settings.from_env({}).node_name == ""
    assert Settings.from_env({"WEBINAR_NODE_NAME": "node-b.eu_1"}).node_name == "node-b.eu_1"
    for bad in ("two words", "x" * 65, "é"):
        with pytest.raises(SettingsError, match="WEBINAR_NODE_NAME"):
            Settings.from_env({"WEBINAR_NODE_NAME": bad})
