"""The peer's pass summary (``bench.peer_pass``) and its report section (``bench.report_peer``),
on synthetic peer results: no peer, no network."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from peer.paths import PeerUnavailable

from bench import peer_pass
from bench.audio import RATE, Session, Talk, Utterance, session
from bench.report_peer import HEADING, peer_section, ratio


def _session() -> Session:
    """Two one-second talks of different corpora; spans [0, 2 s) and [2 s, 5 s)."""
    second = np.ones(RATE, dtype=np.int16)
    talks = [
        Talk("a:1", "corpus-a", (Utterance("a-1", "corpus-a", "the cat sat", second),)),
        Talk("b:1", "corpus-b", (Utterance("b-1", "corpus-b", "on the mat", second),)),
    ]
    return session("synthetic", talks, gap_s=1.0)


def _word(
    text: str, start: float, end: float, aligned: bool = True, seen: float = 0.5
) -> dict[str, Any]:
    return {
        "text": text,
        "audio_start_s": start,
        "audio_end_s": end,
        "aligned": aligned,
        "first_seen_t": end + seen,
        "committed_t": end + 2 * seen,
        "first_seen_latency_s": seen,
        "commit_latency_s": 2 * seen,
    }


def _peer() -> dict[str, Any]:
    # live: "the cat sat" in talk a, "on the hat" in talk b, plus a hallucinated "you" in the
    # pause (interpolated); offline heard "the cat sat on the mat" and nothing in the pause
    words = [
        _word("the", 1.0, 1.2),
        _word("cat", 1.2, 1.5),
        _word("sat", 1.5, 1.9),
        _word("you", 2.2, 2.4, aligned=False),
        _word("on", 3.0, 3.2),
        _word("the", 3.2, 3.4),
        _word("hat", 3.4, 3.9, seen=1.5),
    ]
    return {
        "schema": "echostream.peer/1",
        "system": {
            "name": "WhisperLiveKit",
            "version": "0.2.26",
            "policy": "localagreement",
            "backend": "faster-whisper (device auto, compute type auto, beam 5)",
            "model_dir": "/models/tiny.en",
            "vac": True,
            "min_chunk_size_s": None,
            "threads": 2,
            "startup_s": 20.0,
        },
        "audio": {"duration_s": 5.0},
        "transcript": "The cat sat. You on the hat.",
        "wer": 2 / 6,
        "offline": {
            "transcript": "The cat sat on the mat.",
            "wer": 0.0,
            "cpu_s": 0.35,
            "cpu_s_per_audio_s": 0.07,
            "compute_type": "cpu int8_float32",
        },
        "latency": {"drained": True, "drain_after_last_audio_s": 1.5, "max_reported_lag_s": 0.8},
        "cpu": {
            "cpu_s_per_audio_s": 1.4,
            "server_peak_rss_mb": 790.0,
            "other_processes_cores": 0.1,
        },
        "words": words,
        "states": [
            {"t": 1.5, "committed": "", "buffer": "The cat", "lag_s": 0.0},
            {"t": 2.5, "committed": "The cat sat.", "buffer": "You", "lag_s": 0.0},
            {"t": 3.6, "committed": "The cat sat. You", "buffer": "on the bat", "lag_s": 0.0},
            {"t": 5.0, "committed": "The cat sat. You on the hat.", "buffer": "", "lag_s": 0.0},
        ],
    }


def test_words_go_to_the_talk_whose_span_holds_their_middle() -> None:
    found = _session()
    assert [(s.start, s.end) for s in found.talk_spans] == [(0, 2 * RATE), (2 * RATE, 5 * RATE)]
    assert peer_pass.talk_index(found, 0.0) == 0
    assert peer_pass.talk_index(found, 1.99) == 0
    assert peer_pass.talk_index(found, 2.0) == 1
    assert peer_pass.talk_index(found, 99.0) == 1
    streamed = peer_pass.split_by_talk(found, peer_pass.streaming_words(_peer()))
    assert streamed == ["the cat sat", "you on the hat"]


def test_the_offline_transcript_is_placed_on_the_clock_of_the_aligned_words() -> None:
    placed = peer_pass.offline_words(_peer())
    assert [w for w, _ in placed] == ["the", "cat", "sat", "on", "the", "mat"]
    assert peer_pass.split_by_talk(_session(), placed) == ["the cat sat", "on the mat"]


def test_offline_words_listed_by_the_peer_are_used_as_they_are() -> None:
    peer = _peer()
    peer["offline"]["words"] = [{"text": " The", "start": 1.0, "end": 1.2}]
    peer["offline"]["words"] += [{"text": " mat.", "start": 3.4, "end": 3.9}]
    assert peer_pass.offline_words(peer) == [(" The", 1.1), (" mat.", 3.65)]


def test_summary_of_a_peer_result() -> None:
    summary = peer_pass.summarize(_session(), _peer())
    assert summary["available"] is True
    assert summary["audio_s"] == 5.0
    rows = {row["corpus"]: row for row in summary["wer"]}
    assert list(rows) == ["corpus-a", "corpus-b", "all"]
    assert rows["corpus-a"]["streaming_wer"] == 0.0
    assert rows["corpus-b"]["streaming_wer"] == pytest.approx(2 / 3)  # "you" inserted, hat
    assert rows["all"]["streaming_wer"] == pytest.approx(2 / 6)
    assert rows["all"]["offline_wer"] == 0.0
    latency = summary["latency"]
    assert latency["words_timed"] == 6
    assert latency["words_interpolated"] == 1
    assert latency["word_first_seen_after_word_end"]["p50"] == pytest.approx(0.5)
    assert latency["word_first_seen_after_word_end"]["max"] == pytest.approx(1.5)
    assert latency["word_commit_after_word_end"]["n"] == 6
    assert len(latency["word_commit_by_third"]) == 3
    assert summary["cpu_per_audio_s"] == 1.4
    assert summary["offline_cpu_per_audio_s"] == 0.07
    assert summary["peak_rss_mb"] == 790.0
    assert summary["drained"] is True
    assert summary["stability"]["words_retracted"] == 1  # "bat"
    assert summary["stability"]["updates"] == 4
    assert summary["system"]["model_dir"] == "/models/tiny.en"
    json.dumps(summary)  # JSON-ready


def test_a_peer_that_cannot_run_gives_a_reason_and_no_numbers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def missing(*args: object, **kwargs: object) -> dict[str, Any]:
        raise PeerUnavailable("WhisperLiveKit is not installed: .peer-venv is missing")

    monkeypatch.setattr(peer_pass, "run_peer_pcm", missing)
    found = peer_pass.run_peer_session(_session(), tmp_path / "logs")
    assert found["available"] is False
    assert set(found) == {"available", "reason"}
    assert "not installed" in found["reason"]
    assert (tmp_path / "logs" / "peer-error.txt").is_file()


def test_a_failed_peer_run_gives_a_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> dict[str, Any]:
        raise RuntimeError("the peer closed the connection\nbefore 'ready_to_stop'")

    monkeypatch.setattr(peer_pass, "run_peer_pcm", broken)
    found = peer_pass.run_peer_session(_session(), tmp_path)
    assert found["available"] is False
    assert "RuntimeError: the peer closed the connection before 'ready_to_stop'" in found["reason"]


def test_a_peer_run_is_kept_whole_and_summarized(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, dict[str, object]]] = []

    def fake(pcm: object, reference: str, **kwargs: object) -> dict[str, Any]:
        calls.append((reference, kwargs))
        return _peer()

    monkeypatch.setattr(peer_pass, "run_peer_pcm", fake)
    found = peer_pass.run_peer_session(_session(), tmp_path, threads=3)
    assert calls[0][0] == "the cat sat on the mat"
    assert calls[0][1]["threads"] == 3 and calls[0][1]["log_dir"] == tmp_path
    assert found["available"] is True
    assert found["raw_path"] == str(tmp_path / "peer.json")
    assert json.loads((tmp_path / "peer.json").read_text())["transcript"] == _peer()["transcript"]


# -- the report section --------------------------------------------------------------------------


def _ours() -> dict[str, Any]:
    return {
        "wer": [
            {"corpus": "corpus-a", "words": 3, "streaming_wer": 0.0, "offline_wer": 0.0},
            {"corpus": "corpus-b", "words": 3, "streaming_wer": 1 / 3, "offline_wer": None},
            {"corpus": "all", "words": 6, "streaming_wer": 0.1, "offline_wer": 0.05},
        ],
        "latency": {
            "word_first_seen_after_word_end": {"p50": 0.5, "p95": 1.0, "p99": 1.2},
            "word_commit_after_word_end": {"p50": 1.0, "p95": None, "p99": None},
        },
        "cpu": {"streaming_cpu_per_audio_s": 0.2, "offline_cpu_per_audio_s": 0.1},
        "peak_rss_mb": 300.0,
        "drained": True,
        "stability": {"retracted_share": 0.05, "words_shown": 100, "words_retracted": 5},
    }


def _row(lines: list[str], label: str) -> list[str]:
    (line,) = [line for line in lines if line.startswith(f"| {label} |")]
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_the_section_puts_both_systems_side_by_side() -> None:
    lines = peer_section(_ours(), peer_pass.summarize(_session(), _peer()))
    assert lines[0] == HEADING
    assert _row(lines, "WER, streaming") == ["WER, streaming", "10.0 %", "33.3 %", "3.3 ×"]
    assert _row(lines, "word first shown after word end, p50")[1:] == ["0.50 s", "0.50 s", "1.0 ×"]
    assert _row(lines, "word committed after word end, p95")[1:3] == ["–", "2.50 s"]
    assert _row(lines, "word committed after word end, p95")[3] == "–"
    assert _row(lines, "CPU-s per audio-s, streaming")[1:] == ["0.200", "1.400", "7.0 ×"]
    assert _row(lines, "CPU-s per audio-s, offline")[1:] == ["0.100", "0.070", "0.70 ×"]
    assert _row(lines, "streaming / offline CPU")[1:] == ["2.00 ×", "20.00 ×", "10.0 ×"]
    assert _row(lines, "peak RSS")[1:] == ["300 MB", "790 MB", "2.6 ×"]
    assert _row(lines, "partial text retracted (share of words shown)")[1] == "5.0 %"
    assert _row(lines, "drained")[1:] == ["yes", "yes", "–"]
    text = "\n".join(lines)
    assert "/models/tiny.en" in text and "beam 5" in text and "greedily" in text
    assert _row(lines, "corpus-b") == ["corpus-b", "3", "33.3 %", "–", "66.7 %", "0.0 %"]
    assert _row(lines, "**all**")[1] == "6"


def test_missing_numbers_show_as_dashes() -> None:
    lines = peer_section({}, {"available": True})
    assert _row(lines, "WER, streaming")[1:] == ["–", "–", "–"]
    assert _row(lines, "drained")[1:] == ["–", "–", "–"]


def test_an_unavailable_peer_gets_its_reason_and_nothing_else() -> None:
    lines = peer_section(_ours(), {"available": False, "reason": "it is not installed here."})
    assert lines == [
        HEADING,
        "",
        "WhisperLiveKit did not run in this run: it is not installed here.",
    ]


def test_ratio_format() -> None:
    assert ratio(6.8, 1.0) == "6.8 ×"
    assert ratio(0.5, 1.0) == "0.50 ×"
    assert ratio(1.0, 0.0) == "–"
    assert ratio(None, 1.0) == "–"
