"""Bad input gets a clear error or a clean end, loses nothing already received, stops no one else."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os

import httpx
import numpy as np
import pytest
from bus_reading import BusRecorder, read_subject
from capture_audio import conversation, packaged, silence
from capture_harness import MAX_WER, WORKER_SETTINGS, RunningCapture, StartCapture
from echopanel_client import EchoPanelClient
from native_client import NativeClient
from speech_corpus import wer
from waiting import wait_until
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from echostream_shared import messages as m, topology as t
from echostream_shared.bus import Bus
from echostream_shared.jobs.worker import JobWorker

RATE = 16_000


async def errors_after(client: NativeClient, count: int) -> list[dict[str, object]]:
    await client.wait_for(lambda _: len(client.of_type("error")) >= count)
    return client.of_type("error")


async def test_native_rejects_each_bad_message_and_keeps_the_session(
    capture_with_worker: RunningCapture,
) -> None:
    capture = capture_with_worker
    fox = conversation(names=("quick_brown_fox",), gap_s=0.6)
    speech = fox.pcm.tobytes()
    async with NativeClient(capture.ws) as client:
        await client.ws.send(b"\x00" + speech[:3200])
        await client.send({"type": "start", "sample_rate": 4000})
        await client.send({"type": "start", "channels": 9})
        await client.send({"type": "start", "engine": "nope"})
        await client.send({"type": "start", "sources": "mic"})
        await client.start(sources=["mic"])
        await client.ws.send("{not json")
        await client.ws.send(os.urandom(64).hex())
        await client.send({"type": "transcribe_faster"})
        await client.send({"kind": "start"})
        await client.send({"type": "start"})
        await client.ws.send(b"\x05" + speech[:640])
        await client.ws.send(b"\x00" + speech[:641])
        await client.ws.send(b"")
        await client.ws.send(b"\x00" + bytes(capture.settings.max_message_bytes))
        await client.send({"type": "end", "source": "nobody"})
        codes = [e["code"] for e in await errors_after(client, 15)]
        await client.stream(0, speech, frame_bytes=3200)
        done = await client.finish()
    assert codes == [
        "not_started",
        "unsupported_format",
        "unsupported_format",
        "unknown_engine",
        "bad_message",
        "bad_json",
        "bad_json",
        "unknown_type",
        "bad_message",
        "already_started",
        "unknown_source",
        "bad_frame",
        "bad_frame",
        "frame_too_large",
        "unknown_source",
    ]
    assert all(not e["fatal"] and e["message"] for e in client.of_type("error"))
    assert done["complete"] and done["sources"]["mic"]["end_sample"] == len(speech) // 2
    said = " ".join(f["text"] for f in client.of_type("final"))
    assert wer(fox.text, said) <= MAX_WER, said


async def test_echopanel_rejects_bad_frames_without_dropping_the_session(
    capture_with_worker: RunningCapture,
) -> None:
    capture = capture_with_worker
    fox = conversation(names=("quick_brown_fox",))
    async with EchoPanelClient(capture.ws) as client:
        await client.upload_gate()
        await client.ws.send("garbage{")
        await client.send_json({"type": "summon"})
        await client.ws.send(b"EP\x01\x01" + bytes(641))
        await client.send_json({"type": "audio", "source": "mic", "data": "%%%not base64"})
        await client.ws.send(b"EP\x01\x00" + bytes(capture.settings.max_message_bytes))
        await client.send_json({"type": "voice_note_audio", "data": "AAAA"})
        await client.send_json({"type": "audio", "source": "my mic!", "data": "AAAA"})
        await client.wait_for(lambda _: len(client.of_type("error")) >= 6)
        await client.stream({"mic": fox.pcm}, speed=8.0)
        summary = await client.stop()
    codes = [e["code"] for e in client.of_type("error")]
    assert codes == [
        "bad_json",
        "unknown_type",
        "bad_frame",
        "bad_audio",
        "frame_too_large",
        "bad_audio",
    ]
    assert summary is not None
    said = " ".join(item["text"] for item in summary["json"]["transcript"])
    assert wer(fox.text, said) <= MAX_WER, said
    assert "error" not in client.statuses()


@pytest.mark.parametrize(
    ("start", "close_code"),
    [
        ({"type": "start", "session_id": "  "}, 1008),
        ({"type": "start", "session_id": "x", "sample_rate": 4000}, 1003),
    ],
)
async def test_an_invalid_echopanel_start_ends_with_an_error_status(
    capture: RunningCapture, start: dict[str, object], close_code: int
) -> None:
    async with connect(capture.ws + "/ws/live-listener") as ws:
        await ws.recv()
        await ws.send(json.dumps(start))
        messages = []
        with contextlib.suppress(ConnectionClosed):
            async for raw in ws:
                messages.append(json.loads(raw))
    assert messages[-1]["type"] == "status" and messages[-1]["state"] == "error"
    assert ws.close_code == close_code


async def test_a_wrong_or_missing_token_is_refused(start_capture: StartCapture) -> None:
    capture = await start_capture(token="s3cret")
    for token in ("wrong", None):
        async with NativeClient(capture.ws, token=token) as client:
            await client.wait_for(lambda _: client.closed)
        assert client.messages == [
            {
                "type": "error",
                "code": "unauthorized",
                "message": "missing or wrong token",
                "fatal": True,
            }
        ]
        assert client.close_code == 1008
    async with httpx.AsyncClient() as http:
        response = await http.post(capture.http + "/v1/transcriptions", content=b"x")
        assert response.status_code == 401 and response.json() == {"detail": "Unauthorized"}
        response = await http.get(capture.http + "/v1/transcriptions/abc?token=wrong")
        assert response.status_code == 401
    async with NativeClient(capture.ws, token="s3cret") as client:
        assert (await client.start())["type"] == "ready"


async def session_events(bus: Bus, session_id: str) -> list[m.BusMessage]:
    return await read_subject(bus, t.session_events(session_id))


@pytest.mark.parametrize("protocol", ["native", "echopanel"])
async def test_a_vanished_client_still_gets_its_audio_transcribed(
    capture_with_worker: RunningCapture, recorder: BusRecorder, bus: Bus, protocol: str
) -> None:
    capture = capture_with_worker
    fox = conversation(names=("quick_brown_fox",), gap_s=0.6)
    speech = np.concatenate([fox.pcm, silence(1)])
    sent = len(speech) // 640 * 640 // 2 * 2  # whole 20 ms frames, about 4 s
    bystander = asyncio.create_task(_bystander(capture))
    if protocol == "native":
        async with NativeClient(capture.ws) as client:
            await client.start()
            await client.stream(0, speech[:sent].tobytes(), frame_bytes=640, frames_per_s=200)
            client.ws.transport.abort()
        source = "default"
    else:
        client_ep = EchoPanelClient(capture.ws)
        await client_ep.__aenter__()
        await client_ep.stream({"mic": speech[:sent]}, speed=4.0)
        client_ep.ws.transport.abort()
        source = "mic"

    await wait_until(lambda: bool(recorder.closed(source)), 10, "the vanished source's close")
    closed = recorder.closed(source)[0]
    assert closed.end_sample == sent

    def transcribed() -> bool:
        return any(d.session_id == closed.session_id for d in recorder.transcribed)

    await wait_until(transcribed, 30, "the vanished source transcribed")
    said = recorder.text(closed.session_id)
    assert wer(fox.text, said) <= MAX_WER, said
    events = await session_events(bus, closed.session_id)
    assert isinstance(events[-1], m.SessionClosed) and events[-1].reason == "disconnected"
    assert await bystander, "another client was served to the end meanwhile"


async def _bystander(capture: RunningCapture) -> bool:
    async with NativeClient(capture.ws) as client:
        await client.start(sources=["bystander"])
        speech = conversation(names=("quick_brown_fox",), gap_s=0.6)
        await client.stream(0, speech.pcm.tobytes(), frame_bytes=640, frames_per_s=150)
        done = await client.finish()
    said = " ".join(f["text"] for f in client.of_type("final"))
    return bool(done["complete"]) and wer(speech.text, said) <= MAX_WER


async def test_a_frame_over_the_hard_limit_closes_only_that_connection_cleanly(
    capture_with_worker: RunningCapture, recorder: BusRecorder
) -> None:
    capture = capture_with_worker
    fox = packaged("quick_brown_fox")
    async with NativeClient(capture.ws) as client:
        await client.start()
        await client.stream(0, fox.pcm.tobytes(), frame_bytes=3200)
        await client.send({"type": "ping", "id": 1})  # answered once the audio is taken
        await client.wait_for(lambda msg: msg["type"] == "pong")
        await client.ws.send(b"\x00" + bytes(capture.settings.max_message_bytes * 4 + 2))
        await client.wait_for(lambda _: client.closed)
    assert client.close_code == 1009
    await wait_until(lambda: bool(recorder.transcribed), 30, "the audio before the big frame")
    (closed,) = recorder.closed("default")
    assert closed.end_sample == len(fox.pcm)
    said = recorder.text(closed.session_id)
    assert wer(fox.text, said) <= MAX_WER, said
    async with NativeClient(capture.ws) as other:
        assert (await other.start())["type"] == "ready"


async def test_a_session_stops_taking_audio_at_its_length_limit(
    worker: JobWorker, start_capture: StartCapture
) -> None:
    capture = await start_capture(max_session_s=1.0, **WORKER_SETTINGS)
    async with NativeClient(capture.ws) as client:
        await client.start()
        await client.stream(0, silence(1.5).tobytes(), frame_bytes=3200)
        error = await client.wait_for(lambda msg: msg["type"] == "error")
        assert error["code"] == "session_too_long"
        done = await client.finish()
    assert done["sources"]["default"]["end_sample"] == RATE
    assert done["complete"], "the worker finished the source it was given"
    assert not [f for f in client.of_type("final") if f["text"]], "silence says nothing"


async def test_a_page_of_another_origin_cannot_open_a_socket(start_capture: StartCapture) -> None:
    capture = await start_capture(cors_origins=("https://app.example",))
    for path in (
        "/v1/stream",
        "/ws/live-listener",
        "/v1/realtime",
        "/v1/listen?encoding=linear16&sample_rate=16000",
    ):
        async with connect(capture.ws + path, origin="http://evil.example") as ws:  # type: ignore[arg-type]
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    await ws.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008, path
    async with connect(capture.ws + "/v1/stream", origin="https://app.example") as ws:  # type: ignore[arg-type]
        await ws.send(json.dumps({"type": "start"}))
        assert json.loads(await ws.recv())["type"] == "ready"
