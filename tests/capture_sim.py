"""Plays the capture service's part on the bus: one source's audio, paced, with speech boundaries.

Boundaries come from where the test placed its utterances, published a little after the
audio that contains them, as a VAD with onset and hangover delays would.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from echostream_shared import messages as m, topology as t
from echostream_shared.bus import Bus
from echostream_shared.ids import audio_msg_id

RATE = m.SAMPLE_RATE
Pcm = npt.NDArray[np.int16]


@dataclass(frozen=True)
class Conversation:
    """Audio of one source and the sample ranges where someone speaks."""

    audio: Pcm
    speech: tuple[tuple[int, int], ...]


def conversation(utterances: Sequence[Pcm], gap_s: float = 1.0, pad_s: float = 0.2) -> Conversation:
    """Utterances separated by silence; speech ranges padded like a VAD pre-roll/hangover."""
    gap = np.zeros(int(gap_s * RATE), dtype=np.int16)
    parts: list[Pcm] = [gap]
    speech: list[tuple[int, int]] = []
    cursor = len(gap)
    pad = int(pad_s * RATE)
    for utterance in utterances:
        speech.append((max(0, cursor - pad), cursor + len(utterance) + pad))
        parts += [utterance, gap]
        cursor += len(utterance) + len(gap)
    return Conversation(np.concatenate(parts), tuple(speech))


async def open_source(bus: Bus, session_id: str, source: str, engines: tuple[str, ...]) -> None:
    now = time.time()
    await bus.publish(
        t.session_events(session_id),
        m.SessionOpened(session_id=session_id, client="test", opened_at=now, engines=engines),
    )
    await bus.publish(
        t.session_events(session_id),
        m.SourceOpened(session_id=session_id, source=source, opened_at=now, engines=engines),
    )
    for engine in engines:
        job = m.TranscriptionJob(
            session_id=session_id, source=source, engine=engine, created_at=now
        )
        await bus.publish(t.job(engine), job, msg_id=f"job.{engine}.{session_id}.{source}")


async def stream_source(
    bus: Bus,
    session_id: str,
    source: str,
    talk: Conversation,
    *,
    engines: tuple[str, ...] = ("whisper",),
    chunk_s: float = 0.1,
    speed: float = 1.0,
    vad_delay_s: float = 0.3,
) -> None:
    """Open the source, publish its audio paced at ``speed`` × real time, then close it."""
    await open_source(bus, session_id, source, engines)
    subject = t.audio(session_id, source)
    chunk = int(chunk_s * RATE)
    delay = int(vad_delay_s * RATE)
    pending = sorted(
        [(start + delay, m.SpeechStarted, start) for start, _ in talk.speech]
        + [(end + delay, m.SpeechEnded, end) for _, end in talk.speech],
        key=lambda item: item[0],
    )
    started = time.monotonic()
    for seq, first in enumerate(range(0, len(talk.audio), chunk)):
        pcm = talk.audio[first : first + chunk]
        await _pace(started, first / RATE / speed)
        audio = m.AudioChunk(
            session_id=session_id,
            source=source,
            seq=seq,
            first_sample=first,
            pcm=pcm.astype("<i2").tobytes(),
            captured_at=time.time(),
        )
        await bus.publish(subject, audio, msg_id=audio_msg_id(session_id, source, seq))
        while pending and pending[0][0] <= first + len(pcm):
            _, kind, sample = pending.pop(0)
            event = kind(
                session_id=session_id, source=source, sample=sample, detected_at=time.time()
            )
            await bus.publish(subject, event)
    for _, kind, sample in pending:
        event = kind(session_id=session_id, source=source, sample=sample, detected_at=time.time())
        await bus.publish(subject, event)
    await close_source(bus, session_id, source, len(talk.audio))


async def close_source(bus: Bus, session_id: str, source: str, end_sample: int) -> None:
    closed = m.SourceClosed(
        session_id=session_id, source=source, end_sample=end_sample, closed_at=time.time()
    )
    await bus.publish(t.audio(session_id, source), closed)
    await bus.publish(t.session_events(session_id), closed)


async def _pace(started: float, at_s: float) -> None:
    wait = started + at_s - time.monotonic()
    if wait > 0:
        await asyncio.sleep(wait)
