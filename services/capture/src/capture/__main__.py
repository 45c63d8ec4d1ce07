"""Start the capture service: ``python -m capture``."""

from __future__ import annotations

import sys

from pydantic import ValidationError

from capture.config import CaptureSettings
from capture.service import CaptureService
from echostream_shared.logging import configure_logging, get_logger
from echostream_shared.runtime import EXIT_FAILED, run_service


def main() -> int:
    try:
        settings = CaptureSettings()
    except ValidationError as exc:
        configure_logging("capture")
        get_logger("main").error("settings.invalid", error=str(exc))
        return EXIT_FAILED
    configure_logging("capture", settings.log_level, settings.log_format)
    return run_service(CaptureService(settings), settings)


if __name__ == "__main__":
    sys.exit(main())
