"""OpenAI ``/v1/audio/transcriptions`` request fields and response bodies, from a file's finals."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal, get_args

import srt  # type: ignore[import-untyped]
import webvtt

from capture.file_transcription import FileTranscript
from echostream_shared import messages as m

RATE = m.SAMPLE_RATE
ResponseFormat = Literal["json", "text", "srt", "verbose_json", "vtt"]
Granularity = Literal["word", "segment"]
FORMATS: tuple[str, ...] = get_args(ResponseFormat)
GRANULARITIES: tuple[str, ...] = get_args(Granularity)
STREAMABLE = ("json", "text")


class BadField(Exception):
    """A form field with a value the endpoint does not accept (HTTP 400)."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param
        self.message = message


@dataclass(frozen=True)
class Options:
    """The form fields that shape the answer."""

    model: str | None
    language: str | None
    response_format: ResponseFormat
    granularities: frozenset[str]
    stream: bool

    @classmethod
    def parse(cls, fields: dict[str, list[str]]) -> Options:
        """Read the form; raises ``BadField`` for a value OpenAI's API would refuse."""
        chosen = _one(fields, "response_format") or "json"
        if chosen not in FORMATS:
            raise BadField("response_format", f"response_format must be one of {list(FORMATS)}")
        response_format: ResponseFormat = chosen  # type: ignore[assignment]
        granularities = frozenset(
            fields.get("timestamp_granularities[]", []) + fields.get("timestamp_granularities", [])
        )
        if unknown := granularities - set(GRANULARITIES):
            raise BadField(
                "timestamp_granularities",
                f"unknown timestamp granularity {sorted(unknown)[0]!r}; use word or segment",
            )
        if granularities and response_format != "verbose_json":
            raise BadField(
                "timestamp_granularities",
                "timestamp_granularities requires response_format verbose_json",
            )
        stream = _boolean(_one(fields, "stream") or "false", "stream")
        if stream and response_format not in STREAMABLE:
            raise BadField(
                "stream", f"stream=true is served with response_format {' or '.join(STREAMABLE)}"
            )
        temperature = _one(fields, "temperature")
        if temperature is not None:
            try:
                value = float(temperature)
            except ValueError:
                value = math.nan
            if not 0 <= value <= 1:
                raise BadField("temperature", "temperature must be a number between 0 and 1")
        return cls(
            model=_one(fields, "model"),
            language=_one(fields, "language"),
            response_format=response_format,
            granularities=granularities,
            stream=stream,
        )


ENGINE_FAILED = "engine_failed"
"""The error code EchoStream's OpenAI routes use when the engine gave up on the audio."""


def error_body(
    message: str, *, kind: str = "invalid_request_error", param: str | None, code: str | None
) -> dict[str, Any]:
    """OpenAI's error object."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def text_of(finals: list[m.TranscriptFinal]) -> str:
    return " ".join(text for f in finals if (text := f.text.strip()))


def json_body(transcript: FileTranscript) -> dict[str, Any]:
    return {"text": text_of(transcript.finals), "usage": _usage(transcript)}


def verbose_json_body(transcript: FileTranscript, granularities: frozenset[str]) -> dict[str, Any]:
    """``verbose_json``: segments unless only words were asked for, words when asked for."""
    finals = transcript.finals
    body: dict[str, Any] = {
        "task": "transcribe",
        "language": next((f.language for f in finals if f.language), "en"),
        "duration": round(transcript.duration_s, 3),
        "text": text_of(finals),
    }
    if "segment" in granularities or not granularities:
        spoken = [f for f in finals if f.text.strip()]
        body["segments"] = [_segment(i, final) for i, final in enumerate(spoken)]
    if "word" in granularities:
        body["words"] = [
            {"word": w.text, "start": _s(w.start_sample), "end": _s(w.end_sample)}
            for final in finals
            for w in final.words
        ]
    body["usage"] = _usage(transcript)
    return body


def srt_text(finals: list[m.TranscriptFinal]) -> str:
    """SubRip, one cue per final, composed by the ``srt`` library."""
    subtitles = [
        srt.Subtitle(
            index=i,
            start=timedelta(seconds=start),
            end=timedelta(seconds=end),
            content=text,
        )
        for i, (start, end, text) in enumerate(_cues(finals), start=1)
    ]
    return str(srt.compose(subtitles))


def vtt_text(finals: list[m.TranscriptFinal]) -> str:
    """WebVTT, one cue per final, composed by ``webvtt-py``."""
    document = webvtt.WebVTT()
    for start, end, text in _cues(finals):
        document.captions.append(webvtt.Caption(_clock(start), _clock(end), text))
    return str(document.content)


def _segment(index: int, final: m.TranscriptFinal) -> dict[str, Any]:
    known = [w.probability for w in final.words if w.probability is not None]
    avg_logprob = sum(math.log(max(p, 1e-6)) for p in known) / len(known) if known else 0.0
    return {
        "id": index,
        "seek": 0,
        "start": _s(final.start_sample),
        "end": _s(final.end_sample),
        "text": final.text.strip(),
        "tokens": [],
        "temperature": 0.0,
        "avg_logprob": round(avg_logprob, 4),
        "compression_ratio": 1.0,
        "no_speech_prob": 0.0,
    }


def _cues(finals: list[m.TranscriptFinal]) -> list[tuple[float, float, str]]:
    cues = []
    for final in finals:
        # A cue's text may not hold a blank line or the timing arrow.
        text = " ".join(final.text.split()).replace("-->", "->")
        if text:
            start = _s(final.start_sample)
            cues.append((start, max(_s(final.end_sample), start + 0.001), text))
    return cues


def _usage(transcript: FileTranscript) -> dict[str, Any]:
    return {"type": "duration", "seconds": math.ceil(transcript.duration_s)}


def _s(sample: int) -> float:
    return round(sample / RATE, 3)


def _clock(seconds: float) -> str:
    millis = round(seconds * 1000)
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}.{millis:03d}"


def _one(fields: dict[str, list[str]], name: str) -> str | None:
    values = fields.get(name)
    return values[-1].strip() if values and values[-1].strip() else None


def _boolean(value: str, param: str) -> bool:
    lowered = value.lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise BadField(param, f"{param} must be true or false")
