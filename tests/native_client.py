"""A client of the native protocol (``/v1/stream``) for tests: sends frames, collects events."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

Message = dict[str, Any]


class NativeClient:
    def __init__(self, url: str, *, token: str | None = None) -> None:
        self.url = url + "/v1/stream"
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.messages: list[Message] = []
        self.close_code: int | None = None
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._arrived = asyncio.Event()

    async def __aenter__(self) -> NativeClient:
        self._ws = await connect(self.url, additional_headers=self.headers, max_size=None)
        self._reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.ws.close()
        assert self._reader is not None
        await self._reader

    @property
    def ws(self) -> ClientConnection:
        assert self._ws is not None
        return self._ws

    @property
    def closed(self) -> bool:
        return self._reader is not None and self._reader.done()

    async def send(self, message: Message) -> None:
        await self.ws.send(json.dumps(message))

    async def start(self, **fields: Any) -> Message:
        await self.send({"type": "start", **fields})
        return await self.wait_for(lambda m: m["type"] in ("ready", "error"))

    async def stream(
        self, index: int, data: bytes, frame_bytes: int, frames_per_s: float = 0.0
    ) -> None:
        """Send ``data`` in binary frames of ``frame_bytes``; paced when ``frames_per_s`` > 0."""
        started = time.monotonic()
        for k, offset in enumerate(range(0, len(data), frame_bytes)):
            await self.ws.send(bytes([index]) + data[offset : offset + frame_bytes])
            if frames_per_s:
                wait = started + (k + 1) / frames_per_s - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)

    async def finish(self, timeout_s: float = 30.0) -> Message:
        """End the session and wait for ``done``."""
        await self.send({"type": "end"})
        return await self.wait_for(lambda m: m["type"] == "done", timeout_s)

    def of_type(self, kind: str) -> list[Message]:
        return [m for m in self.messages if m["type"] == kind]

    async def wait_for(self, match: Callable[[Message], bool], timeout_s: float = 10.0) -> Message:
        async with asyncio.timeout(timeout_s):
            while True:
                for msg in self.messages:
                    if match(msg):
                        return msg
                if self.closed:
                    raise AssertionError(f"closed ({self.close_code}): {self.messages[-3:]}")
                self._arrived.clear()
                await self._arrived.wait()

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
