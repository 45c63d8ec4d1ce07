"""The system under test, whole: ``infra/local/run.py`` (what ``make run`` starts: an embedded
nats-server, capture, one engine's worker(s), the aggregator), fed through capture's native
WebSocket protocol ``/v1/stream`` at real time, as a client would.

Timing is the client's: each 100 ms frame is sent when its last sample would have been captured
live, so a sample's capture time is the frame's send time minus the frame length plus its offset
(``Clock``); a transcript's time is when the client received it. Latencies therefore hold
everything between a microphone and the user: chunking, capture's VAD, the bus, the worker, the
relay back through capture.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats_server import free_port
from websockets.asyncio.client import connect

from bench.audio import RATE
from bench.paths import REPO
from bench.system import (
    Clock,
    Emission,
    Meter,
    PassResult,
    ProcessUsage,
    StreamResult,
    StreamSpec,
    TimedWord,
    self_cpu_s,
)
from bench.worker_metrics import worker_counters
from echostream_shared import messages as m, topology as t
from echostream_shared.codec import DecodeError, decode_as

RUN_SCRIPT = REPO / "infra" / "local" / "run.py"
FRAME_S = 0.1
FRAME = int(RATE * FRAME_S)
SOURCE = "mic"
ENGINES = ("whisper", "fasterwhisper")
"""The CPU engines the bench can run; each as ``make run --engines <engine>`` starts it."""


class EchoStreamNative:
    """``make run``'s topology on free ports, with ``workers`` workers of one engine."""

    name = "echostream"

    def __init__(
        self,
        workdir: Path,
        model: Path,
        *,
        engine: str = "whisper",
        workers: int = 1,
        env: dict[str, str] | None = None,
        drain_timeout_s: float = 60.0,
    ) -> None:
        self.workdir = workdir
        self.model = model
        self.engine = engine
        self.service = f"{engine}-worker"
        self.modules = {
            f"{engine}_worker": self.service,
            "capture": "capture",
            "aggregator": "aggregator",
        }
        self.prefix = f"ECHOSTREAM_{engine.upper()}_"
        self.workers = workers
        self.nats_port = free_port()
        self.capture_port = free_port()
        self.env = {
            "ECHOSTREAM_WHISPER_MODEL_PATH": str(model),
            # capacity must come out of the box: no admission setting changed, only how often the
            # worker reports its lag
            f"{self.prefix}STATUS_INTERVAL_S": "1",
            "ECHOSTREAM_LOG_FORMAT": "json",
            **(env or {}),
            **overrides_from(os.environ),
        }
        self.drain_timeout_s = drain_timeout_s
        self._process: subprocess.Popen[bytes] | None = None
        self._nc: NATS | None = None
        self._statuses: list[tuple[float, m.WorkerStatus]] = []
        self._processes: dict[str, int] = {}

    def describe(self) -> dict[str, object]:
        settings = {k: v for k, v in self.env.items() if k != "ECHOSTREAM_WHISPER_MODEL_PATH"}
        return {
            "system": self.name,
            "started_as": f"infra/local/run.py {shlex.join(self._run_args())} (make run)",
            "protocol": "native WebSocket /v1/stream, 100 ms PCM16 frames at real time",
            "engine": self.engine,
            "model": str(self.model),
            "workers": self.workers,
            "env": settings,
        }

    @property
    def state_dir(self) -> Path:
        return self.workdir / "state"

    async def start(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("ECHOSTREAM_")}
        env.update(self.env)  # overrides from the environment included
        for variable in (
            "ECHOSTREAM_AGGREGATOR_HTTP_PORT",
            "ECHOSTREAM_WHISPER_METRICS_PORT",
            "ECHOSTREAM_CAPTURE_METRICS_PORT",
            "ECHOSTREAM_AGGREGATOR_METRICS_PORT",
            "ECHOSTREAM_VOXTRAL_METRICS_PORT",
            "ECHOSTREAM_FASTERWHISPER_METRICS_PORT",
        ):
            env[variable] = str(free_port())
        env["ECHOSTREAM_CAPTURE_PORT"] = str(self.capture_port)
        argv = [
            sys.executable,
            str(RUN_SCRIPT),
            *("--state-dir", str(self.state_dir), "--nats-port", str(self.nats_port)),
            *self._run_args(),
        ]
        self._process = self._launch(argv, env)
        try:
            await self._wait_ready()
        except BaseException:
            await self.stop()  # a system that never got ready must not outlive the bench
            raise

    def _run_args(self) -> list[str]:
        return ["--engines", self.engine, "--scale", f"{self.service}={self.workers}"]

    def _launch(self, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        with (self.workdir / "run.log").open("wb") as log:
            return subprocess.Popen(
                argv,
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    async def _wait_ready(self, timeout_s: float = 180.0) -> None:
        """make run says every service is healthy, and every worker has reported."""
        deadline = time.monotonic() + timeout_s
        while self._nc is None:
            self._check_alive(deadline)
            token = self.state_dir / "nats.token"
            if token.exists():
                with contextlib.suppress(Exception):
                    self._nc = await nats.connect(
                        f"nats://127.0.0.1:{self.nats_port}",
                        token=token.read_text().strip(),
                        max_reconnect_attempts=-1,
                        connect_timeout=1,
                        allow_reconnect=False,
                        error_cb=_quiet,  # nats-server may still be starting: we retry
                    )
            await asyncio.sleep(0.2)
        await self._nc.subscribe(t.worker_status(self.engine, "*"), cb=self._on_status)
        while True:
            self._check_alive(deadline)
            reporting = {s.worker_id for _, s in self._statuses}
            # "ready" is make run's own word that every service answers its health check
            if len(reporting) >= self.workers and "| ready: " in self.log_tail(100_000):
                break
            await asyncio.sleep(0.2)
        self._processes = self._find_processes()

    def _check_alive(self, deadline: float) -> None:
        process = self._supervisor()
        if process.poll() is not None:
            raise RuntimeError(f"make run exited with {process.returncode}: {self.log_tail()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the system was not ready in time: {self.log_tail()}")

    def _supervisor(self) -> subprocess.Popen[bytes]:
        if self._process is None:
            raise RuntimeError("the system is not started")
        return self._process

    def log_tail(self, size: int = 3000) -> str:
        path = self.workdir / "run.log"
        return path.read_text(errors="replace")[-size:] if path.exists() else ""

    def capture_url(self, path: str, scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.capture_port}{path}"

    async def _on_status(self, msg: Msg) -> None:
        with contextlib.suppress(DecodeError):
            self._statuses.append((time.time(), decode_as(msg.data, m.WorkerStatus, msg.subject)))

    def _find_processes(self) -> dict[str, int]:
        """The supervisor's children by service: workers first (the engine), then the rest."""
        found: dict[str, int] = {}
        for pid in _descendants(self._supervisor().pid):
            argv = _cmdline(pid)
            if any(a.endswith("nats-server") for a in argv[:1]):
                found["nats-server"] = pid
            elif "-m" in argv:
                module = argv[argv.index("-m") + 1] if argv.index("-m") + 1 < len(argv) else ""
                name = self.modules.get(module)
                if name == self.service:
                    index = sum(k.startswith(self.service) for k in found) + 1
                    found[f"{self.service}-{index}"] = pid
                elif name is not None:
                    found[name] = pid
        found["make run (supervisor)"] = self._supervisor().pid
        workers = {k: v for k, v in found.items() if k.startswith(self.service)}
        if len(workers) != self.workers:
            raise RuntimeError(f"expected {self.workers} {self.service}s, found {sorted(found)}")
        return {**workers, **{k: v for k, v in found.items() if k not in workers}}

    def _worker_metrics_ports(self) -> list[int]:
        ports = []
        for name, pid in self._processes.items():
            if name.startswith(self.service):
                value = _environ(pid).get(f"{self.prefix}METRICS_PORT")
                if value:
                    ports.append(int(value))
        return ports

    async def wait_idle(self, timeout_s: float = 30.0) -> None:
        """Until every worker reports no streams and state ``ok`` (between passes)."""
        since = time.time()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            latest: dict[str, m.WorkerStatus] = {}
            for at, status in self._statuses:
                if at > since:
                    latest[status.worker_id] = status
            if len(latest) >= self.workers and all(
                s.active_streams == 0 and s.state == "ok" for s in latest.values()
            ):
                return
            await asyncio.sleep(0.2)

    async def idle_cpu_per_s(self, seconds: float = 3.0) -> float:
        """The workers' CPU use while they hold no stream (event loop, status reports)."""
        workers = {k: v for k, v in self._processes.items() if k.startswith(self.service)}
        meter = Meter(workers)
        meter.start()
        await asyncio.sleep(seconds)
        usage, _, wall, _ = meter.stop()
        return sum(u.cpu_s for u in usage) / wall

    async def run(self, specs: Sequence[StreamSpec]) -> PassResult:
        meter = Meter(self._processes)
        counters0 = await asyncio.to_thread(self._scrape)
        self_cpu0 = self_cpu_s()
        started = time.time()
        meter.start()
        longest = max(spec.session.duration_s for spec in specs)
        outcomes = await asyncio.gather(
            *(self._play(spec, self.drain_timeout_s + 0.5 * longest) for spec in specs)
        )
        usage, busy, wall, load = meter.stop()
        bench_cpu = self_cpu_s() - self_cpu0
        counters = await asyncio.to_thread(self._scrape)
        deltas = {k: v - counters0.get(k, 0.0) for k, v in counters.items()}
        streams = list(outcomes)
        drained = all(s.closed for s in streams)
        statuses = self.status_rows(started - 0.5)
        result = PassResult(
            self.name,
            streams,
            wall,
            usage,
            busy,
            load,
            statuses,
            drained,
            deltas,
            engine_processes=self.workers,
        )
        result.usage.append(ProcessUsage("bench (client)", os.getpid(), bench_cpu))
        return result

    def status_rows(self, since: float = 0.0) -> list[dict[str, float | int | str]]:
        """The workers' status reports received since ``since`` (wall clock)."""
        return [_status_row(at, status) for at, status in self._statuses if at >= since]

    @property
    def processes(self) -> dict[str, int]:
        """The system's processes by name (workers first), once started."""
        return dict(self._processes)

    async def play(self, spec: StreamSpec) -> StreamResult:
        """One session through the native protocol, outside any pass (the soak's own loop)."""
        return await self._play(spec, self.drain_timeout_s + 0.5 * spec.session.duration_s)

    def _scrape(self) -> dict[str, float]:
        """Every worker's Prometheus counters and histogram sums, added up."""
        total: dict[str, float] = {}
        for port in self._worker_metrics_ports():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                    text = r.read().decode()
            except OSError:
                continue
            for key, value in worker_counters(text).items():
                total[key] = total.get(key, 0.0) + value
        return total

    async def _play(self, spec: StreamSpec, drain_timeout_s: float) -> StreamResult:
        """One native-protocol session: start, frames at real time, end, then wait for done."""
        await asyncio.sleep(spec.start_delay_s)
        pcm = spec.session.audio
        chunks: list[tuple[int, float]] = []
        emissions: list[Emission] = []
        done: dict[str, Any] = {}
        start = {
            "type": "start",
            "sources": [SOURCE],
            "engine": self.engine,
            "metadata": {"bench_stream": spec.stream_id},
        }
        async with connect(self.capture_url("/v1/stream", "ws"), max_size=None) as ws:
            await ws.send(json.dumps(start))
            ready = json.loads(await ws.recv())
            if ready.get("type") != "ready":
                raise RuntimeError(f"{spec.stream_id}: capture refused the session: {ready}")
            receiving = asyncio.create_task(_receive(ws, emissions, done))
            loop = asyncio.get_running_loop()
            began = loop.time()
            wall_began = time.time()
            for k, first in enumerate(range(0, len(pcm), FRAME)):
                frame = pcm[first : first + FRAME]
                due = began + (k + 1) * FRAME_S
                if (wait := due - loop.time()) > 0:
                    await asyncio.sleep(wait)
                await ws.send(b"\x00" + frame.astype("<i2").tobytes())
                # the frame's first sample was captured one frame before it could be sent
                sent = wall_began + (loop.time() - began)
                chunks.append((first, sent - len(frame) / RATE))
            await ws.send(json.dumps({"type": "end"}))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(receiving), drain_timeout_s)
            receiving.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await receiving
        closed = bool(done.get("complete"))
        return StreamResult(spec, Clock(chunks), emissions, closed=closed)

    async def stop(self) -> None:
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await self._nc.close()
            self._nc = None
        process = self._process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(process.wait, 60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                await asyncio.to_thread(process.wait)
        self._process = None


def overrides_from(environ: dict[str, str] | os._Environ[str]) -> dict[str, str]:
    """Service settings given to the bench (``ECHOSTREAM_WHISPER_DEGRADE_LAG_S=1 make bench``),
    except where the system under test must be: its broker and ports are the bench's."""
    services = (
        "ECHOSTREAM_WHISPER_",
        "ECHOSTREAM_FASTERWHISPER_",
        "ECHOSTREAM_CAPTURE_",
        "ECHOSTREAM_AGGREGATOR_",
    )
    return {
        k: v
        for k, v in environ.items()
        if k.startswith(services) and not k.endswith(("_PORT", "_HOST", "_DATABASE_URL"))
    }


async def _quiet(_error: Exception) -> None:
    return None


async def _receive(ws: Any, emissions: list[Emission], done: dict[str, Any]) -> None:
    """Transcript events as the client gets them, stamped with their arrival (wall clock)."""
    async for raw in ws:
        if isinstance(raw, bytes):
            continue
        message = json.loads(raw)
        kind = message.get("type")
        if kind in ("partial", "final"):
            emissions.append(_emission(message, time.time()))
        elif kind == "error":
            raise RuntimeError(f"capture reported an error: {message}")
        elif kind == "done":
            done.update(message)
            return


def _emission(message: dict[str, Any], at: float) -> Emission:
    words = tuple(
        TimedWord(w["text"], round(w["start"] * RATE), round(w["end"] * RATE))
        for w in message.get("words", [])
    )
    return Emission(
        message["type"],
        message["segment_id"],
        int(message["start_sample"]),
        int(message["end_sample"]),
        message["text"],
        at,
        int(message.get("revision", 0)),
        words,
    )


def _status_row(at: float, status: m.WorkerStatus) -> dict[str, float | int | str]:
    """Every scalar the status carries (fields added to ``WorkerStatus`` later come along)."""
    row: dict[str, float | int | str] = {"received_at": at}
    for key, value in status.model_dump(mode="json").items():
        if key not in ("type", "detail") and isinstance(value, float | int | str):
            row[key] = value
    return row


def _descendants(root: int) -> list[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                stat = (entry / "stat").read_text()
                parents[int(entry.name)] = int(stat[stat.rindex(")") + 2 :].split()[1])
    found, frontier = [], [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent]
        found.extend(children)
        frontier.extend(children)
    return found


def _cmdline(pid: int) -> list[str]:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    return []


def _environ(pid: int) -> dict[str, str]:
    with contextlib.suppress(OSError):
        pairs = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace").split("\0")
        return dict(p.split("=", 1) for p in pairs if "=" in p)
    return {}
