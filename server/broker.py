"""Fan-out broker: carries live room events from the node that persisted them
to every node's local WebSocket connections.

One interface, two implementations:

* :class:`InProcessBroker` -- fan-out inside one process (the default, no
  ``REDIS_URL``).
* :class:`RedisBroker` -- Redis pub/sub through ``redis.asyncio``, so viewers
  connected to different worker processes or nodes see the same room.

:func:`create_broker` picks one from the ``REDIS_URL`` setting.

Delivery contract
-----------------
The broker is **best-effort pub/sub**. Room events are persisted in
PostgreSQL (with monotonically increasing ids) *before* they are published,
so the database, not the broker, is the source of truth. What the broker
promises:

* Order is preserved per channel for messages published by one task on one
  node (Redis keeps the order of one connection; the in-process broker is
  synchronous).
* **A publisher never waits for a subscriber.** Every subscription has a
  bounded queue (``max_queue`` messages, default :data:`DEFAULT_MAX_QUEUE`);
  when it is full the *new* message is dropped for that subscription only
  and counted in :attr:`Subscription.drops`. Other subscriptions are not
  affected.
* **A loss is never silent.** Wherever messages may be missing from a
  subscription's stream -- its queue overflowed, or (Redis) the connection
  to redis-server was lost and has just been restored -- iterating the
  subscription raises :class:`MessagesLost` exactly at that point of the
  stream: every message received before the hole is yielded first, every
  message received after it comes after the exception. Iteration can simply
  continue afterwards. The intended reaction is "re-read the room's events
  with an id above the last one seen from the database, then carry on,
  skipping ids already seen". The signal may occasionally be raised when
  nothing was actually lost (e.g. a reconnect during which nobody
  published); it is a prompt to resynchronise, never an error.
* A message may in rare cases be delivered twice (the Redis publisher
  retries once on a broken connection and cannot know whether the first
  attempt reached the server). Consumers de-duplicate by event id.

Limits
------
* :data:`MAX_MESSAGE_SIZE` = 64 KiB per message; :meth:`Broker.publish`
  refuses bigger ones with :class:`ValueError`.
* :data:`MAX_CHANNEL_LENGTH` = 200 characters per channel name (any
  non-empty ``str``); longer or empty ones raise :class:`ValueError`.
* :data:`DEFAULT_MAX_QUEUE` = 1024 messages per subscription. A full queue
  holds at most ``max_queue * 64 KiB`` of payload (64 MiB at the defaults);
  rooms should pass a smaller ``max_queue`` when their messages are big.

Usage (one subscription per room per node, fanning out to local sockets)::

    async with broker.subscribe(f"room:{webinar_id}") as sub:
        while True:
            try:
                async for message in sub:
                    fan_out_to_local_sockets(message)
            except MessagesLost:
                await catch_up_from_database()

Iteration ends (``StopAsyncIteration``) when the broker is closed, after the
messages already queued have been yielded.
"""

from __future__ import annotations

import abc
import asyncio
import collections
import logging
import random
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection, ConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

__all__ = [
    "DEFAULT_MAX_QUEUE",
    "DEFAULT_PREFIX",
    "MAX_CHANNEL_LENGTH",
    "MAX_MESSAGE_SIZE",
    "Broker",
    "BrokerError",
    "BrokerUnavailable",
    "InProcessBroker",
    "MessagesLost",
    "RedisBroker",
    "Subscription",
    "create_broker",
]

log = logging.getLogger(__name__)

MAX_MESSAGE_SIZE = 64 * 1024
"""Largest message :meth:`Broker.publish` accepts, in bytes (64 KiB)."""

MAX_CHANNEL_LENGTH = 200
"""Longest channel name, in characters (the Redis prefix is not counted)."""

DEFAULT_MAX_QUEUE = 1024
"""Default bound of a subscription's queue, in messages."""

DEFAULT_PREFIX = "webinar:"
"""Prefix of every Redis channel name, so several apps can share one Redis."""


class BrokerError(Exception):
    """Base class of the broker's own errors."""


class BrokerUnavailable(BrokerError):
    """The broker cannot take the operation now.

    Raised by :meth:`Broker.publish` when the broker is not started, closed,
    or (Redis) disconnected from redis-server or failing to answer within
    its command timeout; and by entering a subscription on a broker that is
    not started or is closed. The caller has already persisted the event, so
    nothing is lost: subscribers catch up from the database when they are
    told about the gap (:class:`MessagesLost`).
    """


class MessagesLost(BrokerError):
    """Raised by a subscription's iterator where messages may be missing.

    Attributes:
        dropped: messages dropped at this point because the subscription's
            queue was full (0 when the hole is only due to a reconnect).
        reconnected: ``True`` when the broker's connection was lost and
            restored (Redis) while this subscription was active, or the
            subscription was entered while the broker was disconnected.
    """

    def __init__(self, dropped: int, reconnected: bool) -> None:
        reasons = []
        if dropped:
            reasons.append(f"{dropped} dropped because the subscription queue was full")
        if reconnected:
            reasons.append("the broker connection was lost and restored")
        super().__init__("messages may be missing: " + " and ".join(reasons))
        self.dropped = dropped
        self.reconnected = reconnected


def _check_channel(channel: str) -> None:
    if not isinstance(channel, str):
        raise TypeError(f"channel must be str, not {type(channel).__name__}")
    if not channel or len(channel) > MAX_CHANNEL_LENGTH:
        raise ValueError(f"channel name must be 1 to {MAX_CHANNEL_LENGTH} characters")


def _check_message(message: bytes) -> None:
    if not isinstance(message, bytes):
        raise TypeError(f"message must be bytes, not {type(message).__name__}")
    if len(message) > MAX_MESSAGE_SIZE:
        raise ValueError(f"message of {len(message)} bytes exceeds the {MAX_MESSAGE_SIZE}-byte limit")


class _Hole:
    """Marker queued where messages may be missing from a subscription."""

    __slots__ = ("dropped", "reconnected")

    def __init__(self, dropped: int = 0, reconnected: bool = False) -> None:
        self.dropped = dropped
        self.reconnected = reconnected


class Subscription:
    """One local subscriber to one channel: an async iterator of ``bytes``.

    Created by :meth:`Broker.subscribe`; active only inside ``async with``
    (entering subscribes, leaving -- or :meth:`aclose` -- unsubscribes and
    discards what is still queued). Iterating a subscription that was never
    entered raises :class:`RuntimeError`; one that was left, or whose broker
    was closed, stops after the messages already queued.

    Meant to be consumed by one task. Several subscriptions to the same
    channel each get every message.

    Attributes:
        channel: the channel name, without the Redis prefix.
        max_queue: bound of the queue, in messages (at least 1). When full,
            new messages are dropped for this subscription, counted in
            :attr:`drops`, and reported by :class:`MessagesLost`.
        drops: total messages dropped because the queue was full.
        reconnects: times a loss of the broker connection was signalled to
            this subscription (always 0 with :class:`InProcessBroker`).
    """

    def __init__(self, broker: Broker, channel: str, max_queue: int) -> None:
        self.channel = channel
        self.max_queue = max_queue
        self.drops = 0
        self.reconnects = 0
        self._broker = broker
        self._items: collections.deque[bytes | _Hole] = collections.deque()
        self._queued = 0  # messages (not holes) in _items
        self._wakeup = asyncio.Event()
        self._entered = False
        self._closed = False
        # Redis: set while messages may have been missed and the subscription
        # is not yet re-subscribed; the hole is queued on re-subscription.
        self._lost = False

    @property
    def closed(self) -> bool:
        """True once the subscription was left or its broker closed."""
        return self._closed

    def qsize(self) -> int:
        """Messages waiting in the queue (:class:`MessagesLost` markers not counted)."""
        return self._queued

    def empty(self) -> bool:
        """True when the next iteration would wait (no message, no pending
        :class:`MessagesLost`)."""
        return not self._items

    async def __aenter__(self) -> Self:
        if self._entered:
            raise RuntimeError("a subscription can be entered only once")
        self._entered = True
        try:
            await self._broker._attach(self)
        except BaseException:
            self._closed = True
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Unsubscribe and discard queued messages. Idempotent."""
        if not self._entered or self._closed:
            self._closed = True
            return
        self._end()
        self._items.clear()
        self._queued = 0
        await self._broker._detach(self)

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> bytes:
        if not self._entered:
            raise RuntimeError("enter the subscription (async with) before iterating it")
        while True:
            if self._items:
                item = self._items.popleft()
                if isinstance(item, _Hole):
                    raise MessagesLost(item.dropped, item.reconnected)
                self._queued -= 1
                return item
            if self._closed:
                raise StopAsyncIteration
            self._wakeup.clear()
            await self._wakeup.wait()

    # -- called by the broker (never block, never raise) --------------------

    def _deliver(self, message: bytes) -> None:
        if self._closed:
            return
        if self._queued >= self.max_queue:
            self.drops += 1
            last = self._items[-1] if self._items else None
            if isinstance(last, _Hole):
                last.dropped += 1
            else:
                self._items.append(_Hole(dropped=1))
        else:
            self._items.append(message)
            self._queued += 1
        self._wakeup.set()

    def _signal_reconnect(self) -> None:
        if self._closed:
            return
        self.reconnects += 1
        last = self._items[-1] if self._items else None
        if isinstance(last, _Hole):
            last.reconnected = True
        else:
            self._items.append(_Hole(reconnected=True))
        self._wakeup.set()

    def _end(self) -> None:
        self._closed = True
        self._wakeup.set()


class Broker(abc.ABC):
    """Fan-out of ``bytes`` messages on named channels (see module docs).

    Lifecycle: :meth:`start`, then :meth:`publish` / :meth:`subscribe`, then
    :meth:`close`; or ``async with broker:``.
    """

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @abc.abstractmethod
    async def start(self) -> None:
        """Make the broker ready. Raises :class:`BrokerUnavailable` if it cannot."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop: every subscription ends, later publishes raise. Idempotent."""

    @abc.abstractmethod
    async def publish(self, channel: str, message: bytes) -> None:
        """Send ``message`` to every subscription of ``channel`` on every node.

        Never waits for subscribers (full queues drop, see
        :class:`Subscription`). Raises :class:`ValueError` for a message over
        :data:`MAX_MESSAGE_SIZE` bytes or a bad channel name,
        :class:`TypeError` for a non-``bytes`` message, and
        :class:`BrokerUnavailable` when the broker cannot deliver now.
        """

    def subscribe(self, channel: str, *, max_queue: int = DEFAULT_MAX_QUEUE) -> Subscription:
        """A subscription to ``channel``; enter it with ``async with``.

        ``max_queue`` (messages, at least 1) bounds its queue.
        """
        _check_channel(channel)
        if isinstance(max_queue, bool) or not isinstance(max_queue, int) or max_queue < 1:
            raise ValueError("max_queue must be an int >= 1")
        return Subscription(self, channel, max_queue)

    @property
    @abc.abstractmethod
    def connected(self) -> bool:
        """True while publishing can succeed (started, not closed, connected)."""

    @abc.abstractmethod
    def subscriber_count(self, channel: str) -> int:
        """Active local subscriptions to ``channel`` in this process."""

    @abc.abstractmethod
    async def _attach(self, sub: Subscription) -> None:
        """Register an entered subscription."""

    @abc.abstractmethod
    async def _detach(self, sub: Subscription) -> None:
        """Unregister a subscription that was left."""


class InProcessBroker(Broker):
    """Fan-out inside one process: a set of bounded queues per channel.

    ``publish`` appends to each subscriber's queue synchronously, in O(number
    of subscribers), and never waits. Nothing is ever lost except by queue
    overflow, so :class:`MessagesLost` only reports drops.
    """

    def __init__(self) -> None:
        self._channels: dict[str, set[Subscription]] = {}
        self._started = False
        self._closed = False

    async def start(self) -> None:
        if self._closed:
            raise BrokerUnavailable("broker is closed")
        self._started = True

    async def close(self) -> None:
        self._closed = True
        channels, self._channels = self._channels, {}
        for subs in channels.values():
            for sub in subs:
                sub._end()

    @property
    def connected(self) -> bool:
        return self._started and not self._closed

    def subscriber_count(self, channel: str) -> int:
        return len(self._channels.get(channel, ()))

    async def publish(self, channel: str, message: bytes) -> None:
        _check_channel(channel)
        _check_message(message)
        if not self.connected:
            raise BrokerUnavailable("broker is not started or is closed")
        for sub in tuple(self._channels.get(channel, ())):
            sub._deliver(message)

    async def _attach(self, sub: Subscription) -> None:
        if not self.connected:
            raise BrokerUnavailable("broker is not started or is closed")
        self._channels.setdefault(sub.channel, set()).add(sub)

    async def _detach(self, sub: Subscription) -> None:
        subs = self._channels.get(sub.channel)
        if subs is None:
            return
        subs.discard(sub)
        if not subs:
            del self._channels[sub.channel]


class _RedisChannel:
    """Local state of one subscribed Redis channel."""

    __slots__ = ("subs", "confirmed", "waiters")

    def __init__(self) -> None:
        self.subs: set[Subscription] = set()
        # SUBSCRIBE acknowledged by redis-server on the current connection.
        self.confirmed = False
        # Entering subscriptions waiting for that acknowledgement.
        self.waiters: list[asyncio.Future[None]] = []


class RedisBroker(Broker):
    """Fan-out across processes and nodes through Redis pub/sub.

    Connections (both created from ``url``, e.g. ``redis://host:6379/0``):

    * one command connection for ``PUBLISH`` (``single_connection_client``;
      concurrent publishers take turns on it);
    * one subscriber connection carrying every channel this process listens
      to. A Redis ``SUBSCRIBE`` is sent when the first local subscription to
      a channel is entered and an ``UNSUBSCRIBE`` when the last one is left;
      a reader task dispatches incoming messages to the local subscriptions.
      Redis channel names are ``prefix + channel``.

    Entering a subscription while connected returns once redis-server has
    acknowledged the ``SUBSCRIBE``: any ``PUBLISH`` that reaches
    redis-server afterwards, from any node, reaches it. Entering while
    disconnected returns at once; the subscription will raise
    :class:`MessagesLost` when the connection is back.

    Backpressure: the reader only appends to bounded local queues, so it
    keeps up with Redis unless the event loop itself is starved. If it
    falls behind anyway, redis-server closes the subscriber connection once
    its output buffer passes ``client-output-buffer-limit pubsub`` (32 MB,
    or 8 MB for 60 s, by default); that is handled like any other lost
    connection (reconnect, then :class:`MessagesLost`). Frames are read
    with RESP2: a URL asking for another ``protocol`` is refused.

    The subscriber connection is driven directly (not through redis-py's
    ``PubSub`` helper) because that helper silently reconnects and
    re-subscribes, which would hide the very gap subscriptions must hear
    about. When redis-server goes away (connection closed or reset, or no
    answer to a ``PING`` within ``ping_interval`` after ``ping_interval``
    seconds of silence) the reader reconnects with exponential backoff
    between ``reconnect_min_delay`` and ``reconnect_max_delay`` seconds
    (with jitter), re-subscribes every channel, and for each channel, right
    after redis-server acknowledged it, queues a :class:`MessagesLost`
    (``reconnected=True``) into each of its subscriptions -- after the
    acknowledgement, so a database catch-up done on that signal cannot miss
    anything published later.

    While the subscriber connection is down :attr:`connected` is False and
    :meth:`publish` raises :class:`BrokerUnavailable` immediately; a publish
    that fails on the wire (after one immediate retry on a fresh connection)
    or takes longer than ``command_timeout`` seconds raises it too.

    Args:
        url: Redis URL (``redis://``, ``rediss://`` or ``unix://``);
            :class:`ValueError` if it asks for a ``protocol`` other than 2.
        prefix: prepended to every channel name in Redis.
        connect_timeout: seconds allowed to open a connection.
        command_timeout: seconds allowed for one ``PUBLISH``.
        ping_interval: seconds of silence on the subscriber connection
            before a ``PING`` is sent, and seconds to wait for its answer.
        reconnect_min_delay: first delay before reconnecting, in seconds.
        reconnect_max_delay: ceiling of the doubling delay, in seconds.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        connect_timeout: float = 2.0,
        command_timeout: float = 5.0,
        ping_interval: float = 5.0,
        reconnect_min_delay: float = 0.1,
        reconnect_max_delay: float = 5.0,
    ) -> None:
        if not 0 < reconnect_min_delay <= reconnect_max_delay:
            raise ValueError("need 0 < reconnect_min_delay <= reconnect_max_delay")
        if connect_timeout <= 0 or command_timeout <= 0 or ping_interval <= 0:
            raise ValueError("timeouts and ping_interval must be positive")
        if parse_qs(urlsplit(url).query).get("protocol", ["2"]) != ["2"]:
            raise ValueError("RedisBroker speaks RESP2: remove 'protocol' from the Redis URL")
        self.url = url
        self.prefix = prefix
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        self.ping_interval = ping_interval
        self.reconnect_min_delay = reconnect_min_delay
        self.reconnect_max_delay = reconnect_max_delay
        self.reconnects = 0
        """Times the subscriber connection was restored after a loss."""

        self._channels: dict[bytes, _RedisChannel] = {}
        # SUBSCRIBE/UNSUBSCRIBE commands sent on the current connection and
        # not yet acknowledged, per Redis channel. A channel is subscribed on
        # the server once the reply to its last command is a "subscribe".
        self._inflight: dict[bytes, int] = {}
        self._conn: AbstractConnection | None = None
        self._connected_event = asyncio.Event()
        self._cmd_lock = asyncio.Lock()
        self._pool: ConnectionPool | None = None
        self._client: Redis | None = None
        self._reader: asyncio.Task[None] | None = None
        self._started = False
        self._closed = False

    # -- lifecycle ----------------------------------------------------------

    async def start(self) -> None:
        """Connect; raises :class:`BrokerUnavailable` if redis-server does not
        answer within about ``connect_timeout + command_timeout`` seconds
        (the broker is then closed: create a new one to try again). Later
        outages are handled by reconnecting."""
        if self._closed:
            raise BrokerUnavailable("broker is closed")
        if self._started:
            return
        self._started = True
        common: dict[str, Any] = {
            "socket_connect_timeout": self.connect_timeout,
            "decode_responses": False,
            "protocol": 2,
        }
        self._client = Redis.from_url(
            self.url,
            single_connection_client=True,
            socket_timeout=self.command_timeout,
            retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
            **common,
        )
        # Timeouts of the subscriber connection are handled by the reader.
        self._pool = ConnectionPool.from_url(
            self.url, socket_timeout=None, retry=Retry(NoBackoff(), 0), **common
        )
        try:
            async with asyncio.timeout(self.connect_timeout + self.command_timeout):
                await self._client.ping()
                self._reader = asyncio.create_task(self._run(), name="redis-broker-reader")
                await self._connected_event.wait()
        except (RedisError, OSError, TimeoutError) as exc:
            await self.close()
            raise BrokerUnavailable(f"cannot connect to Redis: {exc!r}") from exc
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
            await asyncio.wait({reader})
            if not reader.cancelled() and reader.exception() is not None:
                log.error("redis broker: reader ended with %r", reader.exception())
        self._on_connection_lost()
        channels, self._channels = self._channels, {}
        for state in channels.values():
            for sub in state.subs:
                sub._end()
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        if self._pool is not None:
            await self._pool.disconnect()
            self._pool = None

    @property
    def connected(self) -> bool:
        return self._started and not self._closed and self._conn is not None

    def subscriber_count(self, channel: str) -> int:
        state = self._channels.get(self._redis_name(channel))
        return len(state.subs) if state else 0

    def _redis_name(self, channel: str) -> bytes:
        return (self.prefix + channel).encode("utf-8")

    # -- publish ------------------------------------------------------------

    async def publish(self, channel: str, message: bytes) -> None:
        _check_channel(channel)
        _check_message(message)
        if not self._started or self._closed or self._client is None:
            raise BrokerUnavailable("broker is not started or is closed")
        if self._conn is None:
            raise BrokerUnavailable("disconnected from Redis")
        try:
            await self._client.publish(self._redis_name(channel), message)
        except (RedisError, OSError) as exc:
            raise BrokerUnavailable(f"publish failed: {exc!r}") from exc

    # -- subscriptions --------------------------------------------------------

    async def _attach(self, sub: Subscription) -> None:
        if not self._started or self._closed:
            raise BrokerUnavailable("broker is not started or is closed")
        name = self._redis_name(sub.channel)
        waiter: asyncio.Future[None] | None = None
        async with self._cmd_lock:
            if self._closed:
                raise BrokerUnavailable("broker is closed")
            state = self._channels.get(name)
            first = state is None
            if state is None:
                state = self._channels[name] = _RedisChannel()
            state.subs.add(sub)
            conn = self._conn
            if conn is None:
                # Down: re-subscribed (and told about the gap) on reconnect.
                sub._lost = True
                return
            if state.confirmed:
                return
            waiter = asyncio.get_running_loop().create_future()
            state.waiters.append(waiter)
            if first:
                await self._send(conn, b"SUBSCRIBE", name)
        try:
            await waiter
        except BaseException:
            await self._detach(sub)
            raise
        if self._closed:
            raise BrokerUnavailable("broker is closed")

    async def _detach(self, sub: Subscription) -> None:
        name = self._redis_name(sub.channel)
        async with self._cmd_lock:
            state = self._channels.get(name)
            if state is None or sub not in state.subs:
                return
            state.subs.discard(sub)
            if state.subs:
                return
            del self._channels[name]
            for waiter in state.waiters:
                if not waiter.done():
                    waiter.set_result(None)
            if self._conn is not None:
                await self._send(self._conn, b"UNSUBSCRIBE", name)

    async def _send(self, conn: AbstractConnection, command: bytes, *channels: bytes) -> None:
        """Send a (UN)SUBSCRIBE on ``conn``; a failure is left to the reader.

        Never reconnects: redis-py would reconnect a closed connection on
        send, so a connection that is no longer current is left alone.
        """
        if conn is not self._conn or not conn.is_connected:
            return
        for name in channels:
            self._inflight[name] = self._inflight.get(name, 0) + 1
        try:
            await conn.send_command(command, *channels, check_health=False)
        except (RedisError, OSError) as exc:
            # send_command closed the connection; the reader sees it and
            # reconnects.
            log.warning("redis broker: sending %s failed: %s: %s", command.decode(), type(exc).__name__, exc)

    # -- reader -------------------------------------------------------------

    async def _run(self) -> None:
        """Connect, read and dispatch; on any failure reconnect with backoff."""
        delay = self.reconnect_min_delay
        ever_connected = False
        assert self._pool is not None
        while not self._closed:
            conn: AbstractConnection | None = None
            try:
                conn = self._pool.make_connection()
                async with asyncio.timeout(self.connect_timeout + self.command_timeout):
                    await conn.connect()
                async with self._cmd_lock:
                    self._inflight.clear()
                    self._conn = conn
                    names = list(self._channels)
                    if names:
                        await self._send(conn, b"SUBSCRIBE", *names)
                if ever_connected:
                    self.reconnects += 1
                    log.info("redis broker: reconnected, re-subscribed %d channel(s)", len(names))
                ever_connected = True
                delay = self.reconnect_min_delay
                self._connected_event.set()
                await self._read(conn)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any failure means reconnect
                if isinstance(exc, (RedisError, OSError, TimeoutError)):
                    log.warning("redis broker: connection lost: %s: %s", type(exc).__name__, exc)
                else:
                    log.exception("redis broker: reader failed, reconnecting")
            finally:
                if conn is not None:
                    if self._conn is conn:
                        self._on_connection_lost()
                    await conn.disconnect(nowait=True)
            await asyncio.sleep(random.uniform(delay / 2, delay))
            delay = min(delay * 2, self.reconnect_max_delay)

    def _on_connection_lost(self) -> None:
        """Forget the server-side state; every subscription may miss messages."""
        self._conn = None
        self._connected_event.clear()
        self._inflight.clear()
        for state in self._channels.values():
            state.confirmed = False
            for sub in state.subs:
                sub._lost = True
            for waiter in state.waiters:
                if not waiter.done():
                    waiter.set_result(None)
            state.waiters.clear()

    async def _read(self, conn: AbstractConnection) -> None:
        """Read frames until the connection fails (raises) or is replaced."""
        ping_sent = False
        while self._conn is conn:
            frame = await conn.read_response(timeout=self.ping_interval)
            if frame is None:
                if ping_sent:
                    raise TimeoutError(f"no answer from Redis within {self.ping_interval} s")
                if not conn.is_connected:  # closed by a failed send
                    raise RedisConnectionError("subscriber connection closed")
                ping_sent = True
                await conn.send_command(b"PING", check_health=False)
                continue
            ping_sent = False
            if isinstance(frame, list) and len(frame) >= 2 and isinstance(frame[0], bytes):
                self._on_frame(frame[0].lower(), frame)

    def _on_frame(self, kind: bytes, frame: list[Any]) -> None:
        name = frame[1]
        if kind == b"message" and len(frame) == 3:
            state = self._channels.get(name)
            if state is not None:
                for sub in tuple(state.subs):
                    sub._deliver(bytes(frame[2]))
        elif kind in (b"subscribe", b"unsubscribe"):
            left = self._inflight.get(name, 0) - 1
            if left > 0:
                self._inflight[name] = left
                return
            self._inflight.pop(name, None)
            state = self._channels.get(name)
            if kind == b"subscribe" and state is not None and not state.confirmed:
                state.confirmed = True
                for sub in state.subs:
                    if sub._lost:
                        sub._lost = False
                        sub._signal_reconnect()
                for waiter in state.waiters:
                    if not waiter.done():
                        waiter.set_result(None)
                state.waiters.clear()


def create_broker(redis_url: str | None) -> Broker:
    """A :class:`RedisBroker` for ``redis_url``, or an :class:`InProcessBroker`
    when it is ``None`` or empty. The broker still has to be started."""
    if redis_url:
        return RedisBroker(redis_url)
    return InProcessBroker()
