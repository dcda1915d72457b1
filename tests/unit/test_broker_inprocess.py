"""InProcessBroker and the Subscription contract shared by both brokers (the checks both
run: tests/support/broker_contract.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.broker import (
    DEFAULT_MAX_QUEUE,
    MAX_CHANNEL_LENGTH,
    BrokerUnavailable,
    InProcessBroker,
    MessagesLost,
    RedisBroker,
    Subscription,
    create_broker,
)
from tests.support import broker_contract

WAIT = 2.0  # seconds: bound of every wait for a message


@pytest.fixture
async def broker() -> AsyncIterator[InProcessBroker]:
    b = InProcessBroker()
    await b.start()
    yield b
    await b.close()


async def receive(sub: Subscription, count: int) -> list[bytes]:
    return await broker_contract.receive(sub, count, WAIT)


async def test_order_is_kept_per_channel(broker: InProcessBroker) -> None:
    await broker_contract.check_order_kept(broker, broker, "room:1", 200, WAIT)


async def test_every_subscriber_gets_every_message(broker: InProcessBroker) -> None:
    async with broker.subscribe("room") as a, broker.subscribe("room") as b, broker.subscribe("room") as c:
        assert broker.subscriber_count("room") == 3
        await broker.publish("room", b"one")
        await broker.publish("room", b"two")
        for sub in (a, b, c):
            assert await receive(sub, 2) == [b"one", b"two"]


async def test_channels_are_isolated(broker: InProcessBroker) -> None:
    async with broker.subscribe("a") as a, broker.subscribe("b") as b:
        await broker.publish("a", b"for-a")
        await broker.publish("b", b"for-b")
        await broker.publish("c", b"nobody")
        assert await receive(a, 1) == [b"for-a"]
        assert await receive(b, 1) == [b"for-b"]
        assert a.qsize() == 0 and b.qsize() == 0


async def test_consumer_waiting_is_woken_by_publish(broker: InProcessBroker) -> None:
    async with broker.subscribe("room") as sub:
        waiting = asyncio.create_task(receive(sub, 1))
        await asyncio.sleep(0)  # let it block on the empty queue
        assert not waiting.done()
        await broker.publish("room", b"hello")
        assert await waiting == [b"hello"]


async def test_unsubscribe_stops_delivery(broker: InProcessBroker) -> None:
    stay = broker.subscribe("room")
    leave = broker.subscribe("room")
    async with stay:
        async with leave:
            await broker.publish("room", b"both")
        assert leave.closed
        assert broker.subscriber_count("room") == 1
        await broker.publish("room", b"only-stay")
        assert await receive(stay, 2) == [b"both", b"only-stay"]
        # Left: what was queued is discarded and iteration stops.
        assert leave.qsize() == 0
        with pytest.raises(StopAsyncIteration):
            await anext(leave)
    assert broker.subscriber_count("room") == 0


async def test_async_for_loop_ends_when_subscription_is_closed_elsewhere(broker: InProcessBroker) -> None:
    async with broker.subscribe("room") as sub:
        got: list[bytes] = []

        async def consume() -> None:
            async for m in sub:
                got.append(m)
                if m == b"last":
                    await sub.aclose()

        task = asyncio.create_task(consume())
        for m in (b"x", b"y", b"last", b"after"):
            await broker.publish("room", m)
        async with asyncio.timeout(WAIT):
            await task
        assert got == [b"x", b"y", b"last"]


async def test_slow_subscriber_drops_and_is_told(broker: InProcessBroker) -> None:
    await broker_contract.check_slow_subscriber_drops(broker, broker, "room", max_queue=3, count=10, wait=WAIT)


async def test_holes_are_placed_in_stream_order(broker: InProcessBroker) -> None:
    async with broker.subscribe("room", max_queue=1) as sub:
        await broker.publish("room", b"a")
        await broker.publish("room", b"dropped-1")
        await broker.publish("room", b"dropped-2")
        assert await receive(sub, 1) == [b"a"]
        await broker.publish("room", b"b")
        await broker.publish("room", b"dropped-3")
        with pytest.raises(MessagesLost) as first:
            await anext(sub)
        assert first.value.dropped == 2
        assert await receive(sub, 1) == [b"b"]
        with pytest.raises(MessagesLost) as second:
            await anext(sub)
        assert second.value.dropped == 1
        assert sub.drops == 3 and sub.qsize() == 0


@settings(max_examples=60, deadline=None)
@given(
    max_queue=st.integers(min_value=1, max_value=8),
    # True = publish one message, False = consume what is queued
    steps=st.lists(st.booleans(), max_size=60),
)
def test_queue_never_exceeds_bound_and_accounts_for_every_message(max_queue: int, steps: list[bool]) -> None:
    async def scenario() -> None:
        async with InProcessBroker() as b, b.subscribe("room", max_queue=max_queue) as sub:
            published: list[bytes] = []
            received: list[bytes] = []
            dropped_signalled = 0

            async def drain() -> None:
                nonlocal dropped_signalled
                while not sub.empty():
                    try:
                        received.append(await anext(sub))
                    except MessagesLost as exc:
                        dropped_signalled += exc.dropped

            for publish in steps:
                if publish:
                    m = str(len(published)).encode()
                    published.append(m)
                    await b.publish("room", m)
                    assert sub.qsize() <= max_queue
                else:
                    await drain()
            await drain()
            # Order kept, nothing invented, every loss counted and signalled.
            it = iter(published)
            assert all(m in it for m in received)
            assert len(received) + sub.drops == len(published)
            assert dropped_signalled == sub.drops

    loop = asyncio.new_event_loop()  # a private loop: the test is sync for hypothesis
    try:
        loop.run_until_complete(scenario())
    finally:
        loop.close()


async def test_message_size_limit(broker: InProcessBroker) -> None:
    await broker_contract.check_message_size_limit(broker, "room", WAIT)


def test_channel_and_queue_arguments_are_checked() -> None:
    b = InProcessBroker()
    with pytest.raises(ValueError):
        b.subscribe("")
    with pytest.raises(ValueError):
        b.subscribe("x" * (MAX_CHANNEL_LENGTH + 1))
    with pytest.raises(ValueError):
        b.subscribe("room", max_queue=0)
    assert b.subscribe("x" * MAX_CHANNEL_LENGTH).max_queue == DEFAULT_MAX_QUEUE


async def test_iterating_before_entering_is_an_error(broker: InProcessBroker) -> None:
    sub = broker.subscribe("room")
    with pytest.raises(RuntimeError):
        await anext(sub)
    async with sub:
        with pytest.raises(RuntimeError):
            await sub.__aenter__()


async def test_not_started_broker_refuses() -> None:
    b = InProcessBroker()
    assert not b.connected
    with pytest.raises(BrokerUnavailable):
        await b.publish("room", b"x")
    sub = b.subscribe("room")
    with pytest.raises(BrokerUnavailable):
        async with sub:
            pass
    assert sub.closed


async def test_close_ends_subscriptions_and_refuses_more() -> None:
    b = InProcessBroker()
    await b.start()
    # close() right after the publish: the message is still delivered before the loop ends
    await broker_contract.check_close_ends_subscriptions(b, "room", WAIT, wait_for_delivery=False)


def test_create_broker_picks_the_implementation() -> None:
    assert isinstance(create_broker(None), InProcessBroker)
    assert isinstance(create_broker(""), InProcessBroker)
    redis_broker = create_broker("redis://127.0.0.1:6379/0")
    assert isinstance(redis_broker, RedisBroker)
    assert not redis_broker.connected  # nothing happens before start()


def test_redis_broker_checks_its_arguments_without_connecting() -> None:
    with pytest.raises(ValueError):
        RedisBroker("redis://127.0.0.1:6379/0?protocol=3")  # the reader parses RESP2
    with pytest.raises(ValueError):
        RedisBroker("redis://127.0.0.1:6379/0", reconnect_min_delay=2.0, reconnect_max_delay=1.0)
    assert RedisBroker("redis://127.0.0.1:6379/0?protocol=2").prefix == "webinar:"
