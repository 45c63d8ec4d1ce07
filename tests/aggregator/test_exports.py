"""Exports: SRT and WebVTT read back by an independent parser (pysubs2), and plain text."""

from __future__ import annotations

import pysubs2
import pytest
from api_harness import store_script
from session_script import session_script

from aggregator import exports
from aggregator.api_models import SessionDetail
from aggregator.queries import load_session
from aggregator.records import FinalRecord, SessionRecord
from aggregator.store import SessionStore
from aggregator.views import detail


async def whisper_session(store: SessionStore) -> tuple[SessionRecord, SessionDetail]:
    await store_script(store, session_script())
    record = await load_session(store.engine, "sess-1", "whisper")
    assert record is not None
    return record, detail(record, "whisper")


@pytest.mark.parametrize(("render", "fmt"), [(exports.to_srt, "srt"), (exports.to_webvtt, "vtt")])
async def test_subtitles_parse_and_match_the_segments(
    store: SessionStore, render: object, fmt: str
) -> None:
    _, session = await whisper_session(store)
    parsed = pysubs2.SSAFile.from_string(render(session), format_=fmt)  # type: ignore[operator]
    assert len(parsed) == len(session.transcript) == 8
    for event, segment in zip(parsed, session.transcript, strict=True):
        assert event.start == round(segment.start_s * 1000)
        assert event.end == round(segment.end_s * 1000)
        assert event.plaintext == f"[{segment.source}] {segment.text}"


def one_segment(text: str, start: int, end: int) -> SessionRecord:
    final = FinalRecord("whisper", "seg", "mic", start, end, text, [], None, None, 0.0)
    return SessionRecord("s", None, 0.0, None, None, [], {}, [], set(), {}, [], finals=[final])


def test_cue_text_cannot_break_the_format() -> None:
    session = detail(one_segment("one\n\ntwo --> three", 16_000, 16_000), "whisper")
    srt = pysubs2.SSAFile.from_string(exports.to_srt(session), format_="srt")
    vtt = pysubs2.SSAFile.from_string(exports.to_webvtt(session), format_="vtt")
    for parsed in (srt, vtt):
        assert [e.plaintext for e in parsed] == ["[mic] one two -> three"]
        assert (parsed[0].start, parsed[0].end) == (1000, 1001)  # zero length keeps 1 ms


def test_empty_session_exports_are_valid() -> None:
    session = detail(one_segment("   ", 0, 16_000), "whisper")
    assert exports.to_srt(session) == ""
    assert exports.to_webvtt(session).startswith("WEBVTT")
    assert exports.to_text(session) == ""


async def test_text_export_lines(store: SessionStore) -> None:
    _, session = await whisper_session(store)
    lines = exports.to_text(session).splitlines()
    assert lines[1] == "[00:00:00.500 - 00:00:02.500] mic: mic whisper alpha number 0"
