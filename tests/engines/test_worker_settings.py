"""Every engine worker's settings extend one ``WorkerSettings`` base, read under the engine's own
prefix, and build the job loop's options one way."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from echostream_shared.config import WorkerSettings
from echostream_shared.segmented.settings import SegmentedWorkerSettings
from fasterwhisper_worker.config import FasterWhisperWorkerSettings
from voxtral_worker.config import VoxtralWorkerSettings
from whisper_worker.config import WhisperWorkerSettings

WORKERS = {
    "WHISPER": WhisperWorkerSettings,
    "FASTERWHISPER": FasterWhisperWorkerSettings,
    "VOXTRAL": VoxtralWorkerSettings,
}


@pytest.mark.parametrize("prefix", sorted(WORKERS))
def test_a_workers_common_settings_come_from_its_own_prefix(
    prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings_class = WORKERS[prefix]
    assert issubclass(settings_class, WorkerSettings)
    monkeypatch.setenv(f"ECHOSTREAM_{prefix}_DEGRADE_LAG_S", "3.5")
    monkeypatch.setenv(f"ECHOSTREAM_{prefix}_SOURCE_IDLE_TIMEOUT_S", "42")
    monkeypatch.setenv(f"ECHOSTREAM_{prefix}_STATUS_INTERVAL_S", "0.5")
    monkeypatch.setenv(f"ECHOSTREAM_{prefix}_WORKER_ID", "w-7")
    monkeypatch.setenv(f"ECHOSTREAM_{prefix}_MAX_STREAMS", "9")
    monkeypatch.setenv("ECHOSTREAM_JOB_ACK_WAIT_S", "12")
    monkeypatch.setenv("ECHOSTREAM_STREAM_REPLICAS", "3")
    settings = settings_class()
    options = settings.worker_options()
    assert (options.worker_id, options.degrade_lag_s) == ("w-7", 3.5)
    assert (options.source_idle_timeout_s, options.status_interval_s) == (42.0, 0.5)
    assert settings.max_streams == 9
    assert (options.limits.job_ack_wait_s, options.limits.replicas) == (12.0, 3)


@pytest.mark.parametrize("settings_class", [WhisperWorkerSettings, FasterWhisperWorkerSettings])
def test_batch_engines_stop_partials_at_half_the_lag_at_which_they_degrade(
    settings_class: type[SegmentedWorkerSettings],
) -> None:
    policy = settings_class(degrade_lag_s=3.0, max_segment_s=20.0).segment_policy()
    assert policy.max_lag_for_partials_s == 1.5
    assert policy.max_segment_s == 20.0


def test_a_worker_id_that_is_not_a_subject_token_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ECHOSTREAM_FASTERWHISPER_WORKER_ID", "a.b")
    with pytest.raises(ValidationError, match="worker_id"):
        FasterWhisperWorkerSettings()


@pytest.mark.parametrize("settings_class", [WhisperWorkerSettings, FasterWhisperWorkerSettings])
def test_a_final_with_its_lead_must_fit_whispers_window(
    settings_class: type[SegmentedWorkerSettings],
) -> None:
    assert settings_class(max_segment_s=26.0, final_lead_s=2.0).segment_policy().final_lead_s == 2
    with pytest.raises(ValidationError, match=r"max_segment_s \+ final_lead_s is 29 s"):
        settings_class(max_segment_s=27.0, final_lead_s=2.0)
