"""Per-process and per-connection limits, checked with messages a client can act on."""

from __future__ import annotations

from capture.audio import AudioFormat
from capture.config import CaptureSettings


class ConnectionLimiter:
    """Counts open WebSocket connections against ``max_connections``."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self.open = 0

    def try_acquire(self) -> bool:
        if self.open >= self._limit:
            return False
        self.open += 1
        return True

    def release(self) -> None:
        self.open = max(0, self.open - 1)


def format_problem(fmt: AudioFormat, settings: CaptureSettings) -> str | None:
    """Why a declared audio format is refused, or None when it is accepted."""
    if not settings.min_sample_rate <= fmt.sample_rate <= settings.max_sample_rate:
        return (
            f"sample_rate {fmt.sample_rate} is outside "
            f"{settings.min_sample_rate}-{settings.max_sample_rate} Hz"
        )
    if not 1 <= fmt.channels <= settings.max_channels:
        return f"channels {fmt.channels} is outside 1-{settings.max_channels}"
    return None


def max_session_samples(settings: CaptureSettings) -> int:
    """Samples of 16 kHz audio one source may send."""
    return int(settings.max_session_s * 16_000)
