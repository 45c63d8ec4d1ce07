"""Start a whisper worker: ``python -m whisper_worker``."""

from __future__ import annotations

import os
import sys

from echostream_shared.logging import configure_logging, get_logger
from echostream_shared.runtime import EXIT_FAILED, run_service
from whisper_worker.config import WhisperWorkerSettings
from whisper_worker.engine import whisper_transcriber
from whisper_worker.model_file import ModelFileError
from whisper_worker.service import whisper_worker


def main() -> int:
    settings = WhisperWorkerSettings()
    configure_logging("whisper-worker", settings.log_level, settings.log_format)
    try:
        transcriber = whisper_transcriber(settings)
    except ModelFileError as exc:
        get_logger("main").error("model.invalid", error=str(exc))
        return EXIT_FAILED
    return run_service(whisper_worker(settings, transcriber), settings)


def exit_now(code: int) -> None:
    """Exit without joining the decoder threads.

    A whisper.cpp decode cannot be interrupted, and Python joins executor threads at exit, so a
    decode whose result nobody needs would otherwise hold the process for seconds after the
    service has handed its streams back.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    exit_now(main())
