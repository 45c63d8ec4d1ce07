"""Capture in front of the real whisper worker: EchoPanel as the client speaks it, and accuracy
that does not depend on the rate, layout or encoding the audio arrives in."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt
import pytest
import soxr  # type: ignore[import-untyped]
from capture_audio import Speech, conversation, convert, encode, silence
from echopanel_client import EchoPanelClient
from native_client import NativeClient
from pipeline_procs import Pipeline, running_pipeline
from speech_corpus import load_items, read_wav, wer

from capture.echopanel_events import client_segment_id as segment_id

pytestmark = pytest.mark.slow

RATE = 16_000
FORMATS = [(8000, 1, "pcm_s16le"), (44100, 2, "pcm_f32le"), (48000, 2, "pcm_s16le")]
FILES = [
    ("8k.wav", "pcm_s16le", 8000, 1),
    ("44k.flac", "flac", 44100, 2),
    ("48k.wav", "pcm_s16le", 48000, 2),
]


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    with running_pipeline(tmp_path_factory.mktemp("pipeline")) as running:
        yield running


async def test_echopanel_client_session_against_the_whisper_worker(pipeline: Pipeline) -> None:
    # Whisper writes counting as digits, so only worded samples are scored.
    system = conversation(gap_s=1.0, names=("quick_brown_fox", "hello_world", "quick_brown_fox"))
    mic = conversation(gap_s=1.5, names=("hello_world", "quick_brown_fox"))
    loop = asyncio.get_running_loop()
    async with EchoPanelClient(pipeline.ws) as client:
        await client.stream({"system": system.pcm, "mic": mic.pcm}, speed=1.0)
        stream_end = loop.time()
        first_finals = len(client.of_type("asr_final"))
        summary = await client.stop(timeout_s=10)
        stopped_in = loop.time() - stream_end

    assert summary is not None, f"no final_summary within 10 s: {client.messages[-5:]}"
    assert stopped_in < 10
    states = client.statuses()
    assert states[:2] == ["connected", "streaming"] and "error" not in states
    assert first_finals >= 1, "finals arrive while the client is still streaming"
    assert client.of_type("asr_partial"), "partials while speech is in progress"
    finals = client.of_type("asr_final")
    for source, speech in (("system", system), ("mic", mic)):
        mine = [f for f in finals if f["source"] == source]
        assert mine, f"no finals for {source}"
        assert [f["t0"] for f in mine] == sorted(f["t0"] for f in mine)
        assert all(0 <= f["t0"] < f["t1"] <= len(speech.pcm) / RATE + 0.01 for f in mine)
        assert wer(speech.text, " ".join(f["text"] for f in mine)) <= 0.2
    for final in finals:
        assert final["attempt_id"] == client.attempt_id
        assert final["segment_id"] == segment_id(
            final["source"], final["t0"], final["t1"], final["text"]
        )
    assert [item["text"] for item in summary["json"]["transcript"]] == [
        f["text"] for f in sorted(finals, key=lambda f: (f["t0"], f["source"]))
    ]
    assert client.close_code == 1000
    assert summary["json"]["session_id"] == client.session_id
    stored = await stored_segments(pipeline, client.session_id)
    assert [
        (item["source"], item["t0"], item["t1"], item["text"])
        for item in summary["json"]["transcript"]
    ] == stored
    log = (pipeline.logs / "capture.log").read_text()
    assert "summary.from_aggregator" in log and "summary.from_relay" not in log, (
        "the summary is the aggregator's stored session, not the capture's own relay"
    )


async def stored_segments(
    pipeline: Pipeline, client_session: str
) -> list[tuple[str, float, float, str]]:
    """The session's stored finals, read through capture's ``GET /v1/transcriptions/{id}``."""
    async with httpx.AsyncClient(base_url=pipeline.aggregator) as http:
        page = (await http.get("/v1/sessions", params={"limit": 200})).json()
    [ours] = [
        item
        for item in page["items"]
        if item["metadata"].get("client_session_id") == client_session
    ]
    async with httpx.AsyncClient(base_url=pipeline.http) as http:
        for _ in range(50):  # the session's close is stored at its own pace
            response = await http.get(f"/v1/transcriptions/{ours['session_id']}")
            assert response.status_code == 200, response.text
            body: dict[str, Any] = response.json()
            if body["status"] == "done":
                break
            await asyncio.sleep(0.1)
    assert body["status"] == "done"
    segments = [s for s in body["segments"] if s["text"]]
    ordered = sorted(segments, key=lambda s: (s["start"], s["source"]))
    return [(s["source"], s["start"], s["end"], s["text"]) for s in ordered]


def corpus_speech(min_s: float = 45.0) -> Speech:
    """LJ Speech dev utterances with pauses between them, about ``min_s`` long."""
    items = [i for i in load_items("dev") if i.source == "ljspeech"]
    parts, texts, total = [silence(0.5)], [], 0.0
    for item in items:
        parts += [read_wav(item.path), silence(0.8)]
        texts.append(item.text)
        total += item.duration_s
        if total >= min_s:
            break
    return Speech(np.concatenate(parts), " ".join(texts))


@pytest.fixture(scope="module")
def corpus() -> Speech:
    return corpus_speech()


async def native_transcript(
    pipeline: Pipeline, data: bytes, rate: int, channels: int, encoding: str
) -> str:
    width = 4 if encoding == "pcm_f32le" else 2
    async with NativeClient(pipeline.ws) as client:
        ready = await client.start(
            sample_rate=rate, channels=channels, encoding=encoding, partials=False
        )
        assert ready["type"] == "ready", ready
        await client.stream(0, data, frame_bytes=rate // 10 * channels * width)
        done = await client.finish(timeout_s=180)
    assert done["complete"], done
    return " ".join(f["text"] for f in sorted(client.of_type("final"), key=lambda f: f["start"]))


@pytest.mark.corpus
async def test_native_protocol_accuracy_does_not_depend_on_the_input_format(
    pipeline: Pipeline, corpus: Speech
) -> None:
    async def at_16k(pcm: npt.NDArray[np.int16]) -> float:
        text = await native_transcript(pipeline, pcm.tobytes(), RATE, 1, "pcm_s16le")
        return wer(corpus.text, text)

    full_band = await at_16k(corpus.pcm)
    assert full_band < 0.25
    for rate, channels, encoding in FORMATS:
        # 8 kHz audio has lost everything above 4 kHz before it reaches us: its reference run is
        # the same narrowband content sent at 16 kHz.
        reference = await at_16k(narrowband(corpus.pcm, rate)) if rate < RATE else full_band
        data = convert(corpus.pcm, rate, channels, encoding)
        found = wer(corpus.text, await native_transcript(pipeline, data, rate, channels, encoding))
        assert found <= reference + 0.02, (
            f"{rate} Hz ×{channels} {encoding}: {found:.3f} vs {reference:.3f}"
        )


def narrowband(pcm: npt.NDArray[np.int16], rate: int) -> npt.NDArray[np.int16]:
    """What survives a trip through ``rate``, back at 16 kHz."""
    down = soxr.resample(pcm.astype(np.float32), RATE, rate)
    up = soxr.resample(down, rate, RATE)[: len(pcm)]
    return np.clip(np.round(up), -32768, 32767).astype(np.int16)


async def upload_transcript(pipeline: Pipeline, path: Path) -> str:
    data = await asyncio.to_thread(path.read_bytes)
    async with httpx.AsyncClient(timeout=300) as http:
        response = await http.post(
            pipeline.http + "/v1/transcriptions", files={"file": (path.name, data)}
        )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "done"
    return str(body["text"])


@pytest.mark.corpus
async def test_uploads_accuracy_does_not_depend_on_the_file_format(
    pipeline: Pipeline, corpus: Speech, tmp_path: Path
) -> None:
    original = encode(corpus.pcm, tmp_path / "16k.wav", "pcm_s16le", RATE, 1)
    reference = wer(corpus.text, await upload_transcript(pipeline, original))
    assert reference < 0.25
    for name, codec, rate, channels in FILES:
        path = encode(corpus.pcm, tmp_path / name, codec, rate, channels)
        found = wer(corpus.text, await upload_transcript(pipeline, path))
        assert found <= reference + 0.02, f"{name}: {found:.3f} vs {reference:.3f}"
