"""Publishing and pull-consuming bus messages over JetStream."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import PubAck
from prometheus_client import Counter

from echostream_shared.codec import DecodeError, decode, encode
from echostream_shared.logging import get_logger
from echostream_shared.messages import BusMessage, Message

log = get_logger("bus")

MALFORMED = Counter(
    "echostream_bus_malformed_messages_total",
    "Messages terminated because they could not be decoded",
    ["stream"],
)
HANDLER_FAILURES = Counter(
    "echostream_bus_handler_failures_total",
    "Messages whose handler raised and that were handed back for redelivery",
    ["stream"],
)


def report_malformed(stream: str, error: DecodeError) -> None:
    """Count and log a message that could not be decoded (never its payload)."""
    MALFORMED.labels(stream).inc()
    log.warning("bus.malformed", subject=error.subject, reason=error.reason)


class PermanentError(Exception):
    """A message that can never be processed; it is terminated, not redelivered."""


class Bus:
    """A connected NATS client and its JetStream context."""

    def __init__(self, nc: NATS, js: JetStreamContext) -> None:
        self.nc = nc
        self.js = js

    async def publish(self, subject: str, message: Message, *, msg_id: str | None = None) -> PubAck:
        """Persist a message in JetStream; ``msg_id`` makes a re-publish a no-op."""
        headers = {"Nats-Msg-Id": msg_id} if msg_id else None
        return await self.js.publish(subject, encode(message), headers=headers)

    async def publish_core(self, subject: str, message: Message) -> None:
        """Publish on core NATS, for live-only messages such as worker status."""
        await self.nc.publish(subject, encode(message))


Handler = Callable[[BusMessage, Msg], Awaitable[None]]


@dataclass
class ConsumerStats:
    """What a consumer loop has done so far."""

    handled: int = 0
    malformed: int = 0
    failed: int = 0


class PullConsumer:
    """Fetches from a durable pull consumer and hands each decoded message to a handler.

    The message is acked when the handler returns, terminated when it cannot be decoded or the
    handler raises ``PermanentError``, and naked with a delay for any other exception. The loop
    stops fetching when ``stop`` is set and returns once the batch in hand is settled, so
    nothing it fetched is left unacked.
    """

    def __init__(
        self,
        bus: Bus,
        stream: str,
        durable: str,
        handler: Handler,
        *,
        batch: int = 16,
        fetch_timeout_s: float = 1.0,
        retry_delay_s: float = 2.0,
    ) -> None:
        self._bus = bus
        self._stream = stream
        self._durable = durable
        self._handler = handler
        self._batch = batch
        self._fetch_timeout_s = fetch_timeout_s
        self._retry_delay_s = retry_delay_s
        self.stats = ConsumerStats()

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set."""
        subscription = await self._bus.js.pull_subscribe_bind(self._durable, stream=self._stream)
        try:
            while not stop.is_set():
                try:
                    messages = await subscription.fetch(self._batch, timeout=self._fetch_timeout_s)
                except TimeoutError:  # nats.errors.TimeoutError, or the bare one fetch() can raise
                    continue
                except NatsError as exc:
                    # The client reconnects on its own; wait instead of spinning.
                    log.warning("bus.fetch_failed", stream=self._stream, error=repr(exc))
                    await asyncio.sleep(self._retry_delay_s / 4)
                    continue
                for msg in messages:
                    await self._settle(msg)
        finally:
            with contextlib.suppress(NatsError):
                await subscription.unsubscribe()

    async def _settle(self, msg: Msg) -> None:
        try:
            message = decode(msg.data, msg.subject)
        except DecodeError as exc:
            self.stats.malformed += 1
            report_malformed(self._stream, exc)
            await msg.term()
            return
        try:
            await self._handler(message, msg)
        except PermanentError as exc:
            self.stats.failed += 1
            log.error("bus.handler_rejected", subject=msg.subject, reason=str(exc))
            await msg.term()
        except Exception:
            self.stats.failed += 1
            HANDLER_FAILURES.labels(self._stream).inc()
            log.exception("bus.handler_failed", subject=msg.subject)
            await msg.nak(delay=self._retry_delay_s)
        else:
            self.stats.handled += 1
            await msg.ack()
