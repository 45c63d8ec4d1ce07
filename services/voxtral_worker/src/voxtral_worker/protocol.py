"""vLLM ``/v1/realtime`` events, as 0.16-0.33 send and accept them (not OpenAI's realtime API).

Client events carry only what vLLM reads; server events are parsed leniently (unknown keys are
ignored) but a frame of an unknown ``type`` is an error.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

FATAL_CODES = frozenset({"model_not_found", "invalid_event", "model_not_validated"})
"""Errors a retry cannot fix: the worker's configuration does not match the server."""


class ProtocolError(Exception):
    """The server sent something this client does not understand."""


def session_update(model: str) -> str:
    return json.dumps({"type": "session.update", "model": model})


def commit(*, final: bool) -> str:
    return json.dumps({"type": "input_audio_buffer.commit", "final": final})


def append(pcm: bytes) -> str:
    """An append of PCM16LE 16 kHz mono bytes."""
    return json.dumps(
        {"type": "input_audio_buffer.append", "audio": base64.b64encode(pcm).decode("ascii")}
    )


@dataclass(frozen=True)
class SessionCreated:
    id: str


@dataclass(frozen=True)
class Delta:
    text: str


@dataclass(frozen=True)
class Done:
    text: str
    completion_tokens: int | None


@dataclass(frozen=True)
class ServerError:
    message: str
    code: str | None

    @property
    def fatal(self) -> bool:
        return self.code in FATAL_CODES


ServerEvent = SessionCreated | Delta | Done | ServerError


def parse(frame: str | bytes) -> ServerEvent:
    """One server frame as an event.

    Raises:
        ProtocolError: for a binary frame, bad JSON or an unknown or malformed event.
    """
    if isinstance(frame, bytes):
        raise ProtocolError("binary frame")
    try:
        event: Any = json.loads(frame)
    except ValueError as exc:
        raise ProtocolError("frame is not JSON") from exc
    if not isinstance(event, dict):
        raise ProtocolError("frame is not a JSON object")
    try:
        return _event(event)
    except (KeyError, TypeError, ValueError) as exc:
        raise ProtocolError(f"malformed {event.get('type')!r} event: {exc!r}") from exc


def _event(event: dict[str, Any]) -> ServerEvent:
    kind = event.get("type")
    if kind == "transcription.delta":
        return Delta(_text(event["delta"]))
    if kind == "transcription.done":
        usage = event.get("usage") or {}
        tokens = usage.get("completion_tokens")
        return Done(_text(event["text"]), tokens if isinstance(tokens, int) else None)
    if kind == "error":
        code = event.get("code")
        return ServerError(str(event.get("error")), code if isinstance(code, str) else None)
    if kind == "session.created":
        return SessionCreated(str(event.get("id")))
    raise ValueError(f"unknown event type {kind!r}")


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value
