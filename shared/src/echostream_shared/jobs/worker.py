"""The job loop of an engine worker: take jobs while the measured load leaves room, run them,
report status."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Protocol

from nats.aio.msg import Msg
from nats.errors import Error as NatsError

from echostream_shared import messages as m, topology as t
from echostream_shared.bus import Bus, report_malformed
from echostream_shared.codec import DecodeError, decode_as
from echostream_shared.jobs.admission import Admission, AdmissionOptions, Decision
from echostream_shared.jobs.checkpoints import CheckpointStore
from echostream_shared.jobs.load import LagHistory, LoadMeter, PartialTally, usable_cores
from echostream_shared.jobs.metrics import JobMetrics
from echostream_shared.jobs.source_job import Outcome, SourceJob
from echostream_shared.jobs.stream import EngineStream, TranscriptSink
from echostream_shared.jobs.updates import ResumePoint
from echostream_shared.logging import get_logger
from echostream_shared.topology import TopologyLimits

log = get_logger("worker")
FETCH_WAIT_S = 0.3  # a pull waits this long for a job; a stop is seen within it
FALLBACK_STREAM_COST = 0.25  # whisper.cpp's streaming on tiny.en (0.18) with a margin


class Engine(Protocol):
    """What a worker needs from its engine besides streams."""

    name: str
    """The engine token (``whisper``, ``fasterwhisper``, ``voxtral``): subjects, ids, metrics."""

    def open_stream(
        self, job: m.TranscriptionJob, resume: ResumePoint | None, sink: TranscriptSink
    ) -> EngineStream:
        """A stream for the job, fresh or resumed; see ``source_job.StreamFactory``."""
        ...

    def capacity(self) -> int:
        """Most streams this worker may hold at once; below it, admission follows measured load."""
        ...

    def partial_tally(self) -> PartialTally:
        """Partials decoded and shed by every stream since the engine started."""
        ...

    def condition(self) -> tuple[m.WorkerState, str]:
        """The engine's own health (``ok``, ``degraded`` or ``error``) and why."""
        ...

    async def start(self) -> None:
        """Get ready before the first job (load a model, check a server)."""
        ...

    def stream_cost(self) -> float | None:
        """CPU-s per audio second this process is expected to spend on one more real-time stream
        (measured by ``start``), until streams have shown it; None: unknown here."""
        ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True)
class WorkerOptions:
    """How the job loop runs; ``WorkerSettings.worker_options()`` builds it from the environment."""

    worker_id: str
    status_interval_s: float = 5.0
    degrade_lag_s: float = 2.0
    """Above this lag the worker reports degraded; it stops admitting at half of it, where batch
    engines start shedding partials."""
    admit_cpu_share: float = 0.75
    admit_settle_s: float = 0.3
    admit_prior_cpu_per_audio_s: float | None = None
    """A stream's cost (CPU-s per audio-s) until the worker has measured it; None: the engine's
    estimate for this machine (``Engine.stream_cost``), else ``FALLBACK_STREAM_COST``."""
    hand_back_lag_s: float = 0.0
    """When a stream stays this far behind all through the lag window and others share the
    worker, the newest job goes back to the queue (one per window); 0: never."""
    load_window_s: float = 10.0
    source_idle_timeout_s: float = 300.0
    limits: TopologyLimits = field(default_factory=TopologyLimits)
    """The work-queue consumer the worker creates (ack wait, redeliveries, replicas)."""


class JobWorker:
    """A ``Service`` that pulls an engine's jobs while its measured load leaves room (see
    ``admission``), up to the engine's stream cap."""

    def __init__(self, engine: Engine, options: WorkerOptions, metrics: JobMetrics) -> None:
        self.name = f"{engine.name}-worker"
        self._engine = engine
        self._options = options
        self._metrics = metrics
        self._jobs: dict[asyncio.Task[Outcome], SourceJob] = {}
        self._state: m.WorkerState = "ok"
        self._detail = ""
        self._ack_wait_s = options.limits.job_ack_wait_s
        self._meter = LoadMeter(options.load_window_s)
        self._lags = LagHistory()
        self._admission = Admission(
            AdmissionOptions(
                admit_lag_s=options.degrade_lag_s / 2,
                cpu_share=options.admit_cpu_share,
                settle_s=options.admit_settle_s,
                young_s=options.load_window_s,
                prior_cpu_per_audio_s=options.admit_prior_cpu_per_audio_s or FALLBACK_STREAM_COST,
            ),
            usable_cores(),
        )
        self._decision = Decision(True)
        self._audio_done_s = 0.0
        self._partials_counted = PartialTally()
        self._released_at = -math.inf

    @property
    def state(self) -> m.WorkerState:
        return self._state

    def health(self) -> Mapping[str, object]:
        return {
            "status": self._state,
            "worker_id": self._options.worker_id,
            "engine": self._engine.name,
            "active_streams": len(self._jobs),
            "capacity": self._engine.capacity(),
            "max_lag_s": round(self._max_lag(), 3),
            "admitting": self._decision.admit,
            "shedding": self._shedding(),
            "cpu_cores": round(self._meter.cpu_rate(), 3),
            "cpu_wait_cores": round(self._meter.wait_rate(), 3),
            "detail": self._detail,
        }

    async def run(self, bus: Bus, stop: asyncio.Event) -> None:
        checkpoints = CheckpointStore(
            await bus.js.key_value(t.CHECKPOINT_BUCKET), self._engine.name
        )
        await self._engine.start()
        self._price_streams()
        status = asyncio.create_task(self._report_status(bus, stop))
        try:
            await self._take_jobs(bus, checkpoints, stop)
        finally:
            if self._jobs:
                await asyncio.wait(self._jobs.keys())
            self._state = "stopping"
            await self._publish_status(bus)
            status.cancel()
            await self._engine.aclose()

    async def _take_jobs(self, bus: Bus, checkpoints: CheckpointStore, stop: asyncio.Event) -> None:
        await t.ensure_worker_consumer(bus.js, self._engine.name, self._options.limits)
        queue = await bus.js.pull_subscribe_bind(
            t.worker_consumer(self._engine.name), stream=t.JOB_STREAM
        )
        # Progress acks must beat the consumer's ack wait, whatever this process was told.
        self._ack_wait_s = (await queue.consumer_info()).config.ack_wait or self._ack_wait_s
        while not stop.is_set():
            if not self._has_capacity():
                await asyncio.sleep(0.2)
                continue
            try:
                msgs = await queue.fetch(1, timeout=FETCH_WAIT_S)
            except TimeoutError:
                continue
            except NatsError as exc:
                log.warning("jobs.fetch_failed", error=repr(exc))
                await asyncio.sleep(0.5)
                continue
            for msg in msgs:
                if not self._has_capacity():
                    # The load changed while the fetch waited: the job stays for another worker.
                    with contextlib.suppress(NatsError):
                        await msg.nak()
                    continue
                log.info(
                    "job.admitted",
                    streams=len(self._jobs) + 1,
                    behind_s=round(self._lags.behind_s(), 2),
                    predicted_cpu=round(self._decision.predicted_cpu, 2),
                    cpu_wait=round(self._meter.wait_rate(), 2),
                )
                await self._start(bus, checkpoints, msg, stop)
                self._admission.admitted(time.monotonic())
        with contextlib.suppress(NatsError):
            await queue.unsubscribe()

    async def _start(
        self, bus: Bus, checkpoints: CheckpointStore, msg: Msg, stop: asyncio.Event
    ) -> None:
        try:
            job = decode_as(msg.data, m.TranscriptionJob, msg.subject)
        except DecodeError as exc:
            report_malformed(t.JOB_STREAM, exc)
            await msg.term()
            return
        if stop.is_set():
            await msg.nak()
            return
        source_job = SourceJob(
            bus,
            job,
            msg,
            checkpoints,
            self._engine.open_stream,
            self._metrics,
            ack_wait_s=self._ack_wait_s,
            idle_timeout_s=self._options.source_idle_timeout_s,
            max_deliveries=self._options.limits.job_max_deliver,
        )
        task = asyncio.create_task(source_job.run(stop))
        self._jobs[task] = source_job
        self._metrics.active_streams.set(len(self._jobs))
        task.add_done_callback(self._job_done)

    def _job_done(self, task: asyncio.Task[Outcome]) -> None:
        source_job = self._jobs.pop(task)
        self._lags.forget(source_job)
        self._audio_done_s += source_job.audio_s
        self._metrics.active_streams.set(len(self._jobs))
        if task.cancelled():
            self._metrics.jobs.labels("cancelled").inc()
        elif (error := task.exception()) is not None:
            # The bus failed under the job: it is redelivered once the ack wait passes.
            self._metrics.jobs.labels("interrupted").inc()
            log.error(
                "job.interrupted",
                session_id=source_job.job.session_id,
                source=source_job.job.source,
                error=repr(error),
            )
        else:
            self._metrics.jobs.labels(task.result().value).inc()

    def _has_capacity(self) -> bool:
        self._refresh_state()
        return self._state != "error" and self._decision.admit

    def _refresh_state(self) -> None:
        self._measure()
        condition, detail = self._engine.condition()
        if condition != "ok":
            self._state, self._detail = condition, detail
        elif self._max_lag() > self._options.degrade_lag_s:
            self._state, self._detail = "degraded", "behind real time"
        else:
            self._state, self._detail = "ok", ""
        if not self._decision.admit:
            self._detail = "; ".join(filter(None, [self._detail, self._decision.reason]))
        self._metrics.admitting.set(1 if self._admitting() else 0)

    def _admitting(self) -> bool:
        return self._state != "error" and self._decision.admit

    def _measure(self) -> None:
        now = time.monotonic()
        audio_s = self._audio_done_s + sum(job.audio_s for job in self._jobs.values())
        self._meter.record(audio_s, self._engine.partial_tally())
        for job in self._jobs.values():
            self._lags.record(job, now, job.lag_s)
        behind_s = self._lags.behind_s()
        self._decision = self._admission.decide(
            streams=len(self._jobs),
            cap=self._engine.capacity(),
            behind_s=behind_s,
            meter=self._meter,
            now=now,
        )
        self._shed_a_job(behind_s, now)

    def _price_streams(self) -> None:
        """What a stream costs until streams have shown it: given, or the engine's estimate."""
        prior = self._options.admit_prior_cpu_per_audio_s
        source = "setting"
        if prior is None:
            prior, source = self._engine.stream_cost(), "measured"
        if prior is None:
            prior, source = FALLBACK_STREAM_COST, "default"
        self._admission.options = replace(self._admission.options, prior_cpu_per_audio_s=prior)
        log.info("admission.stream_cost", cpu_per_audio_s=round(prior, 4), source=source)

    def _shed_a_job(self, behind_s: float, now: float) -> None:
        """Give the newest job back when the streams fall behind for good, so the others' finals
        stop slipping and it waits on the queue for a worker with room."""
        limit = self._options.hand_back_lag_s
        held = [job for job in self._jobs.values() if not job.released]
        if not limit or behind_s <= limit or len(held) < 2:
            return
        if now - self._released_at < self._lags.window_s:
            return
        self._released_at = now
        newest = held[-1]
        log.warning(
            "job.released",
            session_id=newest.job.session_id,
            source=newest.job.source,
            behind_s=round(behind_s, 2),
            streams=len(held),
        )
        newest.release()

    def _shedding(self) -> bool:
        return self._meter.partials().shed_lag > 0

    def _count_shed_partials(self) -> None:
        total = self._meter.partials_total()
        new = total - self._partials_counted
        self._partials_counted = total
        self._metrics.partials_shed.labels("lag").inc(max(0, new.shed_lag))
        self._metrics.partials_shed.labels("budget").inc(max(0, new.shed_budget))

    def _max_lag(self) -> float:
        return max((job.lag_s for job in self._jobs.values()), default=0.0)

    def _real_time_factor(self) -> float:
        audio = sum(job.audio_s for job in self._jobs.values())
        busy = sum(job.busy_s for job in self._jobs.values())
        return busy / audio if audio else 0.0

    async def _report_status(self, bus: Bus, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self._refresh_state()
            self._metrics.max_lag.set(self._max_lag())
            self._metrics.real_time_factor.set(self._real_time_factor())
            self._metrics.shedding.set(1 if self._shedding() else 0)
            self._metrics.cpu_cores.set(self._meter.cpu_rate())
            self._metrics.cpu_wait_cores.set(self._meter.wait_rate())
            self._count_shed_partials()
            await self._publish_status(bus)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._options.status_interval_s)

    async def _publish_status(self, bus: Bus) -> None:
        recent = self._meter.partials()
        status = m.WorkerStatus(
            worker_id=self._options.worker_id,
            engine=self._engine.name,
            state=self._state,
            active_streams=len(self._jobs),
            capacity=self._engine.capacity(),
            max_lag_s=self._max_lag(),
            real_time_factor=self._real_time_factor(),
            admitting=self._admitting(),
            shedding=self._shedding(),
            partials_shed=self._meter.partials_total().shed_lag,
            partial_shed_share=_share(recent.shed_lag, recent.due),
            cpu_cores=self._meter.cpu_rate(),
            cpu_wait_cores=self._meter.wait_rate(),
            cpu_cores_usable=self._admission.cores,
            load_window_s=self._meter.span_s,
            detail=self._detail[:500],
            reported_at=time.time(),
        )
        with contextlib.suppress(NatsError):
            await bus.publish_core(
                t.worker_status(self._engine.name, self._options.worker_id), status
            )


def _share(part: int, whole: int) -> float:
    return min(1.0, part / whole) if whole > 0 else 0.0
