"""What the store holds about a session, as plain values for the views to shape."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class SourceRecord:
    """One source of a session as its lifecycle events described it."""

    source: str
    opened_at: float | None
    closed_at: float | None
    end_sample: int | None
    engines: list[str]


@dataclass(frozen=True)
class FinalStats:
    """Aggregates of one engine's finals of one source in one language."""

    engine: str
    source: str
    language: str | None
    segments: int
    words: int
    end_sample: int


@dataclass(frozen=True)
class FinalRecord:
    """One stored final."""

    engine: str
    segment_id: str
    source: str
    start_sample: int
    end_sample: int
    text: str
    words: list[dict[str, Any]]
    confidence: float | None
    language: str | None
    emitted_at: float


@dataclass(frozen=True)
class PartialRecord:
    """The newest revision of a segment still in progress."""

    engine: str
    segment_id: str
    source: str
    revision: int
    start_sample: int
    end_sample: int
    text: str


@dataclass(frozen=True)
class SessionRecord:
    """A stored session; ``finals`` and ``partials`` are filled for one engine, when asked."""

    session_id: str
    client: str | None
    opened_at: float | None
    closed_at: float | None
    close_reason: str | None
    engines: list[str]
    metadata: dict[str, str]
    sources: list[SourceRecord]
    transcribed: set[tuple[str, str]]
    failures: dict[tuple[str, str], str]
    """(source, engine) pairs whose engine gave up, and why; they count as transcribed."""
    stats: list[FinalStats]
    finals: list[FinalRecord] = field(default_factory=list)
    partials: list[PartialRecord] = field(default_factory=list)

    @property
    def known_engines(self) -> list[str]:
        """Every engine the session asked for or that transcribed some of it."""
        found = set(self.engines)
        found.update(engine for source in self.sources for engine in source.engines)
        found.update(stat.engine for stat in self.stats)
        found.update(engine for _, engine in self.transcribed)
        return sorted(found)
