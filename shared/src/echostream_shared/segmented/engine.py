"""A batch engine for the job machinery: one shared transcriber, one segmented stream per source."""

from __future__ import annotations

import weakref

import numpy as np
import numpy.typing as npt
from prometheus_client import REGISTRY, CollectorRegistry, Histogram

from echostream_shared import messages as m
from echostream_shared.jobs.load import PartialTally
from echostream_shared.jobs.metrics import JobMetrics
from echostream_shared.jobs.stream import EngineStream, TranscriptSink
from echostream_shared.jobs.updates import ResumePoint
from echostream_shared.jobs.worker import JobWorker
from echostream_shared.segmented.calibration import reference_cost
from echostream_shared.segmented.decoding import Decoded, ModelTranscriber, Purpose
from echostream_shared.segmented.job_stream import SegmentedJobStream, segmenter_state
from echostream_shared.segmented.policy import SegmentedStream, SegmentPolicy, StreamStats
from echostream_shared.segmented.settings import SegmentedWorkerSettings

DECODE_BUCKETS = (0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4)


def decode_seconds(engine: str, registry: CollectorRegistry = REGISTRY) -> Histogram:
    """``echostream_<engine>_decode_seconds`` by purpose; call once per process and engine."""
    return Histogram(
        f"echostream_{engine}_decode_seconds",
        f"Wall time of one {engine} decode",
        ["purpose"],
        buckets=DECODE_BUCKETS,
        registry=registry,
    )


class TimedTranscriber:
    """Records every decode's wall time in a histogram labelled by purpose."""

    def __init__(self, transcriber: ModelTranscriber, histogram: Histogram) -> None:
        self._transcriber = transcriber
        self._histogram = histogram

    async def transcribe(
        self, audio: npt.NDArray[np.float32], *, purpose: Purpose, prompt: str | None = None
    ) -> Decoded:
        decoded = await self._transcriber.transcribe(audio, purpose=purpose, prompt=prompt)
        if decoded.decode_s > 0:
            self._histogram.labels(purpose).observe(decoded.decode_s)
        return decoded


class SegmentedEngine:
    """Implements the job machinery's ``Engine`` on a transcriber shared by every stream."""

    def __init__(
        self,
        name: str,
        transcriber: ModelTranscriber,
        policy: SegmentPolicy,
        *,
        max_streams: int,
        decode_histogram: Histogram,
        stream_cost_per_reference: float,
    ) -> None:
        self.name = name
        self._transcriber = transcriber
        self._timed = TimedTranscriber(transcriber, decode_histogram)
        self._policy = policy
        self._max_streams = max_streams
        self._streams: weakref.WeakSet[SegmentedStream] = weakref.WeakSet()
        self._retired = PartialTally()
        self._stream_cost_per_reference = stream_cost_per_reference
        self._stream_cost: float | None = None

    def open_stream(
        self, job: m.TranscriptionJob, resume: ResumePoint | None, sink: TranscriptSink
    ) -> EngineStream:
        state = segmenter_state(resume) if resume is not None else None
        stream = SegmentedStream(self._timed, self._policy, state)
        self._streams.add(stream)
        weakref.finalize(stream, self._retire, stream.stats)
        return SegmentedJobStream(stream, sink)

    def capacity(self) -> int:
        return self._max_streams

    def partial_tally(self) -> PartialTally:
        live = [_tally(stream.stats) for stream in list(self._streams)]
        return sum(live, self._retired)

    def _retire(self, stats: StreamStats) -> None:
        self._retired += _tally(stats)

    def condition(self) -> tuple[m.WorkerState, str]:
        return "ok", ""

    def stream_cost(self) -> float | None:
        return self._stream_cost

    async def start(self) -> None:
        await self._transcriber.warm_up()
        per_reference = self._stream_cost_per_reference
        self._stream_cost = per_reference * await reference_cost(self._transcriber)

    async def aclose(self) -> None:
        await self._transcriber.aclose()


def _tally(stats: StreamStats) -> PartialTally:
    return PartialTally(
        stats.partial_decodes, stats.partials_skipped_lag, stats.partials_skipped_budget
    )


def segmented_worker(
    name: str,
    settings: SegmentedWorkerSettings,
    transcriber: ModelTranscriber,
    *,
    decode_histogram: Histogram,
    job_metrics: JobMetrics,
    stream_cost_per_reference: float,
) -> JobWorker:
    """A batch engine's worker ``Service``: it takes ``name`` jobs while its measured load leaves
    room for one more stream, each decoded by the segmented policy on ``transcriber``; until
    streams have shown their cost, one is priced at ``stream_cost_per_reference`` times the
    reference decode's (``calibration``)."""
    engine = SegmentedEngine(
        name,
        transcriber,
        settings.segment_policy(),
        max_streams=settings.max_streams,
        decode_histogram=decode_histogram,
        stream_cost_per_reference=stream_cost_per_reference,
    )
    return JobWorker(engine, settings.worker_options(), job_metrics)
