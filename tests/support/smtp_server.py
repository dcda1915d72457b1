"""A real SMTP server for tests: aiosmtpd on 127.0.0.1 and a free port, keeping
every message it accepts. It can be told to refuse: answer the next DATA
commands with a given reply (``451 ...`` for a temporary failure), refuse some
recipients with 550, or be stopped and started again on the same port.

aiosmtpd runs its own event loop in a thread; :meth:`SMTPSink.start` and
:meth:`SMTPSink.stop` block for a moment, so async tests call them through
``asyncio.to_thread``.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any, AsyncIterator

from aiosmtpd.controller import Controller

from tests.support.net import free_port


@dataclass(frozen=True)
class Received:
    envelope_from: str
    recipients: tuple[str, ...]
    message: EmailMessage


class _Handler:
    def __init__(self, sink: "SMTPSink") -> None:
        self.sink = sink

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any) -> str:
        if address.lower() in self.sink.refused_recipients:
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.sink.lock:
            if self.sink.data_replies:
                return self.sink.data_replies.pop(0)
        if self.sink.delay_s:
            time.sleep(self.sink.delay_s)  # the server's own thread: slows every session, like a busy relay
        message = BytesParser(policy=policy.default).parsebytes(envelope.content)
        assert isinstance(message, EmailMessage)
        with self.sink.lock:
            self.sink.received.append(Received(envelope.mail_from, tuple(envelope.rcpt_tos), message))
        return "250 2.0.0 accepted"


class SMTPSink:
    def __init__(self, port: int | None = None, *, delay_s: float = 0.0) -> None:
        self.port = port or free_port()
        self.delay_s = delay_s
        self.lock = threading.Lock()
        self.received: list[Received] = []
        self.data_replies: list[str] = []
        self.refused_recipients: set[str] = set()
        self._controller: Controller | None = None

    def start(self) -> None:
        assert self._controller is None, "already running"
        controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port, ready_timeout=10)
        controller.start()
        self._controller = controller

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def fail_next_data(self, reply: str, times: int = 1) -> None:
        with self.lock:
            self.data_replies.extend([reply] * times)

    @property
    def messages(self) -> list[EmailMessage]:
        with self.lock:
            return [r.message for r in self.received]


@contextlib.asynccontextmanager
async def smtp_sink(*, delay_s: float = 0.0) -> AsyncIterator[SMTPSink]:
    sink = SMTPSink(delay_s=delay_s)
    await asyncio.to_thread(sink.start)
    try:
        yield sink
    finally:
        await asyncio.to_thread(sink.stop)
