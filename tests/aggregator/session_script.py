"""A scripted session as the bus carries it: two sources, two engines, partials and finals."""

from __future__ import annotations

from dataclasses import dataclass

from echostream_shared import messages as m, topology as t
from echostream_shared.ids import segment_id

RATE = m.SAMPLE_RATE
OPENED_AT = 1_700_000_000.0
WORDS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel")


@dataclass(frozen=True)
class Published:
    """One message and the subject it goes to."""

    subject: str
    message: m.Message


def segment_text(source: str, engine: str, index: int) -> str:
    return f"{source} {engine} {WORDS[index % len(WORDS)]} number {index}"


def source_script(
    session_id: str, source: str, engine: str, segments: int, *, with_partials: bool = True
) -> list[Published]:
    """One engine's transcripts of one source, in publication order."""
    subject = t.transcript(engine, session_id, source)
    out: list[Published] = []
    for index in range(segments):
        start, end = index * 3 * RATE, index * 3 * RATE + 2 * RATE
        seg = segment_id(session_id, source, engine, start)
        text = segment_text(source, engine, index)
        if with_partials:
            for revision in range(3):
                out.append(
                    Published(
                        subject,
                        m.TranscriptPartial(
                            session_id=session_id,
                            source=source,
                            engine=engine,
                            segment_id=seg,
                            revision=revision,
                            start_sample=start,
                            end_sample=start + (revision + 1) * RATE // 2,
                            text=" ".join(text.split()[: revision + 1]),
                            emitted_at=OPENED_AT + index * 3 + revision,
                        ),
                    )
                )
        words = tuple(
            m.Word(
                text=word,
                start_sample=start + i * RATE // 4,
                end_sample=start + (i + 1) * RATE // 4,
                probability=0.9,
            )
            for i, word in enumerate(text.split())
        )
        out.append(
            Published(
                subject,
                m.TranscriptFinal(
                    session_id=session_id,
                    source=source,
                    engine=engine,
                    segment_id=seg,
                    start_sample=start,
                    end_sample=end,
                    text=text,
                    words=words,
                    confidence=0.8,
                    language="en",
                    emitted_at=OPENED_AT + index * 3 + 2.5,
                ),
            )
        )
    out.append(
        Published(
            subject,
            m.SourceTranscribed(
                session_id=session_id,
                source=source,
                engine=engine,
                end_sample=segments * 3 * RATE,
                finals=segments,
                emitted_at=OPENED_AT + segments * 3 + 1,
            ),
        )
    )
    return out


def session_script(
    session_id: str = "sess-1",
    sources: tuple[str, ...] = ("system", "mic"),
    engines: tuple[str, ...] = ("whisper", "voxtral"),
    segments: int = 4,
) -> list[Published]:
    """The whole session: lifecycle events and every transcript, interleaved as live."""
    events = t.session_events(session_id)
    out = [
        Published(
            events,
            m.SessionOpened(
                session_id=session_id,
                client="native",
                opened_at=OPENED_AT,
                engines=engines,
                metadata={"title": "standup"},
            ),
        )
    ]
    for offset, source in enumerate(sources):
        out.append(
            Published(
                events,
                m.SourceOpened(
                    session_id=session_id,
                    source=source,
                    opened_at=OPENED_AT + offset * 0.5,
                    engines=engines,
                ),
            )
        )
    per_stream = [
        source_script(session_id, source, engine, segments)
        for source in sources
        for engine in engines
    ]
    while any(per_stream):
        for stream in per_stream:
            if stream:
                out.append(stream.pop(0))
    for source in sources:
        out.append(
            Published(
                events,
                m.SourceClosed(
                    session_id=session_id,
                    source=source,
                    end_sample=segments * 3 * RATE,
                    closed_at=OPENED_AT + segments * 3,
                ),
            )
        )
    out.append(
        Published(
            events, m.SessionClosed(session_id=session_id, closed_at=OPENED_AT + segments * 3 + 2)
        )
    )
    return out
