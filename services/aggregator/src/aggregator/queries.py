"""Reading sessions from the store: one session, or a page of them, with the text search."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from aggregator import tables as tb
from aggregator.records import (
    FinalRecord,
    FinalStats,
    PartialRecord,
    SessionRecord,
    SourceRecord,
)

LIKE_ESCAPE = "\\"


async def load_session(
    engine: AsyncEngine, session_id: str, transcript_engine: str | None = None
) -> SessionRecord | None:
    """A session with, when ``transcript_engine`` is given, that engine's finals and partials."""
    async with engine.connect() as conn:
        records = await _records(conn, [session_id])
        if not records:
            return None
        record = records[0]
        if transcript_engine is None:
            return record
        finals = await _finals(conn, session_id, transcript_engine)
        partials = await _partials(conn, session_id, transcript_engine)
    return SessionRecord(**{**record.__dict__, "finals": finals, "partials": partials})


async def list_sessions(
    engine: AsyncEngine, *, query: str | None, limit: int, offset: int
) -> tuple[list[SessionRecord], int]:
    """A page of sessions, newest first, matching ``query`` if given; and the total count."""
    s = tb.sessions.c
    condition = _matches(query) if query else None
    started = func.coalesce(s.opened_at, s.first_seen)
    ids_query = select(s.session_id).order_by(started.desc(), s.session_id)
    count_query = select(func.count()).select_from(tb.sessions)
    if condition is not None:
        ids_query = ids_query.where(condition)
        count_query = count_query.where(condition)
    async with engine.connect() as conn:
        total = int(await conn.scalar(count_query) or 0)
        ids = list((await conn.scalars(ids_query.limit(limit).offset(offset))).all())
        records = await _records(conn, ids)
    return records, total


def escape_like(text: str) -> str:
    """``text`` with LIKE's wildcards taken literally."""
    for char in (LIKE_ESCAPE, "%", "_"):
        text = text.replace(char, LIKE_ESCAPE + char)
    return text


def _matches(query: str) -> ColumnElement[bool]:
    # LOWER(...) LIKE works the same on SQLite and PostgreSQL; no full-text index is needed at
    # the sizes one aggregator serves.
    pattern = f"%{escape_like(query.lower())}%"
    f, s = tb.finals.c, tb.sessions.c
    in_text = exists().where(
        f.session_id == s.session_id, func.lower(f.text).like(pattern, escape=LIKE_ESCAPE)
    )
    return or_(func.lower(s.session_id).like(pattern, escape=LIKE_ESCAPE), in_text)


async def _records(conn: AsyncConnection, ids: Sequence[str]) -> list[SessionRecord]:
    if not ids:
        return []
    s, src, e, f = tb.sessions.c, tb.sources.c, tb.source_engines.c, tb.finals.c
    rows = (await conn.execute(select(tb.sessions).where(s.session_id.in_(ids)))).all()
    sources: dict[str, list[SourceRecord]] = defaultdict(list)
    for row in await conn.execute(
        select(tb.sources).where(src.session_id.in_(ids)).order_by(src.source)
    ):
        sources[row.session_id].append(
            SourceRecord(row.source, row.opened_at, row.closed_at, row.end_sample, row.engines)
        )
    transcribed: dict[str, set[tuple[str, str]]] = defaultdict(set)
    failures: dict[str, dict[tuple[str, str], str]] = defaultdict(dict)
    for row in await conn.execute(
        select(e.session_id, e.source, e.engine, e.failure).where(
            e.session_id.in_(ids), e.transcribed.is_(True)
        )
    ):
        transcribed[row.session_id].add((row.source, row.engine))
        if row.failure is not None:
            failures[row.session_id][(row.source, row.engine)] = row.failure
    stats: dict[str, list[FinalStats]] = defaultdict(list)
    stats_query = (
        select(
            f.session_id,
            f.engine,
            f.source,
            f.language,
            func.count().label("segments"),
            func.sum(f.word_count).label("words"),
            func.max(f.end_sample).label("end_sample"),
        )
        .where(f.session_id.in_(ids))
        .group_by(f.session_id, f.engine, f.source, f.language)
        .order_by(f.session_id, f.engine, f.source, f.language)
    )
    for row in await conn.execute(stats_query):
        stats[row.session_id].append(
            FinalStats(
                row.engine, row.source, row.language, row.segments, int(row.words), row.end_sample
            )
        )
    by_id = {row.session_id: row for row in rows}
    return [
        _record(by_id[sid], sources[sid], transcribed[sid], failures[sid], stats[sid])
        for sid in ids
        if sid in by_id
    ]


def _record(
    row: Any,
    sources: list[SourceRecord],
    transcribed: set[tuple[str, str]],
    failures: dict[tuple[str, str], str],
    stats: list[FinalStats],
) -> SessionRecord:
    return SessionRecord(
        session_id=row.session_id,
        client=row.client,
        opened_at=row.opened_at,
        closed_at=row.closed_at,
        close_reason=row.close_reason,
        engines=list(row.engines),
        metadata=dict(row.session_metadata),
        sources=sources,
        transcribed=transcribed,
        failures=failures,
        stats=stats,
    )


async def _finals(conn: AsyncConnection, session_id: str, engine: str) -> list[FinalRecord]:
    f = tb.finals.c
    rows = await conn.execute(
        select(tb.finals)
        .where(f.session_id == session_id, f.engine == engine)
        .order_by(f.start_sample, f.source, f.segment_id)
    )
    return [
        FinalRecord(
            row.engine,
            row.segment_id,
            row.source,
            row.start_sample,
            row.end_sample,
            row.text,
            list(row.words),
            row.confidence,
            row.language,
            row.emitted_at,
        )
        for row in rows
    ]


async def _partials(conn: AsyncConnection, session_id: str, engine: str) -> list[PartialRecord]:
    p = tb.partials.c
    rows = await conn.execute(
        select(tb.partials)
        .where(p.session_id == session_id, p.engine == engine)
        .order_by(p.source, p.start_sample, p.segment_id)
    )
    return [
        PartialRecord(
            row.engine,
            row.segment_id,
            row.source,
            row.revision,
            row.start_sample,
            row.end_sample,
            row.text,
        )
        for row in rows
    ]
