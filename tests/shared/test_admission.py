"""Admission from measured load, and shedding made visible, on real faster-whisper worker processes.

The lagging worker's lag is made by its audio, not by a slow engine: each chunk says it was
captured ``LATE_S`` before it was published, as audio held up upstream would. What the worker
measures (how far behind real time its streams are) is then the same on any machine.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import bus_reading
import numpy as np
import pytest
from capture_audio import packaged, silence
from capture_sim import (
    Conversation,
    close_source,
    conversation as with_speech,
    open_source,
    stream_source,
)
from nats.aio.msg import Msg
from nats_server import NatsServer, free_port
from waiting import wait_until
from worker_process import WorkerProcess, require_ct2_model

from echostream_shared import messages as m, topology as t
from echostream_shared.bus import Bus
from echostream_shared.codec import decode_as
from echostream_shared.ids import audio_msg_id

pytestmark = pytest.mark.slow

ENGINE = "fasterwhisper"
STATUS = {"ECHOSTREAM_FASTERWHISPER_STATUS_INTERVAL_S": "0.5"}
LATE_S = 1.6
"""Above half the default ``DEGRADE_LAG_S`` (2 s), where partials stop and admission with them."""


def talk(repeats: int) -> Conversation:
    names = ("quick_brown_fox", "counting", "hello_world") * repeats
    return with_speech([packaged(name).pcm for name in names], gap_s=1.0)


class StatusLog:
    """Every WorkerStatus of the engine, in arrival order."""

    def __init__(self) -> None:
        self.reports: list[m.WorkerStatus] = []

    async def start(self, bus: Bus) -> None:
        async def on_status(msg: Msg) -> None:
            self.reports.append(decode_as(msg.data, m.WorkerStatus))

        await bus.nc.subscribe(t.worker_status(ENGINE, "*"), cb=on_status)

    def of(self, worker_id: str) -> list[m.WorkerStatus]:
        return [r for r in self.reports if r.worker_id == worker_id]

    def workers(self) -> list[str]:
        return list(dict.fromkeys(r.worker_id for r in self.reports))

    async def wait_for(
        self, check: Callable[[m.WorkerStatus], bool], timeout_s: float
    ) -> m.WorkerStatus:
        found: list[m.WorkerStatus] = []

        def seen() -> bool:
            found[:] = [r for r in self.reports if check(r)]
            return bool(found)

        await wait_until(seen, timeout_s)
        return found[0]


async def stream_late(bus: Bus, session_id: str, audio: Conversation, late_s: float) -> None:
    """Like ``stream_source`` at real time, but every chunk captured ``late_s`` earlier."""
    await open_source(bus, session_id, "mic", (ENGINE,))
    subject = t.audio(session_id, "mic")
    chunk = 1600
    started = time.monotonic()
    ends = sorted(
        [(end, m.SpeechEnded) for _, end in audio.speech]
        + [(s, m.SpeechStarted) for s, _ in audio.speech]
    )
    for seq, first in enumerate(range(0, len(audio.audio), chunk)):
        await asyncio.sleep(max(0.0, started + first / m.SAMPLE_RATE - time.monotonic()))
        pcm = audio.audio[first : first + chunk]
        captured = time.time() - late_s
        await bus.publish(
            subject,
            m.AudioChunk(
                session_id=session_id,
                source="mic",
                seq=seq,
                first_sample=first,
                pcm=pcm.astype("<i2").tobytes(),
                captured_at=captured,
            ),
            msg_id=audio_msg_id(session_id, "mic", seq),
        )
        while ends and ends[0][0] <= first + len(pcm):
            sample, kind = ends.pop(0)
            await bus.publish(
                subject,
                kind(session_id=session_id, source="mic", sample=sample, detected_at=captured),
            )
    await close_source(bus, session_id, "mic", len(audio.audio))


def prometheus(port: int) -> dict[str, float]:
    """The worker's series by ``name{labels}``."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        body: bytes = response.read()
    series = {}
    for line in body.decode().splitlines():
        if line.startswith("echostream_"):
            name, _, value = line.rpartition(" ")
            series[name] = float(value)
    return series


def health(port: int) -> dict[str, object]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as response:
        found: dict[str, object] = json.loads(response.read())
        return found


def logged(path: Path, event: str) -> list[dict[str, object]]:
    """The worker's JSON log records of ``event``."""
    records = []
    for line in path.read_text().splitlines():
        if line.startswith("{") and f'"{event}"' in line:
            records.append(json.loads(line))
    return [r for r in records if r.get("event") == event]


async def finals_of(bus: Bus, session_id: str) -> list[m.TranscriptFinal]:
    messages = await bus_reading.read_transcripts(bus, ENGINE, session_id, "mic", idle_s=0.5)
    return [msg for msg in messages if isinstance(msg, m.TranscriptFinal)]


async def test_an_idle_worker_with_default_settings_takes_more_than_four_streams(
    bus: Bus, nats_server: NatsServer, tmp_path: Path
) -> None:
    require_ct2_model()
    await t.ensure_topology(bus.js)
    statuses = StatusLog()
    await statuses.start(bus)
    worker = WorkerProcess(
        nats_server.url, tmp_path / "worker.log", engine=ENGINE, **STATUS
    ).start()
    try:
        await statuses.wait_for(lambda r: r.state == "ok", 60)
        audio = talk(repeats=3)  # ~27 s each: all six overlap while admissions settle
        sessions = [f"s{i}" for i in range(6)]
        await asyncio.gather(
            *(
                stream_source(bus, sid, "mic", _delayed(audio, 0.3 * i), engines=(ENGINE,))
                for i, sid in enumerate(sessions)
            )
        )
        await bus_reading.wait_for_jobs_done(bus, 60, poll_s=0.2)
        assert worker.stop() == 0
    finally:
        worker.kill()

    (worker_id,) = statuses.workers()
    held = max(r.active_streams for r in statuses.of(worker_id))
    assert held > 4, f"held at most {held} streams at once"
    (priced,) = logged(tmp_path / "worker.log", "admission.stream_cost")
    assert priced["source"] == "measured", "a stream's cost measured on this machine at start"
    assert 0.01 < float(priced["cpu_per_audio_s"]) < 1.0, priced
    assert all(r.capacity >= 64 for r in statuses.of(worker_id) if r.state != "stopping")
    for sid in sessions:
        assert await finals_of(bus, sid), f"{sid} got no final"


async def test_a_lagging_worker_sheds_partials_visibly_and_leaves_the_next_job_to_another_worker(
    bus: Bus, nats_server: NatsServer, tmp_path: Path
) -> None:
    require_ct2_model()
    await t.ensure_topology(bus.js)
    statuses = StatusLog()
    await statuses.start(bus)
    port = free_port()
    first = WorkerProcess(
        nats_server.url,
        tmp_path / "first.log",
        engine=ENGINE,
        ECHOSTREAM_FASTERWHISPER_WORKER_ID="first",
        ECHOSTREAM_FASTERWHISPER_METRICS_PORT=str(port),
        **STATUS,
    ).start()
    second = WorkerProcess(
        nats_server.url,
        tmp_path / "second.log",
        engine=ENGINE,
        ECHOSTREAM_FASTERWHISPER_WORKER_ID="second",
        ECHOSTREAM_FASTERWHISPER_ADMIT_PRIOR_CPU_PER_AUDIO_S="0.3",
        **STATUS,
    )
    try:
        await statuses.wait_for(lambda r: r.worker_id == "first" and r.state == "ok", 60)
        late = asyncio.create_task(stream_late(bus, "late", talk(repeats=4), LATE_S))
        shedding = await statuses.wait_for(
            lambda r: r.worker_id == "first" and r.shedding and not r.admitting, 30
        )
        assert shedding.active_streams == 1 and shedding.max_lag_s > 1.0
        assert "behind real time" in shedding.detail
        assert shedding.partials_shed > 0 and 0 < shedding.partial_shed_share <= 1
        series = await asyncio.to_thread(prometheus, port)
        assert series['echostream_fasterwhisper_partials_shed_total{reason="lag"}'] > 0
        assert series["echostream_fasterwhisper_shedding"] == 1.0
        assert series["echostream_fasterwhisper_admitting"] == 0.0
        assert (await asyncio.to_thread(health, port))["shedding"] is True

        on_time = asyncio.create_task(
            stream_source(bus, "on-time", "mic", talk(repeats=1), engines=(ENGINE,))
        )
        await asyncio.sleep(4.0)
        assert max(r.active_streams for r in statuses.of("first")) == 1

        second.start()
        # Sooner than the 30 s ack wait: the job waited on the queue, not held by the first worker.
        await statuses.wait_for(lambda r: r.worker_id == "second" and r.active_streams == 1, 25)
        await asyncio.gather(late, on_time)
        await bus_reading.wait_for_jobs_done(bus, 60, poll_s=0.2)
        assert first.stop() == 0 and second.stop() == 0
    finally:
        first.kill()
        second.kill()

    assert max(r.active_streams for r in statuses.of("first")) == 1
    (priced,) = logged(tmp_path / "second.log", "admission.stream_cost")
    assert priced["source"] == "setting" and priced["cpu_per_audio_s"] == 0.3
    late_messages = await bus_reading.read_transcripts(bus, ENGINE, "late", "mic", idle_s=0.5)
    assert [msg for msg in late_messages if isinstance(msg, m.TranscriptFinal)], (
        "finals are never shed"
    )
    assert await finals_of(bus, "on-time")


def _delayed(audio: Conversation, seconds: float) -> Conversation:
    """The same talk after ``seconds`` of silence, so the sessions do not start in lockstep."""
    lead = len(silence(seconds))
    return Conversation(
        np.concatenate([silence(seconds), audio.audio]),
        tuple((start + lead, end + lead) for start, end in audio.speech),
    )
