"""A service for runtime tests: acks each session event after a pause."""

from __future__ import annotations

import asyncio
import sys

from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig

from echostream_shared import topology as t
from echostream_shared.bus import Bus, PullConsumer
from echostream_shared.config import ServiceSettings
from echostream_shared.logging import configure_logging, get_logger
from echostream_shared.messages import BusMessage
from echostream_shared.runtime import run_service

DURABLE = "slow-service"
log = get_logger("slow")


class SlowService:
    name = "slow-service"

    def __init__(self, pause_s: float) -> None:
        self._pause_s = pause_s

    def health(self) -> dict[str, object]:
        return {"status": "ok"}

    async def run(self, bus: Bus, stop: asyncio.Event) -> None:
        await bus.js.add_consumer(t.SESSION_STREAM, ConsumerConfig(durable_name=DURABLE))
        consumer = PullConsumer(bus, t.SESSION_STREAM, DURABLE, self._handle, batch=1)
        await consumer.run(stop)

    async def _handle(self, message: BusMessage, _msg: Msg) -> None:
        log.info("slow.handling", type=message.type)
        await asyncio.sleep(self._pause_s)


if __name__ == "__main__":
    settings = ServiceSettings()
    configure_logging("slow-service", settings.log_level, settings.log_format)
    sys.exit(run_service(SlowService(float(sys.argv[1])), settings))
