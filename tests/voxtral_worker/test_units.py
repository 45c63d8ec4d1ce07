"""Timeline, audio buffer, protocol parsing, server pool and settings of the Voxtral worker."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from voxtral_worker import protocol
from voxtral_worker.audio_buffer import AudioBuffer
from voxtral_worker.config import VoxtralWorkerSettings, realtime_url
from voxtral_worker.servers import ServerPool
from voxtral_worker.timeline import Timeline


def test_tokens_map_to_the_source_clock_and_skip_keepalive_silence() -> None:
    timeline = Timeline(origin=10_000)
    timeline.add_audio(10_000, 1280)
    timeline.add_silence(1280)
    timeline.add_audio(11_280, 2560)
    assert timeline.token_span(0) == (10_000, 11_280)
    assert timeline.token_span(1) == (11_280, 11_280)  # keep-alive silence: no source time
    assert timeline.token_span(2) == (11_280, 12_560)
    assert timeline.token_span(9) == (13_840, 13_840)  # right padding after the final
    assert timeline.tokens_due(9000) == 0
    timeline.add_audio(13_840, 5000)
    assert timeline.tokens_due(9000) == 1


def test_audio_buffer_fills_clock_gaps_and_drops_replayed_samples() -> None:
    buffer = AudioBuffer(start=100)
    buffer.add(90, b"\x01\x00" * 20)  # samples 90..110: 100..110 kept
    assert buffer.end == 110
    buffer.add(112, b"\x02\x00")
    assert buffer.read(110, 113) == b"\x00\x00\x00\x00\x02\x00"
    buffer.forget_before(111)
    assert buffer.start == 111 and buffer.read(0, 1000) == b"\x00\x00\x02\x00"


def test_protocol_events_round_trip() -> None:
    assert json.loads(protocol.commit(final=True)) == {
        "type": "input_audio_buffer.commit",
        "final": True,
    }
    assert json.loads(protocol.append(b"\x01\x00")) == {
        "type": "input_audio_buffer.append",
        "audio": "AQA=",
    }
    assert protocol.parse('{"type":"transcription.delta","delta":""}') == protocol.Delta("")
    done = protocol.parse(
        '{"type":"transcription.done","text":" a","usage":{"completion_tokens":3}}'
    )
    assert done == protocol.Done(" a", 3)
    error = protocol.parse('{"type":"error","error":"x","code":"model_not_found"}')
    assert isinstance(error, protocol.ServerError) and error.fatal


@pytest.mark.parametrize(
    "frame",
    [b"\x00", "{", "[]", '{"type":"response.done"}', '{"type":"transcription.delta","delta":5}'],
)
def test_protocol_rejects_what_vllm_never_sends(frame: str | bytes) -> None:
    with pytest.raises(protocol.ProtocolError):
        protocol.parse(frame)


def test_server_pool_bounds_streams_per_server_and_reports_errors() -> None:
    pool = ServerPool(["ws://a/v1/realtime", "ws://b/v1/realtime"], max_streams=1)
    assert pool.capacity() == 2
    first, second = pool.lease(), pool.lease()
    assert {first, second} == {"ws://a/v1/realtime", "ws://b/v1/realtime"}
    with pytest.raises(RuntimeError):
        pool.lease()
    pool.connection_failed(first)
    assert pool.condition()[0] == "degraded"
    pool.connected(first)
    pool.misconfigured(second, "model_not_found")
    assert pool.condition()[0] == "ok" and pool.capacity() == 1
    pool.misconfigured(first, "401")
    assert pool.condition()[0] == "error"


def test_vllm_urls_accept_http_and_ws_bases() -> None:
    assert realtime_url("http://gpu:8000") == "ws://gpu:8000/v1/realtime"
    assert realtime_url("https://gpu/v1") == "wss://gpu/v1/realtime"
    assert realtime_url("ws://gpu:8001/v1/realtime") == "ws://gpu:8001/v1/realtime"
    with pytest.raises(ValueError):
        realtime_url("gpu:8000")


def test_settings_reject_a_delay_that_is_not_whole_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ECHOSTREAM_VOXTRAL_DELAY_MS", "500")
    with pytest.raises(ValidationError):
        VoxtralWorkerSettings()
    monkeypatch.setenv("ECHOSTREAM_VOXTRAL_DELAY_MS", "480")
    monkeypatch.setenv("ECHOSTREAM_VOXTRAL_VLLM_URL", "http://a:8000, ws://b:8001/v1/realtime")
    assert VoxtralWorkerSettings().vllm_urls == [
        "ws://a:8000/v1/realtime",
        "ws://b:8001/v1/realtime",
    ]
