"""uvicorn inside the service's event loop; the service runtime, not uvicorn, owns the signals."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

import uvicorn
from fastapi import FastAPI


class HttpServer(uvicorn.Server):
    """uvicorn on a socket bound up front, so a taken port fails start-up with a clear error."""

    def __init__(self, app: FastAPI, host: str, port: int) -> None:
        super().__init__(
            uvicorn.Config(
                app, log_config=None, access_log=False, lifespan="off", timeout_graceful_shutdown=2
            )
        )
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.socket = socket.create_server((host, port), family=family)

    @property
    def port(self) -> int:
        """The port it listens on (useful when 0 was asked for)."""
        port: int = self.socket.getsockname()[1]
        return port

    async def run_until_stopped(self) -> None:
        await self.serve(sockets=[self.socket])

    def stop(self) -> None:
        self.should_exit = True

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield
