"""One session transcribed by whisper.cpp and faster-whisper at once: both transcripts stored by
the aggregator side by side, on the same speech boundaries (the two batch engines share the
segmented policy, so their segments are the same samples, not merely close ones)."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from capture_audio import packaged
from capture_sim import conversation, stream_source
from nats_server import NatsServer
from speech_corpus import wer
from worker_process import WorkerProcess, require_ct2_model, require_model

from echostream_shared import messages as m, topology as t
from echostream_shared.bus import Bus

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "aggregator"))
from aggregator_process import AggregatorProcess  # noqa: E402

pytestmark = pytest.mark.slow

ENGINES = ("whisper", "fasterwhisper")
SESSION = "two-batch-engines"
SAMPLES = ("quick_brown_fox", "hello_world", "quick_brown_fox")
TOLERANCE_SAMPLES = int(0.1 * m.SAMPLE_RATE)


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
def workers(nats_server: NatsServer, tmp_path: Path) -> Iterator[list[WorkerProcess]]:
    require_model()
    require_ct2_model()
    started = [
        WorkerProcess(nats_server.url, tmp_path / f"{engine}.log", engine=engine).start()
        for engine in ENGINES
    ]
    yield started
    for worker in started:
        worker.kill()


async def test_whisper_cpp_and_faster_whisper_store_one_session_on_the_same_boundaries(
    bus: Bus, aggregator: AggregatorProcess, workers: list[WorkerProcess]
) -> None:
    await t.ensure_topology(bus.js)
    await aggregator.ready()
    samples = [packaged(name) for name in SAMPLES]
    talk = conversation([sample.pcm for sample in samples], gap_s=1.0)
    reference = " ".join(sample.text for sample in samples)

    await stream_source(bus, SESSION, "mic", talk, engines=ENGINES, speed=1.5)
    await bus.publish(
        t.session_events(SESSION), m.SessionClosed(session_id=SESSION, closed_at=time.time())
    )
    session = await aggregator.wait_complete(SESSION, timeout_s=90)

    assert sorted(session["engines"]) == sorted(ENGINES)
    (source,) = session["source_details"]
    assert sorted(source["transcribed_by"]) == sorted(ENGINES)
    views = {engine: await aggregator.engine_view(SESSION, engine) for engine in ENGINES}
    for engine, view in views.items():
        text = " ".join(segment["text"] for segment in view["transcript"])
        assert wer(reference, text) <= 0.2, (engine, text)
        assert len(view["transcript"]) == len(talk.speech), engine
        export = await aggregator.get(f"/v1/sessions/{SESSION}/export.json", engine=engine)
        assert export.status_code == 200 and export.json() == view

    spans = {
        engine: [
            (segment["source_start_sample"], segment["source_end_sample"])
            for segment in view["transcript"]
        ]
        for engine, view in views.items()
    }
    assert spans["whisper"] == spans["fasterwhisper"], "the same segments, sample for sample"
    for (start, end), (speech_start, speech_end) in zip(spans["whisper"], talk.speech, strict=True):
        assert abs(start - speech_start) <= TOLERANCE_SAMPLES
        assert abs(end - speech_end) <= TOLERANCE_SAMPLES
    ids = [{segment["segment_id"] for segment in view["transcript"]} for view in views.values()]
    assert ids[0].isdisjoint(ids[1]), "segment ids name their engine"
    for worker in workers:
        assert worker.stop() == 0
        assert "quick" not in worker.log().lower(), "transcript text leaked into the logs"
