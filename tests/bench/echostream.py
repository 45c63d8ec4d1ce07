"""The system under test: a real ``python -m whisper_worker`` on a real nats-server.

Audio goes in exactly as the capture service publishes it (``capture_sim.stream_source``: paced
at real time, 100 ms chunks stamped with their capture time, speech boundaries 0.3 s late as a
VAD would send them); transcripts, the audio clock and worker status are read back from NATS.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import subprocess
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import nats
from capture_sim import stream_source
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import DeliverPolicy
from nats_server import NatsServer, free_port
from worker_process import WorkerProcess

from bench.system import (
    Clock,
    Emission,
    Meter,
    PassResult,
    ProcessUsage,
    StreamResult,
    StreamSpec,
    TimedWord,
)
from echostream_shared import messages as m, topology as t
from echostream_shared.bus import Bus
from echostream_shared.codec import DecodeError, decode, decode_as

ENGINE = "whisper"
SOURCE = "mic"


class SelfUsage:
    """The bench process itself (it publishes the audio), for the noise accounting."""

    @staticmethod
    def cpu_s() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime


class EchoStreamWhisper:
    """One nats-server and one whisper worker process, started for a scenario."""

    name = "echostream-whisper"

    def __init__(
        self,
        workdir: Path,
        model: Path,
        worker_id: str,
        *,
        env: dict[str, str] | None = None,
        drain_timeout_s: float = 60.0,
    ) -> None:
        self.workdir = workdir
        self.model = model
        self.worker_id = worker_id
        self.env = {
            "ECHOSTREAM_WHISPER_MODEL_PATH": str(model),
            "ECHOSTREAM_WHISPER_WORKER_ID": worker_id,
            "ECHOSTREAM_WHISPER_MAX_STREAMS": "16",
            "ECHOSTREAM_WHISPER_STATUS_INTERVAL_S": "1",
            **(env or {}),
        }
        self.metrics_port = free_port()
        self.env["ECHOSTREAM_WHISPER_METRICS_PORT"] = str(self.metrics_port)
        self.drain_timeout_s = drain_timeout_s
        self.server: NatsServer | None = None
        self.worker: WorkerProcess | None = None
        self._nc: NATS | None = None
        self._bus: Bus | None = None
        self._statuses: list[tuple[float, m.WorkerStatus]] = []

    def describe(self) -> dict[str, object]:
        hidden = ("ECHOSTREAM_WHISPER_MODEL_PATH", "ECHOSTREAM_WHISPER_METRICS_PORT")
        settings = {k: v for k, v in self.env.items() if k not in hidden}
        return {"system": self.name, "model": str(self.model), "worker_env": settings}

    @property
    def bus(self) -> Bus:
        if self._bus is None:
            raise RuntimeError("the system is not started")
        return self._bus

    async def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.server = NatsServer(self.workdir / "jetstream")
        await asyncio.to_thread(self.server.start)
        self._nc = await nats.connect(self.server.url, max_reconnect_attempts=-1)
        self._bus = Bus(self._nc, self._nc.jetstream())
        await t.ensure_topology(self._bus.js)
        await self._nc.subscribe(t.worker_status(ENGINE, "*"), cb=self._on_status)
        self.worker = WorkerProcess(
            self.server.url, self.workdir / f"{self.worker_id}.log", **self.env
        ).start()
        await self._wait_ready()

    async def _on_status(self, msg: Msg) -> None:
        with contextlib.suppress(DecodeError):
            status = decode_as(msg.data, m.WorkerStatus, msg.subject)
            if status.worker_id == self.worker_id:
                self._statuses.append((time.time(), status))

    async def _wait_ready(self, timeout_s: float = 120.0) -> None:
        """The worker publishes its first status once its models are loaded."""
        deadline = time.monotonic() + timeout_s
        while not self._statuses:
            process = self._process()
            if process.poll() is not None:
                raise RuntimeError(
                    f"the worker exited with {process.returncode}: {self._log_tail()}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(f"the worker did not report within {timeout_s} s")
            await asyncio.sleep(0.1)

    async def wait_idle(self, timeout_s: float = 30.0) -> None:
        """Until the worker reports no streams and state ``ok`` (between passes)."""
        since = time.time()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            recent = [s for at, s in self._statuses if at > since]
            if recent and recent[-1].active_streams == 0 and recent[-1].state == "ok":
                return
            await asyncio.sleep(0.2)

    def _process(self) -> subprocess.Popen[bytes]:
        if self.worker is None or self.worker.process is None:
            raise RuntimeError("the worker is not started")
        return self.worker.process

    def _log_tail(self) -> str:
        return self.worker.log()[-2000:] if self.worker is not None else ""

    def pids(self) -> dict[str, int]:
        server = self.server._process if self.server is not None else None  # noqa: SLF001
        found = {"whisper-worker": self._process().pid}
        if server is not None:
            found["nats-server"] = server.pid
        return found

    async def idle_cpu_per_s(self, seconds: float = 3.0) -> float:
        """The worker's CPU use while it holds no stream (event loop, status reports)."""
        meter = Meter({"w": self._process().pid})
        meter.start()
        await asyncio.sleep(seconds)
        usage, _, wall, _ = meter.stop()
        return usage[0].cpu_s / wall

    async def run(self, specs: Sequence[StreamSpec]) -> PassResult:
        bus = self.bus
        meter = Meter(self.pids())
        counters0 = await asyncio.to_thread(self._scrape)
        self_cpu0 = SelfUsage.cpu_s()
        started = time.time()
        meter.start()
        await asyncio.gather(*(self._play(bus, spec) for spec in specs))
        longest = max(spec.session.duration_s for spec in specs)
        drained = await self._drain(bus, self.drain_timeout_s + 0.5 * longest)
        usage, busy, wall, load = meter.stop()
        bench_cpu = SelfUsage.cpu_s() - self_cpu0
        counters = await asyncio.to_thread(self._scrape)
        deltas = {k: v - counters0.get(k, 0.0) for k, v in counters.items()}
        streams = [
            StreamResult(spec, *await _read_back(bus, spec.stream_id), closed=drained)
            for spec in specs
        ]
        statuses = [_status_row(at, status) for at, status in self._statuses if at >= started - 0.5]
        result = PassResult(self.name, streams, wall, usage, busy, load, statuses, drained, deltas)
        result.usage.append(_bench_usage(bench_cpu))
        return result

    def _scrape(self) -> dict[str, float]:
        """The worker's Prometheus counters and histogram sums (``name{labels}`` -> value)."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                text = response.read().decode()
        except OSError:
            return {}
        return worker_counters(text)

    async def _play(self, bus: Bus, spec: StreamSpec) -> None:
        await asyncio.sleep(spec.start_delay_s)
        await stream_source(bus, spec.stream_id, SOURCE, spec.session.conversation())

    async def _drain(self, bus: Bus, timeout_s: float) -> bool:
        """True once every job was acked (the worker acks a job when its source closed)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if (await bus.js.stream_info(t.JOB_STREAM)).state.messages == 0:
                return True
            if self._process().poll() is not None:
                return False
            await asyncio.sleep(0.1)
        return False

    async def stop(self) -> None:
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await self._nc.drain()
            self._nc = None
        if self.worker is not None and self.worker.process is not None:
            if self.worker.process.poll() is None:
                await asyncio.to_thread(self.worker.stop, 60)
            self.worker = None
        if self.server is not None:
            await asyncio.to_thread(self.server.stop)
            self.server = None


def worker_counters(exposition: str) -> dict[str, float]:
    """Counters and histogram counts/sums of a Prometheus text exposition, by ``name{labels}``."""
    found = {}
    for line in exposition.splitlines():
        if line.startswith("echostream_whisper_"):
            name, _, value = line.rpartition(" ")
            # a labelled series ends in "}": the suffix to match is on the name before the labels
            if name.partition("{")[0].endswith(("_count", "_sum", "_total")):
                found[name] = float(value)
    return found


def _status_row(at: float, status: m.WorkerStatus) -> dict[str, float | int | str]:
    return {
        "received_at": at,
        "state": status.state,
        "active_streams": status.active_streams,
        "max_lag_s": status.max_lag_s,
        "real_time_factor": status.real_time_factor,
    }


def _bench_usage(cpu_s: float) -> ProcessUsage:
    return ProcessUsage("bench (publisher)", os.getpid(), cpu_s)


async def _read_back(bus: Bus, session_id: str) -> tuple[Clock, list[Emission]]:
    """The audio clock and the transcripts of one source, from JetStream."""
    chunks = [
        (message.first_sample, message.captured_at)
        for message in await _read_all(bus, t.AUDIO_STREAM, t.audio(session_id, SOURCE))
        if isinstance(message, m.AudioChunk)
    ]
    subject = t.transcript(ENGINE, session_id, SOURCE)
    emissions = [
        emission
        for message in await _read_all(bus, t.TRANSCRIPT_STREAM, subject)
        if (emission := _emission(message)) is not None
    ]
    return Clock(chunks), emissions


async def _read_all(bus: Bus, stream: str, subject: str) -> list[m.BusMessage]:
    """Every message stored on one subject, in order."""
    info = await bus.js.stream_info(stream, subjects_filter=subject)
    count = (info.state.subjects or {}).get(subject, 0)
    found: list[m.BusMessage] = []
    if not count:
        return found
    subscription = await bus.js.subscribe(
        subject, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL
    )
    try:
        for _ in range(count):
            msg = await subscription.next_msg(timeout=10.0)
            with contextlib.suppress(DecodeError):
                found.append(decode(msg.data, msg.subject))
    finally:
        await subscription.unsubscribe()
    return found


def _emission(message: m.BusMessage) -> Emission | None:
    if isinstance(message, m.TranscriptPartial):
        return Emission(
            "partial",
            message.segment_id,
            message.start_sample,
            message.end_sample,
            message.text,
            message.emitted_at,
            message.revision,
        )
    if isinstance(message, m.TranscriptFinal):
        words = tuple(TimedWord(w.text, w.start_sample, w.end_sample) for w in message.words)
        return Emission(
            "final",
            message.segment_id,
            message.start_sample,
            message.end_sample,
            message.text,
            message.emitted_at,
            words=words,
        )
    return None
