"""The native transcription document: a session's state and one engine's finals as JSON."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from echostream_shared import messages as m

RATE = m.SAMPLE_RATE


def transcript_json(
    session_id: str,
    engine: str,
    duration_s: float,
    finals: Sequence[m.TranscriptFinal],
    complete: bool,
) -> dict[str, Any]:
    """The response body of a finished or running transcription; empty finals (which only
    withdraw a partial) are left out of both the text and the segments."""
    spoken = [f for f in finals if f.text.strip()]
    return {
        "id": session_id,
        "status": "done" if complete else "processing",
        "engine": engine,
        "duration_s": round(duration_s, 3),
        "text": " ".join(f.text.strip() for f in spoken),
        "segments": [segment_json(f) for f in spoken],
    }


def segment_json(final: m.TranscriptFinal) -> dict[str, Any]:
    """One final as JSON, times in seconds on its source's clock."""
    return {
        "segment_id": final.segment_id,
        "source": final.source,
        "start": round(final.start_sample / RATE, 3),
        "end": round(final.end_sample / RATE, 3),
        "text": final.text.strip(),
        "confidence": final.confidence,
        "language": final.language,
        "words": [
            {
                "text": w.text,
                "start": round(w.start_sample / RATE, 3),
                "end": round(w.end_sample / RATE, 3),
                "probability": w.probability,
            }
            for w in final.words
        ],
    }
