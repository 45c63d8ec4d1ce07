"""Exports: SRT and WebVTT read back by an independent parser (pysubs2), text and summary."""

from __future__ import annotations

import json

import pysubs2
import pytest
from api_harness import store_script
from session_script import session_script

from aggregator import exports
from aggregator.api_models import SessionDetail
from aggregator.echopanel import final_summary
from aggregator.queries import load_session
from aggregator.records import FinalRecord, SessionRecord
from aggregator.store import SessionStore
from aggregator.views import detail
from echostream_shared.echopanel import SUMMARY_BUDGET, encoded_size


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
    final = FinalRecord("whisper", "seg", "mic", start, end, text, [], None, None)
    return SessionRecord("s", None, 0.0, None, None, [], {}, [], set(), [], finals=[final])


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


async def test_final_summary_is_the_client_shape(store: SessionStore) -> None:
    record, _ = await whisper_session(store)
    summary = final_summary(record, {"client_vad_enabled": True})
    assert summary["type"] == "final_summary" and summary["markdown"] == ""
    body = summary["json"]
    assert body["session_id"] == "sess-1" and body["client_features"]["client_vad_enabled"]
    items = body["transcript"]
    assert len(items) == 8 and [i["t0"] for i in items] == sorted(i["t0"] for i in items)
    assert items[0] == {
        "text": "mic whisper alpha number 0",
        "t0": 0.0,
        "t1": 2.0,
        "confidence": 0.8,
        "source": "mic",
        "segment_id": items[0]["segment_id"],
        "is_final": True,
    }
    assert items[0]["segment_id"].startswith("seg_") and len(items[0]["segment_id"]) == 20


def test_final_summary_never_sends_an_empty_or_oversized_transcript() -> None:
    empty = final_summary(one_segment("  ", 0, 100))
    assert "transcript" not in empty["json"]
    huge = one_segment("word " * 3000, 0, 100)
    many = SessionRecord(
        "s",
        None,
        0.0,
        None,
        None,
        [],
        {},
        [],
        set(),
        [],
        finals=[
            FinalRecord("whisper", f"seg{i}", "mic", i, i + 1, huge.finals[0].text, [], None, None)
            for i in range(100)
        ],
    )
    summary = final_summary(many)
    assert "transcript" not in summary["json"]
    assert summary["json"]["transcript_omitted"]
    assert encoded_size(summary) < SUMMARY_BUDGET
    assert json.loads(json.dumps(summary)) == summary
