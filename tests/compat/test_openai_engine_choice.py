"""Which engine an OpenAI client gets: a ``model`` naming a configured engine picks it (the realtime
``?model=`` or the session's transcription model, and the upload's ``model`` field); OpenAI's own
model names and anything else get the first configured engine."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

import pytest

from capture import openai_realtime, openai_transcriptions
from capture.config import CaptureSettings
from capture.hub import Hub

ENGINE_FOR = [openai_realtime.engine_for, openai_transcriptions.engine_for]


def hub(*engines: str) -> Hub:
    settings = CaptureSettings(engines=engines, echopanel_engine=engines[0])
    return cast(Hub, SimpleNamespace(settings=settings))


@pytest.mark.parametrize("engine_for", ENGINE_FOR, ids=["realtime", "transcriptions"])
@pytest.mark.parametrize(
    ("model", "engine"),
    [
        ("whisper", "whisper"),
        ("fasterwhisper", "fasterwhisper"),
        (None, "whisper"),
        ("", "whisper"),
        ("whisper-1", "whisper"),
        ("gpt-4o-transcribe", "whisper"),
        ("gpt-4o-mini-transcribe", "whisper"),
        ("FasterWhisper", "whisper"),  # engine names are exact
        ("voxtral", "whisper"),  # an engine that is not configured
    ],
)
def test_a_model_naming_a_configured_engine_picks_it(
    engine_for: Any, model: str | None, engine: str
) -> None:
    assert engine_for(hub("whisper", "fasterwhisper"), model) == engine


@pytest.mark.parametrize("engine_for", ENGINE_FOR, ids=["realtime", "transcriptions"])
def test_the_default_is_the_first_configured_engine(engine_for: Any) -> None:
    both = hub("fasterwhisper", "whisper")
    assert engine_for(both, "whisper-1") == "fasterwhisper"
    assert engine_for(both, "whisper") == "whisper"
    assert engine_for(hub("fasterwhisper"), "whisper") == "fasterwhisper"
