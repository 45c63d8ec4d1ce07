"""Applying bus messages to the session store, idempotently and in any order.

Every write is conditional (insert unless present, update unless already set, keep the highest
revision), so a replayed or reordered message leaves the store as it was, and the updates it
returns are exactly the changes it made.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from sqlalchemy import ColumnElement, Update, and_, delete, exists, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from aggregator import tables as tb
from aggregator.completion import is_complete
from aggregator.upsert import insert_ignore
from echostream_shared import messages as m

StoredEvent = (
    m.SessionOpened
    | m.SessionClosed
    | m.SourceOpened
    | m.SourceClosed
    | m.TranscriptPartial
    | m.TranscriptFinal
    | m.SourceTranscribed
)
STORED_EVENTS = (
    m.SessionOpened,
    m.SessionClosed,
    m.SourceOpened,
    m.SourceClosed,
    m.TranscriptPartial,
    m.TranscriptFinal,
    m.SourceTranscribed,
)
SESSION_TABLES = (
    tb.sessions,
    tb.sources,
    tb.source_engines,
    tb.finals,
    tb.partials,
)


class SessionStore:
    """Writes sessions; one writer at a time per process, so SQLite never sees two."""

    def __init__(self, engine: AsyncEngine, clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self._clock = clock
        self._lock = asyncio.Lock()

    async def apply(self, message: StoredEvent) -> list[m.SessionUpdate]:
        """Store one message; returns the updates it caused (none for a replay)."""
        async with self._lock, self.engine.begin() as conn:
            if await _is_deleted(conn, message.session_id):
                return []
            if not await self._write(conn, message):
                return []
            updates = [_update_for(message, self._clock())]
            completing = isinstance(message, m.SessionClosed | m.SourceTranscribed)
            if completing and await is_complete(conn, message.session_id):
                updates.append(
                    m.SessionUpdate(
                        session_id=message.session_id,
                        kind="session.completed",
                        updated_at=self._clock(),
                    )
                )
            return updates

    async def delete(self, session_id: str) -> bool:
        """Remove a session and remember it is deleted; False when it was not stored."""
        async with self._lock, self.engine.begin() as conn:
            found = await conn.scalar(
                select(exists().where(tb.sessions.c.session_id == session_id))
            )
            for table in SESSION_TABLES:
                await conn.execute(delete(table).where(table.c.session_id == session_id))
            await insert_ignore(
                conn, tb.deleted_sessions, {"session_id": session_id, "deleted_at": self._clock()}
            )
            return bool(found)

    async def _write(self, conn: AsyncConnection, message: StoredEvent) -> bool:
        await self._ensure_session(conn, message.session_id)
        match message:
            case m.SessionOpened():
                return await _session_opened(conn, message)
            case m.SessionClosed():
                return await _session_closed(conn, message)
        await _ensure_source(conn, message.session_id, message.source)
        match message:
            case m.SourceOpened():
                return await _source_opened(conn, message)
            case m.SourceClosed():
                return await _source_closed(conn, message)
            case m.TranscriptFinal():
                return await _final(conn, message)
            case m.TranscriptPartial():
                return await _partial(conn, message)
            case m.SourceTranscribed():
                return await _source_transcribed(conn, message)

    async def _ensure_session(self, conn: AsyncConnection, session_id: str) -> None:
        await insert_ignore(
            conn,
            tb.sessions,
            {
                "session_id": session_id,
                "engines": [],
                "session_metadata": {},
                "first_seen": self._clock(),
            },
        )


def storable(text: str) -> str:
    """``text`` without NUL characters, which PostgreSQL cannot store in a text column."""
    return text.replace("\x00", "")


async def _is_deleted(conn: AsyncConnection, session_id: str) -> bool:
    found = await conn.scalar(
        select(exists().where(tb.deleted_sessions.c.session_id == session_id))
    )
    return bool(found)


async def _ensure_source(conn: AsyncConnection, session_id: str, source: str) -> None:
    await insert_ignore(
        conn, tb.sources, {"session_id": session_id, "source": source, "engines": []}
    )


async def _changed(conn: AsyncConnection, statement: Update) -> bool:
    result = await conn.execute(statement)
    return bool(result.rowcount > 0)


async def _session_opened(conn: AsyncConnection, event: m.SessionOpened) -> bool:
    s = tb.sessions.c
    return await _changed(
        conn,
        update(tb.sessions)
        .where(s.session_id == event.session_id, s.opened_at.is_(None))
        .values(
            client=storable(event.client),
            opened_at=event.opened_at,
            engines=sorted(set(event.engines)),
            session_metadata={storable(k): storable(v) for k, v in sorted(event.metadata.items())},
        ),
    )


async def _session_closed(conn: AsyncConnection, event: m.SessionClosed) -> bool:
    s = tb.sessions.c
    return await _changed(
        conn,
        update(tb.sessions)
        .where(s.session_id == event.session_id, s.closed_at.is_(None))
        .values(closed_at=event.closed_at, close_reason=storable(event.reason)),
    )


def _source_row(session_id: str, source: str) -> ColumnElement[bool]:
    c = tb.sources.c
    return and_(c.session_id == session_id, c.source == source)


async def _source_opened(conn: AsyncConnection, event: m.SourceOpened) -> bool:
    return await _changed(
        conn,
        update(tb.sources)
        .where(_source_row(event.session_id, event.source), tb.sources.c.opened_at.is_(None))
        .values(opened_at=event.opened_at, engines=sorted(set(event.engines))),
    )


async def _source_closed(conn: AsyncConnection, event: m.SourceClosed) -> bool:
    return await _changed(
        conn,
        update(tb.sources)
        .where(_source_row(event.session_id, event.source), tb.sources.c.closed_at.is_(None))
        .values(closed_at=event.closed_at, end_sample=event.end_sample),
    )


async def _final(conn: AsyncConnection, event: m.TranscriptFinal) -> bool:
    inserted = await insert_ignore(
        conn,
        tb.finals,
        {
            "session_id": event.session_id,
            "engine": event.engine,
            "segment_id": event.segment_id,
            "source": event.source,
            "start_sample": event.start_sample,
            "end_sample": event.end_sample,
            "text": storable(event.text),
            "word_count": len(event.text.split()),
            "words": [word.model_dump() | {"text": storable(word.text)} for word in event.words],
            "confidence": event.confidence,
            "language": event.language,
            "emitted_at": event.emitted_at,
        },
    )
    if inserted:
        p = tb.partials.c
        await conn.execute(
            delete(tb.partials).where(
                p.session_id == event.session_id,
                p.engine == event.engine,
                p.segment_id == event.segment_id,
            )
        )
    return inserted


async def _partial(conn: AsyncConnection, event: m.TranscriptPartial) -> bool:
    f, e, p = tb.finals.c, tb.source_engines.c, tb.partials.c
    superseded = await conn.scalar(
        select(
            exists().where(
                f.session_id == event.session_id,
                f.engine == event.engine,
                f.segment_id == event.segment_id,
            )
            | exists().where(
                e.session_id == event.session_id,
                e.source == event.source,
                e.engine == event.engine,
                e.transcribed.is_(True),
            )
        )
    )
    if superseded:
        return False
    values = {
        "source": event.source,
        "revision": event.revision,
        "start_sample": event.start_sample,
        "end_sample": event.end_sample,
        "text": storable(event.text),
        "emitted_at": event.emitted_at,
    }
    key = {
        "session_id": event.session_id,
        "engine": event.engine,
        "segment_id": event.segment_id,
    }
    if await insert_ignore(conn, tb.partials, key | values):
        return True
    return await _changed(
        conn,
        update(tb.partials)
        .where(
            p.session_id == event.session_id,
            p.engine == event.engine,
            p.segment_id == event.segment_id,
            p.revision < event.revision,
        )
        .values(**values),
    )


async def _source_transcribed(conn: AsyncConnection, event: m.SourceTranscribed) -> bool:
    e, p = tb.source_engines.c, tb.partials.c
    key = {"session_id": event.session_id, "source": event.source, "engine": event.engine}
    await insert_ignore(conn, tb.source_engines, key | {"transcribed": False})
    changed = await _changed(
        conn,
        update(tb.source_engines)
        .where(
            e.session_id == event.session_id,
            e.source == event.source,
            e.engine == event.engine,
            e.transcribed.is_(False),
        )
        .values(
            transcribed=True,
            end_sample=event.end_sample,
            finals=event.finals,
            failure=event.failure,
        ),
    )
    await conn.execute(
        delete(tb.partials).where(
            p.session_id == event.session_id, p.source == event.source, p.engine == event.engine
        )
    )
    return changed


def _update_for(message: StoredEvent, now: float) -> m.SessionUpdate:
    common = {"session_id": message.session_id, "kind": message.type, "updated_at": now}
    match message:
        case m.TranscriptFinal():
            return m.SessionUpdate(
                **common,
                source=message.source,
                engine=message.engine,
                segment_id=message.segment_id,
                start_sample=message.start_sample,
                end_sample=message.end_sample,
                text=message.text,
                language=message.language,
            )
        case m.TranscriptPartial():
            return m.SessionUpdate(
                **common,
                source=message.source,
                engine=message.engine,
                segment_id=message.segment_id,
                revision=message.revision,
                start_sample=message.start_sample,
                end_sample=message.end_sample,
                text=message.text,
            )
        case m.SourceTranscribed():
            return m.SessionUpdate(**common, source=message.source, engine=message.engine)
        case m.SourceOpened() | m.SourceClosed():
            return m.SessionUpdate(**common, source=message.source)
    return m.SessionUpdate(**common)
