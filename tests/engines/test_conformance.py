"""Every engine keeps the same job contract: the same tests on whisper.cpp, faster-whisper and the
Voxtral worker (on the protocol-faithful fake vLLM), each a real worker process on the shared
``JobWorker`` and a real nats-server, fed real speech (pytest-audioeval's packaged samples).

The contract: partials of a segment come before its one final, finals carry word times inside
their segment, segment ids are derived from (session, source, engine, start), ``source.transcribed``
comes last; a worker killed mid-stream is replaced by another that finishes the source without
finalizing a segment twice; a worker stopped with SIGTERM hands its stream back; malformed audio
messages are skipped and lose nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import bus_reading
import pytest
from capture_audio import packaged
from capture_sim import Conversation, conversation, stream_source
from fake_vllm import FakeVllm, FakeVllmConfig, ScriptedListener
from fake_vllm.harness import VoxtralProcess
from nats_server import NatsServer
from speech_corpus import wer
from worker_process import WorkerProcess, require_ct2_model, require_model

from echostream_shared import messages as m, topology as t
from echostream_shared.bus import Bus
from echostream_shared.ids import segment_id

pytestmark = pytest.mark.slow

ACK_WAIT_S = 3.0
SOURCE = "mic"
SAMPLES = ("quick_brown_fox", "hello_world", "quick_brown_fox")  # worded: Whisper writes digits
VOXTRAL_SCRIPT = ("quick brown fox jumped", "hello there world", "a quick brown fox jumped")
ENGINES = ("whisper", "fasterwhisper", "voxtral")


class Worker(Protocol):
    def kill(self) -> None: ...

    def stop(self, timeout_s: float = ...) -> int: ...

    def log(self) -> str: ...


@dataclass(frozen=True)
class Engine:
    name: str
    start: Callable[[str], Worker]
    expected: str  # what a correct transcript says
    max_wer: float

    def check_text(self, messages: list[m.BusMessage], *, moved: bool = False) -> None:
        """The transcript says what the audio says. The fake vLLM's listener restarts its script
        on every connection, so after a stream moved, each of its finals is some line of it."""
        if moved and self.name == "voxtral":
            assert all(f.text in VOXTRAL_SCRIPT for f in finals(messages)), text_of(messages)
            return
        assert wer(self.expected, text_of(messages)) <= self.max_wer, text_of(messages)


@pytest.fixture(autouse=True)
async def topology(bus: Bus) -> None:
    await t.ensure_topology(bus.js, t.TopologyLimits(job_ack_wait_s=ACK_WAIT_S))


@pytest.fixture
def talk() -> Conversation:
    return conversation([packaged(name).pcm for name in SAMPLES], gap_s=1.0)


@pytest.fixture
async def vllm() -> AsyncIterator[FakeVllm]:
    async with FakeVllm(FakeVllmConfig(listener=ScriptedListener(VOXTRAL_SCRIPT))) as server:
        yield server


@pytest.fixture(params=ENGINES)
def engine(
    request: pytest.FixtureRequest, nats_server: NatsServer, tmp_path: Path
) -> Iterator[Engine]:
    """One engine's workers, started by name; whatever a test leaves running is killed."""
    name: str = request.param
    started: list[Worker] = []
    reference = " ".join(packaged(sample).text for sample in SAMPLES)
    ack_wait = str(ACK_WAIT_S)

    if name == "voxtral":
        vllm: FakeVllm = request.getfixturevalue("vllm")

        def start(worker: str) -> Worker:
            log = tmp_path / f"{worker}.log"
            return VoxtralProcess(nats_server.url, vllm.url, log).start()

        expected, max_wer = " ".join(VOXTRAL_SCRIPT), 0.0
    else:
        require_model() if name == "whisper" else require_ct2_model()

        def start(worker: str) -> Worker:
            log = tmp_path / f"{worker}.log"
            process = WorkerProcess(
                nats_server.url, log, engine=name, ECHOSTREAM_JOB_ACK_WAIT_S=ack_wait
            )
            return process.start()

        expected, max_wer = reference, 0.2

    def tracked(worker: str) -> Worker:
        process = start(worker)
        started.append(process)
        return process

    yield Engine(name, tracked, expected, max_wer)
    for process in started:
        process.kill()


async def transcripts(bus: Bus, engine: Engine, session_id: str) -> list[m.BusMessage]:
    return await bus_reading.read_transcripts(bus, engine.name, session_id, SOURCE, idle_s=1.0)


def finals(messages: list[m.BusMessage]) -> list[m.TranscriptFinal]:
    return [msg for msg in messages if isinstance(msg, m.TranscriptFinal)]


def text_of(messages: list[m.BusMessage]) -> str:
    return " ".join(f.text for f in sorted(finals(messages), key=lambda f: f.start_sample))


async def first_final(bus: Bus, engine: Engine, session_id: str) -> None:
    async def poll() -> None:
        while not finals(await transcripts(bus, engine, session_id)):
            await asyncio.sleep(0.3)

    await asyncio.wait_for(poll(), 60)


async def test_real_speech_gives_partials_then_one_final_per_segment(
    bus: Bus, engine: Engine, talk: Conversation
) -> None:
    worker = engine.start("a")
    garbage = asyncio.create_task(inject_garbage(bus, t.audio("conform", SOURCE)))
    await stream_source(bus, "conform", SOURCE, talk, engines=(engine.name,), speed=1.5)
    await garbage
    await bus_reading.wait_for_jobs_done(bus, 90, poll_s=0.2)
    messages = await transcripts(bus, engine, "conform")
    assert worker.stop() == 0

    *transcript, done = messages
    assert isinstance(done, m.SourceTranscribed), "source.transcribed comes last"
    ended = finals(messages)
    assert done.finals == len(ended) == len(talk.speech) and done.end_sample == len(talk.audio)
    engine.check_text(messages)
    finalized: set[str] = set()
    for msg in transcript:
        assert isinstance(msg, m.TranscriptPartial | m.TranscriptFinal)
        assert msg.engine == engine.name and msg.session_id == "conform"
        assert msg.segment_id == segment_id("conform", SOURCE, engine.name, msg.start_sample)
        assert msg.segment_id not in finalized, "a partial or a second final after the final"
        if isinstance(msg, m.TranscriptFinal):
            finalized.add(msg.segment_id)
    partial_segments = {p.segment_id for p in transcript if isinstance(p, m.TranscriptPartial)}
    assert partial_segments, "no partial while speech went on"
    assert partial_segments <= finalized
    for final, (start, end) in zip(ended, talk.speech, strict=True):
        assert abs(final.start_sample - start) <= 1600 and abs(final.end_sample - end) <= 1600
        starts = [word.start_sample for word in final.words]
        assert final.words and starts == sorted(starts), "word times, in order"
        assert final.start_sample <= starts[0] <= final.words[-1].end_sample <= final.end_sample
    assert '"event": "bus.malformed"' in worker.log()
    assert "quick" not in worker.log().lower(), "transcript text leaked into the logs"


async def test_a_killed_workers_stream_is_finished_by_another_without_a_segment_twice(
    bus: Bus, engine: Engine, talk: Conversation
) -> None:
    first = engine.start("first")
    streaming = asyncio.create_task(
        stream_source(bus, "killed", SOURCE, talk, engines=(engine.name,), speed=1.0)
    )
    await first_final(bus, engine, "killed")
    second = engine.start("second")
    first.kill()
    await streaming
    await bus_reading.wait_for_jobs_done(bus, 90, poll_s=0.2)
    messages = await transcripts(bus, engine, "killed")
    assert second.stop() == 0

    assert '"resumed": true' in second.log()
    ids = [final.segment_id for final in finals(messages)]
    assert len(ids) == len(set(ids)), "a segment was finalized twice"
    assert len(ids) == len(talk.speech)
    assert isinstance(messages[-1], m.SourceTranscribed) and messages[-1].finals == len(ids)
    engine.check_text(messages, moved=True)


async def test_sigterm_hands_the_stream_back_to_another_worker(
    bus: Bus, engine: Engine, talk: Conversation
) -> None:
    first = engine.start("first")
    streaming = asyncio.create_task(
        stream_source(bus, "handback", SOURCE, talk, engines=(engine.name,), speed=1.0)
    )
    await first_final(bus, engine, "handback")
    second = engine.start("second")
    assert await asyncio.to_thread(first.stop, 20) == 0
    await streaming
    await bus_reading.wait_for_jobs_done(bus, 90, poll_s=0.2)
    messages = await transcripts(bus, engine, "handback")
    assert second.stop() == 0

    assert '"job.handed_back"' in first.log()
    assert '"job.failed"' not in first.log() + second.log()
    ids = [final.segment_id for final in finals(messages)]
    assert len(ids) == len(set(ids)) == len(talk.speech)
    assert isinstance(messages[-1], m.SourceTranscribed) and messages[-1].finals == len(ids)
    engine.check_text(messages, moved=True)


async def inject_garbage(bus: Bus, subject: str) -> None:
    for payload in (b"\x00\x01garbage", b"\x81\xa4type\xa4nope", b""):
        await asyncio.sleep(0.7)
        await bus.js.publish(subject, payload)
