"""PlaylistWaiter: blocking playlist reload over a real MediaPlaylist."""

from __future__ import annotations

import asyncio

import pytest

from player.blocking import PlaylistWaiter, TooManyWaiters
from player.playlist import MediaPlaylist, PlaylistRequestError

LONG = 30.0  # a timeout no test should reach; a wake-up ends the wait


def new_playlist() -> MediaPlaylist:
    return MediaPlaylist(part_target=0.5, segment_target=2)


async def settle() -> None:
    """Let started tasks run up to their first real wait."""
    for _ in range(5):
        await asyncio.sleep(0)


async def test_wakes_when_the_part_is_published() -> None:
    playlist = new_playlist()
    waiter = PlaylistWaiter(playlist)
    task = asyncio.create_task(waiter.wait_for(0, 1, LONG))
    await settle()
    assert not task.done() and waiter.waiting == 1

    playlist.add_part(0.5, independent=True)  # part 0: not what is asked
    waiter.notify()
    await settle()
    assert not task.done() and waiter.waiting == 1

    playlist.add_part(0.5, independent=False)  # part 1
    waiter.notify()
    assert await task is True
    assert waiter.waiting == 0


async def test_whole_segment_request_waits_for_the_segment_to_finish() -> None:
    playlist = new_playlist()
    waiter = PlaylistWaiter(playlist)
    task = asyncio.create_task(waiter.wait_for(0, None, LONG))
    playlist.add_part(0.5, independent=True)
    waiter.notify()
    await settle()
    assert not task.done()
    playlist.finish_segment()
    waiter.notify()
    assert await task is True


async def test_one_notify_wakes_every_satisfied_waiter() -> None:
    playlist = new_playlist()
    waiter = PlaylistWaiter(playlist)
    near = [asyncio.create_task(waiter.wait_for(0, 0, LONG)) for _ in range(50)]
    far = asyncio.create_task(waiter.wait_for(1, 0, LONG))
    await settle()
    assert waiter.waiting == 51
    playlist.add_part(0.5, independent=True)
    waiter.notify()
    assert await asyncio.gather(*near) == [True] * 50
    assert not far.done() and waiter.waiting == 1
    far.cancel()
    with pytest.raises(asyncio.CancelledError):
        await far
    assert waiter.waiting == 0


async def test_already_available_returns_at_once_without_a_slot() -> None:
    playlist = new_playlist()
    playlist.add_part(0.5, independent=True)
    waiter = PlaylistWaiter(playlist, max_waiters=1)
    blocked = asyncio.create_task(waiter.wait_for(5, None, LONG))
    await settle()
    assert waiter.waiting == 1
    assert await waiter.wait_for(0, 0, LONG) is True  # the bound is full, yet no error
    blocked.cancel()
    await asyncio.gather(blocked, return_exceptions=True)


async def test_times_out_with_false_and_leaves_nothing() -> None:
    waiter = PlaylistWaiter(new_playlist())
    assert await waiter.wait_for(3, None, 0.02) is False
    assert waiter.waiting == 0
    assert await waiter.wait_for(3, None, 0) is False


async def test_bound_on_waiters() -> None:
    playlist = new_playlist()
    waiter = PlaylistWaiter(playlist, max_waiters=2)
    tasks = [asyncio.create_task(waiter.wait_for(0, 0, LONG)) for _ in range(2)]
    await settle()
    with pytest.raises(TooManyWaiters):
        await waiter.wait_for(0, 0, LONG)
    assert waiter.waiting == 2
    tasks[0].cancel()
    await asyncio.gather(tasks[0], return_exceptions=True)
    third = asyncio.create_task(waiter.wait_for(0, 0, LONG))  # the freed slot is usable
    await settle()
    assert waiter.waiting == 2
    playlist.add_part(0.5, independent=True)
    waiter.notify()
    assert await asyncio.gather(tasks[1], third) == [True, True]


async def test_cancellation_leaves_no_waiter_behind() -> None:
    playlist = new_playlist()
    waiter = PlaylistWaiter(playlist, max_waiters=1)
    for _ in range(3):  # with a bound of one, a leak would show on the second round
        task = asyncio.create_task(waiter.wait_for(0, 0, LONG))
        await settle()
        assert waiter.waiting == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert waiter.waiting == 0
    playlist.add_part(0.5, independent=True)
    waiter.notify()  # nothing left to wake, nothing breaks
    assert await waiter.wait_for(0, 0, LONG) is True


async def test_cancelled_while_being_woken() -> None:
    playlist = new_playlist()
    waiter = PlaylistWaiter(playlist)
    task = asyncio.create_task(waiter.wait_for(0, 0, LONG))
    await settle()
    playlist.add_part(0.5, independent=True)
    waiter.notify()
    task.cancel()  # the wake-up and the cancellation race
    await asyncio.gather(task, return_exceptions=True)
    assert waiter.waiting == 0


async def test_end_wakes_everyone_with_true() -> None:
    playlist = new_playlist()
    waiter = PlaylistWaiter(playlist)
    tasks = [asyncio.create_task(waiter.wait_for(msn, 0, LONG)) for msn in range(3)]
    await settle()
    playlist.end()
    waiter.notify()
    assert await asyncio.gather(*tasks) == [True, True, True]


async def test_close_wakes_everyone_and_later_waits_do_not_block() -> None:
    playlist = new_playlist()
    waiter = PlaylistWaiter(playlist)
    tasks = [asyncio.create_task(waiter.wait_for(0, 0, LONG)) for _ in range(3)]
    await settle()
    waiter.close()
    assert waiter.closed
    assert await asyncio.gather(*tasks) == [False, False, False]
    assert waiter.waiting == 0
    assert await waiter.wait_for(0, 0, LONG) is False
    playlist.add_part(0.5, independent=True)
    assert await waiter.wait_for(0, 0, LONG) is True


@pytest.mark.parametrize("timeout", [-1, float("nan"), float("inf"), "1", True])
async def test_bad_timeout(timeout: object) -> None:
    waiter = PlaylistWaiter(new_playlist())
    with pytest.raises(ValueError):
        await waiter.wait_for(0, 0, timeout)  # type: ignore[arg-type]
    assert waiter.waiting == 0


async def test_bad_numbers_come_from_the_playlist() -> None:
    waiter = PlaylistWaiter(new_playlist())
    with pytest.raises(PlaylistRequestError):
        await waiter.wait_for(-1, None, LONG)
    assert waiter.waiting == 0


@pytest.mark.parametrize("bound", [0, -3, True, 1.5])
def test_bad_bound(bound: object) -> None:
    with pytest.raises(ValueError):
        PlaylistWaiter(new_playlist(), max_waiters=bound)  # type: ignore[arg-type]


async def test_requests_asking_to_go_first_are_woken_first() -> None:
    playlist = new_playlist()
    waiter = PlaylistWaiter(playlist)
    order: list[str] = []

    async def wait(name: str, first: bool) -> None:
        assert await waiter.wait_for(0, 0, LONG, first=first)
        order.append(name)

    tasks = [asyncio.create_task(wait(f"playlist{i}", False)) for i in range(3)]
    tasks += [asyncio.create_task(wait(f"part{i}", True)) for i in range(3)]  # arrive later
    await settle()
    playlist.add_part(0.5, independent=True)
    waiter.notify()
    await asyncio.gather(*tasks)
    assert order == ["part0", "part1", "part2", "playlist0", "playlist1", "playlist2"]
