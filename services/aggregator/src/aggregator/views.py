"""Shaping stored sessions: one merged timeline, source offsets, metadata and the live tail."""

from __future__ import annotations

from collections import Counter

from aggregator.api_models import (
    PartialOut,
    SegmentOut,
    SessionDetail,
    SessionSummary,
    SourceOut,
    WordOut,
)
from aggregator.completion import complete, expected_engines
from aggregator.records import FinalRecord, PartialRecord, SessionRecord
from echostream_shared.messages import SAMPLE_RATE


def seconds(sample: int, offset_s: float = 0.0) -> float:
    """A sample index on a source's clock as seconds on the session timeline (ms precision)."""
    return round(offset_s + sample / SAMPLE_RATE, 3)


def source_offsets(record: SessionRecord) -> dict[str, float]:
    """Where each source starts on the session timeline: its open time after the session's."""
    offsets = {}
    for source in record.sources:
        if record.opened_at is not None and source.opened_at is not None:
            offsets[source.source] = round(max(0.0, source.opened_at - record.opened_at), 3)
        else:
            offsets[source.source] = 0.0
    return offsets


def choose_engine(record: SessionRecord, requested: str | None, primary: str) -> str | None:
    """The engine to show: the one asked for (None if unknown), else the primary if it has
    the session, else the first engine with finals."""
    known = record.known_engines
    if requested is not None:
        return requested if requested in known else None
    if primary in known or not known:
        return primary
    with_finals = sorted({stat.engine for stat in record.stats})
    return with_finals[0] if with_finals else known[0]


def summary(record: SessionRecord, engine: str) -> SessionSummary:
    """The session's metadata, counted on ``engine``'s transcript."""
    return SessionSummary(**_summary_fields(record, engine))


def detail(record: SessionRecord, engine: str) -> SessionDetail:
    """The session as ``engine`` transcribed it; ``record`` must hold that engine's finals."""
    offsets = source_offsets(record)
    return SessionDetail(
        **_summary_fields(record, engine),
        engine=engine,
        close_reason=record.close_reason,
        source_details=[
            SourceOut(
                source=source.source,
                offset_s=offsets[source.source],
                opened_at=source.opened_at,
                closed_at=source.closed_at,
                duration_s=None if source.end_sample is None else seconds(source.end_sample),
                engines=expected_engines(source.engines, record.engines),
                transcribed_by=sorted(e for s, e in record.transcribed if s == source.source),
                failed_by={e: why for (s, e), why in record.failures.items() if s == source.source},
            )
            for source in record.sources
        ],
        transcript=timeline(record.finals, offsets),
        live_tail=live_tail(record.partials, offsets),
    )


def timeline(finals: list[FinalRecord], offsets: dict[str, float]) -> list[SegmentOut]:
    """Every source's finals merged in session-time order, ties broken by source and id."""
    segments = [_segment(final, offsets.get(final.source, 0.0)) for final in finals]
    return sorted(segments, key=lambda seg: (seg.start_s, seg.source, seg.segment_id))


def live_tail(partials: list[PartialRecord], offsets: dict[str, float]) -> list[PartialOut]:
    """Each source's newest partial: the segment furthest along, at its highest revision."""
    newest: dict[str, PartialRecord] = {}
    for partial in partials:
        held = newest.get(partial.source)
        if held is None or (partial.start_sample, partial.revision) > (
            held.start_sample,
            held.revision,
        ):
            newest[partial.source] = partial
    return [
        PartialOut(
            segment_id=p.segment_id,
            source=p.source,
            engine=p.engine,
            revision=p.revision,
            start_s=seconds(p.start_sample, offsets.get(p.source, 0.0)),
            end_s=seconds(p.end_sample, offsets.get(p.source, 0.0)),
            text=p.text,
        )
        for p in sorted(newest.values(), key=lambda p: p.source)
    ]


def _segment(final: FinalRecord, offset_s: float) -> SegmentOut:
    return SegmentOut(
        segment_id=final.segment_id,
        source=final.source,
        engine=final.engine,
        start_s=seconds(final.start_sample, offset_s),
        end_s=seconds(final.end_sample, offset_s),
        source_start_sample=final.start_sample,
        source_end_sample=final.end_sample,
        text=final.text,
        confidence=final.confidence,
        language=final.language,
        words=[
            WordOut(
                text=word["text"],
                start_s=seconds(word["start_sample"], offset_s),
                end_s=seconds(word["end_sample"], offset_s),
                probability=word.get("probability"),
            )
            for word in final.words
        ],
    )


def _summary_fields(record: SessionRecord, engine: str) -> dict[str, object]:
    offsets = source_offsets(record)
    stats = [stat for stat in record.stats if stat.engine == engine]
    languages: Counter[str] = Counter()
    for stat in stats:
        if stat.language:
            languages[stat.language] += stat.segments
    extent = [
        seconds(source.end_sample, offsets[source.source])
        for source in record.sources
        if source.end_sample is not None
    ] + [seconds(stat.end_sample, offsets.get(stat.source, 0.0)) for stat in record.stats]
    return {
        "session_id": record.session_id,
        "status": "closed" if record.closed_at is not None else "open",
        "complete": complete(
            record.closed_at is not None,
            record.engines,
            [(source.source, source.engines) for source in record.sources],
            record.transcribed,
        ),
        "client": record.client,
        "started_at": record.opened_at,
        "ended_at": record.closed_at,
        "duration_s": max(extent, default=0.0),
        "sources": [source.source for source in record.sources],
        "engines": record.known_engines,
        # Most segments wins; ties go to the alphabetically first, so the answer is stable.
        "language": min(languages, key=lambda lang: (-languages[lang], lang), default=None),
        "word_count": sum(stat.words for stat in stats),
        "segments": sum(stat.segments for stat in stats),
        "metadata": record.metadata,
    }
