"""Cost shape of the LL-HLS origin's per-request paths at 60 minutes of live.

Counts calls, never time: a request's work must not grow with the live's age
(1,800 segments after an hour of 2 s segments), and the requests one new part
wakes must share one render. Also checks that the lean path in front of the
middleware stack (:class:`player.origin.LiveMediaPath`) answers exactly as the
routes do. Unit tests: a real playlist, publication and live manager, no
network (the ASGI app is called in-process through httpx's ASGI transport).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import m3u8
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware

from player import live as live_module
from player import origin
from player.blocking import TIMEOUT_TICK_S, PlaylistWaiter
from player.live import LiveManager
from player.playlist import MediaPlaylist, _Segment
from player.publication import Publication
from player.storage import LocalMediaStore
from server.metrics import HTTP_REQUESTS

PARTS_PER_SEGMENT = 7  # 0.286 s parts, 2 s segments: what bench_llhls_viewers publishes
PART_S = 0.28571
T0 = dt.datetime(2026, 11, 23, 9, 0, tzinfo=dt.UTC)


def age(playlist: MediaPlaylist, minutes: float) -> None:
    """Publish ``minutes`` of 2 s segments, then two parts of the next one."""
    for _ in range(round(minutes * 30)):
        msn = playlist.next_msn
        for index in range(PARTS_PER_SEGMENT):
            playlist.add_part(PART_S, independent=index == 0)
        playlist.finish_segment(T0 + dt.timedelta(seconds=2 * msn))
    playlist.add_part(PART_S, independent=True)
    playlist.add_part(PART_S, independent=False)


class Calls:
    """Counts calls of the playlist's per-segment helpers (wrapping, not replacing them)."""

    NAMES = ("_segment_ref", "_segment_head", "_part_lines", "_render_live")

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.counts = dict.fromkeys((*self.NAMES, "start", "text", "units"), 0)
        for name in self.NAMES:
            original = getattr(MediaPlaylist, name)

            def counted(*args: Any, _name: str = name, _original: Any = original, **kwargs: Any) -> Any:
                self.counts[_name] += 1
                return _original(*args, **kwargs)

            monkeypatch.setattr(MediaPlaylist, name, staticmethod(counted) if name == "_part_lines" else counted)

        # Reads of a segment's fields: what walking the segment list costs per segment.
        for field in ("start", "text", "units"):
            slot = _Segment.__dict__[field]

            def read(segment: _Segment, _field: str = field, _slot: Any = slot) -> Any:
                self.counts[_field] += 1
                return _slot.__get__(segment, _Segment)

            def write(segment: _Segment, value: Any, _slot: Any = slot) -> None:
                _slot.__set__(segment, value)

            monkeypatch.setattr(_Segment, field, property(read, write))

    def reset(self) -> None:
        self.counts = dict.fromkeys(self.counts, 0)

    def total(self) -> int:
        return sum(n for name, n in self.counts.items() if name != "_render_live")


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[Calls]:
    yield Calls(monkeypatch)


def new_playlist() -> MediaPlaylist:
    return MediaPlaylist(part_target=0.4, segment_target=2.0)


def render_work(playlist: MediaPlaylist, calls: Calls, skip: bool) -> int:
    """Per-segment work of one render after a new part (helper calls + segment field reads)."""
    playlist.add_part(PART_S, independent=False)
    playlist.render(skip=skip)  # the first render after a new segment may extend the cached text
    playlist.add_part(PART_S, independent=False)  # a change: the next render is not cached
    calls.reset()
    playlist.render(skip=skip)
    return calls.total()


def test_checks_on_the_request_path_build_no_segment_record(calls: Calls) -> None:
    playlist = new_playlist()
    age(playlist, 60)
    calls.reset()
    for _ in range(1000):
        assert playlist.published and playlist.segment_count == 1800
        assert playlist.has(1800, 1) and not playlist.has(1800, 2)
        playlist.validate_request(1800, 2)
        playlist.rendition_report("480p/index.m3u8")
    assert calls.counts["_segment_ref"] == 0


def test_render_work_is_the_same_at_1_and_60_minutes(calls: Calls) -> None:
    young, old = new_playlist(), new_playlist()
    age(young, 1)
    age(old, 60)
    for skip in (True, False):
        at_1, at_60 = render_work(young, calls, skip), render_work(old, calls, skip)
        assert at_60 == at_1, (skip, at_1, at_60)
        assert at_60 <= 60, f"{at_60} helper calls and segment reads for one render (skip={skip})"
    # A full playlist still lists all 1,800 segments (text copied from one cached string).
    full = m3u8.loads(old.render())
    assert len([s for s in full.segments if s.uri]) == 1800
    delta = m3u8.loads(old.render(skip=True))
    assert delta.skip.skipped_segments + len([s for s in delta.segments if s.uri]) == 1800


async def test_one_new_part_wakes_a_thousand_requests_with_one_render(calls: Calls, tmp_path: Path) -> None:
    publication = Publication(uuid.uuid4(), LocalMediaStore(tmp_path))
    age(publication.playlist, 60)
    query = {"_HLS_msn": "1800", "_HLS_part": "2", "_HLS_skip": "YES"}  # the preload hint's part
    loop = asyncio.get_running_loop()
    start = loop.time()
    requests = [asyncio.create_task(origin.live_playlist_answer(publication, (), query)) for _ in range(1000)]
    for _ in range(5):
        await asyncio.sleep(0)
    ticks_spanned = (loop.time() - start) / TIMEOUT_TICK_S + 2
    assert publication.waiter.waiting == 1000
    # Deadlines share timers (one per tick of arrivals), not one per request.
    assert publication.waiter.timers <= min(ticks_spanned, 100), (publication.waiter.timers, ticks_spanned)
    calls.reset()
    publication.playlist.add_part(PART_S, independent=False)
    publication.waiter.notify()
    answers = await asyncio.gather(*requests)
    assert {a.status for a in answers} == {200}
    assert all(a.body is answers[0].body for a in answers), "one rendered body shared by every request"
    assert calls.counts["_render_live"] == 1
    assert calls.counts["_segment_ref"] == 0
    assert publication.waiter.waiting == 0 and publication.waiter.timers == 0
    assert b"#EXT-X-SKIP:SKIPPED-SEGMENTS=" in answers[0].body


async def test_timeouts_share_timers_and_still_answer(tmp_path: Path) -> None:
    playlist = new_playlist()
    waiter = PlaylistWaiter(playlist)
    loop = asyncio.get_running_loop()
    start = loop.time()
    results = await asyncio.gather(*(waiter.wait_for(0, 0, 0.1) for _ in range(500)))
    assert results == [False] * 500
    assert 0.1 <= loop.time() - start < 1.0
    assert waiter.waiting == 0 and waiter.timers == 0


async def test_health_reports_segments_without_building_records(calls: Calls, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[dict[str, Any]] = []

    async def set_state(webinar_id: uuid.UUID, state: str) -> None:
        return None

    async def announce(webinar_id: uuid.UUID, event: dict[str, Any]) -> None:
        events.append(event)

    monkeypatch.setattr(live_module, "HEALTH_EVERY_S", 0.02)
    manager = LiveManager(LocalMediaStore(tmp_path), set_state=set_state, announce=announce, grace_s=5)
    webinar_id = uuid.uuid4()
    sink = await manager.open_source(webinar_id)
    assert not isinstance(sink, str)
    publication = manager.publication(webinar_id)
    assert publication is not None
    age(publication.playlist, 60)
    calls.reset()
    async with asyncio.timeout(5):
        while not any(e["type"] == "live.health" for e in events):
            await asyncio.sleep(0.01)
    health = next(e for e in events if e["type"] == "live.health")
    assert health["segments"] == 1800
    assert calls.counts["_segment_ref"] == 0
    sink.on_end(clean=True)  # the encoder unpublished: the live ends without a grace window
    async with asyncio.timeout(5):
        while not any(e["type"] == "live.ended" for e in events):
            await asyncio.sleep(0.01)
    assert manager.publication(webinar_id) is None and manager.rendition(webinar_id) is None
    lingering = manager.rendition(webinar_id, lingering=True)
    assert lingering is publication and lingering.ended, "its last parts stay served a few target durations"
    await manager.close()


# -- the lean path answers as the routes do -------------------------------------------


def media_app(manager: LiveManager, store: LocalMediaStore, lean: bool) -> Starlette:
    app = Starlette(routes=origin.routes,
                    middleware=[Middleware(origin.LiveMediaPath, extra_headers=[(b"x-webinar-node", b"n1")])]
                    if lean else [])
    app.state.services = SimpleNamespace(extras={"live": manager, "media_store": store})
    return app


def lean_count(template: str, status: int) -> float:
    value = HTTP_REQUESTS.labels("GET", template, str(status))._value.get()  # type: ignore[attr-defined]
    return float(value)


async def test_lean_path_answers_as_the_routes(tmp_path: Path) -> None:
    async def set_state(webinar_id: uuid.UUID, state: str) -> None:
        return None

    store = LocalMediaStore(tmp_path)
    manager = LiveManager(store, set_state=set_state, grace_s=5)
    webinar_id = uuid.uuid4()
    sink = await manager.open_source(webinar_id)
    assert not isinstance(sink, str)
    publication = manager.publication(webinar_id)
    assert publication is not None
    age(publication.playlist, 1)
    publication._parts[(30, 0)] = b"part-bytes"  # what the segmenter would keep for part 30.0
    base = f"/hls/{webinar_id}"
    urls = [
        f"{base}/index.m3u8",
        f"{base}/index.m3u8?_HLS_skip=YES",
        f"{base}/index.m3u8?_HLS_msn=30&_HLS_part=1",
        f"{base}/index.m3u8?_HLS_msn=99",  # too far ahead: 400
        f"{base}/index.m3u8?_HLS_part=1",  # part without msn: 400
        f"{base}/seg30.0.m4s",
        f"{base}/seg2.0.m4s",  # gone from memory: 404
        f"{base}/480p/index.m3u8",  # no such rendition in this live: the routes answer
        f"/hls/{uuid.uuid4()}/index.m3u8",  # no live: the routes answer
    ]
    before = lean_count(origin._PLAYLIST_ROUTE, 200)
    answers: dict[bool, list[httpx.Response]] = {}
    for lean in (False, True):
        transport = httpx.ASGITransport(app=media_app(manager, store, lean))
        async with httpx.AsyncClient(transport=transport, base_url="http://origin") as client:
            answers[lean] = [await client.get(url) for url in urls]
    for url, plain, fast in zip(urls, answers[False], answers[True], strict=True):
        assert (fast.status_code, fast.content) == (plain.status_code, plain.content), url
        for header in ("content-type", "cache-control", "access-control-allow-origin", "retry-after"):
            assert fast.headers.get(header) == plain.headers.get(header), (url, header)
    statuses = [r.status_code for r in answers[True]]
    assert statuses == [200, 200, 200, 400, 400, 200, 404, 404, 404]
    lean_answered = answers[True][:7]
    assert all(r.headers.get("x-webinar-node") == "n1" for r in lean_answered)
    assert all(r.headers["x-content-type-options"] == "nosniff" for r in lean_answered)
    assert "x-webinar-node" not in answers[True][7].headers, "not answered by the lean path"
    assert lean_count(origin._PLAYLIST_ROUTE, 200) == before + 3, "counted under the route template"
    await manager.close()
