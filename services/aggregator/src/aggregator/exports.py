"""A session's transcript as plain text, SRT and WebVTT (JSON is the API's own model)."""

from __future__ import annotations

from datetime import timedelta

import srt  # type: ignore[import-untyped]
import webvtt

from aggregator.api_models import SegmentOut, SessionDetail

MIN_CUE_S = 0.001
"""Subtitle formats drop a cue that ends where it starts; such a segment keeps one millisecond."""


def cues(session: SessionDetail) -> list[tuple[float, float, str]]:
    """(start, end, text) of every non-empty segment, in timeline order, source-labelled."""
    found = []
    for segment in session.transcript:
        text = _one_line(segment)
        if text:
            start = segment.start_s
            end = max(segment.end_s, round(start + MIN_CUE_S, 3))
            found.append((start, end, f"[{segment.source}] {text}"))
    return found


def to_text(session: SessionDetail) -> str:
    """One line per segment: ``[start - end] source: text``."""
    lines = [
        f"[{_clock(seg.start_s, '.')} - {_clock(seg.end_s, '.')}] {seg.source}: {_one_line(seg)}"
        for seg in session.transcript
        if _one_line(seg)
    ]
    return "\n".join(lines) + ("\n" if lines else "")


def to_srt(session: SessionDetail) -> str:
    """SubRip, composed by the ``srt`` library."""
    subtitles = [
        srt.Subtitle(
            index=i, start=timedelta(seconds=start), end=timedelta(seconds=end), content=text
        )
        for i, (start, end, text) in enumerate(cues(session), start=1)
    ]
    return str(srt.compose(subtitles))


def to_webvtt(session: SessionDetail) -> str:
    """WebVTT, composed by ``webvtt-py``."""
    document = webvtt.WebVTT()
    for start, end, text in cues(session):
        document.captions.append(webvtt.Caption(_clock(start, "."), _clock(end, "."), text))
    return str(document.content)


def _one_line(segment: SegmentOut) -> str:
    # A cue's text may not hold a blank line or the timing arrow.
    return " ".join(segment.text.split()).replace("-->", "->")


def _clock(seconds: float, separator: str) -> str:
    millis = round(seconds * 1000)
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"
