"""How far behind the transcription workers are, from their status reports."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import Error as NatsError

from echostream_shared import messages as m, topology as t
from echostream_shared.bus import Bus
from echostream_shared.codec import DecodeError, decode_as

FRESH_S = 20.0
"""A report older than this no longer describes a live worker."""


@dataclass(frozen=True)
class _Report:
    status: m.WorkerStatus
    received: float


class WorkerWatch:
    """Keeps the latest status of every worker of every engine."""

    def __init__(self) -> None:
        self._reports: dict[tuple[str, str], _Report] = {}
        self._subscription: Subscription | None = None

    async def start(self, bus: Bus) -> None:
        self._subscription = await bus.nc.subscribe(t.worker_status("*", "*"), cb=self._on_status)

    async def stop(self) -> None:
        if self._subscription is not None:
            with contextlib.suppress(NatsError):
                await self._subscription.unsubscribe()

    def lag_s(self, engine: str) -> float:
        """The largest lag any live worker of ``engine`` reports."""
        return max((r.max_lag_s for r in self._live(engine)), default=0.0)

    def workers(self, engine: str) -> int:
        """Live workers of ``engine`` that take work."""
        return sum(1 for r in self._live(engine) if r.state in ("ok", "degraded"))

    def real_time_factor(self, engine: str) -> float:
        return max((r.real_time_factor for r in self._live(engine)), default=0.0)

    def _live(self, engine: str) -> list[m.WorkerStatus]:
        now = time.monotonic()
        return [
            r.status
            for (eng, _), r in self._reports.items()
            if eng == engine and now - r.received < FRESH_S and r.status.state != "stopping"
        ]

    async def _on_status(self, msg: Msg) -> None:
        try:
            status = decode_as(msg.data, m.WorkerStatus, msg.subject)
        except DecodeError:
            return
        self._reports[(status.engine, status.worker_id)] = _Report(status, time.monotonic())
