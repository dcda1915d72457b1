"""Audio mixes of a webcam room (rooms/webcam/audio_mix.py): minus-self, program, bounds."""

from __future__ import annotations

import uuid

import numpy as np

from rooms.webcam.audio_mix import BLOCK_SAMPLES, MAX_BUFFER_SAMPLES, AudioMixer


def tone(value: int, samples: int = BLOCK_SAMPLES) -> np.ndarray:
    return np.full(samples, value, np.int16)


def test_everyone_hears_the_others_but_not_themselves() -> None:
    mixer = AudioMixer()
    a, b, c = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    for person, value in ((a, 100), (b, 20), (c, 3)):
        mixer.add(person)
        mixer.push(person, tone(value))
    mix = mixer.mix(on_stage=[a, b])
    assert set(mix.per_person) == {a, b, c}
    assert (mix.per_person[a] == 23).all()
    assert (mix.per_person[b] == 103).all()
    assert (mix.per_person[c] == 120).all()
    # The program has the people on stage only (c talks backstage).
    assert (mix.program == 120).all()


def test_content_sound_reaches_everyone_and_the_program() -> None:
    mixer = AudioMixer()
    a = uuid.uuid4()
    mixer.add(a)
    mixer.push(a, tone(1000))
    mix = mixer.mix(on_stage=[a], content=tone(7))
    assert (mix.per_person[a] == 7).all()
    assert (mix.program == 1007).all()


def test_sums_are_clipped_not_wrapped() -> None:
    mixer = AudioMixer()
    people = [uuid.uuid4() for _ in range(3)]
    for person in people:
        mixer.add(person)
        mixer.push(person, tone(30000))
    mix = mixer.mix(on_stage=people)
    assert (mix.program == 32767).all()
    assert (mix.per_person[people[0]] == 32767).all()


def test_a_missing_microphone_is_silence_and_a_short_one_is_padded() -> None:
    mixer = AudioMixer()
    a, b = uuid.uuid4(), uuid.uuid4()
    mixer.add(a)
    mixer.add(b)
    mixer.push(a, tone(50))
    mix = mixer.mix(on_stage=[a, b])
    assert (mix.per_person[b] == 50).all() and (mix.per_person[a] == 0).all()
    mixer.push(a, tone(50, BLOCK_SAMPLES // 2))
    mix = mixer.mix(on_stage=[a])
    assert (mix.program[: BLOCK_SAMPLES // 2] == 50).all()
    assert (mix.program[BLOCK_SAMPLES // 2:] == 0).all()


def test_buffers_are_bounded_and_keep_the_newest_samples() -> None:
    mixer = AudioMixer()
    a = uuid.uuid4()
    mixer.add(a)
    mixer.push(a, tone(1, MAX_BUFFER_SAMPLES))
    mixer.push(a, tone(9, BLOCK_SAMPLES))
    blocks = [mixer.mix(on_stage=[a]).program for _ in range(MAX_BUFFER_SAMPLES // BLOCK_SAMPLES)]
    assert (blocks[-1] == 9).all()  # the oldest block was dropped, the newest kept
    assert sum(int((b != 0).sum()) for b in blocks) == MAX_BUFFER_SAMPLES


def test_people_who_left_are_ignored() -> None:
    mixer = AudioMixer()
    a = uuid.uuid4()
    mixer.add(a)
    mixer.remove(a)
    mixer.push(a, tone(5))
    mix = mixer.mix(on_stage=[a])
    assert mix.per_person == {} and (mix.program == 0).all()
