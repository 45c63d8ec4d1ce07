"""Start a Voxtral worker: ``python -m voxtral_worker``."""

from __future__ import annotations

import sys

from pydantic import ValidationError

from echostream_shared.logging import configure_logging, get_logger
from echostream_shared.runtime import EXIT_FAILED, run_service
from voxtral_worker.config import VoxtralWorkerSettings
from voxtral_worker.service import voxtral_worker


def main() -> int:
    try:
        settings = VoxtralWorkerSettings()
    except ValidationError as exc:
        configure_logging("voxtral-worker")
        get_logger("main").error(
            "settings.invalid", errors=exc.errors(include_input=False, include_url=False)
        )
        return EXIT_FAILED
    configure_logging("voxtral-worker", settings.log_level, settings.log_format)
    return run_service(voxtral_worker(settings), settings)


if __name__ == "__main__":
    sys.exit(main())
