"""MediaPlaylist: state, LL-HLS rendering (checked with the m3u8 parser), blocking rules."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from fractions import Fraction

import m3u8
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from player.playlist import (
    DeliveryDirectives,
    MediaPlaylist,
    PlaylistError,
    PlaylistRequestError,
    RenditionReport,
    UriNaming,
    parse_delivery_directives,
)

T0 = datetime(2024, 5, 6, 9, 0, 0, tzinfo=timezone.utc)


def parse(text: str) -> m3u8.M3U8:
    """Parse strictly: unknown lines and version mismatches are errors."""
    return m3u8.M3U8(text, strict=True)


def fill(
    playlist: MediaPlaylist,
    segments: int,
    parts: int = 4,
    part: float = 0.5,
    with_pdt: bool = False,
) -> None:
    """Publish ``segments`` segments of ``parts`` parts each (first part independent)."""
    for _ in range(segments):
        msn = playlist.next_msn
        for index in range(parts):
            playlist.add_part(part, independent=index == 0)
        playlist.finish_segment(T0 + timedelta(seconds=msn * parts * part) if with_pdt else None)


def finished(pl: m3u8.M3U8) -> list[m3u8.Segment]:
    return [s for s in pl.segments if s.uri is not None]


def trailing(pl: m3u8.M3U8) -> m3u8.Segment | None:
    return pl.segments[-1] if pl.segments and pl.segments[-1].uri is None else None


def skipped_segments(pl: m3u8.M3U8) -> int:
    """SKIPPED-SEGMENTS, 0 without an EXT-X-SKIP tag (m3u8 then leaves ``{}``)."""
    return pl.skip.skipped_segments if pl.skip else 0


def line_index(text: str, prefix: str) -> int:
    return next(i for i, line in enumerate(text.splitlines()) if line.startswith(prefix))


# -- full render ----------------------------------------------------------------


def test_live_playlist_has_every_ll_hls_tag_with_its_value() -> None:
    p = MediaPlaylist(part_target=0.5, segment_target=2, window=10)
    fill(p, 3, with_pdt=True)
    p.add_part(0.5, independent=True)
    p.add_part(0.5, independent=False)
    text = p.render()
    pl = parse(text)

    assert text.startswith("#EXTM3U\n")
    assert pl.version == 6
    assert pl.target_duration == 2
    assert pl.media_sequence == 0
    assert pl.discontinuity_sequence == 0
    assert pl.playlist_type is None  # a sliding window carries no type
    assert pl.server_control.can_block_reload == "YES"
    assert pl.server_control.part_hold_back == pytest.approx(1.5)
    assert pl.server_control.can_skip_until == pytest.approx(12.0)
    assert pl.part_inf.part_target == pytest.approx(0.5)
    assert pl.preload_hint.hint_type == "PART"
    assert pl.preload_hint.uri == "seg3.2.m4s"
    assert not pl.is_endlist

    done = finished(pl)
    assert [s.uri for s in done] == ["seg0.m4s", "seg1.m4s", "seg2.m4s"]
    assert [s.duration for s in done] == [2.0, 2.0, 2.0]
    assert [s.init_section.uri for s in done] == ["init0.mp4"] * 3
    assert [s.program_date_time for s in done] == [T0, T0 + timedelta(seconds=2), T0 + timedelta(seconds=4)]
    assert done[0].parts == []  # starts 7 s before the edge, more than 3 x 2 s
    for seg, msn in zip(done[1:], range(1, 3)):
        assert [part.uri for part in seg.parts] == [f"seg{msn}.{i}.m4s" for i in range(4)]
        assert [part.independent for part in seg.parts] == ["YES", None, None, None]
        assert [part.duration for part in seg.parts] == [0.5] * 4
    open_seg = trailing(pl)
    assert open_seg is not None
    assert [part.uri for part in open_seg.parts] == ["seg3.0.m4s", "seg3.1.m4s"]
    assert "#EXT-X-PROGRAM-DATE-TIME:2024-05-06T09:00:02.000Z" in text.splitlines()


def test_empty_live_playlist_hints_the_first_part() -> None:
    p = MediaPlaylist(part_target=0.333, segment_target=1.998)
    pl = parse(p.render())
    assert pl.segments == []
    assert pl.target_duration == 2
    assert pl.preload_hint.uri == "seg0.0.m4s"
    assert pl.playlist_type == "event"  # keeps every segment


def test_window_zero_keeps_everything_like_none() -> None:
    p = MediaPlaylist(part_target=0.5, segment_target=2, window=0)
    fill(p, 20)
    pl = parse(p.render())
    assert pl.media_sequence == 0
    assert len(finished(pl)) == 20
    assert pl.playlist_type == "event"


def test_render_follows_changes_and_revision_moves() -> None:
    p = MediaPlaylist(part_target=0.5, segment_target=2)
    first = p.render()
    revision = p.revision
    p.add_part(0.25, independent=True)
    assert p.revision > revision
    second = p.render()
    assert second != first
    assert '#EXT-X-PART:DURATION=0.25000,URI="seg0.0.m4s",INDEPENDENT=YES' in second.splitlines()
    assert p.render() == second


# -- sliding window ---------------------------------------------------------------


def test_sliding_window_removes_oldest_and_reports_them() -> None:
    p = MediaPlaylist(part_target=0.5, segment_target=2, window=3)
    fill(p, 5)
    pl = parse(p.render())
    assert pl.media_sequence == 2
    assert [s.uri for s in finished(pl)] == ["seg2.m4s", "seg3.m4s", "seg4.m4s"]
    assert finished(pl)[0].init_section.uri == "init0.mp4"
    assert [s.msn for s in p.take_evicted()] == [0, 1]
    assert p.take_evicted() == []
    fill(p, 1)
    assert [s.uri for s in p.take_evicted()] == ["seg2.m4s"]
    assert parse(p.render()).media_sequence == 3


def test_window_never_leaves_less_than_three_target_durations() -> None:
    # window=1 with 2 s segments and a 2 s target: 3 segments (6 s) must stay.
    p = MediaPlaylist(part_target=0.5, segment_target=2, window=1)
    fill(p, 5)
    pl = parse(p.render())
    assert [s.uri for s in finished(pl)] == ["seg2.m4s", "seg3.m4s", "seg4.m4s"]
    assert pl.media_sequence == 2


# -- parts near the live edge -------------------------------------------------------


def test_parts_listed_only_within_three_target_durations_of_the_edge() -> None:
    p = MediaPlaylist(part_target=0.5, segment_target=2)
    fill(p, 5)
    # Edge at 10.0 s, limit 3 x 2 s: segments starting at >= 4.0 s keep parts.
    pl = parse(p.render())
    assert [len(s.parts) for s in pl.segments] == [0, 0, 4, 4, 4]
    # One more part moves the edge to 10.5 s: the segment starting at 4.0 s drops its parts.
    p.add_part(0.5, independent=True)
    pl = parse(p.render())
    assert [len(s.parts) for s in pl.segments] == [0, 0, 0, 4, 4, 1]
    assert [s.uri for s in pl.segments] == ["seg0.m4s", "seg1.m4s", "seg2.m4s", "seg3.m4s", "seg4.m4s", None]


# -- delta updates ------------------------------------------------------------------


def test_delta_update_skips_segments_older_than_the_skip_boundary() -> None:
    p = MediaPlaylist(part_target=0.5, segment_target=2)
    fill(p, 10)  # ends at 20 s; boundary 12 s: segments ending before 8 s go
    p.add_part(0.5, independent=True)
    full = parse(p.render())
    text = p.render(skip=True)
    delta = parse(text)
    assert delta.version == 9
    assert skipped_segments(delta) == 3
    assert delta.media_sequence == full.media_sequence == 0
    assert [s.uri for s in finished(delta)] == [f"seg{msn}.m4s" for msn in range(3, 10)]
    assert finished(delta)[0].init_section.uri == "init0.mp4"
    assert len(trailing(delta).parts) == 1
    # The skip tag comes after every playlist header tag (hls.js requires it).
    assert line_index(text, "#EXT-X-DISCONTINUITY-SEQUENCE") < line_index(text, "#EXT-X-SKIP")
    assert line_index(text, "#EXT-X-SKIP") < line_index(text, "#EXT-X-MAP")


def test_delta_boundary_is_strict() -> None:
    p = MediaPlaylist(part_target=0.5, segment_target=2)
    fill(p, 9)  # ends at 18 s: segment 2 ends at 6 s, exactly 12 s back: kept
    assert skipped_segments(parse(p.render(skip=True))) == 2


def test_delta_without_anything_to_skip_is_the_full_playlist() -> None:
    p = MediaPlaylist(part_target=0.5, segment_target=2)
    fill(p, 6)
    assert p.render(skip=True) == p.render()
    assert "#EXT-X-SKIP" not in p.render(skip=True)


def test_skip_is_ignored_once_ended() -> None:
    p = MediaPlaylist(part_target=0.5, segment_target=2)
    fill(p, 12)
    p.end()
    pl = parse(p.render(skip=True))
    assert skipped_segments(pl) == 0 and "#EXT-X-SKIP" not in p.render(skip=True)
    assert len(pl.segments) == 12
    assert pl.is_endlist


# -- target duration -----------------------------------------------------------------


def test_target_duration_rounds_configured_target_up() -> None:
    assert MediaPlaylist(part_target=0.4, segment_target=1.2).target_duration == 2
    assert MediaPlaylist(part_target=0.5, segment_target=4).target_duration == 4


def test_target_duration_grows_to_a_long_segment_and_never_shrinks() -> None:
    p = MediaPlaylist(part_target=0.5, segment_target=2, window=3)
    for duration in (0.5, 0.5, 0.5, 0.5, 0.49999):  # 2.49999 s rounds to 2
        p.add_part(duration, independent=False)
    p.finish_segment()
    assert parse(p.render()).target_duration == 2
    fill(p, 1, parts=5)  # 2.5 s rounds (half up) to 3
    pl = parse(p.render())
    assert pl.target_duration == 3
    assert pl.server_control.can_skip_until == pytest.approx(18.0)
    fill(p, 10)  # the long segment slides out
    assert all(s.uri != "seg1.m4s" for s in finished(parse(p.render())))
    assert parse(p.render()).target_duration == 3


# -- discontinuities ------------------------------------------------------------------


def test_discontinuity_with_new_init() -> None:
    p = MediaPlaylist(part_target=0.5, segment_target=2)
    fill(p, 2, with_pdt=True)
    p.discontinuity(init_uri_changes=True)
    assert p.init_uri == "init1.mp4"
    fill(p, 2, with_pdt=True)
    text = p.render()
    pl = parse(text)
    assert [s.discontinuity for s in pl.segments] == [False, False, True, False]
    assert [s.init_section.uri for s in pl.segments] == ["init0.mp4", "init0.mp4", "init1.mp4", "init1.mp4"]
    assert text.count("#EXT-X-MAP:") == 2
    assert [s.init_uri for s in p.segments] == ["init0.mp4", "init0.mp4", "init1.mp4", "init1.mp4"]


def test_discontinuity_keeping_the_init_adds_no_map() -> None:
    p = MediaPlaylist(part_target=0.5, segment_target=2)
    fill(p, 2)
    p.discontinuity(init_uri_changes=False)
    p.discontinuity(init_uri_changes=False)  # several calls make one
    fill(p, 1)
    text = p.render()
    assert text.count("#EXT-X-MAP:") == 1
    assert text.count("#EXT-X-DISCONTINUITY\n") == 1
    assert [s.discontinuity for s in parse(text).segments] == [False, False, True]


def test_discontinuity_precedes_the_parts_of_the_segment_in_progress() -> None:
    p = MediaPlaylist(part_target=0.5, segment_target=2)
    fill(p, 1)
    p.discontinuity(init_uri_changes=True)
    p.add_part(0.5, independent=True)
    lines = p.render().splitlines()
    at = lines.index('#EXT-X-PART:DURATION=0.50000,URI="seg1.0.m4s",INDEPENDENT=YES')
    assert lines[at - 2 : at] == ["#EXT-X-DISCONTINUITY", '#EXT-X-MAP:URI="init1.mp4"']


def test_discontinuity_before_anything_only_changes_the_init() -> None:
    p = MediaPlaylist(part_target=0.5, segment_target=2)
    p.discontinuity(init_uri_changes=True)
    fill(p, 1)
    text = p.render()
    assert "#EXT-X-DISCONTINUITY\n" not in text
    assert parse(text).segments[0].init_section.uri == "init1.mp4"


def test_discontinuity_sequence_counts_discontinuities_that_slid_out() -> None:
    p = MediaPlaylist(part_target=0.5, segment_target=2, window=3)
    fill(p, 2)
    p.discontinuity(init_uri_changes=True)
    fill(p, 3)  # seg2 (the discontinuity) is the oldest of seg2..seg4
    pl = parse(p.render())
    assert (pl.media_sequence, pl.discontinuity_sequence) == (2, 0)
    assert pl.segments[0].discontinuity
    fill(p, 1)
    text = p.render()
    pl = parse(text)
    assert (pl.media_sequence, pl.discontinuity_sequence) == (3, 1)
    assert "#EXT-X-DISCONTINUITY\n" not in text
    assert pl.segments[0].init_section.uri == "init1.mp4"


def test_discontinuity_inside_a_segment_is_refused_and_changes_nothing() -> None:
    p = MediaPlaylist(part_target=0.5, segment_target=2)
    p.add_part(0.5, independent=True)
    revision, text = p.revision, p.render()
    with pytest.raises(PlaylistError):
        p.discontinuity(init_uri_changes=True)
    assert (p.revision, p.render(), p.init_uri) == (revision, text, "init0.mp4")


# -- program date-time ------------------------------------------------------------------


def test_program_date_time_is_written_in_utc_with_milliseconds() -> None:
    p = MediaPlaylist(part_target=0.5, segment_target=2)
    p.add_part(0.5, independent=True)
    paris = timezone(timedelta(hours=2))
    p.finish_segment(datetime(2024, 5, 6, 11, 0, 0, 123456, tzinfo=paris))
    assert "#EXT-X-PROGRAM-DATE-TIME:2024-05-06T09:00:00.123Z" in p.render().splitlines()
    assert p.segments[0].program_date_time == datetime(2024, 5, 6, 9, 0, 0, 123456, tzinfo=timezone.utc)


def test_program_date_time_checks() -> None:
    p = MediaPlaylist(part_target=0.5, segment_target=2)
    p.add_part(0.5, independent=True)
    with pytest.raises(PlaylistError):
        p.finish_segment(datetime(2024, 5, 6, 9, 0, 0))  # naive
    p.finish_segment(T0)
    p.add_part(0.5, independent=True)
    with pytest.raises(PlaylistError):
        p.finish_segment(T0 - timedelta(seconds=1))  # back over the whole previous segment
    p.finish_segment(T0 + timedelta(seconds=0.2))  # a sub-second overlap is allowed
    assert [s.program_date_time for s in p.segments] == [T0, T0 + timedelta(seconds=0.2)]


# -- end and replay -------------------------------------------------------------------------


def test_end_finishes_open_parts_and_closes_the_playlist() -> None:
    p = MediaPlaylist(part_target=0.5, segment_target=2)
    fill(p, 2)
    p.add_part(0.5, independent=True)
    last = p.end(T0)
    assert last is not None and last.msn == 2 and last.duration == 0.5
    pl = parse(p.render())
    assert pl.is_endlist
    assert pl.preload_hint is None
    assert [s.uri for s in pl.segments] == ["seg0.m4s", "seg1.m4s", "seg2.m4s"]
    for call in (lambda: p.add_part(0.5, True), p.finish_segment, lambda: p.discontinuity(True), p.end):
        with pytest.raises(PlaylistError):
            call()


def test_vod_render_lists_every_segment_without_ll_tags() -> None:
    p = MediaPlaylist(part_target=0.5, segment_target=2)
    with pytest.raises(PlaylistError):
        p.render_vod()
    fill(p, 3, with_pdt=True)
    p.discontinuity(init_uri_changes=True)
    fill(p, 2, with_pdt=True)
    p.end()
    text = p.render_vod()
    pl = parse(text)
    assert pl.playlist_type == "vod"
    assert pl.is_endlist
    assert pl.server_control is None and pl.preload_hint is None
    assert "#EXT-X-PART" not in text
    assert [s.uri for s in pl.segments] == [f"seg{msn}.m4s" for msn in range(5)]
    assert all(not s.parts for s in pl.segments)
    assert [s.discontinuity for s in pl.segments] == [False, False, False, True, False]
    assert pl.segments[3].init_section.uri == "init1.mp4"
    assert pl.segments[4].program_date_time == T0 + timedelta(seconds=8)


def test_vod_render_refuses_an_empty_live() -> None:
    p = MediaPlaylist(part_target=0.5, segment_target=2)
    p.end()
    with pytest.raises(PlaylistError):
        p.render_vod()


# -- has() ----------------------------------------------------------------------------------


@pytest.fixture
def live() -> MediaPlaylist:
    """Segments 0..2 finished (4, 4 and 3 parts); segment 3 in progress with 2 parts."""
    p = MediaPlaylist(part_target=0.5, segment_target=2)
    fill(p, 2)
    fill(p, 1, parts=3)
    p.add_part(0.5, independent=True)
    p.add_part(0.5, independent=False)
    return p


@pytest.mark.parametrize(
    ("msn", "part", "expected"),
    [
        (0, None, True),
        (2, None, True),
        (3, None, False),  # in progress: not a whole segment yet
        (4, None, False),
        (3, 0, True),
        (3, 1, True),
        (3, 2, False),  # the hinted part
        (3, 5, False),
        (2, 2, True),
        (2, 3, True),  # past the last part of segment 2: part 0 of segment 3
        (2, 99, True),
        (1, 4, True),
        (4, 0, False),
    ],
)
def test_has(live: MediaPlaylist, msn: int, part: int | None, expected: bool) -> None:
    assert live.has(msn, part) is expected


def test_has_past_the_last_part_waits_for_the_next_segment() -> None:
    p = MediaPlaylist(part_target=0.5, segment_target=2)
    fill(p, 3, parts=3)
    assert p.has(2, 2)
    assert not p.has(2, 3)  # means part 0 of segment 3, not published
    p.add_part(0.5, independent=True)
    assert p.has(2, 3)


def test_has_counts_segments_that_slid_out() -> None:
    p = MediaPlaylist(part_target=0.5, segment_target=2, window=3)
    fill(p, 6)
    assert p.media_sequence == 3
    assert p.has(0, None) and p.has(0, 7)


def test_has_is_always_true_once_ended(live: MediaPlaylist) -> None:
    live.end()
    assert live.has(100, None) and live.has(100, 100)


@pytest.mark.parametrize(("msn", "part"), [(-1, None), (0, -1), (True, None)])
def test_has_refuses_bad_numbers(live: MediaPlaylist, msn: int, part: int | None) -> None:
    with pytest.raises(PlaylistRequestError):
        live.has(msn, part)


def test_published_parts_are_had_and_the_hinted_one_is_not() -> None:
    p = MediaPlaylist(part_target=0.5, segment_target=2)
    for msn in range(3):
        for index in range(3):
            assert not p.has(msn, index)
            ref = p.add_part(0.5, independent=index == 0)
            assert (ref.msn, ref.index, ref.uri) == (msn, index, f"seg{msn}.{index}.m4s")
            assert p.has(msn, index)
        assert not p.has(msn, None)
        p.finish_segment()
        assert p.has(msn, None)


# -- validate_request -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("msn", "part", "refused"),
    [
        (0, None, False),
        (4, None, False),  # last finished is 2: 2 + 2 is allowed
        (5, None, True),
        (3, 7, False),  # last part is 3.1; limit is 3 / 0.5 = 6 parts ahead
        (3, 8, True),
        (4, 5, False),  # at least 0 + 6 parts ahead
        (4, 6, True),
        (1, 1000, False),  # a finished segment: part 0 of the next, published
        (-1, None, True),
        (0, -1, True),
    ],
)
def test_validate_request(live: MediaPlaylist, msn: int, part: int | None, refused: bool) -> None:
    if refused:
        with pytest.raises(PlaylistRequestError):
            live.validate_request(msn, part)
    else:
        live.validate_request(msn, part)


@pytest.mark.parametrize(
    ("msn", "part", "refused"),
    [
        (2, 10, False),  # past the last part of segment 2: part 0 of segment 3, next to come
        (3, 5, False),  # segment 3 has no part yet: 6 parts ahead
        (3, 6, True),
        (4, 4, False),  # at least 1 part of segment 3, then 5 of segment 4
        (4, 5, True),
    ],
)
def test_validate_request_between_segments(msn: int, part: int, refused: bool) -> None:
    p = MediaPlaylist(part_target=0.5, segment_target=2)
    fill(p, 3)
    if refused:
        with pytest.raises(PlaylistRequestError):
            p.validate_request(msn, part)
    else:
        p.validate_request(msn, part)


@pytest.mark.parametrize(
    ("part_target", "limit"),
    [(0.5, 6), (0.33334, 9), (0.3, 10), (0.2, 15), (1.0, 3), (1.5, 3)],
)
def test_advance_part_limit(part_target: float, limit: int) -> None:
    p = MediaPlaylist(part_target=part_target, segment_target=4)
    p.add_part(part_target, independent=True)  # last published part: 0.0
    p.validate_request(0, limit)
    with pytest.raises(PlaylistRequestError):
        p.validate_request(0, limit + 1)


def test_validate_request_refuses_nothing_once_ended(live: MediaPlaylist) -> None:
    live.end()
    live.validate_request(1000, 1000)


# -- delivery directives ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({}, DeliveryDirectives()),
        ({"other": "x"}, DeliveryDirectives()),
        ({"_HLS_msn": "12"}, DeliveryDirectives(msn=12)),
        ({"_HLS_msn": "12", "_HLS_part": "0"}, DeliveryDirectives(msn=12, part=0)),
        ({"_HLS_skip": "YES"}, DeliveryDirectives(skip=True)),
        ({"_HLS_skip": "v2", "_HLS_msn": "3"}, DeliveryDirectives(msn=3, skip=True)),
    ],
)
def test_parse_delivery_directives(query: dict[str, str], expected: DeliveryDirectives) -> None:
    directives = parse_delivery_directives(query)
    assert directives == expected
    assert directives.blocking is (expected.msn is not None)


@pytest.mark.parametrize(
    "query",
    [
        {"_HLS_part": "1"},
        {"_HLS_msn": "-1"},
        {"_HLS_msn": "1.5"},
        {"_HLS_msn": ""},
        {"_HLS_msn": " 5"},
        {"_HLS_msn": "\u0663"},  # a non-ASCII digit
        {"_HLS_msn": "9" * 21},
        {"_HLS_msn": "1", "_HLS_part": "x"},
        {"_HLS_skip": "yes"},
    ],
)
def test_parse_delivery_directives_refuses(query: dict[str, str]) -> None:
    with pytest.raises(PlaylistRequestError):
        parse_delivery_directives(query)


# -- naming, input checks, reports ------------------------------------------------------------


def test_uri_templates_and_callables() -> None:
    naming = UriNaming(init="i/{n}.mp4", part=lambda msn, part: f"p/{msn}-{part}.m4s", segment="s/{msn}.m4s")
    p = MediaPlaylist(part_target=0.5, segment_target=2, naming=naming)
    fill(p, 1)
    p.add_part(0.5, independent=True)
    pl = parse(p.render())
    assert pl.segments[0].uri == "s/0.m4s"
    assert pl.segments[0].init_section.uri == "i/0.mp4"
    assert [part.uri for part in pl.segments[1].parts] == ["p/1-0.m4s"]
    assert pl.preload_hint.uri == "p/1-1.m4s"


@pytest.mark.parametrize(
    "naming",
    [
        UriNaming(segment="seg{number}.m4s"),
        UriNaming(part="seg{msn}.{part:x}.m4s{"),
        UriNaming(init=lambda n: 'in"it.mp4'),
        UriNaming(part=lambda msn, part: ""),
        UriNaming(segment=lambda msn: "a\nb"),
    ],
)
def test_bad_naming_is_refused_at_construction(naming: UriNaming) -> None:
    with pytest.raises(PlaylistError):
        MediaPlaylist(part_target=0.5, segment_target=2, naming=naming)


@pytest.mark.parametrize("duration", [0, -0.1, 0.000001, float("nan"), float("inf"), "0.5", True, 0.50001])
def test_bad_part_duration_is_refused(duration: object) -> None:
    p = MediaPlaylist(part_target=0.5, segment_target=2)
    with pytest.raises(PlaylistError):
        p.add_part(duration, independent=True)  # type: ignore[arg-type]
    assert p.open_parts == ()


def test_part_duration_is_rounded_to_ten_microseconds() -> None:
    p = MediaPlaylist(part_target=0.5, segment_target=2)
    ref = p.add_part(0.500004, independent=True)  # rounds to the target
    assert ref.duration == 0.5
    p.add_part(1 / 3, independent=False)
    assert '#EXT-X-PART:DURATION=0.33333,URI="seg0.1.m4s"' in p.render().splitlines()
    assert p.finish_segment().duration == pytest.approx(0.83333)


def test_a_failing_segment_name_changes_nothing() -> None:
    naming = UriNaming(segment=lambda msn: "seg0.m4s" if msn == 0 else "bad\nname")
    p = MediaPlaylist(part_target=0.5, segment_target=2, naming=naming)
    fill(p, 1, with_pdt=True)
    p.add_part(0.5, independent=True)
    revision, text = p.revision, p.render()
    with pytest.raises(PlaylistError):
        p.finish_segment(T0 + timedelta(seconds=2))
    assert (p.revision, p.render(), len(p.open_parts)) == (revision, text, 1)


def test_finishing_an_empty_segment_is_refused() -> None:
    p = MediaPlaylist(part_target=0.5, segment_target=2)
    with pytest.raises(PlaylistError):
        p.finish_segment()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"part_target": 0, "segment_target": 2},
        {"part_target": 0.5, "segment_target": 0.4},
        {"part_target": 0.5, "segment_target": 2, "window": -1},
        {"part_target": 0.5, "segment_target": 2, "window": True},
        {"part_target": 0.5, "segment_target": 2, "part_hold_back": 1.0},
    ],
)
def test_bad_parameters_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(PlaylistError):
        MediaPlaylist(**kwargs)  # type: ignore[arg-type]


def test_part_hold_back_can_be_raised() -> None:
    p = MediaPlaylist(part_target=0.5, segment_target=2, part_hold_back=2.0)
    assert parse(p.render()).server_control.part_hold_back == pytest.approx(2.0)


def test_rendition_reports() -> None:
    low = MediaPlaylist(part_target=0.5, segment_target=2)
    assert low.rendition_report("../low/index.m3u8") == RenditionReport("../low/index.m3u8", 0, None)
    fill(low, 2)
    assert low.rendition_report("../low/index.m3u8") == RenditionReport("../low/index.m3u8", 1, 3)
    low.add_part(0.5, independent=True)
    report = low.rendition_report("../low/index.m3u8")
    assert report == RenditionReport("../low/index.m3u8", 2, 0)

    high = MediaPlaylist(part_target=0.5, segment_target=2)
    fill(high, 1)
    pl = parse(high.render(rendition_reports=(report,)))
    assert [(r.uri, r.last_msn, r.last_part) for r in pl.rendition_reports] == [("../low/index.m3u8", 2, 0)]
    assert parse(high.render()).rendition_reports == []


# -- property: any sequence of operations gives a consistent playlist ---------------------------

_part_units = st.one_of(st.sampled_from([50_000, 40_000, 33_334]), st.integers(min_value=1, max_value=50_000))
_op = st.one_of(
    # A whole segment of near-target parts, the common case.
    st.tuples(st.just("segment"), st.integers(min_value=1, max_value=4), st.sampled_from([50_000, 33_334])),
    st.tuples(st.just("segment"), st.integers(min_value=1, max_value=4), st.sampled_from([50_000, 33_334])),
    st.tuples(st.just("parts"), st.integers(min_value=1, max_value=3), _part_units, st.booleans()),
    st.tuples(st.just("finish"), st.booleans()),
    st.tuples(st.just("discontinuity"), st.booleans()),
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    window=st.sampled_from([None, 1, 2, 4, 12]),
    ops=st.lists(_op, min_size=30, max_size=70),
    end=st.booleans(),
)
def test_any_operation_sequence_renders_a_consistent_playlist(
    window: int | None, ops: list[tuple[object, ...]], end: bool
) -> None:
    p = MediaPlaylist(part_target=0.5, segment_target=1, window=window)
    clock = T0
    pending_discontinuity = False
    discontinuities = 0
    last = (0, 0, 0)  # media sequence, discontinuity sequence, target duration

    for op in ops + ([("end",)] if end else []):
        kind = op[0]
        if kind in ("parts", "segment"):
            count, units = int(op[1]), int(op[2])  # type: ignore[call-overload]
            if not p.open_parts and pending_discontinuity:
                discontinuities += 1
                pending_discontinuity = False
            for index in range(count):
                p.add_part(units / 100_000, bool(op[3]) if kind == "parts" else index == 0)
            if kind == "segment":
                clock += timedelta(seconds=p.finish_segment(clock).duration)
        elif kind == "finish":
            if not p.open_parts:
                with pytest.raises(PlaylistError):
                    p.finish_segment()
                continue
            seg = p.finish_segment(clock if op[1] else None)
            clock += timedelta(seconds=seg.duration)
        elif kind == "discontinuity":
            if p.open_parts:
                with pytest.raises(PlaylistError):
                    p.discontinuity(bool(op[1]))
                continue
            published = bool(p.segments) or p.next_msn > 0
            p.discontinuity(bool(op[1]))
            pending_discontinuity = pending_discontinuity or published
        else:
            if p.open_parts and pending_discontinuity:
                pending_discontinuity = False
            p.end()

        text = p.render()
        pl = parse(text)
        now = (pl.media_sequence, pl.discontinuity_sequence, pl.target_duration)
        assert all(a <= b for a, b in zip(last, now)), (last, now)
        last = now

        model = p.segments
        assert pl.media_sequence == (model[0].msn if model else p.next_msn)
        listed = finished(pl)
        assert len(listed) == len(model)
        for parsed, seg, msn in zip(listed, model, range(pl.media_sequence, p.next_msn)):
            assert seg.msn == msn
            assert parsed.uri == f"seg{msn}.m4s"
            assert parsed.duration == pytest.approx(sum(part.duration for part in seg.parts), abs=1e-9)
            assert int(parsed.duration + 0.5) <= pl.target_duration
            # Parts of a segment are listed whole or not at all.
            if parsed.parts:
                assert [part.uri for part in parsed.parts] == [f"seg{msn}.{i}.m4s" for i in range(len(seg.parts))]
            assert p.has(msn, None) and p.has(msn, len(seg.parts) - 1)
        tail = trailing(pl)
        assert (len(tail.parts) if tail else 0) == len(p.open_parts)
        if p.ended:
            assert pl.is_endlist and pl.preload_hint is None
        else:
            assert pl.preload_hint.uri == p.next_part_uri
            assert not p.has(p.next_msn, len(p.open_parts))
        assert pl.discontinuity_sequence + text.count("#EXT-X-DISCONTINUITY\n") == discontinuities

        delta = parse(p.render(skip=True))
        skipped = skipped_segments(delta)
        assert delta.media_sequence == pl.media_sequence
        assert skipped + len(finished(delta)) == len(listed)
        assert [s.uri for s in finished(delta)] == [s.uri for s in listed[skipped:]]
        event(f"skipped segments: {min(skipped, 1)}; window slid: {pl.media_sequence > 0}")
        if pl.discontinuity_sequence:
            event("a discontinuity slid out")
        if skipped:
            assert delta.version == 9
            end_units = round(sum(s.duration for s in model) * 100_000)
            boundary = 6 * pl.target_duration * 100_000
            ends = [round(sum(s.duration for s in model[: i + 1]) * 100_000) for i in range(len(model))]
            assert end_units - ends[skipped - 1] > boundary
            assert end_units - ends[skipped] <= boundary


@pytest.mark.parametrize("ticks", [3000, 3003])  # 30 fps and 29.97 fps frames on a 90 kHz clock
def test_listed_durations_never_exceed_the_media_a_segment_holds(ticks: int) -> None:
    """Parts of 8 frames last 0.2666... s (or 0.26693... s): rounded to the nearest 10 µs each, a
    2 s segment was announced as 2.00002 s, past the media it holds, and hls.js then reloads
    that segment instead of the next one. Part ends are rounded down from the segment start."""
    p = MediaPlaylist(part_target=0.3, segment_target=2.0)
    exact_segments: list[Fraction] = []
    for _ in range(5):
        exact = Fraction(0)
        for _ in range(8):  # 64 frames: about 2.13 s
            duration = Fraction(8 * ticks, 90_000)
            p.add_part(float(duration), False)
            exact += duration
        p.finish_segment()
        exact_segments.append(exact)
    listed = parse(p.render())
    with_parts = 0
    for segment, exact in zip(listed.segments, exact_segments, strict=True):
        extinf = Fraction(str(segment.duration))
        assert exact - Fraction(1, 100_000) < extinf <= exact  # never more than the media, by < 10 µs
        if segment.parts:  # the recent segments are listed with their parts too
            with_parts += 1
            assert sum(Fraction(str(part.duration)) for part in segment.parts) == extinf  # it agrees with itself
    assert with_parts >= 1
