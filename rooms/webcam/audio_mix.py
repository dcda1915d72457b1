"""Audio mixes of a webcam room, sans-I/O: the program mix (people on stage and the
content's sound) and one mix per connected person (everyone else: they never hear
themselves).

Audio is signed 16-bit mono PCM at 48 kHz (:data:`rooms.webcam.sources.SAMPLE_RATE`),
mixed in blocks of :data:`BLOCK_SAMPLES` (20 ms, one Opus frame). Each person's
microphone feeds a buffer; a buffer holds at most :data:`MAX_BUFFER_SAMPLES`
(oldest samples are dropped beyond, which bounds the added latency) and a person
missing samples at mix time contributes silence for the gap. Sums are done in
int32 and clipped to int16 once.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass

import numpy as np

from rooms.webcam.sources import SAMPLE_RATE

BLOCK_SAMPLES = SAMPLE_RATE // 50
"""Samples per mix block: 960 (20 ms)."""
MAX_BUFFER_SAMPLES = SAMPLE_RATE // 5
"""Most samples buffered per microphone: 200 ms."""
START_SAMPLES = BLOCK_SAMPLES
"""A microphone joins the mix once it has this many samples buffered (then keeps going)."""


@dataclass
class Mix:
    """One block: the program and, per connected person, what they hear (int16 mono)."""

    program: np.ndarray
    per_person: dict[uuid.UUID, np.ndarray]


class _Buffer:
    def __init__(self) -> None:
        self.data = np.zeros(0, np.int16)
        self.started = False

    def push(self, samples: np.ndarray) -> None:
        data = np.concatenate((self.data, samples.astype(np.int16, copy=False)))
        if len(data) > MAX_BUFFER_SAMPLES:
            data = data[-MAX_BUFFER_SAMPLES:]
        self.data = data

    def take(self, count: int) -> np.ndarray | None:
        if not self.started:
            if len(self.data) < START_SAMPLES:
                return None
            self.started = True
        block = self.data[:count]
        self.data = self.data[count:]
        if len(block) < count:
            block = np.concatenate((block, np.zeros(count - len(block), np.int16)))
        return block


class AudioMixer:
    """Microphone buffers of everyone connected and the mixes made from them."""

    def __init__(self) -> None:
        self._buffers: dict[uuid.UUID, _Buffer] = {}

    def add(self, person: uuid.UUID) -> None:
        self._buffers.setdefault(person, _Buffer())

    def remove(self, person: uuid.UUID) -> None:
        self._buffers.pop(person, None)

    def people(self) -> list[uuid.UUID]:
        return list(self._buffers)

    def push(self, person: uuid.UUID, samples: np.ndarray) -> None:
        """Microphone samples (int16 mono 48 kHz) of someone added before; others are ignored."""
        buffer = self._buffers.get(person)
        if buffer is not None:
            buffer.push(samples)

    def mix(self, on_stage: Collection[uuid.UUID], content: np.ndarray | None = None,
            samples: int = BLOCK_SAMPLES) -> Mix:
        """The next block. ``on_stage``: whose voice goes into the program; ``content``:
        ``samples`` int16 samples of the content's sound (None: silence), heard by
        everyone and in the program."""
        total = np.zeros(samples, np.int32)
        stage = np.zeros(samples, np.int32)
        own: dict[uuid.UUID, np.ndarray | None] = {}
        for person, buffer in self._buffers.items():
            block = buffer.take(samples)
            own[person] = block
            if block is not None:
                total += block
                if person in on_stage:
                    stage += block
        if content is not None:
            sound = content.astype(np.int32)[:samples]
            total[:len(sound)] += sound
            stage[:len(sound)] += sound
        per_person = {person: _clip(total - block if block is not None else total) for person, block in own.items()}
        return Mix(_clip(stage), per_person)


def _clip(values: np.ndarray) -> np.ndarray:
    return np.clip(values, -32768, 32767).astype(np.int16)
