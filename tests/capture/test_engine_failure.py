"""An engine that gives up on a source is reported to the client, not waited for, in every
protocol's own shape: native, EchoPanel, the uploads (native, OpenAI, Deepgram), Deepgram live and
OpenAI realtime. The engine's side is played by publishing what the job machinery publishes when a
job fails for good: ``source.transcribed`` with ``failure``."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import wave
from collections.abc import AsyncIterator
from typing import Any, cast

import httpx
import numpy as np
import pytest
from capture_audio import packaged, silence
from capture_harness import RunningCapture
from compat.deepgram_helpers import LiveStream
from compat.openai_helpers import PCM_RATE, reading, resample
from deepgram.listen.v1.types import ListenV1Error, ListenV1Metadata
from echopanel_client import EchoPanelClient
from native_client import NativeClient
from nats.aio.msg import Msg
from openai import AsyncOpenAI, InternalServerError
from pipeline_procs import Pipeline

from echostream_shared import topology as t
from echostream_shared.bus import Bus
from echostream_shared.jobs.publisher import TranscriptPublisher

FAILURE = "JobFailed: audio rejected"
ENGINE = "whisper"  # the capture fixture's only engine; no worker runs


async def fail_source(bus: Bus, session_id: str, source: str) -> None:
    """The engine's side, as the job machinery reports a job failed for good."""
    publisher = TranscriptPublisher(bus, ENGINE, session_id, source)
    await publisher.source_transcribed(0, 0, failure=FAILURE)


class Sessions:
    """The (session, source) pairs capture publishes audio of, as they appear on the bus."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []
        self._arrived = asyncio.Event()

    async def on_msg(self, msg: Msg) -> None:
        _, _, session_id, source = msg.subject.split(".", 3)
        if (session_id, source) not in self.seen:
            self.seen.append((session_id, source))
            self._arrived.set()

    async def first(self, timeout_s: float = 10.0) -> tuple[str, str]:
        async with asyncio.timeout(timeout_s):
            while not self.seen:
                self._arrived.clear()
                await self._arrived.wait()
        return self.seen[0]


@contextlib.asynccontextmanager
async def watching(bus: Bus) -> AsyncIterator[Sessions]:
    sessions = Sessions()
    subscription = await bus.nc.subscribe(t.audio("*", "*"), cb=sessions.on_msg)
    try:
        yield sessions
    finally:
        await subscription.unsubscribe()


async def fail_first_session(bus: Bus, sessions: Sessions) -> str:
    session_id, source = await sessions.first()
    await fail_source(bus, session_id, source)
    return session_id


def speech_pcm() -> np.ndarray[Any, Any]:
    return np.concatenate([silence(0.3), packaged("hello_world").pcm, silence(0.3)])


def wav_file() -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(16_000)
        wav.writeframes(speech_pcm().astype("<i2").tobytes())
    return out.getvalue()


async def test_native_done_says_which_source_failed_and_why(
    capture: RunningCapture, bus: Bus
) -> None:
    speech = packaged("hello_world").pcm.tobytes()
    async with NativeClient(capture.ws) as client:
        ready = await client.start(sources=["mic"])
        await client.stream(0, speech, frame_bytes=3200, frames_per_s=100)
        await fail_source(bus, ready["session_id"], "mic")
        started = asyncio.get_running_loop().time()
        done = await client.finish(timeout_s=20)
        waited = asyncio.get_running_loop().time() - started
    mic = done["sources"]["mic"]
    assert not done["complete"] and not mic["complete"]
    assert mic["failure"] == FAILURE
    assert waited < capture.settings.finish_timeout_s / 2, "not waited out"


async def test_echopanel_shows_an_error_status_and_still_gets_its_summary(
    capture: RunningCapture, bus: Bus
) -> None:
    async with watching(bus) as sessions, EchoPanelClient(capture.ws) as client:
        await client.stream({"system": speech_pcm()}, speed=20.0)
        await fail_first_session(bus, sessions)
        error = await client.wait_for(
            lambda m: m.get("type") == "status" and m.get("state") == "error"
        )
        started = asyncio.get_running_loop().time()
        summary = await client.stop()
        waited = asyncio.get_running_loop().time() - started
    assert "Transcription of 'system' failed" in error["message"]
    assert FAILURE in error["message"] and error["source"] == "system"
    assert summary is not None and summary["type"] == "final_summary", "the session goes on"
    assert "warning" in client.statuses()
    warnings = [m["message"] for m in client.of_type("status") if m["state"] == "warning"]
    assert any("Transcription failed" in w for w in warnings), warnings
    assert waited < capture.settings.echopanel_flush_timeout_s / 2, "not waited out"


async def test_a_native_upload_is_answered_502_with_the_failure(
    capture: RunningCapture, bus: Bus
) -> None:
    async with watching(bus) as sessions, httpx.AsyncClient(base_url=capture.http) as http:
        upload = asyncio.create_task(
            http.post("/v1/transcriptions", files={"file": ("a.wav", wav_file())}, timeout=30)
        )
        session_id = await fail_first_session(bus, sessions)
        response = await upload
    assert response.status_code == 502, response.text
    body = response.json()
    assert body["id"] == session_id
    assert body["status"] == "failed" and body["failure"] == FAILURE


async def test_an_openai_upload_gets_openais_error_body(capture: RunningCapture, bus: Bus) -> None:
    sdk = AsyncOpenAI(api_key="any", base_url=capture.http + "/v1", max_retries=0)
    async with watching(bus) as sessions:
        upload = asyncio.create_task(
            sdk.audio.transcriptions.create(file=("a.wav", wav_file()), model="whisper-1")
        )
        session_id = await fail_first_session(bus, sessions)
        with pytest.raises(InternalServerError) as failed:
            await upload
    assert failed.value.status_code == 502
    assert failed.value.code == "engine_failed" and failed.value.type == "server_error"
    assert FAILURE in failed.value.message and session_id in failed.value.message
    assert failed.value.response.headers["x-echostream-session-id"] == session_id

    async with watching(bus) as sessions, httpx.AsyncClient(base_url=capture.http) as http:
        streamed = asyncio.create_task(
            http.post(
                "/v1/audio/transcriptions",
                files={"file": ("a.wav", wav_file())},
                data={"model": "whisper-1", "stream": "true"},
                timeout=30,
            )
        )
        await fail_first_session(bus, sessions)
        response = await streamed
    events = [json.loads(line[6:]) for line in response.text.splitlines() if line]
    assert response.status_code == 200 and events, response.text
    assert events[-1]["error"]["code"] == "engine_failed", events
    assert not [e for e in events if e.get("type") == "transcript.text.done"]


async def test_a_deepgram_upload_gets_deepgrams_error_body(
    capture: RunningCapture, bus: Bus
) -> None:
    async with watching(bus) as sessions, httpx.AsyncClient(base_url=capture.http) as http:
        upload = asyncio.create_task(
            http.post(
                "/v1/listen",
                params={"model": "nova-3"},
                content=wav_file(),
                headers={"Content-Type": "audio/wav"},
                timeout=30,
            )
        )
        session_id = await fail_first_session(bus, sessions)
        response = await upload
    assert response.status_code == 502, response.text
    body = response.json()
    assert set(body) == {"err_code", "err_msg", "request_id"}
    assert body["err_code"] == "ENGINE_FAILED" and body["request_id"] == session_id
    assert FAILURE in body["err_msg"]


async def test_deepgram_live_gets_an_error_then_metadata_and_a_1011_close(
    capture: RunningCapture, bus: Bus
) -> None:
    target = cast(Pipeline, capture)  # the SDK needs only its http and ws addresses
    audio = speech_pcm().astype("<i2").tobytes()
    async with (
        watching(bus) as sessions,
        LiveStream(target, encoding="linear16", sample_rate=16_000) as stream,
    ):
        await stream.send_audio(audio, 3200)
        await fail_first_session(bus, sessions)
        error = await stream.wait_for(lambda msg: isinstance(msg, ListenV1Error))
        await stream.wait_closed(20)
    ListenV1Error.model_validate(error.model_dump())
    assert error.variant == "ServerError"
    assert "transcription of channel 0 failed" in error.description
    assert FAILURE in error.description
    assert isinstance(stream.messages[-1], ListenV1Metadata), stream.messages[-2:]
    assert stream.close_code == 1011


async def test_deepgram_multichannel_goes_on_while_a_channel_is_still_transcribed(
    capture: RunningCapture, bus: Bus
) -> None:
    target = cast(Pipeline, capture)
    pcm = speech_pcm()
    pair = np.stack([pcm, pcm], axis=1).astype("<i2").tobytes()
    async with (
        watching(bus) as sessions,
        LiveStream(
            target, encoding="linear16", sample_rate=16_000, channels=2, multichannel="true"
        ) as stream,
    ):
        await stream.send_audio(pair, 6400)
        session_id, _ = await sessions.first()
        await fail_source(bus, session_id, "channel-1")
        error = await stream.wait_for(lambda msg: isinstance(msg, ListenV1Error))
        await asyncio.sleep(0.5)
        assert not stream.closed, "channel 0 is still transcribed"
        await stream.socket.send_close_stream()
        await fail_source(bus, session_id, "channel-0")  # no engine runs here: end it too
        await stream.wait_closed(20)
    assert error.variant == "ServerError"
    assert "transcription of channel 1 failed" in error.description
    assert isinstance(stream.messages[-1], ListenV1Metadata)
    assert stream.close_code == 1000


async def test_openai_realtime_fails_the_waiting_and_later_items(
    capture: RunningCapture, bus: Bus
) -> None:
    sdk = AsyncOpenAI(
        api_key="any",
        base_url=capture.http + "/v1",
        websocket_base_url=capture.ws + "/v1",
        max_retries=0,
    )
    chunk = base64.b64encode(resample(speech_pcm(), PCM_RATE).tobytes()).decode()
    failed_type = "conversation.item.input_audio_transcription.failed"
    async with (
        watching(bus) as sessions,
        sdk.realtime.connect() as conn,
        reading(conn) as got,
    ):
        await conn.session.update(
            session={"type": "transcription", "audio": {"input": {"turn_detection": None}}}
        )
        await got.wait_for(lambda e: e["type"] == "session.updated")
        await conn.input_audio_buffer.append(audio=chunk)
        await conn.input_audio_buffer.commit()
        first = await got.wait_for(lambda e: e["type"] == "input_audio_buffer.committed")
        await fail_first_session(bus, sessions)
        error = await got.wait_for(lambda e: e["type"] == "error")
        await got.wait_for(lambda e: e["type"] == failed_type)
        await conn.input_audio_buffer.append(audio=chunk)
        await conn.input_audio_buffer.commit()
        await got.wait_for(lambda e: e["type"] == failed_type and e["item_id"] != first["item_id"])
        await asyncio.sleep(0.5)
    assert error["error"]["type"] == "server_error" and error["error"]["code"] == "engine_failed"
    assert FAILURE in error["error"]["message"]
    committed = [e["item_id"] for e in got.of_type("input_audio_buffer.committed")]
    failed = got.of_type(failed_type)
    assert [e["item_id"] for e in failed] == committed and len(committed) == 2
    for event in failed:
        assert event["content_index"] == 0
        assert event["error"]["code"] == "engine_failed" and FAILURE in event["error"]["message"]
    assert not got.of_type("conversation.item.input_audio_transcription.completed")
    kinds = [e["type"] for e in got.events if e.get("item_id") == committed[1]]
    assert kinds == ["input_audio_buffer.committed", failed_type], kinds
