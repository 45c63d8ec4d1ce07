"""The whisper worker: takes jobs while it has capacity, runs them, reports its status."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping

from nats.aio.msg import Msg
from nats.errors import Error as NatsError, TimeoutError as NatsTimeoutError

from echostream_shared import messages as m, topology as t
from echostream_shared.bus import Bus, report_malformed
from echostream_shared.codec import DecodeError, decode_as
from echostream_shared.logging import get_logger
from whisper_worker import metrics
from whisper_worker.checkpoints import ENGINE, CheckpointStore
from whisper_worker.config import WhisperWorkerSettings
from whisper_worker.engine import WhisperEngine
from whisper_worker.source_job import Outcome, SourceJob

log = get_logger("service")


class WhisperWorker:
    """Pulls (session, source) jobs from the whisper work queue, one per free stream slot."""

    name = "whisper-worker"

    def __init__(self, settings: WhisperWorkerSettings, engine: WhisperEngine) -> None:
        self._settings = settings
        self._engine = engine
        self._jobs: dict[asyncio.Task[Outcome], SourceJob] = {}
        self._state: m.WorkerState = "ok"
        self._ack_wait_s = settings.job_ack_wait_s

    def health(self) -> Mapping[str, object]:
        return {
            "status": self._state,
            "worker_id": self._settings.worker_id,
            "active_streams": len(self._jobs),
            "max_lag_s": round(self._max_lag(), 3),
        }

    async def run(self, bus: Bus, stop: asyncio.Event) -> None:
        checkpoints = CheckpointStore(await bus.js.key_value(t.CHECKPOINT_BUCKET))
        await self._engine.warm_up()
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
        queue = await bus.js.pull_subscribe_bind(t.worker_consumer(ENGINE), stream=t.JOB_STREAM)
        # Progress acks must beat the consumer's ack wait, whatever this process was told.
        self._ack_wait_s = (await queue.consumer_info()).config.ack_wait or self._ack_wait_s
        while not stop.is_set():
            if not self._has_capacity():
                await asyncio.sleep(0.2)
                continue
            try:
                msgs = await queue.fetch(1, timeout=1.0)
            except NatsTimeoutError:
                continue
            except NatsError as exc:
                log.warning("jobs.fetch_failed", error=repr(exc))
                await asyncio.sleep(0.5)
                continue
            for msg in msgs:
                await self._start(bus, checkpoints, msg, stop)
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
            ack_wait_s=self._ack_wait_s,
            idle_timeout_s=self._settings.source_idle_timeout_s,
        )
        task = asyncio.create_task(source_job.run(stop))
        self._jobs[task] = source_job
        metrics.ACTIVE_STREAMS.set(len(self._jobs))
        task.add_done_callback(self._job_done)

    def _job_done(self, task: asyncio.Task[Outcome]) -> None:
        source_job = self._jobs.pop(task)
        metrics.ACTIVE_STREAMS.set(len(self._jobs))
        if task.cancelled():
            metrics.JOBS.labels("cancelled").inc()
        elif (error := task.exception()) is not None:
            metrics.JOBS.labels("failed").inc()
            log.error(
                "job.failed",
                session_id=source_job.job.session_id,
                source=source_job.job.source,
                error=repr(error),
            )
        else:
            metrics.JOBS.labels(task.result().value).inc()

    def _has_capacity(self) -> bool:
        return len(self._jobs) < self._settings.max_streams and self._state == "ok"

    def _max_lag(self) -> float:
        return max((job.lag_s for job in self._jobs.values()), default=0.0)

    def _real_time_factor(self) -> float:
        audio = sum(job.audio_s for job in self._jobs.values())
        busy = sum(job.busy_s for job in self._jobs.values())
        return busy / audio if audio else 0.0

    async def _report_status(self, bus: Bus, stop: asyncio.Event) -> None:
        while not stop.is_set():
            lag = self._max_lag()
            self._state = "degraded" if lag > self._settings.degrade_lag_s else "ok"
            metrics.MAX_LAG.set(lag)
            metrics.REAL_TIME_FACTOR.set(self._real_time_factor())
            await self._publish_status(bus)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._settings.status_interval_s)

    async def _publish_status(self, bus: Bus) -> None:
        status = m.WorkerStatus(
            worker_id=self._settings.worker_id,
            engine=ENGINE,
            state=self._state,
            active_streams=len(self._jobs),
            capacity=self._settings.max_streams,
            max_lag_s=self._max_lag(),
            real_time_factor=self._real_time_factor(),
            reported_at=time.time(),
        )
        with contextlib.suppress(NatsError):
            await bus.publish_core(t.worker_status(ENGINE, self._settings.worker_id), status)
