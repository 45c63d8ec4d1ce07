"""`make run`: EchoStream on one machine, no Docker.

Starts an embedded nats-server with JetStream (unless ECHOSTREAM_NATS_URL names one), then every
CPU service as a supervised child process with its log lines prefixed by its name. A child that
exits is restarted after a pause; Ctrl-C (or SIGTERM) stops everything, services first.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
STATE = REPO / ".run"
STOP_GRACE_S = 15.0
RESTART_PAUSE_S = 2.0


@dataclass(frozen=True)
class Program:
    """One supervised process."""

    name: str
    argv: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)


def services(nats_url: str) -> list[Program]:
    """The CPU services, as docker-compose.yml runs them."""
    common = {"ECHOSTREAM_NATS_URL": nats_url, "ECHOSTREAM_LOG_FORMAT": "console"}
    python = str(BIN / "python")
    return [
        Program("whisper-worker", (python, "-m", "whisper_worker"), common),
        Program("capture", (python, "-m", "capture"), common),
    ]


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def embedded_nats(preferred_port: int) -> tuple[Program, str]:
    """nats-server on the preferred port, or on a free one when it is taken."""
    port = preferred_port if port_is_free(preferred_port) else free_port()
    store = STATE / "jetstream"
    store.mkdir(parents=True, exist_ok=True)
    argv = (str(BIN / "nats-server"), "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(store))
    return Program("nats", argv), f"nats://127.0.0.1:{port}"


async def pump(name: str, stream: asyncio.StreamReader) -> None:
    width = 15
    while line := await stream.readline():
        sys.stdout.write(f"{name:<{width}}| {line.decode(errors='replace')}")
        sys.stdout.flush()


async def supervise(program: Program, stop: asyncio.Event) -> None:
    """Run a program until ``stop``; restart it when it dies on its own."""
    while not stop.is_set():
        process = await asyncio.create_subprocess_exec(
            *program.argv,
            env={**os.environ, **program.env},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
        assert process.stdout is not None
        output = asyncio.create_task(pump(program.name, process.stdout))
        stopping = asyncio.create_task(stop.wait())
        exited = asyncio.create_task(process.wait())
        await asyncio.wait({stopping, exited}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not exited.done():
            await terminate(process)
        await output
        if not stop.is_set():
            sys.stdout.write(f"{program.name:<15}| exited with {process.returncode}; restarting\n")
            await asyncio.sleep(RESTART_PAUSE_S)


async def terminate(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        process.terminate()
    try:
        await asyncio.wait_for(process.wait(), STOP_GRACE_S)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()


async def wait_for_port(url: str, timeout_s: float = 15.0) -> None:
    host, port = url.rsplit("/", 1)[-1].split(":")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection(host, int(port))
            writer.close()
            return
        await asyncio.sleep(0.1)
    raise SystemExit(f"NATS at {url} did not come up")


async def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nats-port", type=int, default=4222, help="preferred embedded NATS port")
    args = parser.parse_args(argv)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)

    nats_url = os.environ.get("ECHOSTREAM_NATS_URL")
    nats_stop = asyncio.Event()
    broker = None
    if nats_url is None:
        program, nats_url = embedded_nats(args.nats_port)
        broker = asyncio.create_task(supervise(program, nats_stop))
    sys.stdout.write(f"{'run':<15}| NATS at {nats_url}\n")
    await wait_for_port(nats_url)
    await asyncio.gather(*(supervise(program, stop) for program in services(nats_url)))
    nats_stop.set()
    if broker is not None:
        await broker
    sys.stdout.write(f"{'run':<15}| stopped\n")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
