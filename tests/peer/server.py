"""WhisperLiveKit's server as a child process: LocalAgreement on faster-whisper, offline, loopback.

What had to change for a machine without a model hub:
- ``--model_dir`` points at a local CTranslate2 directory; WhisperLiveKit resolves an existing
  path before any hub call (a name that is not a path would be a hub download).
- ``--warmup-file`` is a local WAV: its default downloads jfk.wav from GitHub (it would only log a
  failure and skip warm-up, so the first chunk would pay the model's first-call cost).
- ``HF_HUB_OFFLINE=1``, so any hub lookup fails at once instead of waiting on the network.
Nothing had to be disabled: the Silero VAC model (ONNX) and faster-whisper's VAD ship inside
the packages, and ``--pcm-input`` bypasses FFmpeg.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from peer.paths import PeerUnavailable, require_peer

READY_TIMEOUT_S = 180.0  # importing torch and loading the model takes ~30 s on an idle machine


@dataclass(frozen=True)
class ServerOptions:
    model_dir: Path
    warmup_wav: Path | None
    threads: int = 2
    # WLK's --min-chunk-size (default 0.1 s). It only matters with --no-vac: with its VAC on,
    # audio goes to the ASR in 40 ms VAC chunks and every loop re-decodes what has arrived.
    min_chunk_size_s: float | None = None
    vac: bool = True
    extra_args: tuple[str, ...] = ()

    def argv(self, server: Path, port: int) -> list[str]:
        args = [
            str(server),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--backend",
            "faster-whisper",
            "--backend-policy",
            "localagreement",
            "--model_dir",
            str(self.model_dir),
            "--lan",
            "en",
            "--pcm-input",
            "--warmup-file",
            str(self.warmup_wav) if self.warmup_wav else "",
            "--log-level",
            "INFO",
        ]
        if self.min_chunk_size_s is not None:
            args += ["--min-chunk-size", str(self.min_chunk_size_s)]
        if not self.vac:
            args.append("--no-vac")
        return [*args, *self.extra_args]

    def env(self) -> dict[str, str]:
        threads = str(self.threads)
        return {
            **os.environ,
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            # CTranslate2 (cpu_threads=0 in faster-whisper) and torch take their thread counts here
            "OMP_NUM_THREADS": threads,
            "MKL_NUM_THREADS": threads,
        }


@dataclass
class RunningServer:
    pid: int
    url: str
    argv: list[str]
    env: dict[str, str] = field(repr=False)
    log_path: Path
    startup_s: float

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://") + "/asr"

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running_server(options: ServerOptions, log_path: Path) -> Iterator[RunningServer]:
    """Start the server, wait until /health says ready, and stop it (SIGTERM, then SIGKILL)."""
    server = require_peer()
    port = free_port()
    argv = options.argv(server, port)
    env = options.env()
    started = time.monotonic()
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    running = RunningServer(
        pid=process.pid,
        url=f"http://127.0.0.1:{port}",
        argv=argv,
        env={k: env[k] for k in ("HF_HUB_OFFLINE", "OMP_NUM_THREADS", "MKL_NUM_THREADS")},
        log_path=log_path,
        startup_s=0.0,
    )
    try:
        _wait_ready(process, running)
        running.startup_s = time.monotonic() - started
        yield running
    finally:
        _stop(process)


def _wait_ready(process: subprocess.Popen[bytes], running: RunningServer) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise PeerUnavailable(
                f"WhisperLiveKit exited with code {process.returncode} before it was ready; "
                f"its log ({running.log_path}) ends with:\n{running.log_tail()}"
            )
        try:
            with urllib.request.urlopen(running.url + "/health", timeout=2) as reply:
                if b'"ready":true' in reply.read():
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    raise PeerUnavailable(
        f"WhisperLiveKit was not ready after {READY_TIMEOUT_S:.0f} s; "
        f"its log ({running.log_path}) ends with:\n{running.log_tail()}"
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
