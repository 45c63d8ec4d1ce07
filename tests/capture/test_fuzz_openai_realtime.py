"""Fuzzing OpenAI Realtime client events with a bounded budget. Parsing (``CLIENT_EVENT`` and
the session configuration derived from an update) either accepts an event or raises pydantic's
``ValidationError``; over a live ``/v1/realtime`` socket, every frame is handled or answered with
an ``error`` event (naming the client's ``event_id``), never an internal error, and the session
goes on."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from typing import Any

import pytest
from capture_harness import RunningCapture
from fuzz_inputs import json_values
from hypothesis import HealthCheck, event, given, settings, strategies as st
from pydantic import ValidationError
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect
from websockets.sync.connection import Connection

from capture import metrics
from capture.config import CaptureSettings
from capture.limits import format_problem
from capture.openai_realtime_events import (
    CLIENT_EVENT,
    CLIENT_TYPES,
    RESPONSE_TYPES,
    Append,
    SessionConfig,
    SessionUpdate,
    TranscriptionSessionUpdate,
    VadSettings,
)


def maybe(value: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A plausible value, or any JSON value."""
    return value | json_values


transcription = st.fixed_dictionaries(
    {},
    optional={
        "model": maybe(st.sampled_from(["whisper-1", "gpt-4o-transcribe", "x" * 300])),
        "language": maybe(st.sampled_from(["en", "de", "x" * 40])),
        "prompt": maybe(st.text(max_size=30)),
    },
)
turn_detection = st.none() | st.fixed_dictionaries(
    {"type": maybe(st.sampled_from(["server_vad", "semantic_vad"]))},
    optional={
        "threshold": maybe(st.floats(-1, 2)),
        "prefix_padding_ms": maybe(st.integers(-100, 20_000)),
        "silence_duration_ms": maybe(st.integers(-100, 20_000)),
        "eagerness": maybe(st.sampled_from(["low", "medium", "high", "auto"])),
    },
)
ga_format = st.none() | st.fixed_dictionaries(
    {"type": maybe(st.sampled_from(["audio/pcm", "audio/pcmu", "audio/pcma"]))},
    optional={
        "rate": maybe(st.sampled_from([24_000, 16_000, 8_000, 0, -1, 10**12]) | st.integers())
    },
)
ga_session = st.fixed_dictionaries(
    {"type": maybe(st.just("transcription"))},
    optional={
        "audio": maybe(
            st.fixed_dictionaries(
                {},
                optional={
                    "input": maybe(
                        st.fixed_dictionaries(
                            {},
                            optional={
                                "format": maybe(ga_format),
                                "transcription": maybe(st.none() | transcription),
                                "turn_detection": maybe(turn_detection),
                                "noise_reduction": maybe(st.none()),
                            },
                        )
                    )
                },
            )
        ),
        "include": maybe(
            st.lists(st.sampled_from(["item.input_audio_transcription.logprobs", "x"]))
        ),
    },
)
beta_session = st.fixed_dictionaries(
    {},
    optional={
        "input_audio_format": maybe(st.sampled_from(["pcm16", "g711_ulaw", "g711_alaw", "mp3"])),
        "input_audio_transcription": maybe(st.none() | transcription),
        "turn_detection": maybe(turn_detection),
        "include": maybe(st.lists(st.text(max_size=10), max_size=3)),
    },
)
audio_payloads = (
    st.binary(max_size=3000).map(lambda b: base64.b64encode(b).decode())
    | st.text(max_size=40)
    | json_values
)
client_events = st.fixed_dictionaries(
    {"type": st.sampled_from(sorted(CLIENT_TYPES | RESPONSE_TYPES)) | json_values},
    optional={
        "session": st.one_of(ga_session, beta_session, json_values),
        "audio": audio_payloads,
        "event_id": maybe(st.text(max_size=20)),
    },
)
# Well-formed events (values mostly valid), so that sessions get audio and reconfigurations.
good_transcription = st.none() | st.fixed_dictionaries(
    {},
    optional={
        "model": st.sampled_from(["whisper-1", "gpt-4o-transcribe"]),
        "language": st.sampled_from(["en", "de"]),
        "prompt": st.text(max_size=20),
    },
)
good_turn_detection = st.one_of(
    st.none(),
    st.fixed_dictionaries(
        {"type": st.just("server_vad")},
        optional={
            "threshold": st.floats(0, 1),
            "prefix_padding_ms": st.integers(0, 10_000),
            "silence_duration_ms": st.integers(0, 10_000),
        },
    ),
    st.fixed_dictionaries(
        {"type": st.just("semantic_vad")},
        optional={"eagerness": st.sampled_from(["low", "medium", "high", "auto"])},
    ),
)
good_ga_format = st.one_of(
    st.fixed_dictionaries(
        {"type": st.just("audio/pcm")},
        optional={"rate": st.sampled_from([24_000, 16_000, 8_000, 48_000, 100, 10**7])},
    ),
    st.fixed_dictionaries({"type": st.sampled_from(["audio/pcmu", "audio/pcma"])}),
)
good_events = st.one_of(
    st.fixed_dictionaries(
        {
            "type": st.just("input_audio_buffer.append"),
            "audio": (st.binary(max_size=16_000) | st.integers(0, 48_000).map(bytes)).map(
                lambda b: base64.b64encode(b).decode()
            ),
        },
        optional={"event_id": st.text(max_size=10)},
    ),
    st.fixed_dictionaries(
        {"type": st.sampled_from(["input_audio_buffer.commit", "input_audio_buffer.clear"])}
    ),
    st.fixed_dictionaries(
        {
            "type": st.just("session.update"),
            "session": st.fixed_dictionaries(
                {
                    "type": st.just("transcription"),
                    "audio": st.fixed_dictionaries(
                        {
                            "input": st.fixed_dictionaries(
                                {},
                                optional={
                                    "format": good_ga_format,
                                    "transcription": good_transcription,
                                    "turn_detection": good_turn_detection,
                                },
                            )
                        }
                    ),
                }
            ),
        }
    ),
    st.fixed_dictionaries(
        {
            "type": st.just("transcription_session.update"),
            "session": st.fixed_dictionaries(
                {},
                optional={
                    "input_audio_format": st.sampled_from(["pcm16", "g711_ulaw", "g711_alaw"]),
                    "input_audio_transcription": good_transcription,
                    "turn_detection": good_turn_detection,
                },
            ),
        }
    ),
)
frames = st.one_of(
    good_events.map(json.dumps),
    good_events.map(json.dumps),
    client_events.map(json.dumps),
    json_values.map(json.dumps),
    st.text(max_size=60),
    st.binary(max_size=100),
)
SETTINGS = CaptureSettings()
VAD = VadSettings(0.5, 300, 500)


@settings(max_examples=3000, deadline=None, database=None)
@given(good_events | client_events)
def test_any_client_event_parses_or_is_a_validation_error(raw: dict[str, Any]) -> None:
    try:
        parsed = CLIENT_EVENT.validate_python(raw)
    except ValidationError as exc:
        event("refused")
        assert exc.errors(), "a refusal says what is wrong"
        return
    event(f"parsed: {parsed.type}")
    config = SessionConfig()
    if isinstance(parsed, SessionUpdate):
        config = config.updated_ga(parsed.session)
    elif isinstance(parsed, TranscriptionSessionUpdate):
        config = config.updated_beta(parsed.session)
    elif isinstance(parsed, Append):
        assert isinstance(parsed.audio, str)
    format_problem(config.audio_format, SETTINGS)  # refused or accepted, never an exception
    json.dumps(config.ga_session("sess_x", VAD))
    json.dumps(config.beta_session("sess_x", VAD))


# -- over a live socket --------------------------------------------------------------------------


def internal_errors() -> float:
    return float(metrics.PROTOCOL_ERRORS.labels("openai", "internal")._value.get())


def must_refuse(frame: str | bytes) -> bool:
    """Whether the protocol has to answer this frame with an ``error``, whatever came before."""
    if isinstance(frame, bytes):
        return True
    try:
        raw = json.loads(frame)
    except ValueError:
        return True
    if not isinstance(raw, dict) or not isinstance(raw.get("type"), str):
        return True
    if raw["type"] not in CLIENT_TYPES:
        return True
    try:
        parsed = CLIENT_EVENT.validate_python(raw)
    except ValidationError:
        return True
    if isinstance(parsed, Append):
        try:
            base64.b64decode(parsed.audio, validate=True)
        except ValueError:
            return True
    return False


REPLIES = {
    "session.update": "session.updated",
    "transcription_session.update": "transcription_session.updated",
    "input_audio_buffer.clear": "input_audio_buffer.cleared",
}
"""Valid client events that always get an answer: this one, or an ``error``."""


def answers(ws: Connection, probes: list[str]) -> list[list[dict[str, Any]]]:
    """The server's messages, split at the answers to the probes (one after each frame)."""
    split: list[list[dict[str, Any]]] = [[]]
    while len(split) <= len(probes):
        message = json.loads(ws.recv(timeout=15))
        assert message.get("error", {}).get("type") != "server_error", message
        assert "internal" not in json.dumps(message).lower(), message
        if message["type"] == "error" and probes[len(split) - 1] in message["error"]["message"]:
            split.append([])
        else:
            split[-1].append(message)
    return split[:-1]


def check_answers(frame: str | bytes, answer: list[dict[str, Any]], tally: dict[str, int]) -> None:
    errors = [m for m in answer if m["type"] == "error"]
    if must_refuse(frame):
        tally["refused"] = tally.get("refused", 0) + 1
        assert errors, f"no error for {frame!r}: {answer}"
        raw = None if isinstance(frame, bytes) else _object(frame)
        # An event that reached the protocol (an object with a string type) is named in its
        # error; one refused as JSON before that is not.
        if raw is not None and isinstance(raw.get("type"), str) and "event_id" in raw:
            event_id = raw["event_id"]
            expected = event_id[:512] if isinstance(event_id, str) else None
            assert errors[0]["error"]["event_id"] == expected, errors[0]
        return
    assert isinstance(frame, str)
    raw = _object(frame)
    assert raw is not None
    outcome = f"{raw['type']}: {'error' if errors else 'accepted'}"
    tally[outcome] = tally.get(outcome, 0) + 1
    if (reply := REPLIES.get(raw["type"])) is not None:
        assert errors or [m for m in answer if m["type"] == reply], f"{frame!r}: {answer}"


def _object(frame: str) -> dict[str, Any] | None:
    try:
        raw = json.loads(frame)
    except ValueError:
        return None
    return raw if isinstance(raw, dict) else None


@pytest.mark.slow
async def test_every_realtime_frame_is_handled_or_answered_with_an_error(
    capture: RunningCapture,
) -> None:
    before = internal_errors()

    @settings(
        max_examples=150,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(st.lists(frames, min_size=1, max_size=8))
    def one_session(sent: list[str | bytes]) -> None:
        probe = f"probe-{uuid.uuid4().hex}"
        probes = [f"{probe}-{i}" for i in range(len(sent))]
        with connect(capture.ws + "/v1/realtime", subprotocols=["realtime"]) as ws:  # type: ignore[list-item]
            assert json.loads(ws.recv(timeout=10))["type"] == "session.created"
            for frame, tag in zip(sent, probes, strict=True):
                ws.send(frame)
                ws.send(json.dumps({"type": tag}))
            try:
                split = answers(ws, probes)
            except ConnectionClosed as closed:
                raise AssertionError(f"the session ended: {closed}") from None
        for frame, answer in zip(sent, split, strict=True):
            check_answers(frame, answer, tally)

    tally: dict[str, int] = {}
    await asyncio.to_thread(one_session)
    print(f"realtime frames: {dict(sorted(tally.items()))}")
    assert tally.get("input_audio_buffer.append: accepted", 0) > 0
    assert tally.get("session.update: accepted", 0) + tally.get(
        "transcription_session.update: accepted", 0
    )
    assert internal_errors() == before
