"""EchoPanel's wire details: frame headers, source names, segment ids, the summary's shape and size."""

from __future__ import annotations

import hashlib
import json

from capture.echopanel_events import (
    asr_final,
    client_segment_id as segment_id,
    final_summary,
    normalize_source,
    parse_binary,
    stored_final_summary,
)
from echostream_shared import messages as m

PCM = bytes(640)


def test_ep_v1_frames_carry_their_source_and_anything_else_is_legacy_system_pcm() -> None:
    assert parse_binary(b"EP\x01\x00" + PCM).source == "system"
    assert parse_binary(b"EP\x01\x01" + PCM).source == "mic"
    assert parse_binary(b"EP\x01\x01" + PCM).pcm == PCM
    for legacy in (b"EP\x02\x01" + PCM, b"EP\x01\x07" + PCM, PCM, b"EP"):
        frame = parse_binary(legacy)
        assert frame.source == "system" and frame.pcm == legacy


def test_source_names_are_normalized_like_the_reference_server() -> None:
    assert normalize_source("Microphone") == "mic"
    assert normalize_source(" MIC ") == "mic"
    assert normalize_source(None) == "system"
    assert normalize_source("") == "system"
    assert normalize_source("Speaker") == "speaker"


def test_segment_id_is_the_clients_formula() -> None:
    key = "mic|1.250|2.500|hello there world"
    expected = "seg_" + hashlib.sha256(key.encode()).hexdigest()[:16]
    assert segment_id("MIC", 1.25, 2.5, "  Hello   there\nWorld ") == expected


def test_the_summary_never_sends_an_empty_or_oversized_transcript() -> None:
    assert "transcript" not in final_summary("s", [], {})["json"]
    final = {
        "text": "x" * 1000,
        "t0": 0.0,
        "t1": 1.0,
        "confidence": 0.9,
        "source": "mic",
        "segment_id": "seg_1",
    }
    fits = final_summary("s", [final] * 100, {})
    assert len(fits["json"]["transcript"]) == 100
    huge = final_summary("s", [final] * 2000, {})
    assert "transcript" not in huge["json"]
    assert len(json.dumps(huge)) < 1024 * 1024


def stored(
    source: str, start_s: float, end_s: float, text: str, **extra: object
) -> m.TranscriptFinal:
    return m.TranscriptFinal(
        session_id="bus-session",
        source=source,
        engine="whisper",
        segment_id=f"{source}-{round(start_s * 1000)}",
        start_sample=round(start_s * 16_000),
        end_sample=round(end_s * 16_000),
        text=text,
        emitted_at=1.0,
        **extra,
    )


def test_the_stored_summary_has_the_items_the_client_saw_live() -> None:
    finals = [
        stored("system", 0.5, 2.25, " Hello there. ", confidence=0.7),
        stored("mic", 0.25, 1.0, "Hi."),
        stored("mic", 3.0, 3.5, "   "),
        stored("system", 4.0, 5.123456, "Bye.", language="en"),
    ]
    summary = stored_final_summary("client-session", finals, {"client_vad_enabled": True})
    assert summary["type"] == "final_summary" and summary["markdown"] == ""
    assert summary["json"]["session_id"] == "client-session"
    assert summary["json"]["client_features"] == {"client_vad_enabled": True}
    live = [asr_final(f) for f in finals if f.text.strip()]
    keys = ("text", "t0", "t1", "confidence", "source", "segment_id")
    expected = sorted(
        ({k: message[k] for k in keys} | {"is_final": True} for message in live),
        key=lambda item: (item["t0"], item["source"]),
    )
    assert summary["json"]["transcript"] == expected
    assert [item["text"] for item in expected] == ["Hi.", "Hello there.", "Bye."]
    assert expected[1]["confidence"] == 0.7 and expected[0]["confidence"] == 0.9
    assert expected[2]["t1"] == 5.123
    assert expected[1]["segment_id"] == segment_id("system", 0.5, 2.25, "Hello there.")
    assert "transcript" not in stored_final_summary("c", [finals[2]], {})["json"]
