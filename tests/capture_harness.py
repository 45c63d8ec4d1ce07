"""Types and settings of the capture test fixtures (in tests/capture/conftest.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from fasterwhisper_inprocess import ENGINE

from capture.config import CaptureSettings
from capture.service import CaptureService
from capture.vad import SpeechDetector, VadConfig


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

WORKER_SETTINGS: dict[str, Any] = {"engines": (ENGINE,), "echopanel_engine": ENGINE}
"""Capture settings that send every source to the engine of the ``worker`` fixture."""

WORDED = ("quick_brown_fox", "hello_world", "quick_brown_fox")
"""Packaged samples a transcript can be scored on (Whisper writes ``counting`` as digits)."""

MAX_WER = 0.2
"""Word error rate allowed to tiny.en streaming through capture (as for every engine's tests)."""


def speech_spans(pcm: npt.NDArray[np.int16]) -> list[tuple[float, float]]:
    """Where capture's VAD, with its default settings, puts speech in 16 kHz audio (seconds)."""
    detector = SpeechDetector(VadConfig())
    found = [b.sample / 16_000 for b in detector.push(pcm) + detector.finish(len(pcm))]
    return list(zip(found[::2], found[1::2], strict=True))
