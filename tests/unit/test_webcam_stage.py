"""Stage of a webcam room (rooms/webcam/stage.py): limits, layouts, spotlight, audiences."""

from __future__ import annotations

import uuid

import pytest

from rooms.webcam.stage import MAX_ON_STAGE, STAFF_AUDIENCE, Member, Stage, StageError


def member(name: str, role: str = "speaker") -> Member:
    return Member(uuid.uuid4(), name, role)


def test_people_arrive_backstage_and_go_on_stage_in_order() -> None:
    stage = Stage()
    a, b = member("Ada"), member("Bob")
    changes = stage.arrive(a)
    assert [(c.kind, c.audience) for c in changes] == [("stage.backstage", STAFF_AUDIENCE)]
    assert changes[0].data["backstage"] == [{"id": str(a.id), "name": "Ada", "role": "speaker"}]
    stage.arrive(b)
    changes = stage.go_on(b.id)
    assert [c.kind for c in changes] == ["stage.state", "stage.backstage"]
    assert changes[0].audience == "all"
    stage.go_on(a.id)
    assert [m.name for m in stage.speakers()] == ["Bob", "Ada"]
    assert stage.state()["on_stage"] == [{"id": str(b.id), "name": "Bob"}, {"id": str(a.id), "name": "Ada"}]
    assert stage.backstage() == []
    assert stage.go_on(a.id) == []  # already there: nothing to publish


def test_a_fifth_speaker_is_refused_and_stays_backstage() -> None:
    stage = Stage()
    people = [member(f"S{i}") for i in range(MAX_ON_STAGE + 1)]
    for person in people:
        stage.arrive(person)
    for person in people[:MAX_ON_STAGE]:
        stage.go_on(person.id)
    with pytest.raises(StageError) as refused:
        stage.go_on(people[-1].id)
    assert refused.value.code == "stage_full"
    assert "4 speakers at most" in str(refused.value)
    assert [m.id for m in stage.backstage()] == [people[-1].id]
    assert len(stage.on_stage) == MAX_ON_STAGE
    stage.go_off(people[0].id)  # a seat frees up: now it works
    stage.go_on(people[-1].id)
    assert people[-1].id in stage.on_stage


def test_only_people_present_go_on_stage() -> None:
    stage = Stage()
    with pytest.raises(StageError) as refused:
        stage.go_on(uuid.uuid4())
    assert refused.value.code == "not_backstage"
    with pytest.raises(StageError):
        stage.go_off(uuid.uuid4())


def test_departure_takes_people_off_stage_and_clears_their_spotlight() -> None:
    stage = Stage()
    a, b = member("Ada"), member("Bob")
    for person in (a, b):
        stage.arrive(person)
        stage.go_on(person.id)
    stage.set_spotlight(b.id)
    assert [m.name for m in stage.speakers()] == ["Bob", "Ada"]  # spotlighted first
    changes = stage.depart(b.id)
    assert [c.kind for c in changes] == ["stage.state", "stage.backstage"]
    assert stage.spotlight is None and stage.on_stage == [a.id]
    assert stage.depart(b.id) == []


def test_layouts_and_spotlight_are_checked() -> None:
    stage = Stage()
    a = member("Ada")
    stage.arrive(a)
    for layout in ("speaker_slide", "slide", "screen_pip", "auto"):
        assert [c.kind for c in stage.set_layout(layout)] == ["stage.state"]
        assert stage.state()["layout"] == layout
    assert stage.set_layout("auto") == []
    with pytest.raises(StageError) as refused:
        stage.set_layout("mosaic")
    assert refused.value.code == "bad_layout"
    with pytest.raises(StageError):
        stage.set_spotlight(a.id)  # backstage: not spotlightable
    stage.go_on(a.id)
    stage.set_spotlight(a.id)
    assert stage.state()["spotlight"] == str(a.id)
    stage.set_spotlight(None)
    assert stage.state()["spotlight"] is None


def test_viewers_never_get_the_backstage_list() -> None:
    stage = Stage()
    a = member("Ada")
    changes = stage.arrive(a) + stage.go_on(a.id) + stage.go_off(a.id)
    for change in changes:
        if "backstage" in change.data:
            assert change.audience == STAFF_AUDIENCE
        else:
            assert change.audience == "all"
