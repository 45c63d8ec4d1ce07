"""File uploads through the live pipeline, a real faster-whisper worker behind it, and
transcriptions read back from a running aggregator."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from bus_reading import BusRecorder
from capture_audio import conversation, encode
from capture_harness import (
    MAX_WER,
    WORDED,
    WORKER_SETTINGS,
    RunningCapture,
    StartCapture,
    speech_spans,
)
from fasterwhisper_inprocess import ENGINE
from running_aggregator import running_aggregator
from speech_corpus import wer
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from capture.config import CaptureSettings
from capture.file_transcription import (
    SOURCE,
    FileTranscript,
    UploadRefused,
    receive_file,
    transcribe_file,
)
from capture.hub import Hub
from capture.uploads import NO_STORE
from echostream_shared import messages as m
from echostream_shared.bus import Bus
from echostream_shared.jobs.worker import JobWorker
from echostream_shared.topology import ensure_topology

RATE = 16_000
FORMATS = [
    ("speech.wav", "pcm_s16le", 8000, 1),
    ("speech.flac", "flac", 44100, 2),
    ("speech.mp3", "libmp3lame", 44100, 2),
    ("speech.ogg", "libopus", 48000, 1),
    ("speech.m4a", "aac", 48000, 2),
    ("speech.webm", "libopus", 48000, 2),
]


@pytest.fixture
async def aggregator(bus: Bus, tmp_path: Path) -> AsyncIterator[None]:
    """The store capture reads transcriptions from."""
    async with running_aggregator(bus, f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"):
        yield


async def stored_when_done(http: httpx.AsyncClient, url: str) -> dict[str, Any]:
    """The transcription as the store has it, once the aggregator has all of it.

    Every answer is a 200, even the first one right after a ``202``.
    """
    for _ in range(300):
        response = await http.get(url)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        if body["status"] == "done":
            return body
        await asyncio.sleep(0.1)
    raise AssertionError(f"{url} never done: {body}")


def text_of(segments: list[dict[str, Any]]) -> str:
    return " ".join(s["text"] for s in segments if s["text"])


@pytest.mark.parametrize(("name", "codec", "rate", "channels"), FORMATS)
async def test_an_upload_of_each_format_returns_the_finished_transcript(
    capture_with_worker: RunningCapture,
    recorder: BusRecorder,
    aggregator: None,
    tmp_path: Path,
    name: str,
    codec: str,
    rate: int,
    channels: int,
) -> None:
    speech = conversation(names=WORDED)
    path = encode(speech.pcm, tmp_path / name, codec, rate, channels)
    async with httpx.AsyncClient(base_url=capture_with_worker.http, timeout=30) as http:
        with path.open("rb") as file:
            response = await http.post("/v1/transcriptions", files={"file": (name, file)})
        assert response.status_code == 200, response.text
        body = response.json()
        again = await stored_when_done(http, f"/v1/transcriptions/{body['id']}")
    assert body["status"] == "done" and body["engine"] == ENGINE
    assert abs(body["duration_s"] - len(speech.pcm) / RATE) < 0.05
    # The decoded file has the speech boundaries of the 16 kHz original: it is aligned.
    spans = recorder.speech(body["id"], SOURCE)
    reference = speech_spans(speech.pcm)
    assert len(spans) == len(reference) == 3
    for (start, end), (want_start, want_end) in zip(spans, reference, strict=True):
        assert abs(start / RATE - want_start) <= 0.1 and abs(end / RATE - want_end) <= 0.1
    assert wer(speech.text, body["text"]) <= MAX_WER, body["text"]
    assert body["text"] == text_of(body["segments"])
    assert all(segment["text"] for segment in body["segments"]), "empty finals are left out"
    assert again == body, "the stored transcription is the one the upload answered with"


async def test_a_raw_body_upload_is_streamed_faster_than_real_time(
    capture_with_worker: RunningCapture, tmp_path: Path
) -> None:
    speech = conversation(names=WORDED)
    data = encode(speech.pcm, tmp_path / "s.flac", "flac", 16000, 1).read_bytes()
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with httpx.AsyncClient(base_url=capture_with_worker.http, timeout=30) as http:
        response = await http.post("/v1/transcriptions", content=data)
    elapsed = loop.time() - started
    assert response.status_code == 200
    assert wer(speech.text, response.json()["text"]) <= MAX_WER, response.json()["text"]
    assert elapsed < len(speech.pcm) / RATE / 3


async def test_an_upload_without_waiting_is_polled_until_done(
    capture_with_worker: RunningCapture, aggregator: None, tmp_path: Path
) -> None:
    speech = conversation(names=WORDED)
    path = encode(speech.pcm, tmp_path / "s.ogg", "libopus", 48000, 1)
    async with httpx.AsyncClient(base_url=capture_with_worker.http, timeout=30) as http:
        response = await http.post(
            "/v1/transcriptions?wait=false", files={"file": ("s.ogg", path.read_bytes())}
        )
        assert response.status_code == 202
        status_url = response.json()["status_url"]
        body = await stored_when_done(http, status_url)
    assert wer(speech.text, body["text"]) <= MAX_WER, body["text"]


async def test_an_upload_may_choose_the_faster_whisper_engine(
    worker: JobWorker, start_capture: StartCapture, aggregator: None, tmp_path: Path
) -> None:
    capture = await start_capture(engines=("whisper", ENGINE))  # whisper is the default
    speech = conversation(names=WORDED)
    path = encode(speech.pcm, tmp_path / "talk.m4a", "aac", 48000, 2)
    async with httpx.AsyncClient(base_url=capture.http, timeout=30) as http:
        response = await http.post(
            "/v1/transcriptions", params={"engine": ENGINE}, files={"file": path.open("rb")}
        )
        assert response.status_code == 200, response.text
        body = response.json()
        stored = await stored_when_done(http, f"/v1/transcriptions/{body['id']}?engine={ENGINE}")
    assert body["status"] == "done" and body["engine"] == ENGINE
    assert wer(speech.text, body["text"]) <= MAX_WER, body["text"]
    assert stored == body


async def test_transcripts_are_served_by_any_capture_process(
    worker: JobWorker, start_capture: StartCapture, aggregator: None, tmp_path: Path
) -> None:
    first = await start_capture(**WORKER_SETTINGS)
    second = await start_capture(**WORKER_SETTINGS)
    speech = conversation(names=("quick_brown_fox",))
    path = encode(speech.pcm, tmp_path / "s.wav", "pcm_s16le", 16000, 1)
    async with httpx.AsyncClient(timeout=30) as http:
        posted = await http.post(first.http + "/v1/transcriptions", content=path.read_bytes())
        url = second.http + f"/v1/transcriptions/{posted.json()['id']}"
        fetched = await stored_when_done(http, url)
        other_engine = await http.get(url, params={"engine": "voxtral"})
        bad_engine = await http.get(url, params={"engine": "no.such"})
    assert fetched == posted.json()
    assert wer(speech.text, fetched["text"]) <= MAX_WER, fetched["text"]
    assert other_engine.status_code == 400 and "voxtral" in other_engine.json()["detail"]
    assert bad_engine.status_code == 400


async def test_bad_uploads_get_clear_errors(
    worker: JobWorker, start_capture: StartCapture, aggregator: None, tmp_path: Path
) -> None:
    capture = await start_capture(max_upload_bytes=200_000, **WORKER_SETTINGS)
    fox = conversation(names=("quick_brown_fox",))
    async with httpx.AsyncClient(base_url=capture.http, timeout=30) as http:
        garbage = await http.post("/v1/transcriptions", content=np.random.bytes(20_000))
        empty = await http.post("/v1/transcriptions", files={"file": ("e.wav", b"")})
        no_file = await http.post("/v1/transcriptions", files={"other": ("x", b"x")})
        too_big = await http.post("/v1/transcriptions", content=bytes(300_000))
        no_body = await http.post("/v1/transcriptions", content=b"")
        unknown = await http.get("/v1/transcriptions/0123456789abcdef")
        not_an_id = await http.get("/v1/transcriptions/not.an.id")
        engine = await http.post("/v1/transcriptions?engine=nope", content=b"x")
        path = encode(fox.pcm, tmp_path / "ok.wav", "pcm_s16le", 16000, 1)
        fine = await http.post("/v1/transcriptions", content=path.read_bytes())
    assert garbage.status_code == 415 and "decode" in garbage.json()["detail"]
    assert empty.status_code == 415
    assert no_file.status_code == 400 and "'file'" in no_file.json()["detail"]
    assert too_big.status_code == 413 and "200000 bytes" in too_big.json()["detail"]
    assert no_body.status_code == 400 and no_body.json()["detail"] == "the request has no body"
    assert unknown.status_code == 404 and not_an_id.status_code == 404
    assert engine.status_code == 400
    assert fine.status_code == 200
    assert wer(fox.text, fine.json()["text"]) <= MAX_WER, fine.json()["text"]


async def test_without_an_aggregator_a_transcription_read_is_a_clear_503(
    capture: RunningCapture,
) -> None:
    async with httpx.AsyncClient(base_url=capture.http, timeout=30) as http:
        response = await http.get("/v1/transcriptions/0123456789abcdef")
    assert response.status_code == 503
    assert response.json() == {"detail": NO_STORE} and "aggregator" in NO_STORE


def file_app(
    hub: Hub, transcripts: list[FileTranscript], live: list[m.TranscriptFinal]
) -> Starlette:
    """The file path as another protocol's upload endpoint uses it."""

    async def on_final(final: m.TranscriptFinal) -> None:
        live.append(final)

    async def upload(request: Request) -> JSONResponse:
        try:
            received = await receive_file(request, hub)
            if request.query_params.get("fields_only"):
                received.discard()
                return JSONResponse({"name": received.filename, "fields": received.fields})
            transcript = await transcribe_file(
                hub,
                received,
                engine=ENGINE,
                client="test-file",
                metadata={"caller": "test"},
                on_final=on_final,
            )
        except UploadRefused as refused:
            return JSONResponse({"code": refused.code}, status_code=refused.status)
        transcripts.append(transcript)
        return JSONResponse({"id": transcript.session_id})

    return Starlette(routes=[Route("/upload", upload, methods=["POST"])])


async def chunks(head: bytes, size: int) -> AsyncIterator[bytes]:
    yield head
    for _ in range(size // 50_000):
        yield bytes(50_000)


async def test_the_file_path_collects_finals_live_and_keeps_the_form_fields(
    worker: JobWorker, bus: Bus, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(uploads))
    await ensure_topology(bus.js)
    hub = Hub(bus, CaptureSettings(port=0, max_upload_bytes=400_000, **WORKER_SETTINGS))
    transcripts: list[FileTranscript] = []
    live: list[m.TranscriptFinal] = []
    speech = conversation(names=WORDED)
    data = encode(speech.pcm, tmp_path / "s.flac", "flac", 16000, 1).read_bytes()
    form = {"model": "whisper-1", "timestamp_granularities[]": ["word", "segment"]}
    transport = httpx.ASGITransport(app=file_app(hub, transcripts, live))
    async with httpx.AsyncClient(transport=transport, base_url="http://t", timeout=30) as http:
        fields = await http.post(
            "/upload?fields_only=1", files={"file": ("talk.flac", data)}, data=form
        )
        done = await http.post("/upload", files={"file": ("talk.flac", data)}, data=form)
        big_form = b"--b\r\nContent-Disposition: form-data; name=file; filename=a\r\n\r\n"
        multipart = {"content-type": "multipart/form-data; boundary=b"}
        streamed = [
            await http.post("/upload", content=chunks(b"", 500_000)),
            await http.post("/upload", content=chunks(big_form, 500_000), headers=multipart),
        ]
        refusals = {
            "missing_file": await http.post("/upload", data=form, files={"other": ("x", b"x")}),
            "upload_too_large": await http.post("/upload", content=bytes(500_000)),
            "undecodable": await http.post("/upload", content=np.random.bytes(20_000)),
            "bad_form": await http.post(
                "/upload",
                content=b"--b\r\nno headers",
                headers={"content-type": "multipart/form-data; boundary=b"},
            ),
        }
    assert fields.json() == {
        "name": "talk.flac",
        "fields": {"model": ["whisper-1"], "timestamp_granularities[]": ["word", "segment"]},
    }
    assert done.status_code == 200
    [transcript] = transcripts
    assert transcript.complete and transcript.engine == ENGINE
    assert abs(transcript.duration_s - len(speech.pcm) / RATE) < 0.05
    said = " ".join(f.text for f in transcript.finals)
    assert wer(speech.text, said) <= MAX_WER, said
    assert sorted(live, key=lambda f: f.start_sample) == transcript.finals
    assert [f.start_sample for f in transcript.finals] == sorted(
        f.start_sample for f in transcript.finals
    )
    assert {f.session_id for f in transcript.finals} == {transcript.session_id}
    statuses = {"missing_file": 400, "upload_too_large": 413, "undecodable": 415, "bad_form": 400}
    for code, response in refusals.items():
        assert (response.status_code, response.json()) == (statuses[code], {"code": code})
    for response in streamed:  # no content-length: counted as the body arrives
        assert (response.status_code, response.json()) == (413, {"code": "upload_too_large"})
    if hub.background:
        await asyncio.wait(hub.background, timeout=10)
    assert not list(uploads.iterdir()), "every temporary file is removed"
