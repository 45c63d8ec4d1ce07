"""Helpers of the Voxtral worker tests: worker processes, a paced source with a pause, reading
transcripts back."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import bus_reading
from capture_sim import RATE, Conversation, close_source, open_source

from echostream_shared import messages as m, topology as t
from echostream_shared.bus import Bus
from echostream_shared.ids import audio_msg_id

ACK_WAIT_S = 3.0


class VoxtralProcess:
    """``python -m voxtral_worker`` as a child process, its log in a file."""

    def __init__(self, nats_url: str, vllm_url: str, log_path: Path, **env: str) -> None:
        self.log_path = log_path
        self._env = {
            **os.environ,
            "ECHOSTREAM_NATS_URL": nats_url,
            "ECHOSTREAM_NATS_CONNECT_TIMEOUT_S": "10",
            "ECHOSTREAM_JOB_ACK_WAIT_S": str(ACK_WAIT_S),
            "ECHOSTREAM_VOXTRAL_VLLM_URL": vllm_url,
            "ECHOSTREAM_VOXTRAL_RECONNECT_MIN_S": "0.1",
            "ECHOSTREAM_VOXTRAL_STATUS_INTERVAL_S": "0.5",
            **env,
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> VoxtralProcess:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "voxtral_worker"], env=self._env, stdout=log, stderr=log
            )
        return self

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def stop(self, timeout_s: float = 20) -> int:
        assert self.process is not None
        self.process.terminate()
        return self.process.wait(timeout=timeout_s)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


SCRIPT = (
    "the quick brown fox",
    "jumps over seventeen lazy dogs",
    "and then everybody went home",
)


async def read_transcripts(bus: Bus, session_id: str, source: str = "mic") -> list[m.BusMessage]:
    """Everything published for a source by the voxtral engine, in order."""
    return await bus_reading.read_transcripts(bus, "voxtral", session_id, source, idle_s=0.5)


async def wait_for_jobs_done(bus: Bus, timeout_s: float = 30) -> None:
    await bus_reading.wait_for_jobs_done(bus, timeout_s, poll_s=0.1)


def finals_of(messages: list[m.BusMessage]) -> list[m.TranscriptFinal]:
    return [msg for msg in messages if isinstance(msg, m.TranscriptFinal)]


async def stream_with_pause(
    bus: Bus,
    session_id: str,
    source: str,
    talk: Conversation,
    *,
    pause_at_s: float,
    pause_s: float,
    speed: float = 1.0,
    chunk_s: float = 0.1,
) -> None:
    """Like ``capture_sim.stream_source``, but the client sends nothing for ``pause_s`` once
    ``pause_at_s`` of audio went out; the sample clock goes on where it stopped."""
    await open_source(bus, session_id, source, ("voxtral",))
    subject = t.audio(session_id, source)
    chunk = int(chunk_s * RATE)
    events = sorted(
        [(start, m.SpeechStarted) for start, _ in talk.speech]
        + [(end, m.SpeechEnded) for _, end in talk.speech]
    )
    started = time.monotonic()
    paused = 0.0
    for seq, first in enumerate(range(0, len(talk.audio), chunk)):
        if not paused and first / RATE >= pause_at_s:
            paused = pause_s
        wait = started + first / RATE / speed + paused - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        pcm = talk.audio[first : first + chunk]
        audio = m.AudioChunk(
            session_id=session_id,
            source=source,
            seq=seq,
            first_sample=first,
            pcm=pcm.astype("<i2").tobytes(),
            captured_at=time.time(),
        )
        await bus.publish(subject, audio, msg_id=audio_msg_id(session_id, source, seq))
        while events and events[0][0] <= first + len(pcm):
            sample, kind = events.pop(0)
            await bus.publish(
                subject,
                kind(session_id=session_id, source=source, sample=sample, detected_at=time.time()),
            )
    for sample, kind in events:
        await bus.publish(
            subject,
            kind(session_id=session_id, source=source, sample=sample, detected_at=time.time()),
        )
    await close_source(bus, session_id, source, len(talk.audio))


StartWorker = Callable[..., VoxtralProcess]
"""The ``start_worker`` fixture: ``start(name, vllm_url, **env)``."""
