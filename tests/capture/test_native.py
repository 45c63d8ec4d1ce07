"""The native protocol (``/v1/stream``) against the bus, a real faster-whisper worker behind it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from bus_reading import BusRecorder, read_subject
from capture_audio import conversation, convert, packaged
from capture_harness import MAX_WER, WORDED, RunningCapture, speech_spans
from fasterwhisper_inprocess import ENGINE
from native_client import NativeClient
from speech_corpus import wer

from echostream_shared import messages as m, topology as t
from echostream_shared.bus import Bus

RATE = 16_000


def spoken(finals: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Finals with words: an empty final only withdraws a partial of audio that held none (the
    worker may see the pre-roll before the VAD's speech start)."""
    return [f for f in finals if f["text"]]


def text_of(finals: list[dict[str, Any]]) -> str:
    return " ".join(str(f["text"]) for f in spoken(finals))


async def test_a_session_streams_and_ends_with_everything_transcribed(
    capture_with_worker: RunningCapture, recorder: BusRecorder
) -> None:
    capture = capture_with_worker
    speech = conversation(names=WORDED)
    async with NativeClient(capture.ws) as client:
        ready = await client.start(sources=["mic"])
        assert ready["type"] == "ready" and ready["engine"] == ENGINE
        assert ready["sources"] == [
            {
                "index": 0,
                "name": "mic",
                "sample_rate": 16000,
                "channels": 1,
                "encoding": "pcm_s16le",
            }
        ]
        await client.stream(0, speech.pcm.tobytes(), frame_bytes=3200)
        done = await client.finish()
    assert done["complete"] is True
    assert done["sources"]["mic"]["end_sample"] == len(speech.pcm)
    assert client.messages[-1] == done and client.close_code == 1000
    finals = client.of_type("final")
    assert wer(speech.text, text_of(finals)) <= MAX_WER, text_of(finals)
    assert len(spoken(finals)) >= 3, "a final or more per utterance"
    for final, sent in zip(finals, recorder.finals, strict=True):
        assert final["segment_id"] == sent.segment_id and final["text"] == sent.text.strip()
        assert final["start"] == round(sent.start_sample / RATE, 3)
        assert final["end_sample"] == sent.end_sample
    partials = client.of_type("partial")
    assert partials and all(p["segment_id"] in {f["segment_id"] for f in finals} for p in partials)
    last_final = max(i for i, msg in enumerate(client.messages) if msg["type"] == "final")
    assert all(msg["type"] != "partial" for msg in client.messages[last_final:])


@pytest.mark.parametrize(
    ("rate", "channels", "encoding"),
    [(8000, 1, "pcm_s16le"), (44100, 2, "pcm_f32le"), (48000, 2, "pcm_s16le")],
)
async def test_any_common_format_lands_on_the_bus_as_16khz_mono(
    capture_with_worker: RunningCapture,
    recorder: BusRecorder,
    rate: int,
    channels: int,
    encoding: str,
) -> None:
    capture = capture_with_worker
    speech = conversation(names=WORDED)
    data = convert(speech.pcm, rate, channels, encoding)
    frame_bytes = (rate // 50) * channels * (4 if encoding == "pcm_f32le" else 2)
    async with NativeClient(capture.ws) as client:
        await client.start(sources=["s"], sample_rate=rate, channels=channels, encoding=encoding)
        await client.stream(0, data, frame_bytes=frame_bytes)
        done = await client.finish()
    assert done["complete"] is True
    assert abs(done["sources"]["s"]["end_sample"] - len(speech.pcm)) <= 16
    # The same speech boundaries as the 16 kHz original: the resampled audio is aligned.
    spans = recorder.speech(done["session_id"], "s")
    assert len(spans) == len(reference := speech_spans(speech.pcm)) == 3
    for (start, end), (want_start, want_end) in zip(spans, reference, strict=True):
        assert abs(start / RATE - want_start) <= 0.064 and abs(end / RATE - want_end) <= 0.064
    assert wer(speech.text, text_of(client.of_type("final"))) <= MAX_WER


async def test_sources_with_their_own_formats_and_a_source_ended_early(
    capture_with_worker: RunningCapture,
) -> None:
    capture = capture_with_worker
    fox, fox_again = packaged("quick_brown_fox"), conversation(names=("quick_brown_fox",))
    async with NativeClient(capture.ws) as client:
        await client.start(
            sources=[{"name": "a", "sample_rate": 48000, "encoding": "pcm_f32le"}, "b"],
            sample_rate=16000,
        )
        await client.stream(0, convert(fox.pcm, 48000, 1, "pcm_f32le"), frame_bytes=7680)
        await client.send({"type": "end", "source": "a"})
        ended = await client.wait_for(lambda msg: msg["type"] == "source_ended")
        assert ended["source"] == "a" and ended["complete"] is True
        await client.stream(1, fox_again.pcm.tobytes(), frame_bytes=640)
        done = await client.finish()
    assert set(done["sources"]) == {"a", "b"} and done["complete"]
    finals = client.of_type("final")
    for source, speech in (("a", fox), ("b", fox_again)):
        mine = text_of([f for f in finals if f["source"] == source])
        assert wer(speech.text, mine) <= MAX_WER, (source, mine)


async def test_ping_and_no_partials_when_declined(capture_with_worker: RunningCapture) -> None:
    speech = conversation(names=("quick_brown_fox",))
    async with NativeClient(capture_with_worker.ws) as client:
        await client.start(partials=False)
        await client.send({"type": "ping", "id": 7})
        assert (await client.wait_for(lambda msg: msg["type"] == "pong"))["id"] == 7
        await client.stream(0, speech.pcm.tobytes(), 3200)
        await client.finish()
    assert not client.of_type("partial")
    assert wer(speech.text, text_of(client.of_type("final"))) <= MAX_WER


async def test_backpressure_is_reported_when_workers_fall_behind(
    capture: RunningCapture, bus: Bus
) -> None:
    status = m.WorkerStatus(
        worker_id="w1",
        engine="whisper",
        state="degraded",
        active_streams=4,
        capacity=4,
        max_lag_s=6.5,
        reported_at=1.0,
    )
    async with NativeClient(capture.ws) as client:
        await client.start()
        await bus.publish_core(t.worker_status("whisper", "w1"), status)
        notice = await client.wait_for(lambda msg: msg["type"] == "backpressure", 5)
    assert notice == {"type": "backpressure", "reason": "workers", "source": None, "lag_s": 6.5}


async def test_many_concurrent_sessions_on_one_process(
    capture_with_worker: RunningCapture,
) -> None:
    speech = conversation(names=("hello_world",), gap_s=0.6)

    async def one() -> dict[str, object]:
        async with NativeClient(capture_with_worker.ws) as client:
            await client.start()
            await client.stream(0, speech.pcm.tobytes(), frame_bytes=3200)
            done = await client.finish()
            said = text_of(client.of_type("final"))
            assert wer(speech.text, said) <= MAX_WER, said
            return done

    results = await asyncio.gather(*(one() for _ in range(24)))
    assert all(done["complete"] for done in results)
    assert len({done["session_id"] for done in results}) == 24


async def test_a_shutdown_ends_live_sessions_with_their_audio_published(
    capture_with_worker: RunningCapture, bus: Bus
) -> None:
    capture = capture_with_worker
    speech = conversation(names=("quick_brown_fox",), gap_s=0.6).pcm
    async with NativeClient(capture.ws) as client:
        session_id = (await client.start())["session_id"]
        await client.stream(0, speech.tobytes(), frame_bytes=3200)
        await capture.stop()
        await client.wait_for(lambda _: client.closed)
    assert client.close_code == 1012
    events = await read_subject(bus, t.session_events(session_id))
    closed = [e for e in events if isinstance(e, m.SourceClosed)]
    assert closed[0].end_sample == len(speech)
    assert isinstance(events[-1], m.SessionClosed) and events[-1].reason == "shutdown"
