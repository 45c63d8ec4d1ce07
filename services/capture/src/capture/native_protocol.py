"""Messages of the native WebSocket protocol (``/v1/stream``), documented in the README."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

from capture.audio import AudioFormat, Encoding
from capture.relay import TranscriptEvent
from echostream_shared import messages as m

RATE = m.SAMPLE_RATE


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceSpec(_Strict):
    """One declared source; format fields left out take the session's defaults."""

    name: m.Token
    sample_rate: int | None = None
    channels: int | None = None
    encoding: Encoding | None = None


def _default_sources() -> list[SourceSpec | str]:
    return ["default"]


class Start(_Strict):
    """Opens the session; binary frames address sources by their index in ``sources``."""

    type: Literal["start"]
    sources: list[SourceSpec | m.Token] = Field(default_factory=_default_sources, min_length=1)
    sample_rate: int = RATE
    channels: int = 1
    encoding: Encoding = "pcm_s16le"
    engine: m.Token | None = None
    partials: bool = True
    metadata: dict[str, str] = Field(default_factory=dict, max_length=16)

    @model_validator(mode="after")
    def _unique(self) -> Start:
        names = [spec.name for spec in self.specs()]
        if len(set(names)) != len(names):
            raise ValueError("source names must be unique")
        return self

    def specs(self) -> list[SourceSpec]:
        return [SourceSpec(name=s) if isinstance(s, str) else s for s in self.sources]

    def formats(self) -> dict[str, AudioFormat]:
        """Each source's audio format."""
        return {
            spec.name: AudioFormat(
                spec.sample_rate or self.sample_rate,
                spec.channels or self.channels,
                spec.encoding or self.encoding,
            )
            for spec in self.specs()
        }


class End(_Strict):
    """Ends one source, or (without ``source``) the whole session."""

    type: Literal["end"]
    source: m.Token | None = None


class Ping(_Strict):
    """Answered with ``pong`` carrying the same ``id``."""

    type: Literal["ping"]
    id: str | int | None = None


ClientMessage = Annotated[Start | End | Ping, Field(discriminator="type")]
CLIENT_MESSAGE: TypeAdapter[ClientMessage] = TypeAdapter(ClientMessage)
CLIENT_TYPES = frozenset({"start", "end", "ping"})


def seconds(sample: int) -> float:
    return round(sample / RATE, 3)


def transcript_message(event: TranscriptEvent) -> dict[str, Any]:
    """A transcript event as the native protocol sends it."""
    common = {
        "source": event.source,
        "segment_id": event.segment_id,
        "start": seconds(event.start_sample),
        "end": seconds(event.end_sample),
        "start_sample": event.start_sample,
        "end_sample": event.end_sample,
        "text": event.text.strip(),
    }
    if isinstance(event, m.TranscriptPartial):
        return {"type": "partial", "revision": event.revision, **common}
    words = [
        {
            "text": w.text,
            "start": seconds(w.start_sample),
            "end": seconds(w.end_sample),
            "probability": w.probability,
        }
        for w in event.words
    ]
    return {
        "type": "final",
        **common,
        "confidence": event.confidence,
        "language": event.language,
        "words": words,
    }
