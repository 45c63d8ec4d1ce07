"""What a fault campaign checks of a session, the same for `docker compose` and `make run`: a
native-protocol session with a fault injected while its audio streams, then the stored session
whole (complete, every final once, no two finals over the same audio) at the undisturbed WER."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from capture_audio import Speech
from native_client import NativeClient

Fault = Callable[[str], Awaitable[None]]
"""Runs with the session id while its audio streams."""


async def native_session(
    capture_ws: str,
    speech: Speech,
    *,
    token: str | None = None,
    speed: float = 2.0,
    during: Fault | None = None,
) -> str:
    """One native-protocol session at ``speed`` × real time; returns its id once capture says
    every source is transcribed."""
    async with NativeClient(capture_ws, token=token) as client:
        ready = await client.start(sample_rate=16_000, channels=1, encoding="pcm_s16le")
        assert ready["type"] == "ready", ready
        session_id: str = ready["session_id"]
        sending = client.stream(0, speech.pcm.tobytes(), frame_bytes=3200, frames_per_s=10 * speed)
        await asyncio.gather(sending, during(session_id) if during else asyncio.sleep(0))
        done = await client.finish(timeout_s=240)
    assert done["complete"], done
    return session_id


async def stored_session(
    api: str, session_id: str, *, headers: dict[str, str] | None = None, timeout_s: float = 180
) -> dict[str, Any]:
    """The session from the aggregator's API once it is closed and complete."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    async with httpx.AsyncClient(base_url=api, headers=headers or {}, timeout=5) as http:
        while time.monotonic() < deadline:
            try:
                response = await http.get(f"/v1/sessions/{session_id}")
                last = response.status_code, response.text[:500]
                if response.status_code == 200:
                    body: dict[str, Any] = response.json()
                    if body["status"] == "closed" and body["complete"] and body["transcript"]:
                        return body
            except httpx.TransportError as exc:
                last = exc  # the aggregator may be restarting
            await asyncio.sleep(1)
    raise AssertionError(f"session {session_id} not stored complete in {timeout_s} s: {last!r}")


def text_of(session: dict[str, Any]) -> str:
    return " ".join(segment["text"] for segment in session["transcript"])


def assert_whole(session: dict[str, Any]) -> None:
    """Every final once: unique ids, and no two finals of a source over the same audio."""
    segments = session["transcript"]
    ids = [segment["segment_id"] for segment in segments]
    assert len(ids) == len(set(ids)), ids
    for source in {segment["source"] for segment in segments}:
        spans = sorted(
            (s["source_start_sample"], s["source_end_sample"])
            for s in segments
            if s["source"] == source
        )
        for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
            assert start >= end, f"finals overlap in {source}: {spans}"


def figure(name: str, value: object) -> None:
    """A measured figure, printed for docs/reliability.md (run pytest with -s to see it)."""
    print(f"fault-figure {name}: {value}")
