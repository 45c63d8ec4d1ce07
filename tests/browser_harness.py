"""Shared by the browser tests: Chromium's location and flags, and the pipeline's tokens."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path

CHROMIUM = Path(os.environ.get("ECHOSTREAM_CHROMIUM", "/usr/bin/chromium"))
CAPTURE_TOKEN = "browser-test-capture-token"
AGGREGATOR_TOKEN = "browser-test-aggregator-token"
LEAD_S = 1.0
SHARED_TAB_TITLE = "EchoStream shared tab"
"""The tab getDisplayMedia picks, as a user choosing a tab to share would."""
"""Silence before the speech: the fake microphone starts with the capture, before the socket."""


def chromium_args(wav: Path) -> list[str]:
    """Headless as root on a closed network, with a fake microphone playing ``wav`` once."""
    return [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--autoplay-policy=no-user-gesture-required",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={wav}%noloop",
        f"--auto-select-tab-capture-source-by-title={SHARED_TAB_TITLE}",
    ]


class CuttableProxy:
    """A TCP forwarder to a local port whose open connections can be cut, as a network drop does.

    The page is loaded through it, so its WebSocket runs through it too; ``cut`` resets every
    connection open at that moment and keeps listening, so the page can connect again.
    """

    def __init__(self, target_port: int) -> None:
        self._target = target_port
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None
        self.port = 0

    def __enter__(self) -> CuttableProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(5)
        return self

    def __exit__(self, *_: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cut(self) -> None:
        def reset() -> None:
            for writer in list(self._writers):
                writer.transport.abort()
            self._writers.clear()

        self._loop.call_soon_threadsafe(reset)

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(
                "127.0.0.1", self._target
            )
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, upstream_writer}
        await asyncio.gather(
            _pipe(reader, upstream_writer), _pipe(upstream_reader, writer), return_exceptions=True
        )
        self._writers -= {writer, upstream_writer}


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        writer.transport.abort()
