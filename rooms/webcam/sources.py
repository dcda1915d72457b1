"""The seam between shared content (slides, images, clips, screen share) and the
program compositor.

Content modules put a :class:`PictureSource` (and, for clips, a :class:`SoundSource`)
into the webinar's :class:`ContentSlot`; the compositor reads the slot once per
program frame. Both sides run on the event loop thread; a source that decodes in a
worker thread must make ``picture``/``sound`` cheap, non-blocking reads of what it
has ready.

Units: program time in seconds (float) since the program started; audio is signed
16-bit mono PCM at :data:`SAMPLE_RATE` Hz.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import av
    import numpy

SAMPLE_RATE = 48_000
"""Audio sample rate of the program mix, in Hz."""


class PictureSource(Protocol):
    """Anything shown in the program besides the speakers' cameras."""

    def picture(self, now_s: float) -> av.VideoFrame | None:
        """The frame to show at program time ``now_s`` (seconds), or ``None`` for
        nothing yet. Any size and pixel format: the compositor scales it into its
        region, keeping the aspect ratio. Must not block."""


class SoundSource(Protocol):
    """Audio mixed into the program besides the speakers' microphones (an MP4 clip)."""

    def sound(self, now_s: float, samples: int) -> numpy.ndarray | None:
        """Exactly ``samples`` int16 mono samples at :data:`SAMPLE_RATE` starting at
        program time ``now_s``, or ``None`` for silence. Must not block."""


@dataclass
class ContentSlot:
    """What one webinar's program shows besides the speakers; ``label`` is a short
    human text (``"deck.pdf 3/12"``) for captions and the moderator panel."""

    picture: PictureSource | None = None
    sound: SoundSource | None = None
    label: str = ""
    version: int = 0
    """Incremented on every change, so readers can notice a switch cheaply."""

    def show(self, picture: PictureSource | None, sound: SoundSource | None = None, label: str = "") -> None:
        self.picture, self.sound, self.label = picture, sound, label
        self.version += 1

    def clear(self) -> None:
        self.show(None, None, "")


class ContentSlots:
    """The content slot of every webinar of this process (held in ``services.extras["content_slots"]``)."""

    def __init__(self) -> None:
        self._slots: dict[uuid.UUID, ContentSlot] = {}

    def slot(self, webinar_id: uuid.UUID) -> ContentSlot:
        """The webinar's slot, created empty on first use."""
        found = self._slots.get(webinar_id)
        if found is None:
            found = self._slots[webinar_id] = ContentSlot()
        return found

    def drop(self, webinar_id: uuid.UUID) -> None:
        """Forget a webinar's slot (its live ended)."""
        self._slots.pop(webinar_id, None)
