"""The session store on SQLite and PostgreSQL: building, idempotency, ordering, deletion."""

from __future__ import annotations

import random

import pytest
from session_script import OPENED_AT, RATE, Published, session_script, source_script

from aggregator.database import DatabaseError, open_database
from aggregator.queries import list_sessions, load_session
from aggregator.store import SessionStore
from aggregator.views import choose_engine, detail
from echostream_shared import messages as m
from echostream_shared.ids import segment_id


async def apply_all(store: SessionStore, script: list[Published]) -> list[m.SessionUpdate]:
    updates: list[m.SessionUpdate] = []
    for item in script:
        assert isinstance(
            item.message,
            m.SessionOpened
            | m.SessionClosed
            | m.SourceOpened
            | m.SourceClosed
            | m.TranscriptPartial
            | m.TranscriptFinal
            | m.SourceTranscribed,
        )
        updates += await store.apply(item.message)
    return updates


async def stored_json(store: SessionStore, session_id: str, engine: str) -> str:
    record = await load_session(store.engine, session_id, engine)
    assert record is not None
    return detail(record, engine).model_dump_json()


async def test_builds_a_two_source_two_engine_session(store: SessionStore) -> None:
    await apply_all(store, session_script())
    record = await load_session(store.engine, "sess-1", "whisper")
    assert record is not None
    session = detail(record, "whisper")
    assert session.status == "closed" and session.complete
    assert session.sources == ["mic", "system"]
    assert session.engines == ["voxtral", "whisper"]
    assert session.language == "en"
    assert session.word_count == 8 * 5
    assert session.started_at == OPENED_AT and session.ended_at == OPENED_AT + 14
    assert session.duration_s == 12.5  # mic opened 0.5 s after the session, 12 s of audio
    assert session.metadata == {"title": "standup"}
    assert {seg.engine for seg in session.transcript} == {"whisper"}
    starts = [(seg.start_s, seg.source) for seg in session.transcript]
    assert starts == sorted(starts)
    assert [seg.source for seg in session.transcript[:2]] == ["system", "mic"]
    assert session.transcript[1].start_s == 0.5  # mic's offset applied on the session timeline
    assert session.live_tail == []  # every partial was replaced by its final
    voxtral = await load_session(store.engine, "sess-1", "voxtral")
    assert voxtral is not None
    assert {seg.engine for seg in detail(voxtral, "voxtral").transcript} == {"voxtral"}


async def test_the_same_stream_twice_changes_nothing(store: SessionStore) -> None:
    script = session_script()
    first = await apply_all(store, script)
    before = await stored_json(store, "sess-1", "whisper")
    assert await apply_all(store, script) == []
    assert await stored_json(store, "sess-1", "whisper") == before
    assert len([u for u in first if u.kind == "transcript.final"]) == 16
    assert [u.kind for u in first].count("session.completed") == 1


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_out_of_order_within_a_source_gives_the_same_session(
    database_url: str, seed: int
) -> None:
    script = session_script()
    engine_a, _ = await open_database(database_url)
    ordered = SessionStore(engine_a)
    await apply_all(ordered, script)
    expected = {e: await stored_json(ordered, "sess-1", e) for e in ("whisper", "voxtral")}
    # A second session id in the same store, fed the same messages shuffled.
    shuffled = [
        Published(item.subject, item.message.model_copy(update={"session_id": "sess-2"}))
        for item in script
    ]
    random.Random(seed).shuffle(shuffled)
    await apply_all(ordered, shuffled)
    for engine, want in expected.items():
        got = await stored_json(ordered, "sess-2", engine)
        assert got == want.replace("sess-1", "sess-2")
    await engine_a.dispose()


async def test_partials_are_the_live_tail_only(store: SessionStore) -> None:
    stream = source_script("live", "mic", "whisper", 2)
    partials = [p.message for p in stream if isinstance(p.message, m.TranscriptPartial)]
    for partial in partials[:3]:  # segment 0, revisions 0..2
        await store.apply(partial)
    await store.apply(partials[1])  # an older revision arriving late changes nothing
    record = await load_session(store.engine, "live", "whisper")
    assert record is not None
    tail = detail(record, "whisper").live_tail
    assert [(p.revision, p.text) for p in tail] == [(2, partials[2].text)]
    final = next(p.message for p in stream if isinstance(p.message, m.TranscriptFinal))
    assert await store.apply(final)
    assert await store.apply(partials[0]) == []  # a partial of a finalized segment is dropped
    record = await load_session(store.engine, "live", "whisper")
    assert record is not None
    session = detail(record, "whisper")
    assert session.live_tail == [] and [s.text for s in session.transcript] == [final.text]


async def test_source_transcribed_drops_leftover_partials(store: SessionStore) -> None:
    seg = segment_id("s", "mic", "whisper", 0)
    partial = m.TranscriptPartial(
        session_id="s",
        source="mic",
        engine="whisper",
        segment_id=seg,
        revision=0,
        start_sample=0,
        end_sample=RATE,
        text="never finalized",
        emitted_at=1.0,
    )
    done = m.SourceTranscribed(
        session_id="s", source="mic", engine="whisper", end_sample=RATE, finals=0, emitted_at=2.0
    )
    await store.apply(partial)
    await store.apply(done)
    assert await store.apply(partial) == []
    record = await load_session(store.engine, "s", "whisper")
    assert record is not None and record.partials == []


async def test_completion_needs_close_and_every_engine(store: SessionStore) -> None:
    script = session_script()
    closing = [p for p in script if isinstance(p.message, m.SessionClosed)]
    rest = [p for p in script if not isinstance(p.message, m.SessionClosed | m.SourceTranscribed)]
    await apply_all(store, rest + closing)
    record = await load_session(store.engine, "sess-1")
    assert record is not None and not detail(record, "whisper").complete
    transcribed = [p for p in script if isinstance(p.message, m.SourceTranscribed)]
    updates = await apply_all(store, transcribed)
    assert updates[-1].kind == "session.completed"
    assert [u.kind for u in updates].count("session.completed") == 1


async def test_delete_removes_and_keeps_it_deleted(store: SessionStore) -> None:
    script = session_script()
    await apply_all(store, script)
    assert await store.delete("sess-1")
    assert await load_session(store.engine, "sess-1") is None
    assert await apply_all(store, script) == []  # a late replay does not bring it back
    assert await load_session(store.engine, "sess-1") is None
    assert not await store.delete("sess-1")


async def test_search_and_pagination(store: SessionStore) -> None:
    for index in range(5):
        await apply_all(store, session_script(f"page-{index}", segments=1))
    await apply_all(store, source_script("needle", "mic", "whisper", 6, with_partials=False))
    page, total = await list_sessions(store.engine, query=None, limit=2, offset=0)
    assert total == 6 and len(page) == 2
    seen = []
    for offset in range(0, 6, 2):
        page, _ = await list_sessions(store.engine, query=None, limit=2, offset=offset)
        seen += [record.session_id for record in page]
    assert sorted(seen) == sorted([f"page-{i}" for i in range(5)] + ["needle"])
    found, count = await list_sessions(store.engine, query="FOXTROT", limit=10, offset=0)
    assert count == 1 and [r.session_id for r in found] == ["needle"]
    literal, count = await list_sessions(store.engine, query="100%_", limit=10, offset=0)
    assert count == 0 and literal == []


async def test_reopening_keeps_the_store_id(database_url: str) -> None:
    engine, first = await open_database(database_url)
    await engine.dispose()
    engine, second = await open_database(database_url)
    await engine.dispose()
    assert first == second


async def test_unreachable_database_is_a_clear_error() -> None:
    with pytest.raises(
        DatabaseError, match="cannot open database postgresql\\+asyncpg://u:\\*\\*\\*@127.0.0.1:1/x"
    ):
        await open_database("postgresql+asyncpg://u:secret@127.0.0.1:1/x")


@pytest.mark.parametrize("url", ["not a url", "mysql+nosuchdriver://x@127.0.0.1/db"])
async def test_invalid_database_url_is_a_clear_error(url: str) -> None:
    with pytest.raises(DatabaseError, match="database"):
        await open_database(url)


async def test_a_session_without_the_primary_engine_shows_another(store: SessionStore) -> None:
    await apply_all(store, session_script("vox", engines=("voxtral",), segments=1))
    record = await load_session(store.engine, "vox")
    assert record is not None
    assert choose_engine(record, None, "whisper") == "voxtral"
    assert choose_engine(record, "whisper", "whisper") is None
    assert choose_engine(record, "voxtral", "whisper") == "voxtral"


async def test_nul_characters_are_stored_without_them(store: SessionStore) -> None:
    final = m.TranscriptFinal(
        session_id="nul",
        source="mic",
        engine="whisper",
        segment_id="s0",
        start_sample=0,
        end_sample=RATE,
        text="a\x00b",
        words=(m.Word(text="a\x00b", start_sample=0, end_sample=RATE),),
        emitted_at=1.0,
    )
    assert await store.apply(final)
    opened = m.SessionOpened(
        session_id="nul",
        client="c\x00",
        opened_at=1.0,
        engines=("whisper",),
        metadata={"k": "v\x00"},
    )
    assert await store.apply(opened)
    assert await store.apply(m.SessionClosed(session_id="nul", closed_at=2.0, reason="r\x00"))
    record = await load_session(store.engine, "nul", "whisper")
    assert record is not None
    assert (record.client, record.metadata, record.close_reason) == ("c", {"k": "v"}, "r")
    assert record.finals[0].text == "ab" and record.finals[0].words[0]["text"] == "ab"


async def test_an_engine_that_gave_up_marks_the_source_failed_for_it(store: SessionStore) -> None:
    script = session_script()
    gave_up = []
    for item in script:
        message = item.message
        if isinstance(message, m.SourceTranscribed) and message.engine == "voxtral":
            message = message.model_copy(update={"failure": "JobFailed: audio rejected"})
        gave_up.append(Published(item.subject, message))
    await apply_all(store, gave_up)
    record = await load_session(store.engine, "sess-1", "voxtral")
    assert record is not None
    session = detail(record, "voxtral")
    assert session.complete, "a failed engine is finished: nothing is left to wait for"
    failed = {source.source: source.failed_by for source in session.source_details}
    assert failed == {s: {"voxtral": "JobFailed: audio rejected"} for s in ("mic", "system")}
    whisper = detail(record, "whisper")
    assert all("whisper" not in s.failed_by for s in whisper.source_details)
