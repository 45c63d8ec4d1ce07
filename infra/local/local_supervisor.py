"""Runs programs as children: log lines prefixed with their names, restarts with back-off,
orderly stop, and one announcement once everything is healthy."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import urllib.request
from urllib.parse import urlsplit

from local_services import Ports, Program

STOP_GRACE_S = 15.0
RESTART_PAUSE_S = 2.0
MAX_RESTART_PAUSE_S = 30.0
STEADY_AFTER_S = 30.0
HEALTH_TIMEOUT_S = 120.0
NAME_WIDTH = 15
HEALTHY = frozenset({"ok", "degraded"})


def say(name: str, text: str) -> None:
    sys.stdout.write(f"{name:<{NAME_WIDTH}}| {text}\n")
    sys.stdout.flush()


async def pump(name: str, stream: asyncio.StreamReader) -> None:
    while line := await stream.readline():
        sys.stdout.write(f"{name:<{NAME_WIDTH}}| {line.decode(errors='replace')}")
        sys.stdout.flush()


async def supervise(program: Program, stop: asyncio.Event) -> None:
    """Run a program until ``stop``; restart it when it dies on its own, slower while it keeps dying."""
    loop = asyncio.get_running_loop()
    pause = RESTART_PAUSE_S
    while not stop.is_set():
        started = loop.time()
        code = await run_once(program, stop)
        if stop.is_set():
            break
        pause = RESTART_PAUSE_S if loop.time() - started > STEADY_AFTER_S else pause
        say(program.name, f"exited with {code}; restarting in {pause:g} s")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), pause)
        pause = min(pause * 2, MAX_RESTART_PAUSE_S)


async def run_once(program: Program, stop: asyncio.Event) -> int | None:
    """Start the program and wait until it exits or ``stop`` is set; returns its exit code."""
    process = await asyncio.create_subprocess_exec(
        *program.argv,
        env={**os.environ, **program.env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,  # Ctrl-C reaches the supervisor only; it stops children in order
    )
    assert process.stdout is not None
    output = asyncio.create_task(pump(program.name, process.stdout))
    stopping = asyncio.create_task(stop.wait())
    exited = asyncio.create_task(process.wait())
    try:
        await asyncio.wait({stopping, exited}, return_when=asyncio.FIRST_COMPLETED)
    finally:  # also when the supervisor itself is cancelled: no child outlives it
        stopping.cancel()
        if not exited.done():
            await terminate(process)
        await output
    return process.returncode


async def terminate(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        process.terminate()
    try:
        await asyncio.wait_for(process.wait(), STOP_GRACE_S)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()


def nats_address(urls: str) -> tuple[str, int]:
    """Host and port of the first of comma-separated NATS URLs; a clear error for anything else."""
    first = urls.split(",")[0].strip()
    try:
        parts = urlsplit(first if "://" in first else f"nats://{first}")
        host, port = parts.hostname, parts.port or 4222
    except ValueError:
        host = None
    if not host or parts.scheme not in ("nats", "tls", "ws", "wss"):
        raise SystemExit(f"ECHOSTREAM_NATS_URL is not a NATS URL: {urls!r}")
    return host, port


async def wait_for_port(url: str, timeout_s: float = 15.0) -> None:
    """Return once the first NATS server accepts connections; exit with a message if it never does."""
    host, port = nats_address(url)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection(host, port)
            writer.close()
            return
        await asyncio.sleep(0.1)
    raise SystemExit(f"NATS at {url} did not accept connections within {timeout_s:g} s")


def is_healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return json.loads(response.read()).get("status") in HEALTHY
    except (OSError, ValueError):
        return False


async def announce_when_healthy(programs: list[Program], ports: Ports, stop: asyncio.Event) -> None:
    """Say once that everything is up and where to point a client, or what is still down."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + HEALTH_TIMEOUT_S
    waiting = [p for p in programs if p.health_url]
    while waiting and not stop.is_set():
        healthy = await asyncio.gather(
            *(asyncio.to_thread(is_healthy, p.health_url or "") for p in waiting)
        )
        waiting = [p for p, ok in zip(waiting, healthy, strict=True) if not ok]
        if waiting and loop.time() > deadline:
            say(
                "run",
                f"not healthy after {HEALTH_TIMEOUT_S:g} s: {', '.join(p.name for p in waiting)}",
            )
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.5)
    if stop.is_set():
        return
    say("run", f"ready: {', '.join(p.name for p in programs)}")
    names = {p.name for p in programs}
    if "capture" in names:
        say("run", f"clients  -> ws://127.0.0.1:{ports.capture}/ws/live-listener (EchoPanel)")
        say("run", f"            ws://127.0.0.1:{ports.capture}/v1/stream (native, CLI)")
    if "aggregator" in names:
        say("run", f"sessions -> http://127.0.0.1:{ports.aggregator}/v1/sessions (docs: /docs)")
