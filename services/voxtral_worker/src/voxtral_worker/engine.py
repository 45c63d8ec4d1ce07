"""The Voxtral engine of a worker: vLLM servers, and one stream per source on them."""

from __future__ import annotations

from echostream_shared import messages as m
from echostream_shared.jobs.load import PartialTally
from echostream_shared.jobs.stream import EngineStream, TranscriptSink
from echostream_shared.jobs.updates import ResumePoint
from voxtral_worker.config import VoxtralWorkerSettings
from voxtral_worker.servers import ServerPool
from voxtral_worker.stream import StreamOptions, VoxtralStream

ENGINE = "voxtral"


def stream_options(settings: VoxtralWorkerSettings) -> StreamOptions:
    return StreamOptions(
        model=settings.model,
        api_key=settings.api_key.get_secret_value() if settings.api_key else None,
        chunk_samples=settings.chunk_ms * m.SAMPLE_RATE // 1000,
        delay_ms=settings.delay_ms,
        keepalive_s=settings.keepalive_s,
        stall_s=settings.stall_s,
        done_timeout_s=settings.done_timeout_s,
        reconnect_min_s=settings.reconnect_min_s,
        reconnect_max_s=settings.reconnect_max_s,
        reconnect_attempts=settings.reconnect_attempts,
        rollover_tokens=settings.rollover_tokens,
        max_segment_samples=round(settings.max_segment_s * m.SAMPLE_RATE),
        vad_latency_samples=round(settings.vad_latency_s * m.SAMPLE_RATE),
    )


class VoxtralEngine:
    """Implements the job machinery's ``Engine`` for vLLM's realtime endpoint."""

    name = ENGINE

    def __init__(self, settings: VoxtralWorkerSettings) -> None:
        self._pool = ServerPool(settings.vllm_urls, settings.max_streams)
        self._options = stream_options(settings)

    def open_stream(
        self, job: m.TranscriptionJob, resume: ResumePoint | None, sink: TranscriptSink
    ) -> EngineStream:
        return VoxtralStream(resume, sink, self._pool, self._options)

    def capacity(self) -> int:
        return self._pool.capacity()

    def stream_cost(self) -> float | None:
        """The worker relays audio to vLLM: its own CPU per stream is not what limits it."""
        return None

    def condition(self) -> tuple[m.WorkerState, str]:
        return self._pool.condition()

    def partial_tally(self) -> PartialTally:
        """vLLM streams every token: there are no partial decodes to shed."""
        return PartialTally()

    async def start(self) -> None:
        """Nothing to load: each stream connects when it starts."""

    async def aclose(self) -> None:
        """Streams close their own connections."""
