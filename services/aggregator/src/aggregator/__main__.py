"""Start the aggregator: ``python -m aggregator``."""

from __future__ import annotations

import sys

from aggregator.config import AggregatorSettings
from aggregator.service import Aggregator
from echostream_shared.logging import configure_logging
from echostream_shared.runtime import run_service


def main() -> int:
    settings = AggregatorSettings()
    configure_logging("aggregator", settings.log_level, settings.log_format)
    return run_service(Aggregator(settings), settings)


if __name__ == "__main__":
    sys.exit(main())
