from __future__ import annotations

import json

import pytest
import structlog
from pydantic import ValidationError
from pydantic_settings import SettingsConfigDict

from echostream_shared.config import ServiceSettings
from echostream_shared.logging import configure_logging, get_logger


class WorkerSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ECHOSTREAM_TESTSVC_")

    threads: int = 2


def test_common_and_service_settings_read_their_prefixes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ECHOSTREAM_NATS_URL", "nats://a:1, nats://b:2")
    monkeypatch.setenv("ECHOSTREAM_TESTSVC_THREADS", "4")
    monkeypatch.setenv("ECHOSTREAM_TESTSVC_METRICS_PORT", "9100")
    settings = WorkerSettings()
    assert settings.nats_servers == ["nats://a:1", "nats://b:2"]
    assert settings.threads == 4
    assert settings.metrics_port == 9100


def test_invalid_settings_fail_with_the_variable_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ECHOSTREAM_LOG_LEVEL", "loud")
    with pytest.raises(ValidationError, match="ECHOSTREAM_LOG_LEVEL"):
        ServiceSettings()


def test_logs_are_json_with_bound_ids_and_no_transcript_text(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("unit", "info", "json")
    with structlog.contextvars.bound_contextvars(session_id="s1"):
        get_logger("unit").info("transcript.final", text="secret words", chars=12)
    line = json.loads(capsys.readouterr().err.strip())
    assert line["event"] == "transcript.final"
    assert line["session_id"] == "s1" and line["service"] == "unit"
    assert line["chars"] == 12
    assert "text" not in line and "secret words" not in json.dumps(line)
