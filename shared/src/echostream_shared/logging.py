"""structlog configuration: JSON lines, context bound per session, never transcript text."""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

REDACTED_KEYS = frozenset({"text", "transcript", "words", "pcm", "audio", "payload"})
"""Keys that would carry speech content; dropped from every log line."""


def drop_speech_content(
    _logger: Any, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Remove any field that could hold transcript text or audio."""
    for key in REDACTED_KEYS & event.keys():
        del event[key]
    return event


def configure_logging(service: str, level: str = "info", fmt: str = "json") -> None:
    """Configure structlog for a service process; safe to call more than once."""
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            drop_speech_content,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=False,
    )
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(service=service)


def _stderr_logger(*_args: Any) -> structlog.PrintLogger:
    # Resolved per logger, so a replaced sys.stderr (tests, daemons) is honoured.
    return structlog.PrintLogger(sys.stderr)


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    """A logger bound to a component name."""
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(component=name)
    return logger
