"""Per-word timing of a recorded stream: when each committed word was first shown and committed,
and where it ends in the audio.

The peer's updates give text, not word times, so each word of the final committed transcript is
placed on an offline word clock (faster-whisper's word timestamps for the same audio) by aligning
normalized words with difflib; words the offline pass did not produce take times interpolated
between their aligned neighbours. A word is *committed* at the first update whose committed text
holds it, and *first shown* at the first update whose committed text plus buffer holds it, once
the audio sent reached the word's start (so an early "the" elsewhere is not taken for it).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher

import numpy as np
from speech_corpus import normalize

from peer.stream import State


@dataclass(frozen=True)
class ClockWord:
    """A word on the offline clock: seconds from the start of the audio."""

    text: str
    start_s: float
    end_s: float


@dataclass(frozen=True)
class PlacedWord:
    text: str
    start_s: float
    end_s: float
    aligned: bool  # False: interpolated between aligned neighbours


@dataclass(frozen=True)
class WordTiming:
    text: str
    audio_start_s: float
    audio_end_s: float
    aligned: bool
    first_seen_t: float  # seconds after the first frame was sent
    committed_t: float
    first_seen_latency_s: float  # after the word's end was sent
    commit_latency_s: float


def tokens(text: str) -> list[str]:
    return normalize(text).split()


def place(words: Sequence[str], clock: Sequence[ClockWord]) -> list[PlacedWord] | None:
    """Audio times of ``words`` (normalized tokens) from the offline clock; None if none align."""
    clock_tokens: list[str] = []
    owner: list[ClockWord] = []
    for word in clock:
        for token in tokens(word.text):
            clock_tokens.append(token)
            owner.append(word)
    times: list[tuple[float, float] | None] = [None] * len(words)
    matcher = SequenceMatcher(None, list(words), clock_tokens, autojunk=False)
    for a, b, size in matcher.get_matching_blocks():
        for k in range(size):
            times[a + k] = (owner[b + k].start_s, owner[b + k].end_s)
    known = [i for i, t in enumerate(times) if t is not None]
    if not known:
        return None
    starts = np.interp(range(len(words)), known, [times[i][0] for i in known])  # type: ignore[index]
    ends = np.interp(range(len(words)), known, [times[i][1] for i in known])  # type: ignore[index]
    return [
        PlacedWord(w, float(s), float(e), times[i] is not None)
        for i, (w, s, e) in enumerate(zip(words, starts, ends, strict=True))
    ]


def _matched(final: Sequence[str], shown: list[str]) -> Iterable[int]:
    matcher = SequenceMatcher(None, list(final), shown, autojunk=False)
    for a, _, size in matcher.get_matching_blocks():
        yield from range(a, a + size)


def on_schedule(audio_s: float) -> float:
    """Send time of an audio instant when every frame left exactly on time."""
    return audio_s


def word_timings(
    states: Sequence[State],
    final_text: str,
    clock: Sequence[ClockWord],
    sent_time: Callable[[float], float] = on_schedule,
) -> list[WordTiming]:
    """Timing of every word of ``final_text`` (the last committed text).

    ``sent_time`` maps an audio instant (seconds) to when it was sent (seconds after the first
    frame); latencies count from the send time of the word's end.
    """
    final = tokens(final_text)
    placed = place(final, clock)
    if placed is None:
        return []
    committed = [math.inf] * len(final)
    seen = [math.inf] * len(final)
    for state in states:
        for index in _matched(final, tokens(state.committed)):
            committed[index] = min(committed[index], state.t)
        shown = tokens(f"{state.committed} {state.buffer}")
        for index in _matched(final, shown):
            if state.t >= sent_time(placed[index].start_s):
                seen[index] = min(seen[index], state.t)
    timings = []
    for index, word in enumerate(placed):
        end_sent = sent_time(word.end_s)
        commit_t = committed[index]
        seen_t = min(seen[index], commit_t)
        timings.append(
            WordTiming(
                text=word.text,
                audio_start_s=word.start_s,
                audio_end_s=word.end_s,
                aligned=word.aligned,
                first_seen_t=seen_t,
                committed_t=commit_t,
                first_seen_latency_s=seen_t - end_sent,
                commit_latency_s=commit_t - end_sent,
            )
        )
    return timings


def summary(values: Iterable[float]) -> dict[str, float | int | None]:
    """Count, p50, p95, mean, min and max of the finite values (None when there are none)."""
    data = np.asarray([v for v in values if math.isfinite(v)], dtype=np.float64)
    if data.size == 0:
        return {"n": 0, "p50": None, "p95": None, "mean": None, "min": None, "max": None}
    return {
        "n": int(data.size),
        "p50": float(np.percentile(data, 50)),
        "p95": float(np.percentile(data, 95)),
        "mean": float(data.mean()),
        "min": float(data.min()),
        "max": float(data.max()),
    }


def by_thirds(timings: Sequence[WordTiming]) -> list[dict[str, float | int | None]]:
    """Commit latency in the first, middle and last third of the audio: does the peer fall behind?"""
    if not timings:
        return []
    length = max(t.audio_end_s for t in timings)
    parts: list[list[float]] = [[], [], []]
    for timing in timings:
        parts[min(2, int(3 * timing.audio_end_s / length))].append(timing.commit_latency_s)
    return [summary(part) for part in parts]
