"""The HTTP API's response bodies (the OpenAPI schema is generated from them)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class ApiModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class WordOut(ApiModel):
    text: str
    start_s: float = Field(description="on the session timeline")
    end_s: float
    probability: float | None = None


class SegmentOut(ApiModel):
    """A final, placed on the session timeline (its source's offset added)."""

    segment_id: str
    source: str
    engine: str
    start_s: float
    end_s: float
    source_start_sample: int = Field(description="16 kHz sample index on the source's own clock")
    source_end_sample: int
    text: str
    confidence: float | None = None
    language: str | None = None
    words: list[WordOut] = Field(default_factory=list)


class PartialOut(ApiModel):
    """The newest hypothesis of a source's segment in progress (the live tail)."""

    segment_id: str
    source: str
    engine: str
    revision: int
    start_s: float
    end_s: float
    text: str


class SourceOut(ApiModel):
    source: str
    offset_s: float = Field(description="where the source's sample 0 sits on the session timeline")
    opened_at: float | None = None
    closed_at: float | None = None
    duration_s: float | None = Field(default=None, description="audio length, once closed")
    engines: list[str]
    transcribed_by: list[str] = Field(description="engines that finished this source")
    failed_by: dict[str, str] = Field(
        default_factory=dict,
        description="engines that gave up on this source for good, and why (its transcript "
        "from them ends at their last final)",
    )


class SessionSummary(ApiModel):
    """Session metadata; word count and language are those of the primary engine."""

    session_id: str
    status: Literal["open", "closed"]
    complete: bool = Field(description="closed and every source transcribed by every engine")
    client: str | None = None
    started_at: float | None = Field(default=None, description="Unix time the session opened")
    ended_at: float | None = Field(default=None, description="Unix time the session closed")
    duration_s: float = Field(description="length of the merged audio timeline")
    sources: list[str]
    engines: list[str]
    language: str | None = None
    word_count: int
    segments: int
    metadata: dict[str, str] = Field(default_factory=dict)


class SessionDetail(SessionSummary):
    """A session as one engine transcribed it, every source merged into one timeline."""

    engine: str = Field(description="engine whose transcript this is")
    close_reason: str | None = None
    source_details: list[SourceOut]
    transcript: list[SegmentOut]
    live_tail: list[PartialOut]


class SessionPage(ApiModel):
    items: list[SessionSummary]
    total: int
    limit: int
    offset: int
    next_offset: int | None = Field(description="offset of the next page; null on the last")


class Problem(ApiModel):
    detail: str


class Health(ApiModel):
    status: str
    details: dict[str, Any] = Field(default_factory=dict)
