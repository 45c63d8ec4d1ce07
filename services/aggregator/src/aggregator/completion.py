"""When a session is complete: closed, and every source transcribed by every engine it asked for."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from aggregator import tables as tb


def expected_engines(source_engines: Sequence[str], session_engines: Sequence[str]) -> list[str]:
    """The engines that must transcribe a source: its own list, else the session's."""
    return sorted(set(source_engines or session_engines))


def complete(
    closed: bool,
    session_engines: Sequence[str],
    sources: Iterable[tuple[str, Sequence[str]]],
    transcribed: set[tuple[str, str]],
) -> bool:
    """Whether a closed session has every (source, engine) pair transcribed."""
    if not closed:
        return False
    return all(
        (source, engine) in transcribed
        for source, engines in sources
        for engine in expected_engines(engines, session_engines)
    )


async def is_complete(conn: AsyncConnection, session_id: str) -> bool:
    """``complete`` for one stored session."""
    s, src, e = tb.sessions.c, tb.sources.c, tb.source_engines.c
    row = (
        await conn.execute(select(s.closed_at, s.engines).where(s.session_id == session_id))
    ).one_or_none()
    if row is None:
        return False
    sources = (
        await conn.execute(select(src.source, src.engines).where(src.session_id == session_id))
    ).all()
    done = (
        await conn.execute(
            select(e.source, e.engine).where(e.session_id == session_id, e.transcribed.is_(True))
        )
    ).all()
    return complete(
        row.closed_at is not None,
        row.engines,
        [(source.source, source.engines) for source in sources],
        {(item.source, item.engine) for item in done},
    )


async def is_transcribed_by(conn: AsyncConnection, session_id: str, engine: str) -> bool:
    """Whether every source of the session that ``engine`` transcribes is done, open or closed.

    What an EchoPanel summary waits for: the client has stopped every source, and only the
    engine it shows matters, not the others the session asked for.
    """
    s, src, e = tb.sessions.c, tb.sources.c, tb.source_engines.c
    row = (await conn.execute(select(s.engines).where(s.session_id == session_id))).one_or_none()
    if row is None:
        return False
    sources = (
        await conn.execute(select(src.source, src.engines).where(src.session_id == session_id))
    ).all()
    done = (
        await conn.execute(
            select(e.source).where(
                e.session_id == session_id, e.engine == engine, e.transcribed.is_(True)
            )
        )
    ).all()
    finished = {item.source for item in done}
    expected = [
        source.source
        for source in sources
        if engine in expected_engines(source.engines, row.engines)
    ]
    return bool(expected) and all(source in finished for source in expected)
