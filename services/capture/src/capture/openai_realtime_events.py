"""OpenAI Realtime transcription sessions on the wire: client events, the session configuration
in its GA (``session.update``) and beta (``transcription_session.update``) shapes, server events.

Only what a transcription session uses is modelled. Unknown fields inside a session are ignored
(clients such as LiveKit send a few of their own); wrong values are refused.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from capture.audio import AudioFormat

Dialect = Literal["ga", "beta"]
InputFormat = Literal["pcm16", "g711_ulaw", "g711_alaw"]
Eagerness = Literal["low", "medium", "high", "auto"]

PCM_RATE = 24_000
G711_RATE = 8_000
LOGPROBS = "item.input_audio_transcription.logprobs"
DEFAULT_MODEL = "whisper-1"


def new_id(prefix: str) -> str:
    """An OpenAI-style id: ``event_…``, ``item_…``, ``sess_…``."""
    return f"{prefix}_{uuid.uuid4().hex[:24]}"


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


# -- client events ------------------------------------------------------------------------------


class Transcription(_Lenient):
    """``input_audio_transcription`` (beta) / ``audio.input.transcription`` (GA)."""

    model: str | None = Field(default=None, max_length=200)
    language: str | None = Field(default=None, max_length=32)
    prompt: str | None = Field(default=None, max_length=10_000)


class ServerVad(_Lenient):
    type: Literal["server_vad"]
    threshold: float | None = Field(default=None, ge=0, le=1)
    prefix_padding_ms: int | None = Field(default=None, ge=0, le=10_000)
    silence_duration_ms: int | None = Field(default=None, ge=0, le=10_000)


class SemanticVad(_Lenient):
    type: Literal["semantic_vad"]
    eagerness: Eagerness | None = None


TurnDetection = Annotated[ServerVad | SemanticVad, Field(discriminator="type")]


class NoiseReduction(_Lenient):
    type: Literal["near_field", "far_field"] | None = None


class PcmFormat(_Lenient):
    type: Literal["audio/pcm"] = "audio/pcm"
    rate: int = PCM_RATE


class G711Format(_Lenient):
    type: Literal["audio/pcmu", "audio/pcma"]


GaFormat = Annotated[PcmFormat | G711Format, Field(discriminator="type")]


class GaInput(_Lenient):
    format: GaFormat | None = None
    transcription: Transcription | None = None
    turn_detection: TurnDetection | None = None
    noise_reduction: NoiseReduction | None = None


class GaAudio(_Lenient):
    input: GaInput | None = None


class GaSession(_Lenient):
    """``session`` of a GA ``session.update``: only ``type: transcription`` is served."""

    type: Literal["transcription"]
    audio: GaAudio | None = None
    include: list[Literal["item.input_audio_transcription.logprobs"]] | None = None


class BetaSession(_Lenient):
    """``session`` of a beta ``transcription_session.update``."""

    input_audio_format: InputFormat | None = None
    input_audio_transcription: Transcription | None = None
    turn_detection: TurnDetection | None = None
    input_audio_noise_reduction: NoiseReduction | None = None
    include: list[str] | None = None


class _Event(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    event_id: str | None = Field(default=None, max_length=512)


class SessionUpdate(_Event):
    type: Literal["session.update"]
    session: GaSession


class TranscriptionSessionUpdate(_Event):
    type: Literal["transcription_session.update"]
    session: BetaSession


class Append(_Event):
    type: Literal["input_audio_buffer.append"]
    audio: str


class Commit(_Event):
    type: Literal["input_audio_buffer.commit"]


class Clear(_Event):
    type: Literal["input_audio_buffer.clear"]


ClientEvent = Annotated[
    SessionUpdate | TranscriptionSessionUpdate | Append | Commit | Clear,
    Field(discriminator="type"),
]
CLIENT_EVENT: TypeAdapter[ClientEvent] = TypeAdapter(ClientEvent)
CLIENT_TYPES = frozenset(
    {
        "session.update",
        "transcription_session.update",
        "input_audio_buffer.append",
        "input_audio_buffer.commit",
        "input_audio_buffer.clear",
    }
)
RESPONSE_TYPES = frozenset(
    {"response.create", "response.cancel", "conversation.item.create", "output_audio_buffer.clear"}
)
"""Conversation events a transcription session refuses: it never creates responses."""


# -- the session's effective configuration -----------------------------------------------------


@dataclass(frozen=True)
class VadSettings:
    """What EchoStream's own VAD does, reported as the effective server VAD."""

    threshold: float
    prefix_padding_ms: int
    silence_duration_ms: int


@dataclass(frozen=True)
class SessionConfig:
    """A transcription session's settings; ``turn_detection`` None is manual commits."""

    input_format: InputFormat = "pcm16"
    pcm_rate: int = PCM_RATE
    transcription: Transcription | None = None
    turn_detection: ServerVad | SemanticVad | None = ServerVad(type="server_vad")
    include: tuple[str, ...] = ()

    @property
    def manual(self) -> bool:
        return self.turn_detection is None

    @property
    def audio_format(self) -> AudioFormat:
        """How appended audio is decoded."""
        if self.input_format == "g711_ulaw":
            return AudioFormat(G711_RATE, 1, "mulaw")
        if self.input_format == "g711_alaw":
            return AudioFormat(G711_RATE, 1, "alaw")
        return AudioFormat(self.pcm_rate, 1, "pcm_s16le")

    @property
    def logprobs(self) -> bool:
        return LOGPROBS in self.include

    def updated_ga(self, session: GaSession) -> SessionConfig:
        """This configuration with the fields present in a GA ``session`` changed."""
        config = self
        if "include" in session.model_fields_set:
            config = replace(config, include=tuple(session.include or ()))
        audio = session.audio.input if session.audio is not None else None
        if audio is None:
            return config
        present = audio.model_fields_set
        if "format" in present:
            fmt = audio.format or PcmFormat()
            if isinstance(fmt, PcmFormat):
                config = replace(config, input_format="pcm16", pcm_rate=fmt.rate)
            else:
                kind: InputFormat = "g711_ulaw" if fmt.type == "audio/pcmu" else "g711_alaw"
                config = replace(config, input_format=kind)
        if "transcription" in present:
            config = replace(config, transcription=audio.transcription)
        if "turn_detection" in present:
            config = replace(config, turn_detection=audio.turn_detection)
        return config

    def updated_beta(self, session: BetaSession) -> SessionConfig:
        """This configuration with the fields present in a beta ``session`` changed."""
        config = self
        present = session.model_fields_set
        if "input_audio_format" in present:
            kind = session.input_audio_format or "pcm16"
            config = replace(config, input_format=kind, pcm_rate=PCM_RATE)
        if "input_audio_transcription" in present:
            config = replace(config, transcription=session.input_audio_transcription)
        if "turn_detection" in present:
            config = replace(config, turn_detection=session.turn_detection)
        if "include" in present:
            config = replace(config, include=tuple(session.include or ()))
        return config

    def ga_session(self, session_id: str, vad: VadSettings) -> dict[str, Any]:
        """The GA ``realtime.transcription_session`` object."""
        if self.input_format == "g711_ulaw":
            fmt: dict[str, Any] = {"type": "audio/pcmu"}
        elif self.input_format == "g711_alaw":
            fmt = {"type": "audio/pcma"}
        else:
            fmt = {"type": "audio/pcm", "rate": self.pcm_rate}
        return {
            "id": session_id,
            "object": "realtime.transcription_session",
            "type": "transcription",
            "expires_at": 0,
            "audio": {
                "input": {
                    "format": fmt,
                    "transcription": self._transcription(),
                    "turn_detection": self._turn_detection(vad),
                    "noise_reduction": None,
                }
            },
            "include": list(self.include),
        }

    def beta_session(self, session_id: str, vad: VadSettings) -> dict[str, Any]:
        """The beta transcription session object."""
        return {
            "id": session_id,
            "object": "realtime.transcription_session",
            "expires_at": 0,
            "modalities": ["text"],
            "input_audio_format": self.input_format,
            "input_audio_transcription": self._transcription(),
            "turn_detection": self._turn_detection(vad),
            "input_audio_noise_reduction": None,
            "include": list(self.include),
        }

    def _transcription(self) -> dict[str, Any] | None:
        if self.transcription is None:
            return None
        shown = self.transcription.model_dump()
        shown["model"] = shown["model"] or DEFAULT_MODEL
        return shown

    def _turn_detection(self, vad: VadSettings) -> dict[str, Any] | None:
        if self.turn_detection is None:
            return None
        if isinstance(self.turn_detection, SemanticVad):
            return {"type": "semantic_vad", "eagerness": self.turn_detection.eagerness or "auto"}
        return {
            "type": "server_vad",
            "threshold": vad.threshold,
            "prefix_padding_ms": vad.prefix_padding_ms,
            "silence_duration_ms": vad.silence_duration_ms,
        }


# -- server events (``event_id`` is added when they are sent) -----------------------------------


def error_event(
    code: str, message: str, *, param: str | None = None, event_id: str | None = None
) -> dict[str, Any]:
    """``error``; the session goes on unless the socket is closed after it."""
    return {
        "type": "error",
        "error": {
            "type": "invalid_request_error",
            "code": code,
            "message": message,
            "param": param,
            "event_id": event_id,
        },
    }


def speech_started(item_id: str, audio_start_ms: int) -> dict[str, Any]:
    return {
        "type": "input_audio_buffer.speech_started",
        "item_id": item_id,
        "audio_start_ms": audio_start_ms,
    }


def speech_stopped(item_id: str, audio_end_ms: int) -> dict[str, Any]:
    return {
        "type": "input_audio_buffer.speech_stopped",
        "item_id": item_id,
        "audio_end_ms": audio_end_ms,
    }


def committed(item_id: str, previous_item_id: str | None) -> dict[str, Any]:
    return {
        "type": "input_audio_buffer.committed",
        "item_id": item_id,
        "previous_item_id": previous_item_id,
    }


def cleared() -> dict[str, Any]:
    return {"type": "input_audio_buffer.cleared"}


def item_added(dialect: Dialect, item_id: str, previous_item_id: str | None) -> dict[str, Any]:
    """The user message item a commit creates (GA ``conversation.item.added``, beta ``created``)."""
    return {
        "type": "conversation.item.added" if dialect == "ga" else "conversation.item.created",
        "previous_item_id": previous_item_id,
        "item": {
            "id": item_id,
            "object": "realtime.item",
            "type": "message",
            "status": "completed",
            "role": "user",
            "content": [{"type": "input_audio", "transcript": None}],
        },
    }


def delta(item_id: str, text: str) -> dict[str, Any]:
    return {
        "type": "conversation.item.input_audio_transcription.delta",
        "item_id": item_id,
        "content_index": 0,
        "delta": text,
    }


def completed(
    item_id: str, transcript: str, seconds: float, logprobs: list[dict[str, Any]] | None
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "conversation.item.input_audio_transcription.completed",
        "item_id": item_id,
        "content_index": 0,
        "transcript": transcript,
        "usage": {"type": "duration", "seconds": round(seconds, 3)},
    }
    if logprobs is not None:
        event["logprobs"] = logprobs
    return event


def transcription_failed(item_id: str, code: str, message: str) -> dict[str, Any]:
    """``conversation.item.input_audio_transcription.failed``: the item gets no transcript."""
    return {
        "type": "conversation.item.input_audio_transcription.failed",
        "item_id": item_id,
        "content_index": 0,
        "error": {"type": "server_error", "code": code, "message": message, "param": None},
    }
