"""Mapping the peer's text updates to per-word first-shown and committed times."""

from __future__ import annotations

import math

import pytest

from peer.stream import State
from peer.words import ClockWord, by_thirds, place, summary, word_timings

CLOCK = [
    ClockWord(" The", 0.0, 0.3),
    ClockWord(" cat", 0.3, 0.8),
    ClockWord(" sat", 0.8, 1.2),
    ClockWord(" on", 1.4, 1.5),
    ClockWord(" the", 1.5, 1.7),
    ClockWord(" mat.", 1.7, 2.2),
]


def test_commit_is_the_first_update_whose_committed_text_holds_the_word() -> None:
    states = [
        State(1.0, "", "The cat", 0.0),
        State(2.0, "The cat", "sat on", 0.0),
        State(3.5, "The cat sat on the", "mat", 0.0),
        State(4.0, "The cat sat on the mat.", "", 0.0),
    ]
    timings = word_timings(states, states[-1].committed, CLOCK)
    assert [t.text for t in timings] == ["the", "cat", "sat", "on", "the", "mat"]
    assert [t.committed_t for t in timings] == [2.0, 2.0, 3.5, 3.5, 3.5, 4.0]
    assert [t.first_seen_t for t in timings] == [1.0, 1.0, 2.0, 2.0, 3.5, 3.5]
    assert timings[1].commit_latency_s == pytest.approx(2.0 - 0.8)
    assert timings[5].first_seen_latency_s == pytest.approx(3.5 - 2.2)


def test_a_word_is_not_seen_before_the_audio_reached_it() -> None:
    # At t=1.0 the buffer says "the" twice; the second "the" starts at 1.5 s and cannot be it.
    states = [
        State(1.0, "", "the cat sat on the", 0.0),
        State(2.5, "The cat sat on the mat.", "", 0.0),
    ]
    timings = word_timings(states, states[-1].committed, CLOCK)
    assert timings[0].first_seen_t == 1.0
    assert timings[3].first_seen_t == 2.5  # "on" starts at 1.4 s
    assert timings[4].first_seen_t == 2.5


def test_send_times_shift_the_latencies() -> None:
    states = [State(3.0, "The cat sat on the mat.", "", 0.0)]
    late = word_timings(states, states[0].committed, CLOCK, sent_time=lambda s: s + 0.5)
    assert late[5].commit_latency_s == pytest.approx(3.0 - 2.7)


def test_words_the_clock_lacks_are_interpolated_between_neighbours() -> None:
    placed = place(["the", "cat", "really", "sat"], CLOCK)
    assert placed is not None
    assert [p.aligned for p in placed] == [True, True, False, True]
    assert placed[2].end_s == pytest.approx((0.8 + 1.2) / 2)


def test_nothing_aligned_gives_no_timings() -> None:
    assert place(["xyzzy"], CLOCK) is None
    assert word_timings([State(1.0, "xyzzy", "", 0.0)], "xyzzy", CLOCK) == []
    assert word_timings([], "", CLOCK) == []


def test_summary_skips_non_finite_values_and_reports_empty_as_none() -> None:
    assert summary([1.0, 2.0, 3.0, math.inf])["p50"] == 2.0
    assert summary([])["p95"] is None


def test_thirds_split_by_the_words_audio_time() -> None:
    # ends 0.3 | 0.8 1.2 | 1.5 1.7 2.2 against thirds of 2.2 s
    states = [State(5.0, "The cat sat on the mat.", "", 0.0)]
    thirds = by_thirds(word_timings(states, states[0].committed, CLOCK))
    assert [part["n"] for part in thirds] == [1, 2, 3]
