"""LiveManager rules with a fake state store (unit: no database, no network)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest

from player.live import LiveManager, SourceClosed
from player.storage import LocalMediaStore


class Recorder:
    def __init__(self) -> None:
        self.states: list[tuple[uuid.UUID, str]] = []
        self.events: list[dict[str, Any]] = []
        self.ended: list[uuid.UUID] = []

    async def set_state(self, webinar_id: uuid.UUID, state: str) -> None:
        self.states.append((webinar_id, state))

    async def announce(self, webinar_id: uuid.UUID, event: dict[str, Any]) -> None:
        self.events.append(event)

    async def after_end(self, publication: Any) -> None:
        self.ended.append(publication.webinar_id)


def manager(tmp_path: Path, rec: Recorder, **kwargs: Any) -> LiveManager:
    return LiveManager(LocalMediaStore(tmp_path), set_state=rec.set_state, announce=rec.announce,
                       after_end=rec.after_end, **kwargs)


async def test_second_publisher_refused_and_reconnect_within_grace(tmp_path: Path) -> None:
    rec = Recorder()
    lm = manager(tmp_path, rec, grace_s=0.3, max_live_s=60)
    wid = uuid.uuid4()
    first = await lm.open_source(wid)
    assert not isinstance(first, str)
    assert await lm.open_source(wid) == "another publisher is already live for this webinar"
    first.on_end()
    await asyncio.sleep(0.05)
    again = await lm.open_source(wid)  # back within the grace window
    assert not isinstance(again, str) and lm.publication(wid) is not None
    assert [e["type"] for e in rec.events] == ["live.started", "live.interrupted", "live.resumed"]
    again.on_end()
    await asyncio.sleep(0.6)  # the grace window passes: the live ends
    assert lm.publication(wid) is None
    assert rec.states == [(wid, "live"), (wid, "ended"), (wid, "replay")]
    assert rec.events[-1]["type"] == "live.ended"
    await lm.close()
    assert rec.ended == [wid]


async def test_limit_warns_then_cuts_the_source(tmp_path: Path) -> None:
    rec = Recorder()
    lm = manager(tmp_path, rec, grace_s=10, max_live_s=0.4, warn_before_s=(0.3, 0.1))
    wid = uuid.uuid4()
    sink = await lm.open_source(wid)
    assert not isinstance(sink, str)
    await asyncio.sleep(0.7)
    warnings = [e["seconds_left"] for e in rec.events if e["type"] == "live.limit_warning"]
    assert warnings == [0.3, 0.1]
    assert rec.events[-1] == {"type": "live.ended", "reason": "the 4-hour limit was reached"}
    from player.media import AccessUnit

    with pytest.raises(SourceClosed):
        sink.on_access_unit(AccessUnit("video", 0, 0, b"\x00\x00\x00\x01\x65", True))
    sink.on_end()  # the listener's on_end after the cut does not start a grace window
    await lm.close()
    assert rec.states[-2:] == [(wid, "ended"), (wid, "replay")]


async def test_state_failure_refuses_the_source(tmp_path: Path) -> None:
    async def refuse(webinar_id: uuid.UUID, state: str) -> None:
        raise RuntimeError("transition refused")

    lm = LiveManager(LocalMediaStore(tmp_path), set_state=refuse)
    result = await lm.open_source(uuid.uuid4())
    assert isinstance(result, str) and "cannot go live" in result
    assert lm.live_ids() == []


async def test_clean_end_ends_at_once_a_drop_waits_for_the_grace_window(tmp_path: Path) -> None:
    rec = Recorder()
    lm = manager(tmp_path, rec, grace_s=30, max_live_s=60)
    dropped, clean = uuid.uuid4(), uuid.uuid4()
    for wid in (dropped, clean):
        sink = await lm.open_source(wid)
        assert not isinstance(sink, str)
        sink.on_end(clean=wid == clean)
    assert lm.publication(clean) is None, "a clean end leaves the running lives at once"
    assert await lm.open_source(clean) == "the live of this webinar is ending"
    await asyncio.sleep(0.2)
    assert (clean, "replay") in rec.states and clean in rec.ended
    assert {"type": "live.ended", "reason": "the publisher ended the stream"} in rec.events
    assert lm.publication(dropped) is not None and not lm.is_on_air(dropped), "a drop waits (30 s)"
    assert (dropped, "ended") not in rec.states
    assert [e["type"] for e in rec.events].count("live.interrupted") == 1
    await lm.close()
