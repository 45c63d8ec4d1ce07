"""`make run` (or infra/local/run.py) as a user starts it: in its own process group, so a test can
press Ctrl-C the way a terminal does, with every port chosen free."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from deployment.deploy_files import REPO
from nats_server import free_port

PORT_VARIABLES = (
    "ECHOSTREAM_CAPTURE_PORT",
    "ECHOSTREAM_AGGREGATOR_HTTP_PORT",
    "ECHOSTREAM_WHISPER_METRICS_PORT",
    "ECHOSTREAM_CAPTURE_METRICS_PORT",
    "ECHOSTREAM_AGGREGATOR_METRICS_PORT",
    "ECHOSTREAM_VOXTRAL_METRICS_PORT",
    "ECHOSTREAM_FASTERWHISPER_METRICS_PORT",
)


@dataclass
class LocalRun:
    process: subprocess.Popen[bytes]
    log: Path
    ports: dict[str, int]

    def url(self, variable: str, path: str = "") -> str:
        return f"http://127.0.0.1:{self.ports[variable]}{path}"

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for_line(self, text: str, timeout_s: float = 30.0) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for line in self.output.splitlines():
                if text in line:
                    return line
            self.fail_if_exited()
            time.sleep(0.1)
        raise AssertionError(f"no {text!r} within {timeout_s} s:\n{self.output[-4000:]}")

    def wait_healthy(self, urls: Sequence[str], timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        waiting = list(urls)
        while waiting and time.monotonic() < deadline:
            self.fail_if_exited()
            waiting = [url for url in waiting if health_status(url) not in ("ok", "degraded")]
            time.sleep(0.25)
        assert not waiting, f"not healthy after {timeout_s} s: {waiting}\n{self.output[-4000:]}"

    def fail_if_exited(self) -> None:
        if self.process.poll() is not None:
            raise AssertionError(f"exited with {self.process.returncode}:\n{self.output[-4000:]}")

    def interrupt(self, timeout_s: float = 60.0) -> int:
        """Ctrl-C in the terminal: SIGINT to the whole foreground process group."""
        os.killpg(self.process.pid, signal.SIGINT)
        return self.process.wait(timeout=timeout_s)


def health_status(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            status: str | None = json.loads(response.read()).get("status")
            return status
    except urllib.error.HTTPError as exc:
        return f"http {exc.code}"
    except (OSError, ValueError):
        return None


def port_is_listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def clean_environment() -> dict[str, str]:
    """The caller's environment without EchoStream settings a developer may have exported."""
    return {k: v for k, v in os.environ.items() if not k.startswith("ECHOSTREAM_")}


@contextlib.contextmanager
def local_run(
    workdir: Path, argv: Sequence[str], env: dict[str, str] | None = None
) -> Iterator[LocalRun]:
    """Start ``argv`` (``make run …`` or ``run.py …``) with free ports; stop it however the test ends."""
    ports = {variable: free_port() for variable in PORT_VARIABLES}
    full_env = {
        **clean_environment(),
        **{k: str(v) for k, v in ports.items()},
        "ECHOSTREAM_LOG_FORMAT": "json",
        **(env or {}),
    }
    log = workdir / "run.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            list(argv),
            cwd=workdir,
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    running = LocalRun(process, log, ports)
    try:
        yield running
    finally:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError, subprocess.TimeoutExpired):
                running.interrupt(timeout_s=40)
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def make_run_argv(state: Path, nats_port: int, *extra: str) -> list[str]:
    args = " ".join(["--state-dir", str(state), "--nats-port", str(nats_port), *extra])
    return ["make", "-C", str(REPO), "--no-print-directory", "run", f"RUN_ARGS={args}"]
