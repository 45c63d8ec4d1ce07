"""A raw ``/v1/realtime`` client for the fake's contract tests: JSON frames, nothing hidden."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import numpy as np
import numpy.typing as npt
from websockets.asyncio.client import ClientConnection

from fake_vllm.server import MODEL


async def recv(ws: ClientConnection, timeout_s: float = 3.0) -> dict[str, Any]:
    event: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), timeout_s))
    return event


async def silent(ws: ClientConnection, for_s: float = 0.3) -> None:
    """Assert the server sends nothing for a while."""
    try:
        event = await asyncio.wait_for(ws.recv(), for_s)
    except TimeoutError:
        return
    raise AssertionError(f"unexpected event {event!r}")


async def send(ws: ClientConnection, event: dict[str, Any]) -> None:
    await ws.send(json.dumps(event))


async def update(ws: ClientConnection, model: str = MODEL) -> None:
    await send(ws, {"type": "session.update", "model": model})


async def commit(ws: ClientConnection, final: bool = False) -> None:
    await send(ws, {"type": "input_audio_buffer.commit", "final": final})


async def append(ws: ClientConnection, pcm: npt.NDArray[np.int16], chunk: int = 1600) -> None:
    for start in range(0, len(pcm), chunk):
        data = pcm[start : start + chunk].astype("<i2").tobytes()
        await send(
            ws, {"type": "input_audio_buffer.append", "audio": base64.b64encode(data).decode()}
        )


async def deltas_until_done(
    ws: ClientConnection, timeout_s: float = 5.0
) -> tuple[list[str], dict[str, Any]]:
    """Every delta up to ``transcription.done``, and the done event."""
    deltas: list[str] = []
    while True:
        event = await recv(ws, timeout_s)
        if event["type"] == "transcription.done":
            return deltas, event
        assert event["type"] == "transcription.delta", event
        deltas.append(event["delta"])
