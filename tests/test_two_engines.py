"""One session transcribed by both engines at once: the aggregator shows both transcripts.

The same real speech (pytest-audioeval's English samples, with pauses) goes to a whisper worker
with the real model and to a Voxtral worker whose vLLM is the fake with a scripted listener: it
hears ``VOXTRAL_SCRIPT[k]`` in the k-th voiced stretch. Both workers cut their finals at the
capture's speech boundaries, so the two transcripts line up segment by segment.
"""

from __future__ import annotations

import base64
import json
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import numpy as np
import pytest
from capture_audio import Pcm, packaged, silence
from capture_sim import Conversation, conversation, stream_source
from fake_vllm import FakeVllm, FakeVllmConfig, ScriptedListener
from fake_vllm.client import commit, deltas_until_done, recv, update
from fake_vllm.harness import ACK_WAIT_S, VoxtralProcess
from nats_server import NatsServer
from speech_corpus import wer
from websockets.asyncio.client import connect
from worker_process import WorkerProcess, require_model

from echostream_shared import messages as m, topology as t
from echostream_shared.bus import Bus

# The aggregator tests' process helper imports as a top-level module, as in their conftest.
sys.path.insert(0, str(Path(__file__).resolve().parent / "aggregator"))
from aggregator_process import AggregatorProcess  # noqa: E402

ENGINES = ("whisper", "voxtral")
SESSION = "two-engines"
SOURCE = "mic"
# Whisper writes "counting" as digits, so only worded samples are used (as in the capture tests).
SAMPLES = ("quick_brown_fox", "hello_world", "quick_brown_fox")
# What the fake "hears" in each sample. Its wording differs from the reference enough that a
# transcript shown under the wrong engine fails the WER or the exact-text check.
VOXTRAL_SCRIPT = (
    "quick brown fox jumped over lazy dogs",
    "hello there world",
    "a quick brown fox jumped over lazy dogs",
)
BOUNDARY_TOLERANCE_S = 0.1
TOLERANCE_SAMPLES = int(BOUNDARY_TOLERANCE_S * m.SAMPLE_RATE)


def speech_with_pauses() -> tuple[Conversation, list[str]]:
    """The packaged samples with 1 s of silence around each, and their reference texts."""
    samples = [packaged(name) for name in SAMPLES]
    return conversation([s.pcm for s in samples], gap_s=1.0), [s.text for s in samples]


# --- the scripted listener on its own: fast, no workers -------------------------------------


def test_the_listener_hears_the_next_line_at_each_voiced_stretch() -> None:
    talk, _ = speech_with_pauses()
    listening = ScriptedListener(VOXTRAL_SCRIPT).listen()
    heard = [
        (start, listening.hear(talk.audio[start : start + 1280]))
        for start in range(0, len(talk.audio), 1280)
    ]
    onsets = [(start, words) for start, words in heard if words]
    assert [" ".join(words) for _, words in onsets] == list(VOXTRAL_SCRIPT)
    for (onset, _), (speech_start, speech_end) in zip(onsets, talk.speech, strict=True):
        assert speech_start <= onset < speech_end


def test_the_listener_hears_nothing_in_silence_or_beyond_its_script() -> None:
    listening = ScriptedListener(("only line",)).listen()
    burst = (3000 * np.sin(np.arange(4800) / 5.0)).astype(np.int16)
    frames: list[Pcm] = [silence(0.08), burst[:1280], silence(0.5), burst[:1280], silence(0)]
    assert [listening.hear(frame) for frame in frames] == [[], ["only", "line"], [], [], []]


def test_a_pause_shorter_than_min_pause_does_not_start_a_new_stretch() -> None:
    listening = ScriptedListener(("a", "b"), min_pause_s=0.4).listen()
    voiced = np.full(1280, 1000, dtype=np.int16)
    frames = [voiced, silence(0.08), silence(0.08), voiced, silence(0.4), voiced]
    assert [listening.hear(frame) for frame in frames] == [["a"], [], [], [], [], ["b"]]


def test_the_listener_rejects_a_meaningless_setting() -> None:
    with pytest.raises(ValueError, match="positive"):
        ScriptedListener(("a",), voiced_rms=0)


async def test_the_fake_with_a_listener_streams_the_script_for_real_speech() -> None:
    talk, _ = speech_with_pauses()
    async with (
        FakeVllm(FakeVllmConfig(listener=ScriptedListener(VOXTRAL_SCRIPT))) as vllm,
        connect(vllm.url) as ws,
    ):
        assert (await recv(ws))["type"] == "session.created"
        await update(ws)
        await commit(ws)
        data = base64.b64encode(talk.audio.astype("<i2").tobytes()).decode()
        await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": data}))
        await commit(ws, final=True)
        deltas, done = await deltas_until_done(ws)
    assert done["text"] == "".join(deltas) == " " + " ".join(VOXTRAL_SCRIPT)


async def test_the_fake_without_a_listener_hears_no_real_speech() -> None:
    """The default stays the tone-burst voice: real speech is not "understood" by it."""
    talk, _ = speech_with_pauses()
    async with FakeVllm(FakeVllmConfig(script=VOXTRAL_SCRIPT)) as vllm, connect(vllm.url) as ws:
        await recv(ws)
        await update(ws)
        await commit(ws)
        data = base64.b64encode(talk.audio.astype("<i2").tobytes()).decode()
        await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": data}))
        await commit(ws, final=True)
        _, done = await deltas_until_done(ws)
    assert " ".join(VOXTRAL_SCRIPT) not in done["text"]


# --- the whole pipeline --------------------------------------------------------------------


@pytest.fixture
async def vllm() -> AsyncIterator[FakeVllm]:
    async with FakeVllm(FakeVllmConfig(listener=ScriptedListener(VOXTRAL_SCRIPT))) as server:
        yield server


@pytest.fixture
def aggregator(nats_server: NatsServer, tmp_path: Path) -> Iterator[AggregatorProcess]:
    process = AggregatorProcess(
        nats_server.url,
        f"sqlite+aiosqlite:///{tmp_path / 'sessions.db'}",
        tmp_path / "aggregator.log",
    ).start()
    yield process
    process.kill()


@pytest.fixture
def workers(
    nats_server: NatsServer, vllm: FakeVllm, tmp_path: Path
) -> Iterator[tuple[WorkerProcess, VoxtralProcess]]:
    require_model()
    whisper = WorkerProcess(
        nats_server.url, tmp_path / "whisper.log", ECHOSTREAM_JOB_ACK_WAIT_S=str(ACK_WAIT_S)
    ).start()
    voxtral = VoxtralProcess(nats_server.url, vllm.url, tmp_path / "voxtral.log").start()
    yield whisper, voxtral
    whisper.kill()
    voxtral.kill()


@pytest.mark.slow
async def test_a_session_transcribed_by_both_engines_shows_both_transcripts_side_by_side(
    bus: Bus,
    vllm: FakeVllm,
    aggregator: AggregatorProcess,
    workers: tuple[WorkerProcess, VoxtralProcess],
) -> None:
    await t.ensure_topology(bus.js, t.TopologyLimits(job_ack_wait_s=ACK_WAIT_S))
    await aggregator.ready()
    talk, references = speech_with_pauses()

    await stream_source(bus, SESSION, SOURCE, talk, engines=ENGINES, speed=2.0)
    closed = m.SessionClosed(session_id=SESSION, closed_at=time.time())
    await bus.publish(t.session_events(SESSION), closed)
    session = await aggregator.wait_complete(SESSION, timeout_s=30)

    assert sorted(session["engines"]) == sorted(ENGINES)
    (source,) = session["source_details"]
    assert sorted(source["transcribed_by"]) == sorted(ENGINES)
    whisper = await aggregator.engine_view(SESSION, "whisper")
    voxtral = await aggregator.engine_view(SESSION, "voxtral")

    whisper_texts = [segment["text"] for segment in whisper["transcript"]]
    voxtral_texts = [segment["text"] for segment in voxtral["transcript"]]
    assert wer(" ".join(references), " ".join(whisper_texts)) <= 0.2, whisper_texts
    assert wer(" ".join(references), " ".join(VOXTRAL_SCRIPT)) > 0.2, "the script must differ"
    assert voxtral_texts == list(VOXTRAL_SCRIPT)

    assert len(whisper["transcript"]) == len(voxtral["transcript"]) == len(talk.speech)
    for by_whisper, by_voxtral, (start, end) in zip(
        whisper["transcript"], voxtral["transcript"], talk.speech, strict=True
    ):
        pair = (by_whisper, by_voxtral)
        assert abs(by_whisper["start_s"] - by_voxtral["start_s"]) <= BOUNDARY_TOLERANCE_S, pair
        assert abs(by_whisper["end_s"] - by_voxtral["end_s"]) <= BOUNDARY_TOLERANCE_S, pair
        for segment in pair:
            assert abs(segment["source_start_sample"] - start) <= TOLERANCE_SAMPLES, segment
            assert abs(segment["source_end_sample"] - end) <= TOLERANCE_SAMPLES, segment
    whisper_ids = {segment["segment_id"] for segment in whisper["transcript"]}
    assert whisper_ids.isdisjoint(segment["segment_id"] for segment in voxtral["transcript"])

    for engine, view in (("whisper", whisper), ("voxtral", voxtral)):
        export = await aggregator.get(f"/v1/sessions/{SESSION}/export.json", engine=engine)
        assert export.status_code == 200 and export.json() == view
    assert vllm.stats.generations == 1 and vllm.stats.done_requested == 1
    for worker in workers:
        assert worker.stop() == 0
        assert "lazy" not in worker.log(), "transcript text leaked into the logs"
