"""Play a WAV into WhisperLiveKit's ``/asr`` WebSocket at real time and record what comes back.

The browser client with ``--pcm-input`` sends raw s16le 16 kHz mono frames, then an empty frame
to end the stream, and reads full-state JSON updates (committed ``lines`` and the uncommitted
``buffer_transcription``) until ``{"type": "ready_to_stop"}``. Frames are 100 ms and sent on the
same schedule as the EchoStream bench's capture simulator: frame ``k`` leaves at
``k × 100 ms`` after the start, so a sample's "capture" time is its frame's send time plus its
offset in the frame, on both systems.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import websockets

RATE = 16_000
CHUNK_S = 0.1
# A peer that falls behind may take minutes to drain after the audio ends.
DEFAULT_MAX_DRAIN_S = 600.0


class PeerProtocolError(RuntimeError):
    """The peer answered with an error or something that is not its protocol."""


@dataclass(frozen=True)
class State:
    """One distinct transcript state the peer sent, ``t`` seconds after the first frame."""

    t: float
    committed: str
    buffer: str
    lag_s: float


@dataclass
class Recording:
    chunk_sent: list[tuple[int, float]] = field(default_factory=list)  # (first sample, t)
    states: list[State] = field(default_factory=list)
    raw: list[tuple[float, str]] = field(default_factory=list)  # every message, as received
    messages: int = 0
    last_audio_t: float = 0.0
    ready_to_stop_t: float | None = None
    drained: bool = True  # False: the runner stopped waiting for 'ready_to_stop'
    gave_up_t: float | None = None
    started_unix: float = 0.0

    def at(self, sample: float) -> float:
        """Seconds after the first frame at which ``sample`` was sent (its capture time)."""
        firsts = [first for first, _ in self.chunk_sent]
        index = max(0, int(np.searchsorted(firsts, sample, side="right")) - 1)
        first, sent = self.chunk_sent[index]
        return sent + (sample - first) / RATE


def state_of(payload: dict[str, Any]) -> tuple[str, str, float]:
    """Committed text, buffer text and reported lag of one full-state update."""
    if payload.get("status") == "error" or payload.get("error"):
        raise PeerProtocolError(f"peer reported an error: {payload.get('error')!r}")
    lines = payload.get("lines")
    if not isinstance(lines, list):
        raise PeerProtocolError(f"update without a 'lines' list: {sorted(payload)}")
    committed = " ".join(
        str(line.get("text", "")).strip() for line in lines if str(line.get("text", "")).strip()
    )
    buffer = str(payload.get("buffer_transcription", "")).strip()
    return committed, buffer, float(payload.get("remaining_time_transcription") or 0.0)


async def play(
    ws_url: str,
    pcm: npt.NDArray[np.int16],
    on_started: Callable[[], None] | None = None,
    max_drain_s: float = DEFAULT_MAX_DRAIN_S,
) -> Recording:
    """Stream ``pcm`` paced at real time; return every distinct state with its arrival time.

    ``on_started`` runs right before the first frame (for CPU snapshots). A peer still busy
    ``max_drain_s`` after the last frame is left there: the recording says so (``drained`` is
    False) and holds what it had committed by then.
    """
    recording = Recording()
    chunk = int(CHUNK_S * RATE)
    async with websockets.connect(ws_url, max_size=None, ping_interval=None) as ws:
        config = json.loads(await asyncio.wait_for(ws.recv(), timeout=30))
        if config.get("type") != "config" or not config.get("useAudioWorklet"):
            raise PeerProtocolError(f"expected a PCM-input config message first, got {config}")
        if on_started is not None:
            on_started()
        started = time.monotonic()
        recording.started_unix = time.time()
        receiver = asyncio.create_task(_receive(ws, recording, started))
        try:
            for first in range(0, len(pcm), chunk):
                wait = started + first / RATE - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                if receiver.done():
                    break  # the peer failed or closed: its error surfaces below
                recording.chunk_sent.append((first, time.monotonic() - started))
                await ws.send(pcm[first : first + chunk].astype("<i2").tobytes())
            recording.last_audio_t = time.monotonic() - started
            if not receiver.done():
                await ws.send(b"")
            try:
                await asyncio.wait_for(asyncio.shield(receiver), timeout=max_drain_s)
            except TimeoutError:
                recording.drained = False
                recording.gave_up_t = time.monotonic() - started
        finally:
            receiver.cancel()
    if recording.drained and recording.ready_to_stop_t is None:
        raise PeerProtocolError("the peer closed the connection before 'ready_to_stop'")
    return recording


async def _receive(ws: Any, recording: Recording, started: float) -> None:
    async for raw in ws:
        t = time.monotonic() - started
        recording.messages += 1
        text = raw if isinstance(raw, str) else raw.decode()
        recording.raw.append((t, text))
        payload = json.loads(text)
        if payload.get("type") == "ready_to_stop":
            recording.ready_to_stop_t = t
            return
        committed, buffer, lag = state_of(payload)
        last = recording.states[-1] if recording.states else None
        if last is None or (last.committed, last.buffer) != (committed, buffer):
            recording.states.append(State(t, committed, buffer, lag))
