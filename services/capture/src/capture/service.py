"""The capture service: an HTTP/WebSocket server feeding the bus until ``stop`` is set."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Generator, Mapping

import uvicorn

from capture.app import build_app
from capture.config import CaptureSettings
from capture.hub import Hub
from echostream_shared.bus import Bus
from echostream_shared.logging import get_logger

log = get_logger("service")

PING_INTERVAL_S = 20.0


class CaptureService:
    """Serves EchoPanel, the native protocol and uploads on one port."""

    name = "capture"

    def __init__(self, settings: CaptureSettings) -> None:
        self.settings = settings
        self.port: int | None = None
        self.ready = asyncio.Event()
        self._hub: Hub | None = None

    def health(self) -> Mapping[str, object]:
        hub = self._hub
        if hub is None:
            return {"status": "starting"}
        connected = hub.bus.nc.is_connected
        return {
            "status": "ok" if connected else "degraded",
            "connections": hub.connections.open,
            "uploads": len(hub.background),
        }

    async def run(self, bus: Bus, stop: asyncio.Event) -> None:
        hub = self._hub = Hub(bus, self.settings)
        await hub.workers.start(bus)
        sock = _bind(self.settings.host, self.settings.port)
        self.port = sock.getsockname()[1]
        server = _Server(self._uvicorn_config(hub))
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        log.info("capture.listening", host=self.settings.host, port=self.port)
        self.ready.set()
        try:
            await _until_either(serving, stop)
        finally:
            server.should_exit = True
            await serving
            await self._drain_background(hub)
            await hub.workers.stop()
            sock.close()

    def _uvicorn_config(self, hub: Hub) -> uvicorn.Config:
        _route_uvicorn_logs()
        return uvicorn.Config(
            build_app(hub),
            ws="websockets-sansio",
            ws_max_size=self.settings.max_message_bytes * 4,
            ws_ping_interval=PING_INTERVAL_S,
            ws_ping_timeout=PING_INTERVAL_S,
            ws_per_message_deflate=False,  # PCM does not compress; deflating it only costs CPU
            lifespan="off",
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=max(1, int(self.settings.drain_timeout_s) - 2),
        )

    async def _drain_background(self, hub: Hub) -> None:
        if not hub.background:
            return
        log.info("capture.draining_uploads", uploads=len(hub.background))
        _done, pending = await asyncio.wait(
            hub.background, timeout=self.settings.drain_timeout_s / 2
        )
        hub.abort.set()
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=2)


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the runtime owns SIGTERM/SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


async def _until_either(task: asyncio.Task[None], stop: asyncio.Event) -> None:
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
    if task.done() and not stop.is_set():
        task.result()
        raise RuntimeError("the HTTP server stopped on its own")


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(2048)
    sock.setblocking(False)
    return sock


class _ToStructlog(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        level = "error" if record.levelno >= logging.ERROR else "warning"
        getattr(log, level)("uvicorn", message=record.getMessage(), exc_info=record.exc_info)


def _route_uvicorn_logs() -> None:
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers = [_ToStructlog(level=logging.WARNING)]
        logger.propagate = False
