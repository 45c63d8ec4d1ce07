"""Start a faster-whisper worker: ``python -m fasterwhisper_worker``."""

from __future__ import annotations

import os
import sys

from pydantic import ValidationError

from echostream_shared.logging import configure_logging, get_logger
from echostream_shared.runtime import EXIT_FAILED, run_service
from fasterwhisper_worker.config import FasterWhisperWorkerSettings
from fasterwhisper_worker.engine import fasterwhisper_transcriber
from fasterwhisper_worker.model_dir import ModelDirError
from fasterwhisper_worker.service import fasterwhisper_worker


def main() -> int:
    try:
        settings = FasterWhisperWorkerSettings()
    except ValidationError as exc:
        configure_logging("fasterwhisper-worker")
        get_logger("main").error(
            "settings.invalid", errors=exc.errors(include_input=False, include_url=False)
        )
        return EXIT_FAILED
    configure_logging("fasterwhisper-worker", settings.log_level, settings.log_format)
    try:
        transcriber = fasterwhisper_transcriber(settings)
    except ModelDirError as exc:
        get_logger("main").error("model.invalid", error=str(exc))
        return EXIT_FAILED
    return run_service(fasterwhisper_worker(settings, transcriber), settings)


def exit_now(code: int) -> None:
    """Exit without joining the decoder threads: a CTranslate2 decode cannot be interrupted, and
    Python joins executor threads at exit, so an unneeded decode would hold the process."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    exit_now(main())
