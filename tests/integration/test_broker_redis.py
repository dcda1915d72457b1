"""RedisBroker against a real redis-server (started by tests.support); the checks it shares with
the in-process broker are in tests/support/broker_contract.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest
from redis.asyncio import Redis

from server.broker import (
    DEFAULT_PREFIX,
    BrokerUnavailable,
    MessagesLost,
    RedisBroker,
    Subscription,
)
from tests.support import broker_contract
from tests.support.net import free_port
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.integration

WAIT = 5.0  # seconds: bound of every wait in this module

MakeBroker = Callable[..., Awaitable[RedisBroker]]


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture
async def make_broker() -> AsyncIterator[Callable[..., Awaitable[RedisBroker]]]:
    """Started RedisBrokers ("nodes") with quick reconnects; all closed at the end."""
    brokers: list[RedisBroker] = []

    async def make(url: str, **kwargs: object) -> RedisBroker:
        options: dict[str, object] = {
            "reconnect_min_delay": 0.05,
            "reconnect_max_delay": 0.2,
            "connect_timeout": 1.0,
            "command_timeout": 1.0,
        }
        options.update(kwargs)
        broker = RedisBroker(url, **options)  # type: ignore[arg-type]
        brokers.append(broker)
        await broker.start()
        return broker

    yield make
    for broker in brokers:
        await broker.close()


@pytest.fixture
async def raw_redis(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


async def receive(sub: Subscription, count: int) -> list[bytes]:
    return await broker_contract.receive(sub, count, WAIT)


async def wait_until(predicate: Callable[[], bool]) -> None:
    async with asyncio.timeout(WAIT):
        while not predicate():
            await asyncio.sleep(0.01)


async def numsub(client: Redis, channel: str) -> int:
    [(_, count)] = await client.pubsub_numsub(DEFAULT_PREFIX + channel)
    return int(count)


async def wait_numsub(client: Redis, channel: str, expected: int) -> None:
    async with asyncio.timeout(WAIT):
        while await numsub(client, channel) != expected:
            await asyncio.sleep(0.01)


async def test_two_nodes_see_each_others_messages(redis_server: RedisServer, make_broker: MakeBroker) -> None:
    node_a = await make_broker(redis_server.url)
    node_b = await make_broker(redis_server.url)
    async with node_a.subscribe("room:1") as on_a, node_b.subscribe("room:1") as on_b:
        await node_a.publish("room:1", b"from-a")
        await node_b.publish("room:1", b"from-b")
        # Each node also receives its own messages (they go through Redis).
        assert await receive(on_a, 2) == [b"from-a", b"from-b"]
        assert await receive(on_b, 2) == [b"from-a", b"from-b"]


async def test_order_is_kept_across_nodes(redis_server: RedisServer, make_broker: MakeBroker) -> None:
    node_a = await make_broker(redis_server.url)
    node_b = await make_broker(redis_server.url)
    await broker_contract.check_order_kept(node_a, node_b, "room:order", 300, WAIT)


async def test_many_channels_stay_isolated(redis_server: RedisServer, make_broker: MakeBroker) -> None:
    node_a = await make_broker(redis_server.url)
    node_b = await make_broker(redis_server.url)
    names = [f"room:{i}" for i in range(60)]
    subs = [node_b.subscribe(name) for name in names]
    for sub in subs:
        await sub.__aenter__()
    try:
        for round_ in range(3):
            for name in names:
                await node_a.publish(name, f"{name}/{round_}".encode())
        for name, sub in zip(names, subs):
            assert await receive(sub, 3) == [f"{name}/{r}".encode() for r in range(3)]
            assert sub.empty()
    finally:
        for sub in subs:
            await sub.aclose()
    assert all(node_b.subscriber_count(name) == 0 for name in names)


async def test_one_redis_subscription_per_channel_per_node(
    redis_server: RedisServer, make_broker: MakeBroker, raw_redis: Redis
) -> None:
    node = await make_broker(redis_server.url)
    first = node.subscribe("room:count")
    second = node.subscribe("room:count")
    async with first:
        async with second:
            assert node.subscriber_count("room:count") == 2
            assert await numsub(raw_redis, "room:count") == 1
        assert await numsub(raw_redis, "room:count") == 1
        await node.publish("room:count", b"still-there")
        assert await receive(first, 1) == [b"still-there"]
    # Last local subscriber left: the node unsubscribes in Redis.
    await wait_numsub(raw_redis, "room:count", 0)
    # Subscribing again works.
    async with node.subscribe("room:count") as again:
        assert await numsub(raw_redis, "room:count") == 1
        await node.publish("room:count", b"back")
        assert await receive(again, 1) == [b"back"]


async def test_channels_are_prefixed_in_redis(
    redis_server: RedisServer, make_broker: MakeBroker, raw_redis: Redis
) -> None:
    webinar = await make_broker(redis_server.url)
    other_app = await make_broker(redis_server.url, prefix="otherapp:")
    async with webinar.subscribe("room") as sub, other_app.subscribe("room") as other_sub:
        # Something outside the broker publishing on the prefixed name is heard.
        receivers = await raw_redis.publish(DEFAULT_PREFIX + "room", b"raw")
        assert receivers == 1
        assert await receive(sub, 1) == [b"raw"]
        await webinar.publish("room", b"webinar-only")
        await other_app.publish("room", b"other-only")
        assert await receive(sub, 1) == [b"webinar-only"]
        # The other app's first message is its own: it never saw ours.
        assert await receive(other_sub, 1) == [b"other-only"]


async def test_slow_subscriber_drops_without_blocking_publisher(
    redis_server: RedisServer, make_broker: MakeBroker
) -> None:
    publisher = await make_broker(redis_server.url)
    node = await make_broker(redis_server.url)
    await broker_contract.check_slow_subscriber_drops(publisher, node, "room:slow", max_queue=2, count=50, wait=WAIT)


async def test_message_size_limit(redis_server: RedisServer, make_broker: MakeBroker) -> None:
    node = await make_broker(redis_server.url)
    await broker_contract.check_message_size_limit(node, "room:big", WAIT)


async def test_close_ends_subscriptions_and_unsubscribes(
    redis_server: RedisServer, make_broker: MakeBroker, raw_redis: Redis
) -> None:
    node = await make_broker(redis_server.url)
    await broker_contract.check_close_ends_subscriptions(node, "room:close", WAIT, wait_for_delivery=True)
    await wait_numsub(raw_redis, "room:close", 0)


async def test_start_fails_clearly_without_redis() -> None:
    broker = RedisBroker(f"redis://127.0.0.1:{free_port()}/0", connect_timeout=1.0, command_timeout=1.0)
    with pytest.raises(BrokerUnavailable):
        await broker.start()
    assert not broker.connected
    with pytest.raises(BrokerUnavailable):
        await broker.publish("room", b"x")


async def test_reconnect_after_redis_restart_signals_the_gap(make_broker: MakeBroker) -> None:
    with RedisServer() as server:
        node_a = await make_broker(server.url)
        node_b = await make_broker(server.url)
        async with node_b.subscribe("room:r") as sub, node_b.subscribe("room:other") as other:
            await node_a.publish("room:r", b"before")
            assert await receive(sub, 1) == [b"before"]

            await asyncio.to_thread(server.kill)
            await wait_until(lambda: not node_a.connected and not node_b.connected)
            # Publishing while down raises the documented error.
            with pytest.raises(BrokerUnavailable):
                await node_a.publish("room:r", b"while-down")
            # A subscription entered during the outage is accepted.
            late = node_b.subscribe("room:r")
            await late.__aenter__()
            try:
                await asyncio.to_thread(server.start)  # same port, empty server
                # Each subscription is told about the gap once re-subscribed ...
                for s in (sub, other, late):
                    with pytest.raises(MessagesLost) as lost:
                        async with asyncio.timeout(WAIT):
                            await anext(s)
                    assert lost.value.reconnected and lost.value.dropped == 0
                    assert s.reconnects == 1
                assert node_b.reconnects == 1
                # ... and later messages flow again, from both nodes.
                await wait_until(lambda: node_a.connected)
                await node_a.publish("room:r", b"after-a")
                await node_b.publish("room:r", b"after-b")
                await node_a.publish("room:other", b"other-after")
                assert await receive(sub, 2) == [b"after-a", b"after-b"]
                assert await receive(late, 2) == [b"after-a", b"after-b"]
                assert await receive(other, 1) == [b"other-after"]
            finally:
                await late.aclose()


async def test_unresponsive_redis_is_detected_by_ping(make_broker: MakeBroker) -> None:
    with RedisServer() as server:
        node = await make_broker(server.url, ping_interval=0.2, connect_timeout=0.3, command_timeout=0.3)
        async with node.subscribe("room:frozen") as sub:
            server.freeze()
            try:
                # No byte arrives: the unanswered PING marks the connection dead.
                await wait_until(lambda: not node.connected)
                with pytest.raises(BrokerUnavailable):
                    await node.publish("room:frozen", b"x")
            finally:
                server.thaw()
            with pytest.raises(MessagesLost) as lost:
                async with asyncio.timeout(WAIT):
                    await anext(sub)
            assert lost.value.reconnected
            await wait_until(lambda: node.connected)
            await node.publish("room:frozen", b"thawed")
            assert await receive(sub, 1) == [b"thawed"]


async def test_entering_returns_once_redis_acknowledged(make_broker: MakeBroker) -> None:
    with RedisServer() as server:
        node = await make_broker(server.url, ping_interval=30.0)
        sub = node.subscribe("room:ack")
        server.freeze()
        try:
            entering = asyncio.create_task(sub.__aenter__())
            await asyncio.sleep(0.2)
            # SUBSCRIBE is sent but redis-server, stopped, cannot acknowledge it.
            assert not entering.done()
        finally:
            server.thaw()
        async with asyncio.timeout(WAIT):
            await entering
        try:
            await node.publish("room:ack", b"acknowledged")
            assert await receive(sub, 1) == [b"acknowledged"]
            assert sub.reconnects == 0
        finally:
            await sub.aclose()


async def test_cancelled_entering_leaves_no_subscription(make_broker: MakeBroker) -> None:
    with RedisServer() as server:
        node = await make_broker(server.url, ping_interval=30.0)
        raw = Redis.from_url(server.url)
        try:
            sub = node.subscribe("room:cancel")
            server.freeze()
            try:
                entering = asyncio.create_task(sub.__aenter__())
                await asyncio.sleep(0.1)
                entering.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await entering
            finally:
                server.thaw()
            assert sub.closed and node.subscriber_count("room:cancel") == 0
            # SUBSCRIBE then UNSUBSCRIBE reached the server: nothing is left.
            await wait_numsub(raw, "room:cancel", 0)
            # A new subscription on the same channel is acknowledged and works.
            async with node.subscribe("room:cancel") as again:
                assert await numsub(raw, "room:cancel") == 1
                await node.publish("room:cancel", b"ok")
                assert await receive(again, 1) == [b"ok"]
        finally:
            await raw.aclose()
