"""Everything sent on one WebSocket goes through one writer task, in order."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from starlette.websockets import WebSocket

from echostream_shared.tasks import cancel_and_wait

MAX_PENDING = 1000
"""Past this many unsent messages, droppable ones (partials, metrics) are dropped."""


class Outbox:
    """A queue of JSON messages and the task that writes them to the socket."""

    def __init__(self, ws: WebSocket, envelope: dict[str, Any] | None = None) -> None:
        self._ws = ws
        self._queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.envelope: dict[str, Any] = envelope or {}
        self.broken = False
        self.dropped = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._write(), name="outbox")

    def send(self, message: dict[str, Any], *, droppable: bool = False) -> None:
        """Queue a message; the envelope's keys are added where the message lacks them."""
        if self.broken:
            return
        if droppable and self._queue.qsize() >= MAX_PENDING:
            self.dropped += 1
            return
        self._queue.put_nowait(
            {**message, **{k: v for k, v in self.envelope.items() if k not in message}}
        )

    async def drain(self, timeout_s: float) -> None:
        """Send what is queued (within ``timeout_s``) and stop the writer."""
        if self._task is None:
            return
        self._queue.put_nowait(None)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._task), timeout_s)
        await self.stop()

    async def stop(self) -> None:
        """Cancel the writer and wait for it; a cancellation of the caller itself propagates."""
        if self._task is not None:
            await cancel_and_wait(self._task)

    async def _write(self) -> None:
        while (message := await self._queue.get()) is not None:
            try:
                await self._ws.send_text(json.dumps(message, separators=(",", ":")))
            except Exception:
                # The client went away; the receive loop notices and ends the connection.
                self.broken = True
                return
