"""A minimal HTTP endpoint for orchestrators: ``GET /health`` and ``GET /metrics``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

HealthCheck = Callable[[], Mapping[str, object]]
"""Returns the service's health; ``{"status": "ok"}`` (or ``"degraded"``) means healthy."""

HEALTHY = frozenset({"ok", "degraded"})


async def start_probe_server(
    port: int, health: HealthCheck, host: str = "0.0.0.0"
) -> asyncio.Server:
    """Serve /health and /metrics on ``port`` until the returned server is closed."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), timeout=5)
            path = request.decode("latin-1").split(" ")[1] if request.count(b" ") >= 2 else ""
            status, content_type, body = _respond(path, health)
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode("latin-1")
                + body
            )
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, host, port)


def _respond(path: str, health: HealthCheck) -> tuple[str, str, bytes]:
    if path == "/metrics":
        return "200 OK", CONTENT_TYPE_LATEST, generate_latest()
    if path == "/health":
        report = dict(health())
        status = "200 OK" if report.get("status") in HEALTHY else "503 Service Unavailable"
        return status, "application/json", json.dumps(report).encode()
    return "404 Not Found", "text/plain", b"not found\n"
