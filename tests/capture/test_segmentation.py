"""Speech segments cut by the client: a cut ends the segment at once, manual mode turns the VAD off,
and every boundary reaches the connection after it is on the bus."""

from __future__ import annotations

import numpy as np
from bus_reading import read_subject
from capture_audio import conversation, packaged, silence

from capture.ingest import IngestConfig
from capture.session import Session
from capture.vad import Boundary
from echostream_shared import messages as m, topology as t
from echostream_shared.bus import Bus

RATE = 16_000


async def open_source(bus: Bus) -> tuple[Session, list[tuple[str, Boundary]]]:
    await t.ensure_topology(bus.js)
    heard: list[tuple[str, Boundary]] = []
    session = Session(
        bus,
        IngestConfig(chunk_samples=1600),
        client="test",
        engines=("whisper",),
        on_boundary=lambda source, boundary: heard.append((source, boundary)),
    )
    await session.open()
    return session, heard


def boundaries(messages: list[m.BusMessage]) -> list[tuple[str, int]]:
    return [
        (message.type, message.sample)
        for message in messages
        if isinstance(message, m.SpeechStarted | m.SpeechEnded)
    ]


async def test_a_cut_ends_speech_at_once_and_speech_that_goes_on_starts_again(bus: Bus) -> None:
    session, heard = await open_source(bus)
    speech = packaged("quick_brown_fox").pcm
    ingest = await session.source("mic")
    await ingest.write(np.concatenate([silence(0.5), speech[: RATE * 1]]))
    at = await ingest.cut()
    assert at == RATE // 2 + RATE
    published = await read_subject(bus, t.audio(session.session_id, "mic"))
    assert boundaries(published)[-1] == ("speech.ended", at), "on the bus before more audio"
    chunks = [c for c in published if isinstance(c, m.AudioChunk)]
    assert chunks[-1].end_sample == at, "the partial chunk before the cut is flushed"
    await ingest.write(np.concatenate([speech[RATE * 1 :], silence(1.0)]))
    await session.close("client")

    published = await read_subject(bus, t.audio(session.session_id, "mic"))
    kinds = boundaries(published)
    assert [kind for kind, _ in kinds] == ["speech.started", "speech.ended"] * 2
    assert kinds[1] == ("speech.ended", at) and kinds[2][1] >= at
    assert [(b.kind, b.sample) for _, b in heard] == [
        (kind.removeprefix("speech."), sample) for kind, sample in kinds
    ]
    assert all(source == "mic" for source, _ in heard)
    chunks = [c for c in published if isinstance(c, m.AudioChunk)]
    assert [c.seq for c in chunks] == list(range(len(chunks)))
    assert [c.first_sample for c in chunks[1:]] == [c.end_sample for c in chunks[:-1]]


async def test_manual_segments_run_from_cut_to_cut_whatever_the_vad_hears(bus: Bus) -> None:
    session, heard = await open_source(bus)
    speech = conversation(gap_s=1.0, names=("hello_world", "quick_brown_fox")).pcm
    ingest = await session.source("mic")
    assert await ingest.cut("manual") == 0
    half = len(speech) // 2
    await ingest.write(speech[:half])
    first = await ingest.cut()
    assert await ingest.cut() == first, "a cut with nothing since the last one is a no-op"
    await ingest.write(speech[half:])
    ends = await session.close("client")

    published = await read_subject(bus, t.audio(session.session_id, "mic"))
    assert boundaries(published) == [
        ("speech.started", 0),
        ("speech.ended", half),
        ("speech.started", half),
        ("speech.ended", len(speech)),
    ]
    assert ends == {"mic": len(speech)}
    assert len(heard) == 4


async def test_back_to_vad_after_manual_segments(bus: Bus) -> None:
    session, _ = await open_source(bus)
    speech = conversation(gap_s=1.0, names=("hello_world", "hello_world")).pcm
    ingest = await session.source("mic")
    await ingest.cut("manual")
    await ingest.write(speech[: RATE // 2])
    at = await ingest.cut("vad")
    await ingest.write(speech[RATE // 2 :])
    await session.close("client")
    kinds = boundaries(await read_subject(bus, t.audio(session.session_id, "mic")))
    assert kinds[:2] == [("speech.started", 0), ("speech.ended", at)]
    vad_kinds = kinds[2:]
    assert [kind for kind, _ in vad_kinds] == ["speech.started", "speech.ended"] * 2
    assert all(sample >= at for _, sample in vad_kinds)
