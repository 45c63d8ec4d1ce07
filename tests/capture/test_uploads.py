"""File uploads through the live pipeline, with a scripted worker standing in for the engine."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import numpy as np
import numpy.typing as npt
import pytest
from capture_audio import conversation, encode
from capture_harness import RunningCapture, StartCapture
from fake_worker import FakeWorker

from capture.vad import SpeechDetector, VadConfig
from echostream_shared import messages as m

RATE = 16_000
FORMATS = [
    ("speech.wav", "pcm_s16le", 8000, 1),
    ("speech.flac", "flac", 44100, 2),
    ("speech.mp3", "libmp3lame", 44100, 2),
    ("speech.ogg", "libopus", 48000, 1),
    ("speech.m4a", "aac", 48000, 2),
    ("speech.webm", "libopus", 48000, 2),
]


def speech_spans(pcm: npt.NDArray[np.int16]) -> list[tuple[float, float]]:
    detector = SpeechDetector(VadConfig())
    found = [b.sample / RATE for b in detector.push(pcm) + detector.finish(len(pcm))]
    return list(zip(found[::2], found[1::2], strict=True))


@pytest.mark.parametrize(("name", "codec", "rate", "channels"), FORMATS)
async def test_an_upload_of_each_format_returns_the_finished_transcript(
    capture: RunningCapture,
    fake_worker: FakeWorker,
    tmp_path: Path,
    name: str,
    codec: str,
    rate: int,
    channels: int,
) -> None:
    speech = conversation(gap_s=0.8)
    path = encode(speech.pcm, tmp_path / name, codec, rate, channels)
    async with httpx.AsyncClient(base_url=capture.http, timeout=30) as http:
        with path.open("rb") as file:
            response = await http.post("/v1/transcriptions", files={"file": (name, file)})
        assert response.status_code == 200, response.text
        body = response.json()
        again = await http.get(f"/v1/transcriptions/{body['id']}")
    assert body["status"] == "done" and body["engine"] == "whisper"
    assert abs(body["duration_s"] - len(speech.pcm) / RATE) < 0.05
    spans = [(s["start"], s["end"]) for s in body["segments"]]
    reference = speech_spans(speech.pcm)
    assert len(spans) == len(reference) == 3
    for (start, end), (want_start, want_end) in zip(spans, reference, strict=True):
        assert abs(start - want_start) <= 0.1 and abs(end - want_end) <= 0.1
    assert body["text"] == " ".join(s["text"] for s in body["segments"])
    assert again.status_code == 200 and again.json() == body


async def test_a_raw_body_upload_is_streamed_faster_than_real_time(
    capture: RunningCapture, fake_worker: FakeWorker, tmp_path: Path
) -> None:
    speech = conversation(gap_s=0.8)
    data = encode(speech.pcm, tmp_path / "s.flac", "flac", 16000, 1).read_bytes()
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with httpx.AsyncClient(base_url=capture.http, timeout=30) as http:
        response = await http.post("/v1/transcriptions", content=data)
    elapsed = loop.time() - started
    assert response.status_code == 200 and len(response.json()["segments"]) == 3
    assert elapsed < len(speech.pcm) / RATE / 3


async def test_an_upload_without_waiting_is_polled_until_done(
    capture: RunningCapture, fake_worker: FakeWorker, tmp_path: Path
) -> None:
    path = encode(conversation().pcm, tmp_path / "s.ogg", "libopus", 48000, 1)
    async with httpx.AsyncClient(base_url=capture.http, timeout=30) as http:
        response = await http.post(
            "/v1/transcriptions?wait=false", files={"file": ("s.ogg", path.read_bytes())}
        )
        assert response.status_code == 202
        status_url = response.json()["status_url"]
        for _ in range(100):
            body = (await http.get(status_url)).json()
            if body["status"] == "done":
                break
            await asyncio.sleep(0.1)
    assert body["status"] == "done" and len(body["segments"]) == 3


async def test_transcripts_are_served_by_any_capture_process(
    start_capture: StartCapture, fake_worker: FakeWorker, tmp_path: Path
) -> None:
    first, second = await start_capture(), await start_capture()
    path = encode(conversation(names=("counting",)).pcm, tmp_path / "s.wav", "pcm_s16le", 16000, 1)
    async with httpx.AsyncClient(timeout=30) as http:
        posted = await http.post(first.http + "/v1/transcriptions", content=path.read_bytes())
        fetched = await http.get(second.http + f"/v1/transcriptions/{posted.json()['id']}")
    assert fetched.json() == posted.json()


async def test_bad_uploads_get_clear_errors(
    start_capture: StartCapture, fake_worker: FakeWorker, tmp_path: Path
) -> None:
    capture = await start_capture(max_upload_bytes=200_000)
    async with httpx.AsyncClient(base_url=capture.http, timeout=30) as http:
        garbage = await http.post("/v1/transcriptions", content=np.random.bytes(20_000))
        empty = await http.post("/v1/transcriptions", files={"file": ("e.wav", b"")})
        no_file = await http.post("/v1/transcriptions", files={"other": ("x", b"x")})
        too_big = await http.post("/v1/transcriptions", content=bytes(300_000))
        unknown = await http.get("/v1/transcriptions/0123456789abcdef")
        engine = await http.post("/v1/transcriptions?engine=nope", content=b"x")
        path = encode(
            conversation(names=("hello_world",)).pcm, tmp_path / "ok.wav", "pcm_s16le", 16000, 1
        )
        fine = await http.post("/v1/transcriptions", content=path.read_bytes())
    assert garbage.status_code == 415 and "decode" in garbage.json()["detail"]
    assert empty.status_code == 415
    assert no_file.status_code == 400 and "'file'" in no_file.json()["detail"]
    assert too_big.status_code == 413
    assert unknown.status_code == 404
    assert engine.status_code == 400
    assert fine.status_code == 200 and len(fine.json()["segments"]) == 1
    assert all(isinstance(f, m.TranscriptFinal) for f in fake_worker.finals)
