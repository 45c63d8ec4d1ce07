"""The running pipeline as processes: nats-server and what `make run` starts by default (the
whisper worker, capture and the aggregator), each with the command and variables `make run`
gives it (``infra/local/local_services.py``), on free ports."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from nats_server import NatsServer, free_port

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "models" / "ggml-tiny.en.bin"
LOCAL_SERVICES = REPO / "infra" / "local" / "local_services.py"


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


def local_services() -> ModuleType:
    """``infra/local/local_services.py``, the list of processes `make run` starts."""
    loaded = sys.modules.get("local_services")
    if loaded is not None and getattr(loaded, "__file__", None) == str(LOCAL_SERVICES):
        return loaded
    spec = importlib.util.spec_from_file_location("local_services", LOCAL_SERVICES)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["local_services"] = module
    spec.loader.exec_module(module)
    return module


def make_run_programs(
    nats_url: str, workdir: Path, env: Mapping[str, str]
) -> tuple[list[Any], Any]:
    """The programs `make run` starts by default (its ``DEFAULT_SERVICES``, in its order), with
    its commands and variables, on free ports and with their state in ``workdir``."""
    services = local_services()
    ports = services.Ports(*(free_port() for _ in dataclasses.fields(services.Ports)))
    every = services.services(services.Broker(nats_url, ""), ports, workdir, env)
    programs = [p for p in every if p.name in services.DEFAULT_SERVICES]
    names = [p.name for p in programs]
    assert sorted(names) == sorted(services.DEFAULT_SERVICES), (names, services.DEFAULT_SERVICES)
    return programs, ports


@contextlib.contextmanager
def running_pipeline(workdir: Path, **capture_env: str) -> Iterator[Pipeline]:
    """NATS and `make run`'s default services (one whisper worker, one capture, one aggregator),
    torn down in reverse. ``capture_env`` is capture's environment beyond `make run`'s."""
    require_whisper_worker()
    nats = NatsServer(workdir / "jetstream")
    nats.start()
    base = {**os.environ, **capture_env}
    programs, ports = make_run_programs(nats.url, workdir, base)
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for program in programs:
            env = {**os.environ, **program.env}
            if program.name == "capture":
                env |= capture_env
            processes.append(_spawn(program.argv, workdir / f"{program.name}.log", env))
        pipeline = Pipeline(nats.url, ports.capture, ports.aggregator, workdir)
        _wait_until_healthy(pipeline, processes, [p.health_url for p in programs])
        yield pipeline
    finally:
        for process in reversed(processes):
            process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=20)
            if process.poll() is None:
                process.kill()
        nats.stop()


def _spawn(argv: tuple[str, ...], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(list(argv), env=env, stderr=out)


def _wait_until_healthy(
    pipeline: Pipeline,
    processes: list[subprocess.Popen[bytes]],
    health_urls: list[str | None],
    timeout_s: float = 60.0,
) -> None:
    """Every program's health URL answers (as `make run` waits for them) and a whisper worker
    has reported to capture."""
    deadline = time.monotonic() + timeout_s
    waiting = [url for url in health_urls if url is not None]
    while time.monotonic() < deadline:
        for process in processes:
            if process.poll() is not None:
                logs = "\n".join(p.read_text()[-3000:] for p in pipeline.logs.glob("*.log"))
                raise RuntimeError(f"a pipeline process exited with {process.returncode}:\n{logs}")
        waiting = [url for url in waiting if not _answers(url)]
        if not waiting and _workers(pipeline) >= 1:
            return
        time.sleep(0.2)
    raise RuntimeError(
        f"the pipeline was not healthy in time (waiting for {waiting or 'a worker'})"
    )


def _answers(url: str) -> bool:
    with (
        contextlib.suppress(OSError, ValueError),
        urllib.request.urlopen(url, timeout=1) as response,
    ):
        return bool(response.status == 200)
    return False


def _workers(pipeline: Pipeline) -> int:
    with (
        contextlib.suppress(OSError, ValueError),
        urllib.request.urlopen(pipeline.http + "/health", timeout=1) as response,
    ):
        return int(json.loads(response.read()).get("workers", 0))
    return 0
