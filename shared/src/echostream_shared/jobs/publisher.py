"""Publishing one source's transcripts with deterministic message ids.

A replay after a crash re-publishes the same ids, so JetStream drops the duplicates within its
window and every consumer can upsert by ``segment_id``.
"""

from __future__ import annotations

import time

from echostream_shared import messages as m, topology as t
from echostream_shared.bus import Bus
from echostream_shared.ids import segment_id
from echostream_shared.jobs.updates import FinalUpdate, PartialUpdate


def partial_msg_id(segment: str, revision: int) -> str:
    return f"p.{segment}.{revision}"


def final_msg_id(segment: str) -> str:
    return f"f.{segment}"


def done_msg_id(engine: str, session_id: str, source: str) -> str:
    return f"done.{engine}.{session_id}.{source}"


class TranscriptPublisher:
    """Turns an engine's updates into bus messages on the source's transcript subject."""

    def __init__(self, bus: Bus, engine: str, session_id: str, source: str) -> None:
        self._bus = bus
        self._engine = engine
        self._session_id = session_id
        self._source = source
        self._subject = t.transcript(engine, session_id, source)

    def segment_id(self, segment_start: int) -> str:
        return segment_id(self._session_id, self._source, self._engine, segment_start)

    async def partial(self, update: PartialUpdate) -> m.TranscriptPartial:
        seg = self.segment_id(update.segment_start)
        partial = m.TranscriptPartial(
            session_id=self._session_id,
            source=self._source,
            engine=self._engine,
            segment_id=seg,
            revision=update.revision,
            start_sample=update.segment_start,
            end_sample=update.segment_end,
            text=update.text,
            emitted_at=time.time(),
        )
        await self._bus.publish(self._subject, partial, msg_id=partial_msg_id(seg, update.revision))
        return partial

    async def final(self, update: FinalUpdate) -> m.TranscriptFinal:
        seg = self.segment_id(update.segment_start)
        final = m.TranscriptFinal(
            session_id=self._session_id,
            source=self._source,
            engine=self._engine,
            segment_id=seg,
            start_sample=update.segment_start,
            end_sample=update.segment_end,
            text=update.text,
            words=tuple(
                m.Word(
                    text=word.text,
                    start_sample=word.start,
                    end_sample=word.end,
                    probability=None
                    if word.probability is None
                    else min(1.0, max(0.0, word.probability)),
                )
                for word in update.words
            ),
            confidence=update.confidence,
            language=update.language,
            emitted_at=time.time(),
        )
        await self._bus.publish(self._subject, final, msg_id=final_msg_id(seg))
        return final

    async def source_transcribed(
        self, end_sample: int, finals: int, failure: str | None = None
    ) -> m.SourceTranscribed:
        done = m.SourceTranscribed(
            session_id=self._session_id,
            source=self._source,
            engine=self._engine,
            end_sample=end_sample,
            finals=finals,
            emitted_at=time.time(),
            failure=failure[:500] if failure is not None else None,
        )
        msg_id = done_msg_id(self._engine, self._session_id, self._source)
        await self._bus.publish(self._subject, done, msg_id=msg_id)
        return done
