"""Types of the capture test fixtures (in tests/capture/conftest.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from capture.config import CaptureSettings
from capture.service import CaptureService


@dataclass
class RunningCapture:
    service: CaptureService
    settings: CaptureSettings
    stop_event: asyncio.Event
    task: asyncio.Task[None]

    async def stop(self) -> None:
        """Stop the service as SIGTERM would, and wait until it has drained."""
        self.stop_event.set()
        await asyncio.wait_for(self.task, 20)

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.service.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.service.port}"


StartCapture = Callable[..., Awaitable[RunningCapture]]
