"""The faster-whisper worker as a process, on a real nats-server, with real speech and tiny.en.

The job contract it shares with every engine (partials then finals, failover, hand-back,
malformed audio) is tested in ``tests/engines/test_conformance.py``.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import urllib.request
from pathlib import Path

import bus_reading
import pytest
from capture_sim import conversation, stream_source
from nats_server import NatsServer, free_port
from speech_corpus import item, normalize, read_wav
from worker_process import WorkerProcess, require_ct2_model

from bench.worker_metrics import worker_counters
from echostream_shared import messages as m, topology as t
from echostream_shared.bus import Bus

pytestmark = pytest.mark.slow

ENGINE = "fasterwhisper"


def http_get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        body: bytes = response.read()
        return body.decode()


async def test_streaming_jfk_gives_the_reference_text_health_and_metrics(
    bus: Bus, nats_server: NatsServer, tmp_path: Path
) -> None:
    require_ct2_model()
    await t.ensure_topology(bus.js)
    jfk = item("jfk")
    port = free_port()
    worker = WorkerProcess(
        nats_server.url,
        tmp_path / "worker.log",
        engine=ENGINE,
        ECHOSTREAM_FASTERWHISPER_METRICS_PORT=str(port),
    ).start()
    try:
        talk = conversation([read_wav(jfk.path)])
        await stream_source(bus, "jfk", "mic", talk, engines=(ENGINE,), speed=1.0)
        await bus_reading.wait_for_jobs_done(bus, 60, poll_s=0.2)
        health = json.loads(await asyncio.to_thread(http_get, f"http://127.0.0.1:{port}/health"))
        metrics = await asyncio.to_thread(http_get, f"http://127.0.0.1:{port}/metrics")
        messages = await bus_reading.read_transcripts(bus, ENGINE, "jfk", "mic", idle_s=1.0)
        assert worker.stop() == 0
    finally:
        worker.kill()

    assert health["status"] == "ok" and health["engine"] == ENGINE
    assert health["active_streams"] == 0
    counters = worker_counters(metrics)
    assert counters["echostream_fasterwhisper_final_latency_seconds_count"] == 1.0
    assert counters['echostream_fasterwhisper_decode_seconds_count{purpose="final"}'] == 1.0
    assert counters['echostream_fasterwhisper_decode_seconds_count{purpose="partial"}'] >= 1.0
    (final,) = [msg for msg in messages if isinstance(msg, m.TranscriptFinal)]
    assert normalize(final.text) == normalize(jfk.text)
    assert any(isinstance(msg, m.TranscriptPartial) for msg in messages)
    assert len(final.words) >= 20 and final.language == "en"
    assert all(w.probability is not None for w in final.words)
    assert "ask not" not in worker.log().lower(), "transcript text leaked into the logs"


def test_a_worker_with_a_bad_model_directory_exits_with_a_clear_error(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    source = require_ct2_model()
    truncated = tmp_path / "truncated"
    shutil.copytree(source, truncated)
    (truncated / "model.bin").write_bytes((source / "model.bin").read_bytes()[:500_000])
    corrupt = tmp_path / "corrupt"
    shutil.copytree(source, corrupt)
    (corrupt / "model.bin").write_bytes(b"\x07" * 3_000_000)
    for path in (tmp_path / "missing", truncated, corrupt, Path("tiny.en")):
        worker = WorkerProcess(
            nats_server.url,
            tmp_path / f"{path.name}.log",
            engine=ENGINE,
            ECHOSTREAM_FASTERWHISPER_MODEL_DIR=str(path),
        ).start()
        assert worker.process is not None
        assert worker.process.wait(timeout=60) == 1
        assert '"event": "model.invalid"' in worker.log()
        assert str(path) in worker.log()
        assert "huggingface.co" not in worker.log()


def test_an_invalid_setting_exits_with_a_clear_error(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    worker = WorkerProcess(
        nats_server.url,
        tmp_path / "settings.log",
        engine=ENGINE,
        ECHOSTREAM_FASTERWHISPER_COMPUTE_TYPE="float64",
    ).start()
    assert worker.process is not None
    assert worker.process.wait(timeout=60) == 1
    assert '"event": "settings.invalid"' in worker.log()
    assert "compute_type" in worker.log()
