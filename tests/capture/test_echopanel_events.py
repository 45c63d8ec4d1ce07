"""EchoPanel's wire details: frame headers, source names, segment ids, the summary's size."""

from __future__ import annotations

import hashlib
import json

from capture.echopanel_events import final_summary, normalize_source, parse_binary
from echostream_shared.echopanel import client_segment_id as segment_id

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
