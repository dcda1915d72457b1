"""The delivery contract both brokers keep (server/broker.py), checked once for each.

The in-process broker's unit tests (tests/unit/test_broker_inprocess.py) and the
Redis broker's integration tests against a real redis-server
(tests/integration/test_broker_redis.py) call the same checks. ``publisher`` and
``node`` may be one broker (in-process) or two nodes on one Redis: a message goes
from ``publisher`` to the subscriptions of ``node``. Every wait is bounded by
``wait`` seconds.
"""

from __future__ import annotations

import asyncio

import pytest

from server.broker import (
    MAX_MESSAGE_SIZE,
    Broker,
    BrokerUnavailable,
    MessagesLost,
    Subscription,
)


async def receive(sub: Subscription, count: int, wait: float) -> list[bytes]:
    """The next ``count`` messages of ``sub``; fails if they take more than ``wait`` seconds in all."""
    out = []
    async with asyncio.timeout(wait):
        for _ in range(count):
            out.append(await anext(sub))
    return out


async def check_order_kept(publisher: Broker, node: Broker, channel: str, count: int, wait: float) -> None:
    """``count`` messages published one after the other arrive all, in order, none dropped."""
    async with node.subscribe(channel) as sub:
        sent = [f"m{i}".encode() for i in range(count)]
        for m in sent:
            await publisher.publish(channel, m)
        assert await receive(sub, len(sent), wait) == sent
        assert sub.qsize() == 0 and sub.drops == 0


async def check_slow_subscriber_drops(publisher: Broker, node: Broker, channel: str, *, max_queue: int,
                                      count: int, wait: float) -> None:
    """A subscription nobody reads keeps its first ``max_queue`` messages and counts the rest as
    dropped, without slowing the publisher or another subscription; its reader then gets what
    fitted, one :class:`MessagesLost` for the hole, and newer messages."""
    assert count > max_queue
    async with node.subscribe(channel, max_queue=max_queue) as slow, node.subscribe(channel) as witness:
        sent = [f"m{i}".encode() for i in range(count)]
        async with asyncio.timeout(wait):  # nobody reads `slow`: publishing completes anyway
            for m in sent:
                await publisher.publish(channel, m)
        # Each message is dispatched to both subscriptions at once: once the witness has
        # everything, the slow one has seen it too.
        assert await receive(witness, count, wait) == sent and witness.drops == 0
        dropped = count - max_queue
        assert slow.drops == dropped and slow.qsize() == max_queue
        assert await receive(slow, max_queue, wait) == sent[:max_queue]
        with pytest.raises(MessagesLost) as lost:
            await anext(slow)
        assert lost.value.dropped == dropped and not lost.value.reconnected
        await publisher.publish(channel, b"later")
        assert await receive(slow, 1, wait) == [b"later"]
        assert slow.drops == dropped


async def check_message_size_limit(node: Broker, channel: str, wait: float) -> None:
    """A message of exactly :data:`MAX_MESSAGE_SIZE` bytes goes through unchanged; a larger one is a
    ``ValueError`` and text a ``TypeError``, and neither is delivered."""
    async with node.subscribe(channel) as sub:
        biggest = bytes(range(256)) * (MAX_MESSAGE_SIZE // 256)
        assert len(biggest) == MAX_MESSAGE_SIZE
        await node.publish(channel, biggest)
        assert await receive(sub, 1, wait) == [biggest]
        with pytest.raises(ValueError):
            await node.publish(channel, biggest + b"!")
        with pytest.raises(TypeError):
            await node.publish(channel, "text")  # type: ignore[arg-type]
        await node.publish(channel, b"small")
        assert await receive(sub, 1, wait) == [b"small"]
        assert sub.qsize() == 0


async def check_close_ends_subscriptions(node: Broker, channel: str, wait: float, *, wait_for_delivery: bool) -> None:
    """``close()`` ends every subscription (an ``async for`` over one stops after what was
    delivered), refuses later publishes and subscriptions, and may be called again; leaving a
    subscription after the close is harmless.

    ``wait_for_delivery``: first wait until the message published before the close has arrived (a
    broker whose messages travel through a server); without it the close follows the publish at
    once, and the message must still be delivered before the loop ends.
    """
    sub = node.subscribe(channel)
    await sub.__aenter__()
    got: list[bytes] = []

    async def consume() -> None:
        async for m in sub:
            got.append(m)

    task = asyncio.create_task(consume())
    await node.publish(channel, b"before-close")
    if wait_for_delivery:
        async with asyncio.timeout(wait):
            while got != [b"before-close"]:
                await asyncio.sleep(0.01)
    await node.close()
    async with asyncio.timeout(wait):
        await task  # the async-for loop ended
    assert got == [b"before-close"]
    assert sub.closed and not node.connected
    with pytest.raises(BrokerUnavailable):
        await node.publish(channel, b"after")
    with pytest.raises(BrokerUnavailable):
        async with node.subscribe(channel):
            pass
    await sub.__aexit__(None, None, None)  # leaving after close is harmless
    await node.close()  # idempotent
