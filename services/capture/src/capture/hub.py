"""What every connection handler shares within one capture process."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from capture.config import CaptureSettings
from capture.ingest import IngestConfig
from capture.limits import ConnectionLimiter
from capture.load import WorkerWatch
from capture.vad import VadConfig
from echostream_shared.bus import Bus


@dataclass
class Hub:
    """The bus, the settings and the process-wide state of the capture service."""

    bus: Bus
    settings: CaptureSettings
    workers: WorkerWatch = field(default_factory=WorkerWatch)
    abort: asyncio.Event = field(default_factory=asyncio.Event)
    background: set[asyncio.Future[None]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.connections = ConnectionLimiter(self.settings.max_connections)
        self.ingest = ingest_config(self.settings)

    def spawn(self, task: asyncio.Future[None]) -> None:
        """Keep a background task until it ends; shutdown waits for it."""
        self.background.add(task)
        task.add_done_callback(self.background.discard)


def ingest_config(settings: CaptureSettings) -> IngestConfig:
    """Chunking, backlog and VAD parameters from the settings."""
    ms = 16  # samples per millisecond at 16 kHz
    return IngestConfig(
        chunk_samples=settings.chunk_samples,
        backlog_max_samples=int(settings.backlog_max_s * 16_000),
        vad=VadConfig(
            threshold=settings.vad_threshold,
            floor_dbfs=settings.vad_floor_dbfs,
            pre_roll=settings.vad_pre_roll_ms * ms,
            post_roll=settings.vad_post_roll_ms * ms,
            min_speech=settings.vad_min_speech_ms * ms,
            min_silence=settings.vad_min_silence_ms * ms,
        ),
    )
