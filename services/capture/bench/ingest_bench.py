"""Ingest capacity of one capture process, with the engine removed from the path.

Starts nats-server and ``python -m capture``, then, for each level N, streams N real-time native
sessions of speech (100 ms frames) and measures, from a JetStream consumer of ``ep.audio.>``
standing where a worker would:

- bus latency capture → worker: when a chunk arrives minus when capture received its last
  audio (``captured_at`` + its duration), p50/p99;
- capture CPU (one process: 100 % is one core), and whether every chunk arrived.

It also opens idle sessions and reports capture's memory per connection.

    python services/capture/bench/ingest_bench.py --out bench-results/capture-ingest.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import nats
import numpy as np
import numpy.typing as npt
from nats.aio.msg import Msg
from nats.js.api import DeliverPolicy
from websockets.asyncio.client import ClientConnection, connect

from capture.audio import decode_file, to_pcm16
from echostream_shared import messages as m
from echostream_shared.codec import decode

RATE = 16_000
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Level:
    streams: int
    seconds: float
    chunks_expected: int
    chunks_received: int
    latency_p50_ms: float
    latency_p99_ms: float
    latency_max_ms: float
    capture_cpu_percent: float
    client_late_frames: int


def speech(seconds: float) -> npt.NDArray[np.int16]:
    """Looped English speech from pytest-audioeval when installed, else tone bursts."""
    spec = importlib.util.find_spec("pytest_audioeval")
    parts: list[npt.NDArray[np.int16]] = []
    if spec is not None and spec.submodule_search_locations:
        folder = Path(next(iter(spec.submodule_search_locations))) / "samples" / "audio" / "en"
        for path in sorted(folder.glob("*.wav")):
            audio = np.concatenate([block for _, block in decode_file(path)])
            parts += [to_pcm16(audio), np.zeros(RATE // 2, np.int16)]
    if not parts:
        t = np.arange(RATE) / RATE
        parts = [(np.sin(2 * np.pi * 220 * t) * 8000).astype(np.int16), np.zeros(RATE, np.int16)]
    loop = np.concatenate(parts)
    return np.resize(loop, int(seconds * RATE))


class Probe:
    """Stands where a worker would and timestamps every audio chunk it receives."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.chunks = 0
        self.expected = 0
        self.complete = asyncio.Event()

    async def on_msg(self, msg: Msg) -> None:
        now = time.time()
        message = decode(msg.data, msg.subject)
        if isinstance(message, m.AudioChunk):
            self.chunks += 1
            if self.chunks >= self.expected:
                self.complete.set()
            ready_at = message.captured_at + message.num_samples / RATE
            self.latencies.append(now - ready_at)

    def reset(self, expected: int) -> None:
        self.latencies, self.chunks, self.expected = [], 0, expected
        self.complete.clear()


async def stream_session(url: str, pcm: npt.NDArray[np.int16], frame_ms: int) -> int:
    """One real-time native session; returns how many frames were sent late (>20 ms)."""
    frame = RATE * frame_ms // 1000
    late = 0
    async with connect(url + "/v1/stream", max_size=None) as ws:
        await ws.send(json.dumps({"type": "start", "partials": False}))
        await _ready(ws)
        loop = asyncio.get_running_loop()
        started = loop.time() + random.uniform(0, frame_ms / 1000)  # clients are not in phase
        for k, offset in enumerate(range(0, len(pcm), frame)):
            due = started + k * frame_ms / 1000
            if (wait := due - loop.time()) > 0:
                await asyncio.sleep(wait)
            elif wait < -0.02:
                late += 1
            await ws.send(b"\x00" + pcm[offset : offset + frame].tobytes())
    return late


async def _ready(ws: ClientConnection) -> None:
    while True:
        message = json.loads(await ws.recv())
        if message["type"] == "ready":
            return
        if message["type"] == "error":
            raise RuntimeError(message["message"])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def run_level(
    url: str, pid: int, probe: Probe, streams: int, seconds: float, frame_ms: int
) -> Level:
    pcm = speech(seconds)
    expected = streams * -(-len(pcm) // 1600)
    probe.reset(expected)
    cpu_before, wall_before = cpu_seconds(pid), time.monotonic()
    lates = await asyncio.gather(*(stream_session(url, pcm, frame_ms) for _ in range(streams)))
    cpu = (cpu_seconds(pid) - cpu_before) / (time.monotonic() - wall_before)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(probe.complete.wait(), 10)
    latencies = np.array(probe.latencies) * 1000 if probe.latencies else np.zeros(1)
    return Level(
        streams=streams,
        seconds=seconds,
        chunks_expected=expected,
        chunks_received=probe.chunks,
        latency_p50_ms=round(float(np.percentile(latencies, 50)), 2),
        latency_p99_ms=round(float(np.percentile(latencies, 99)), 2),
        latency_max_ms=round(float(latencies.max()), 2),
        capture_cpu_percent=round(cpu * 100, 1),
        client_late_frames=sum(lates),
    )


async def idle_memory(url: str, pid: int, count: int) -> dict[str, float]:
    """Capture's resident memory per open, started, silent session."""
    await asyncio.sleep(1)
    before = rss_mb(pid)
    sockets: list[ClientConnection] = []
    try:
        for _ in range(count):
            ws = await connect(url + "/v1/stream")
            await ws.send(json.dumps({"type": "start"}))
            await _ready(ws)
            sockets.append(ws)
        await asyncio.sleep(2)
        after = rss_mb(pid)
    finally:
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    return {
        "connections": count,
        "rss_before_mb": round(before, 1),
        "rss_after_mb": round(after, 1),
        "mb_per_connection": round((after - before) / max(count, 1), 3),
    }


def nats_binary() -> str:
    here = Path(sys.executable).parent / "nats-server"
    return str(here) if here.exists() else (shutil.which("nats-server") or "nats-server")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def processes(workdir: Path) -> Any:
    nats_port, port = free_port(), free_port()
    nats_url = f"nats://127.0.0.1:{nats_port}"
    server = subprocess.Popen(
        [nats_binary(), "-a", "127.0.0.1", "-p", str(nats_port), "-js", "-sd", str(workdir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    env = {
        **os.environ,
        "ECHOSTREAM_NATS_URL": nats_url,
        "ECHOSTREAM_CAPTURE_PORT": str(port),
        "ECHOSTREAM_CAPTURE_MAX_CONNECTIONS": "5000",
        "ECHOSTREAM_CAPTURE_FINISH_TIMEOUT_S": "1",
        "ECHOSTREAM_LOG_LEVEL": "warning",
    }
    with (workdir / "capture.log").open("wb") as log:
        capture = subprocess.Popen([sys.executable, "-m", "capture"], env=env, stderr=log)
    try:
        _wait_healthy(f"http://127.0.0.1:{port}/health")
        yield nats_url, f"ws://127.0.0.1:{port}", capture.pid
    finally:
        for process in (capture, server):
            process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=15)


def _wait_healthy(url: str) -> None:
    for _ in range(300):
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1):
            return
        time.sleep(0.1)
    raise RuntimeError("capture did not start")


async def bench(args: argparse.Namespace, nats_url: str, url: str, pid: int) -> dict[str, Any]:
    nc = await nats.connect(nats_url)
    probe = Probe()
    await nc.jetstream().subscribe(
        "ep.audio.>", cb=probe.on_msg, ordered_consumer=True, deliver_policy=DeliverPolicy.NEW
    )
    levels = []
    for streams in args.levels:
        level = await run_level(url, pid, probe, streams, args.seconds, args.frame_ms)
        levels.append(level)
        sys.stderr.write(f"{json.dumps(asdict(level))}\n")
    idle = await idle_memory(url, pid, args.idle)
    await nc.close()
    return {
        "frame_ms": args.frame_ms,
        "levels": [asdict(level) for level in levels],
        "idle": idle,
        "capacity_streams": capacity(levels, args.p99_budget_ms),
        "p99_budget_ms": args.p99_budget_ms,
    }


def capacity(levels: list[Level], p99_budget_ms: float) -> int:
    """Most streams kept in real time: every chunk, p99 within budget, CPU below one core."""
    kept = [
        lv.streams
        for lv in levels
        if lv.chunks_received == lv.chunks_expected
        and lv.latency_p99_ms <= p99_budget_ms
        and lv.capture_cpu_percent < 95
    ]
    return max(kept, default=0)


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "| streams | chunks | bus p50 ms | bus p99 ms | max ms | capture CPU % | late frames |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for lv in report["levels"]:
        lines.append(
            f"| {lv['streams']} | {lv['chunks_received']}/{lv['chunks_expected']} "
            f"| {lv['latency_p50_ms']} | {lv['latency_p99_ms']} | {lv['latency_max_ms']} "
            f"| {lv['capture_cpu_percent']} | {lv['client_late_frames']} |"
        )
    idle = report["idle"]
    lines += [
        "",
        f"Capacity: {report['capacity_streams']} real-time streams "
        f"(p99 ≤ {report['p99_budget_ms']} ms, every chunk delivered, capture below one core).",
        f"Idle sessions: {idle['connections']} open, {idle['mb_per_connection']} MB each "
        f"(RSS {idle['rss_before_mb']} → {idle['rss_after_mb']} MB).",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--levels", type=lambda s: [int(x) for x in s.split(",")], default=[1, 5, 10, 15, 20, 30]
    )
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--frame-ms", type=int, default=100)
    parser.add_argument("--idle", type=int, default=500)
    parser.add_argument("--p99-budget-ms", type=float, default=10.0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, processes(Path(tmp)) as (nats_url, url, pid):
        report = asyncio.run(bench(args, nats_url, url, pid))
    text = markdown(report)
    sys.stdout.write(text + "\n")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        args.out.with_suffix(".md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
