"""Process lifecycle of a service: connect, run, drain on SIGTERM/SIGINT, exit."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Mapping
from typing import Protocol
from urllib.parse import urlsplit

from nats.aio.client import Client as NATS

from echostream_shared.bus import Bus
from echostream_shared.config import ServiceSettings
from echostream_shared.logging import get_logger
from echostream_shared.probes import start_probe_server
from echostream_shared.tasks import cancel_and_wait
from echostream_shared.topology import TopologyLimits, ensure_topology

log = get_logger("runtime")

EXIT_OK = 0
EXIT_FAILED = 1
GIVE_UP_S = 2.0
"""How long an abandoned connection attempt may take to wind down."""


class Service(Protocol):
    """What the runtime runs: a coroutine that works until ``stop`` is set."""

    name: str

    def health(self) -> Mapping[str, object]:
        """A small JSON-able report; ``status`` is ``ok``, ``degraded`` or anything unhealthy."""
        ...

    async def run(self, bus: Bus, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set, then finish in-flight work and return."""
        ...


async def connect(settings: ServiceSettings, stop: asyncio.Event) -> NATS | None:
    """Connect to NATS, retrying until the connect timeout; reconnects forever once connected.

    Returns None when ``stop`` is set before a connection is made.
    """

    async def on_disconnect() -> None:
        log.warning("nats.disconnected")

    async def on_reconnect() -> None:
        log.info("nats.reconnected")

    async def on_error(exc: Exception) -> None:
        log.warning("nats.error", error=str(exc))

    nc = NATS()
    attempt = asyncio.create_task(
        nc.connect(
            servers=settings.nats_servers,
            token=settings.nats_token,
            max_reconnect_attempts=-1,
            reconnect_time_wait=1,
            connect_timeout=2,
            disconnected_cb=on_disconnect,
            reconnected_cb=on_reconnect,
            error_cb=on_error,
        )
    )
    stopping = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait(
        {attempt, stopping},
        timeout=settings.nats_connect_timeout_s,
        return_when=asyncio.FIRST_COMPLETED,
    )
    stopping.cancel()
    if attempt in done:
        attempt.result()
        return nc
    attempt.cancel()
    # nats-py may swallow the cancellation of a first connect and go on retrying: bound both waits.
    with contextlib.suppress(BaseException):
        await asyncio.wait_for(attempt, GIVE_UP_S)
    with contextlib.suppress(BaseException):
        await asyncio.wait_for(nc.close(), GIVE_UP_S)
    if stop.is_set():
        return None
    raise ConnectionError(
        f"cannot reach NATS at {settings.nats_url} within {settings.nats_connect_timeout_s:g} s"
    )


async def serve(
    service: Service, settings: ServiceSettings, limits: TopologyLimits | None = None
) -> int:
    """Run a service until it ends or a signal asks it to; returns the exit code."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    probes = None
    if settings.metrics_port:
        probes = await start_probe_server(settings.metrics_port, service.health)
    try:
        return await _connected(service, settings, limits or settings.topology_limits(), stop)
    finally:
        if probes is not None:
            probes.close()


async def _connected(
    service: Service, settings: ServiceSettings, limits: TopologyLimits, stop: asyncio.Event
) -> int:
    log.info("service.connecting", nats=_without_credentials(settings.nats_servers))
    nc = await connect(settings, stop)
    if nc is None:
        log.info("service.stopped_before_connecting")
        return EXIT_OK
    log.info("service.started", nats=nc.connected_url.netloc if nc.connected_url else None)
    try:
        js = nc.jetstream()
        await ensure_topology(js, limits)
        return await _run_until_stopped(service, Bus(nc, js), stop, settings.drain_timeout_s)
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(nc.drain(), timeout=settings.drain_timeout_s)
        log.info("service.stopped")


async def _run_until_stopped(
    service: Service, bus: Bus, stop: asyncio.Event, drain_s: float
) -> int:
    task = asyncio.create_task(service.run(bus, stop), name=service.name)
    stop_wait = asyncio.create_task(stop.wait())
    await asyncio.wait({task, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
    stop.set()
    stop_wait.cancel()
    if not task.done():
        log.info("service.draining", timeout_s=drain_s)
        done, _ = await asyncio.wait({task}, timeout=drain_s)
        if not done:
            log.error("service.drain_timeout")
            await cancel_and_wait(task)
            return EXIT_FAILED
    if task.cancelled() or task.exception() is not None:
        log.error("service.failed", error=repr(task.exception()) if not task.cancelled() else None)
        return EXIT_FAILED
    return EXIT_OK


def _without_credentials(urls: list[str]) -> list[str]:
    """Server addresses fit for a log line: no user, password or token."""
    addresses = []
    for url in urls:
        parts = urlsplit(url)
        port = f":{parts.port}" if parts.port else ""
        addresses.append(f"{parts.scheme}://{parts.hostname or ''}{port}")
    return addresses


def run_service(
    service: Service, settings: ServiceSettings, limits: TopologyLimits | None = None
) -> int:
    """Entry point for a service's ``__main__``: run it and return the process exit code."""
    try:
        return asyncio.run(serve(service, settings, limits))
    except ConnectionError as exc:
        log.error("service.cannot_connect", error=str(exc))
        return EXIT_FAILED
