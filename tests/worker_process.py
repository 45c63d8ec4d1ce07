"""Start and stop real whisper worker processes for tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODEL = Path(os.environ.get("ECHOSTREAM_WHISPER_MODEL", REPO / "models" / "ggml-tiny.en.bin"))


def require_model() -> Path:
    """The provisioned model, or skip the test with the reason."""
    import pytest

    if not MODEL.is_file():
        pytest.skip(f"whisper model not provisioned at {MODEL}: run `make install`")
    return MODEL


class WorkerProcess:
    """``python -m whisper_worker`` as a child process, its log in a file."""

    def __init__(self, nats_url: str, log_path: Path, **env: str) -> None:
        self.log_path = log_path
        self._env = {
            **os.environ,
            "ECHOSTREAM_NATS_URL": nats_url,
            "ECHOSTREAM_WHISPER_MODEL_PATH": str(MODEL),
            "ECHOSTREAM_NATS_CONNECT_TIMEOUT_S": "10",
            **env,
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "whisper_worker"],
                env=self._env,
                stdout=log,
                stderr=log,
            )
        return self

    def kill(self) -> None:
        """SIGKILL, if it still runs."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def stop(self, timeout_s: float = 30) -> int:
        assert self.process is not None
        self.process.terminate()
        return self.process.wait(timeout=timeout_s)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")
