"""Speaks ``/ws/live-listener`` the way the EchoPanel macOS client does.

Token in both headers, ``start`` 0.2 s after connecting without waiting for ``connected``, no audio
until a streaming-class status, 20 ms frames (``EP`` v1 binary on localhost, JSON/base64
otherwise) paced at real time for ``system`` and ``mic`` in one drain loop, ``stop`` with the
session id, then a 10 s wait for ``final_summary`` and a close with 1000.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

FRAME = 320
STREAMING_STATES = frozenset({"streaming", "backpressure", "warning", "buffering", "overloaded"})
SOURCE_BYTE = {"system": 0, "mic": 1}

Message = dict[str, Any]


class EchoPanelClient:
    def __init__(
        self, url: str, *, token: str | None = None, binary: bool = True, session_id: str = ""
    ) -> None:
        self.url = url
        self.token = token
        self.binary = binary
        self.session_id = session_id or str(uuid.uuid4()).upper()
        self.attempt_id = str(uuid.uuid4()).upper()
        self.connection_id = str(uuid.uuid4()).upper()
        self.messages: list[Message] = []
        self.close_code: int | None = None
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._arrived = asyncio.Event()

    async def __aenter__(self) -> EchoPanelClient:
        headers = {}
        if self.token:
            headers = {"Authorization": f"Bearer {self.token}", "x-echopanel-token": self.token}
        self._ws = await connect(self.url + "/ws/live-listener", additional_headers=headers)
        self._reader = asyncio.create_task(self._read())
        await asyncio.sleep(0.2)
        await self.send_json(
            {
                "type": "start",
                "session_id": self.session_id,
                "attempt_id": self.attempt_id,
                "connection_id": self.connection_id,
                "sample_rate": 16000,
                "format": "pcm_s16le",
                "channels": 1,
                "client_features": {
                    "clock_drift_compensation_enabled": False,
                    "client_vad_enabled": False,
                    "clock_drift_telemetry_enabled": True,
                    "client_vad_telemetry_enabled": True,
                },
            }
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def ws(self) -> ClientConnection:
        assert self._ws is not None
        return self._ws

    async def send_json(self, message: Message) -> None:
        await self.ws.send(json.dumps(message))

    def of_type(self, kind: str) -> list[Message]:
        return [msg for msg in self.messages if msg.get("type") == kind]

    def statuses(self) -> list[str]:
        return [msg.get("state", "") for msg in self.of_type("status")]

    async def wait_for(self, match: Callable[[Message], bool], timeout_s: float = 10.0) -> Message:
        async with asyncio.timeout(timeout_s):
            while True:
                for msg in self.messages:
                    if match(msg):
                        return msg
                if self._reader is not None and self._reader.done():
                    raise AssertionError(f"closed ({self.close_code}) before a matching message")
                self._arrived.clear()
                await self._arrived.wait()

    async def upload_gate(self) -> None:
        """Wait, as the drain loop does, until a streaming-class status arrived."""
        await self.wait_for(
            lambda m: m.get("type") == "status" and m.get("state") in STREAMING_STATES, 5.0
        )

    async def stream(self, sources: dict[str, npt.NDArray[np.int16]], speed: float = 1.0) -> None:
        """Send every source's audio in 20 ms frames, one frame per source per tick."""
        await self.upload_gate()
        frames = {name: len(pcm) // FRAME for name, pcm in sources.items()}
        started = time.monotonic()
        for k in range(max(frames.values())):
            for name, pcm in sources.items():
                if k < frames[name]:
                    await self.send_frame(name, pcm[k * FRAME : (k + 1) * FRAME])
            due = started + (k + 1) * 0.02 / speed
            if (wait := due - time.monotonic()) > 0:
                await asyncio.sleep(wait)

    async def send_frame(self, source: str, pcm: npt.NDArray[np.int16]) -> None:
        payload = pcm.astype("<i2").tobytes()
        if self.binary:
            await self.ws.send(bytes([0x45, 0x50, 1, SOURCE_BYTE[source]]) + payload)
        else:
            data = base64.b64encode(payload).decode()
            await self.send_json({"type": "audio", "source": source, "data": data})

    async def stop(self, timeout_s: float = 10.0) -> Message | None:
        """Send stop, wait for the final summary (None after the client's 10 s), close."""
        await self.send_json({"type": "stop", "session_id": self.session_id})
        try:
            return await self.wait_for(lambda m: m.get("type") == "final_summary", timeout_s)
        except (TimeoutError, AssertionError):
            return None
        finally:
            await self.close()

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close(1000)
        if self._reader is not None:
            await self._reader

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                self.messages.append(json.loads(raw))
                self._arrived.set()
        except ConnectionClosed:
            pass
        finally:
            self.close_code = self.ws.close_code
            self._arrived.set()
