"""What an engine stream reports: revisable partials and immutable finals of segments."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class TimedWord:
    """A word of a final, on the source's sample clock."""

    text: str
    start: int
    end: int
    probability: float | None = None


@dataclass(frozen=True, slots=True)
class PartialUpdate:
    """The current hypothesis of the segment that starts at ``segment_start``."""

    segment_start: int
    segment_end: int
    revision: int  # 1, 2, ... within a segment
    text: str


@dataclass(frozen=True, slots=True)
class FinalUpdate:
    """The immutable text of a segment; empty only to retract partials of a silent segment."""

    segment_start: int
    segment_end: int
    text: str
    words: tuple[TimedWord, ...] = ()
    confidence: float | None = None
    language: str | None = None


@dataclass(frozen=True, slots=True)
class ResumePoint:
    """Where a stream stands after a final: what a successor needs to carry on.

    ``done`` is the sample up to which every final is published, so a successor replays audio
    from there; ``state`` is the engine's own msgpack-able state (open segment, dedup tail...).
    """

    done: int
    state: Mapping[str, Any] = field(default_factory=dict)


Update = PartialUpdate | FinalUpdate
