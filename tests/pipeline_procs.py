"""The running pipeline as processes: nats-server, the whisper worker, capture and the aggregator."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from nats_server import NatsServer, free_port

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "models" / "ggml-tiny.en.bin"


@dataclass(frozen=True)
class Pipeline:
    nats_url: str
    capture_port: int
    aggregator_port: int
    logs: Path

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.capture_port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.capture_port}"

    @property
    def aggregator(self) -> str:
        return f"http://127.0.0.1:{self.aggregator_port}"


def require_whisper_worker() -> None:
    """Skip unless ``python -m whisper_worker`` can run with a provisioned model."""
    if importlib.util.find_spec("whisper_worker.engine") is None:
        pytest.skip(
            "the whisper worker is not runnable in this checkout (no whisper_worker.engine)"
        )
    if not MODEL.is_file():
        pytest.skip(f"no whisper.cpp model at {MODEL}: run `make models`")


@contextlib.contextmanager
def running_pipeline(workdir: Path, **capture_env: str) -> Iterator[Pipeline]:
    """NATS, one whisper worker, one capture and one aggregator process, torn down in reverse."""
    require_whisper_worker()
    nats = NatsServer(workdir / "jetstream")
    nats.start()
    port, aggregator_port = free_port(), free_port()
    common = {**os.environ, "ECHOSTREAM_NATS_URL": nats.url, "ECHOSTREAM_LOG_LEVEL": "info"}
    processes: list[subprocess.Popen[bytes]] = []
    try:
        processes.append(_spawn("whisper_worker", workdir / "worker.log", common))
        env = {
            **common,
            "ECHOSTREAM_CAPTURE_PORT": str(port),
            "ECHOSTREAM_CAPTURE_AGGREGATOR_URL": f"http://127.0.0.1:{aggregator_port}",
            **capture_env,
        }
        processes.append(_spawn("capture", workdir / "capture.log", env))
        aggregator_env = {
            **common,
            "ECHOSTREAM_AGGREGATOR_HTTP_PORT": str(aggregator_port),
            "ECHOSTREAM_AGGREGATOR_DATABASE_URL": f"sqlite+aiosqlite:///{workdir / 'sessions.db'}",
        }
        processes.append(_spawn("aggregator", workdir / "aggregator.log", aggregator_env))
        pipeline = Pipeline(nats.url, port, aggregator_port, workdir)
        _wait_for_a_worker(pipeline, processes)
        yield pipeline
    finally:
        for process in reversed(processes):
            process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=20)
            if process.poll() is None:
                process.kill()
        nats.stop()


def _spawn(module: str, log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", module], env=env, stderr=out)


def _wait_for_a_worker(
    pipeline: Pipeline, processes: list[subprocess.Popen[bytes]], timeout_s: float = 60.0
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for process in processes:
            if process.poll() is not None:
                logs = "\n".join(p.read_text()[-3000:] for p in pipeline.logs.glob("*.log"))
                raise RuntimeError(f"a pipeline process exited with {process.returncode}:\n{logs}")
        with (
            contextlib.suppress(OSError, ValueError),
            urllib.request.urlopen(pipeline.http + "/health", timeout=1) as response,
        ):
            if json.loads(response.read()).get("workers", 0) >= 1:
                return
        time.sleep(0.2)
    raise RuntimeError("no whisper worker reported to capture in time")
