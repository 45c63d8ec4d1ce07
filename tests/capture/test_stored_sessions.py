"""Capture's side of the stored-session contract: reads through a running aggregator, EchoPanel's
summary shaped from them, and every way the aggregator can fail to answer."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from bus_reading import BusRecorder
from capture_audio import conversation, encode
from capture_harness import MAX_WER, WORDED, RunningCapture
from fasterwhisper_inprocess import ENGINE
from nats.errors import NoRespondersError
from running_aggregator import running_aggregator
from speech_corpus import wer

from capture.echopanel_events import stored_final_summary
from capture.ingest import IngestConfig
from capture.session import Session
from capture.stored_sessions import AggregatorUnavailable, UnknownEngine, read_stored_session
from capture.stored_summary import stored_summary
from echostream_shared import messages as m, topology as t
from echostream_shared.bus import Bus
from echostream_shared.ids import segment_id

RATE = m.SAMPLE_RATE
FEATURES = {"client_vad_enabled": True}


@pytest.fixture
async def aggregator(bus: Bus, tmp_path: Path) -> AsyncIterator[None]:
    async with running_aggregator(bus, f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"):
        yield


async def uploaded(capture: RunningCapture, tmp_path: Path) -> tuple[str, float]:
    speech = conversation(names=WORDED)
    path = encode(speech.pcm, tmp_path / "s.wav", "pcm_s16le", 16000, 1)
    async with httpx.AsyncClient(base_url=capture.http, timeout=30) as http:
        response = await http.post("/v1/transcriptions", content=path.read_bytes())
    assert response.status_code == 200, response.text
    return str(response.json()["id"]), len(speech.pcm) / RATE


async def test_a_stored_session_is_read_and_summarized_for_echopanel(
    bus: Bus,
    capture_with_worker: RunningCapture,
    recorder: BusRecorder,
    aggregator: None,
    tmp_path: Path,
) -> None:
    session_id, duration_s = await uploaded(capture_with_worker, tmp_path)
    stored = await read_stored_session(bus, session_id, wait_s=5)
    assert stored is not None and stored.complete
    assert (stored.client, stored.engine, stored.engines) == ("file", ENGINE, (ENGINE,))
    assert abs(stored.duration_s - duration_s) < 0.01
    published = sorted(
        (f for f in recorder.finals if f.session_id == session_id),
        key=lambda f: f.start_sample,
    )
    assert stored.finals == published
    said = " ".join(f.text for f in published)
    assert wer(conversation(names=WORDED).text, said) <= MAX_WER, said

    summary = await stored_summary(bus, session_id, ENGINE, "client-1", FEATURES, budget_s=5)
    assert summary == stored_final_summary("client-1", stored.finals, FEATURES)
    assert summary["json"]["session_id"] == "client-1"
    summarized = " ".join(item["text"] for item in summary["json"]["transcript"])
    assert summarized == " ".join(f.text.strip() for f in published if f.text.strip())


async def test_unknown_sessions_and_engines(
    bus: Bus, capture_with_worker: RunningCapture, aggregator: None, tmp_path: Path
) -> None:
    assert await read_stored_session(bus, "nobody") is None
    assert await stored_summary(bus, "nobody", ENGINE, "c", {}, budget_s=1.0) is None
    session_id, _ = await uploaded(capture_with_worker, tmp_path)
    await read_stored_session(bus, session_id, wait_s=5)
    with pytest.raises(UnknownEngine) as raised:
        await read_stored_session(bus, session_id, engine="whisper")
    assert raised.value.engines == (ENGINE,)


async def test_an_unfinished_session_leaves_the_summary_to_the_relay(
    bus: Bus, aggregator: None
) -> None:
    session = Session(bus, IngestConfig(), client="echopanel", engines=("whisper",))
    await session.open()
    ingest = await session.source("mic")
    await ingest.write(conversation().pcm)
    await session.close("client")  # no worker runs: the engine never finishes
    assert await stored_summary(bus, session.session_id, "whisper", "c", {}, budget_s=1.5) is None
    stored = await read_stored_session(bus, session.session_id)
    assert stored is not None and not stored.complete and not stored.finals


async def test_a_long_transcript_is_read_in_pages(bus: Bus, aggregator: None) -> None:
    session = Session(bus, IngestConfig(), client="native", engines=("whisper",))
    await session.open()
    text = "word " * 3900
    finals = [
        m.TranscriptFinal(
            session_id=session.session_id,
            source="mic",
            engine="whisper",
            segment_id=segment_id(session.session_id, "mic", "whisper", index * RATE),
            start_sample=index * RATE,
            end_sample=index * RATE + RATE // 2,
            text=text,
            emitted_at=time.time(),
        )
        for index in range(60)
    ]
    for final in finals:
        await bus.publish(t.transcript("whisper", session.session_id, "mic"), final)
    for _ in range(100):
        stored = await read_stored_session(bus, session.session_id)
        if stored is not None and len(stored.finals) == len(finals):
            break
        await asyncio.sleep(0.1)
    assert stored is not None and stored.finals == finals


async def test_without_an_aggregator_reads_fail_fast_and_the_summary_falls_back(
    bus: Bus,
) -> None:
    await t.ensure_topology(bus.js)
    with pytest.raises(AggregatorUnavailable, match="aggregator") as raised:
        await read_stored_session(bus, "anything", wait_s=3, timeout_s=5)
    # NATS says at once that nobody listens: the caller does not wait for the timeout.
    assert isinstance(raised.value.__cause__, NoRespondersError)
    assert await stored_summary(bus, "anything", "whisper", "c", {}, budget_s=5) is None
