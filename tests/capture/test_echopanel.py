"""``/ws/live-listener`` against the bus, a real faster-whisper worker behind it."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import numpy as np
import pytest
from bus_reading import BusRecorder
from capture_audio import conversation, packaged, silence
from capture_harness import MAX_WER, WORDED, RunningCapture, StartCapture, speech_spans
from echopanel_client import STREAMING_STATES, EchoPanelClient
from fasterwhisper_inprocess import ENGINE
from speech_corpus import wer
from websockets.asyncio.client import connect

from capture.echopanel_events import client_segment_id as segment_id
from echostream_shared import messages as m, topology as t
from echostream_shared.bus import Bus
from echostream_shared.jobs.worker import JobWorker

RATE = 16_000


def text_of(finals: list[dict[str, Any]]) -> str:
    return " ".join(f["text"] for f in finals)


async def test_health_says_ok_as_the_client_expects(capture: RunningCapture) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.get(capture.http + "/health", timeout=0.25)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok" and body["model"] == "whisper"


async def test_a_two_source_session_streams_transcribes_and_summarizes(
    capture_with_worker: RunningCapture,
) -> None:
    talk = conversation(names=WORDED)
    fox = packaged("quick_brown_fox")
    system = talk.pcm
    mic = np.concatenate([silence(0.5), fox.pcm, silence(0.8)])
    async with EchoPanelClient(capture_with_worker.ws) as client:
        await client.stream({"system": system, "mic": mic}, speed=4.0)
        summary = await client.stop()

    assert summary is not None, client.messages
    states = client.statuses()
    assert states[0] == "connected" and states[1] == "streaming"
    ack = client.of_type("status")[1]
    assert ack["connection_id"] == client.connection_id
    assert ack["client_features"]["clock_drift_telemetry_enabled"] is True
    assert client.messages[-1]["type"] == "final_summary"
    assert client.close_code == 1000

    finals = client.of_type("asr_final")
    assert {f["source"] for f in finals} == {"system", "mic"}
    for source, speech in (("system", talk), ("mic", fox)):
        said = text_of([f for f in finals if f["source"] == source])
        assert wer(speech.text, said) <= MAX_WER, (source, said)
    for final in finals:
        assert final["attempt_id"] == client.attempt_id
        assert final["session_id"] == client.session_id
        assert 0 <= final["t0"] < final["t1"] <= len(system) / RATE + 0.001
        assert 0 < final["confidence"] <= 1
        assert final["segment_id"] == segment_id(
            final["source"], final["t0"], final["t1"], final["text"]
        )
    assert client.of_type("asr_partial"), "partials are relayed"
    transcript = summary["json"]["transcript"]
    assert [item["text"] for item in transcript] == [
        f["text"] for f in sorted(finals, key=lambda f: (f["t0"], f["source"]))
    ]
    assert all(item["is_final"] for item in transcript)
    assert len(json.dumps(summary)) < 1024 * 1024


async def test_t0_and_t1_are_seconds_on_each_source_clock(
    capture_with_worker: RunningCapture, recorder: BusRecorder
) -> None:
    speech = packaged("quick_brown_fox")
    mic = np.concatenate([silence(1.0), speech.pcm, silence(1.0)])
    loud = np.nonzero(np.abs(mic.astype(np.int32)) > 1000)[0] / RATE
    async with EchoPanelClient(capture_with_worker.ws) as client:
        await client.stream({"mic": mic}, speed=8.0)
        await client.stop()
    finals = client.of_type("asr_final")
    assert wer(speech.text, text_of(finals)) <= MAX_WER, text_of(finals)
    published = [f for f in recorder.finals if f.text.strip()]
    assert [(f["t0"], f["t1"]) for f in finals] == [
        (round(f.start_sample / RATE, 3), round(f.end_sample / RATE, 3)) for f in published
    ]
    # Finals cover the VAD's segment, which starts a pre-roll before the onset.
    ((start, end),) = speech_spans(mic)
    assert finals[0]["t0"] == round(start, 3) and finals[-1]["t1"] == round(end, 3)
    assert loud[0] - 0.5 <= finals[0]["t0"] <= loud[0] - 0.2
    assert loud[-1] <= finals[-1]["t1"] <= loud[-1] + 0.6


async def test_json_base64_audio_is_accepted(capture_with_worker: RunningCapture) -> None:
    speech = conversation(names=("quick_brown_fox",))
    async with EchoPanelClient(capture_with_worker.ws, binary=False) as client:
        await client.stream({"mic": speech.pcm}, speed=8.0)
        summary = await client.stop()
    assert summary is not None
    finals = client.of_type("asr_final")
    assert finals and {f["source"] for f in finals} == {"mic"}
    assert wer(speech.text, text_of(finals)) <= MAX_WER


async def test_a_bare_start_and_a_stop_without_audio_end_cleanly(capture: RunningCapture) -> None:
    async with connect(capture.ws + "/ws/live-listener") as ws:
        assert json.loads(await ws.recv())["state"] == "connected"
        await ws.send(json.dumps({"type": "start", "session_id": "s1"}))
        assert json.loads(await ws.recv())["state"] == "streaming"
        await ws.send(json.dumps({"type": "stop", "session_id": "s1"}))
        summary = json.loads(await ws.recv())
        assert summary["type"] == "final_summary"
        assert "transcript" not in summary["json"], "an empty transcript would wipe the client's"
    assert ws.close_code == 1000


async def test_a_third_source_is_refused_with_a_warning(
    capture_with_worker: RunningCapture,
) -> None:
    async with EchoPanelClient(capture_with_worker.ws, binary=False) as client:
        await client.upload_gate()
        for source in ("system", "mic"):
            await client.send_frame(source, silence(0.02))
        await client.send_json({"type": "audio", "source": "speaker", "data": "AAAA" * 160})
        warning = await client.wait_for(lambda m: m.get("state") == "warning")
        assert "Too many active sources (max 2)" in warning["message"]
        assert await client.stop() is not None
    assert not client.of_type("asr_final"), "silence says nothing"


async def test_wrong_token_is_refused_with_an_error_status_and_1008(
    start_capture: StartCapture,
) -> None:
    capture = await start_capture(token="s3cret")
    async with connect(
        capture.ws + "/ws/live-listener", additional_headers={"Authorization": "Bearer nope"}
    ) as ws:
        message = json.loads(await ws.recv())
        assert message == {
            "type": "status",
            "state": "error",
            "message": "Unauthorized websocket connection",
        }
        await ws.wait_closed()
    assert ws.close_code == 1008
    async with EchoPanelClient(capture.ws, token="s3cret") as client:
        await client.upload_gate()
        assert await client.stop() is not None


@pytest.mark.parametrize("header", ["Authorization", "x-echopanel-token"])
async def test_either_token_header_is_accepted(start_capture: StartCapture, header: str) -> None:
    capture = await start_capture(token="s3cret")
    value = "Bearer s3cret" if header == "Authorization" else "s3cret"
    async with connect(capture.ws + "/ws/live-listener", additional_headers={header: value}) as ws:
        assert json.loads(await ws.recv())["state"] == "connected"


async def test_the_transcript_engine_is_configurable(
    worker: JobWorker, start_capture: StartCapture, recorder: BusRecorder, bus: Bus
) -> None:
    capture = await start_capture(engines=("whisper", ENGINE), echopanel_engine=ENGINE)
    speech = conversation(names=("quick_brown_fox",))
    async with EchoPanelClient(capture.ws) as client:
        await client.stream({"mic": speech.pcm}, speed=8.0)
        summary = await client.stop()
    assert summary is not None
    finals = client.of_type("asr_final")
    assert wer(speech.text, text_of(finals)) <= MAX_WER, text_of(finals)
    assert [item["text"] for item in summary["json"]["transcript"]] == [f["text"] for f in finals]
    assert recorder.finals and all(f.engine == ENGINE for f in recorder.finals)
    jobs = await bus.js.stream_info(t.JOB_STREAM)
    assert jobs.state.messages >= 1, "a whisper job waits for a whisper worker too"


async def test_final_summary_arrives_within_the_deadline_when_the_worker_is_missing(
    start_capture: StartCapture,
) -> None:
    capture = await start_capture(echopanel_flush_timeout_s=1.0)
    async with EchoPanelClient(capture.ws) as client:
        await client.stream({"system": packaged("hello_world").pcm}, speed=8.0)
        loop = asyncio.get_running_loop()
        started = loop.time()
        summary = await client.stop()
        elapsed = loop.time() - started
    assert summary is not None and elapsed < 3
    assert any("did not finish" in m.get("message", "") for m in client.of_type("status"))


async def test_pings_are_answered_and_lagging_workers_reported_without_pausing_upload(
    capture: RunningCapture, bus: Bus
) -> None:
    status = m.WorkerStatus(
        worker_id="w1",
        engine="whisper",
        state="degraded",
        active_streams=4,
        capacity=4,
        max_lag_s=4.0,
        reported_at=1.0,
    )
    async with EchoPanelClient(capture.ws) as client:
        await client.upload_gate()
        pong = await client.ws.ping()
        assert await asyncio.wait_for(pong, 1.0) >= 0
        await bus.publish_core(t.worker_status("whisper", "w1"), status)
        notice = await client.wait_for(lambda msg: msg.get("state") == "backpressure", 5)
        assert await client.stop() is not None
    assert "4.0 s behind" in notice["message"] and notice["lag_seconds"] == 4.0
    assert notice["state"] in STREAMING_STATES, "a backpressure status keeps audio flowing"
