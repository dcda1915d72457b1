"""The stage of one webcam webinar, sans-I/O: who is backstage, who is on stage,
the layout, the spotlight.

Speakers and moderators who connected their camera (a WebRTC peer) are
*present*: backstage until they go on stage. At most :data:`MAX_ON_STAGE`
people are on stage; a 5th is refused (:class:`StageError` ``stage_full``) and
stays backstage. Every method that changes something returns the
:class:`Change` list to publish as room events (the caller persists them as
program-timed events: ``stage.state`` for everyone, ``stage.backstage`` for
staff only — viewers never see who is backstage).

No clock, no I/O: the caller (:mod:`rooms.webcam.room`) owns both.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Literal

MAX_ON_STAGE = 4
"""Most people on stage at once (the program shows at most 4 speaker tiles)."""
LAYOUTS = ("auto", "speaker_slide", "slide", "screen_pip")
Layout = Literal["auto", "speaker_slide", "slide", "screen_pip"]
STAFF_AUDIENCE = "staff"
"""Room-event audience of speakers and moderators (see :meth:`rooms.hub.Client.wants`)."""


class StageError(Exception):
    """A refused stage command; ``code`` is stable, the message says what to do."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class Member:
    """Someone present in the webcam room; ``name`` is the caption shown under their tile."""

    id: uuid.UUID
    name: str
    role: str
    """``speaker`` or ``moderator``."""
    user_id: uuid.UUID | None = None
    """Their login (the pre-flight check result is kept per user)."""


@dataclass(frozen=True, slots=True)
class Change:
    """One room event to append: ``kind``, JSON ``data`` and ``audience``."""

    kind: str
    data: dict[str, Any]
    audience: str = "all"


class Stage:
    """Stage state of one webinar. Order on stage is the order people went on."""

    def __init__(self) -> None:
        self.present: dict[uuid.UUID, Member] = {}
        self.on_stage: list[uuid.UUID] = []
        self.layout: Layout = "auto"
        self.spotlight: uuid.UUID | None = None

    # Queries ---------------------------------------------------------------------
    def backstage(self) -> list[Member]:
        return [m for pid, m in self.present.items() if pid not in self.on_stage]

    def speakers(self) -> list[Member]:
        """Who is on stage, in tile order (the spotlighted speaker first)."""
        order = list(self.on_stage)
        if self.spotlight in order:
            order.remove(self.spotlight)
            order.insert(0, self.spotlight)
        return [self.present[pid] for pid in order]

    def is_on_stage(self, participant_id: uuid.UUID) -> bool:
        return participant_id in self.on_stage

    def state(self) -> dict[str, Any]:
        """The public state (``stage.state`` event data)."""
        return {
            "on_stage": [{"id": str(m.id), "name": m.name} for m in self.speakers()],
            "layout": self.layout,
            "spotlight": str(self.spotlight) if self.spotlight else None,
            "max_on_stage": MAX_ON_STAGE,
        }

    def staff_state(self) -> dict[str, Any]:
        """What staff see besides: who waits backstage (``stage.backstage`` event data)."""
        return {"backstage": [{"id": str(m.id), "name": m.name, "role": m.role} for m in self.backstage()]}

    # Changes ---------------------------------------------------------------------
    def arrive(self, member: Member) -> list[Change]:
        """Someone connected their camera: backstage (or still on stage after a reconnect)."""
        self.present[member.id] = member
        return [self._backstage_change()] + ([self._state_change()] if member.id in self.on_stage else [])

    def depart(self, participant_id: uuid.UUID) -> list[Change]:
        """Someone's camera connection ended: off stage and out of the room."""
        if participant_id not in self.present:
            return []
        was_on = participant_id in self.on_stage
        del self.present[participant_id]
        changes = []
        if was_on:
            self._remove(participant_id)
            changes.append(self._state_change())
        changes.append(self._backstage_change())
        return changes

    def go_on(self, participant_id: uuid.UUID) -> list[Change]:
        if participant_id not in self.present:
            raise StageError("not_backstage", "connect a camera and microphone first: only people backstage can go on stage")
        if participant_id in self.on_stage:
            return []
        if len(self.on_stage) >= MAX_ON_STAGE:
            raise StageError("stage_full",
                             f"the stage holds {MAX_ON_STAGE} speakers at most: wait backstage until someone leaves it")
        self.on_stage.append(participant_id)
        return [self._state_change(), self._backstage_change()]

    def go_off(self, participant_id: uuid.UUID) -> list[Change]:
        if participant_id not in self.on_stage:
            raise StageError("not_on_stage", "this person is not on stage")
        self._remove(participant_id)
        return [self._state_change(), self._backstage_change()]

    def set_layout(self, layout: str) -> list[Change]:
        if layout not in LAYOUTS:
            raise StageError("bad_layout", f"unknown layout {layout!r}: use one of {', '.join(LAYOUTS)}")
        if layout == self.layout:
            return []
        self.layout = layout  # type: ignore[assignment]
        return [self._state_change()]

    def set_spotlight(self, participant_id: uuid.UUID | None) -> list[Change]:
        if participant_id is not None and participant_id not in self.on_stage:
            raise StageError("not_on_stage", "only someone on stage can be spotlighted")
        if participant_id == self.spotlight:
            return []
        self.spotlight = participant_id
        return [self._state_change()]

    # Helpers -----------------------------------------------------------------------
    def _remove(self, participant_id: uuid.UUID) -> None:
        self.on_stage.remove(participant_id)
        if self.spotlight == participant_id:
            self.spotlight = None

    def _state_change(self) -> Change:
        return Change("stage.state", self.state())

    def _backstage_change(self) -> Change:
        return Change("stage.backstage", self.staff_state(), STAFF_AUDIENCE)
