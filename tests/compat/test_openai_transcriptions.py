"""``POST /v1/audio/transcriptions`` driven by the official ``openai`` SDK, on real speech through
the whole pipeline: every response format, streaming, and OpenAI-shaped errors."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import numpy as np
import openai
import pytest
import srt
import webvtt
from capture_audio import conversation, silence
from compat.openai_helpers import (
    TOKEN,
    accuracy_speech,
    client,
    native_transcript,
    wav_bytes,
)
from pipeline_procs import Pipeline, running_pipeline
from speech_corpus import wer

pytestmark = pytest.mark.slow

MAX_UPLOAD = 4_000_000


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    with running_pipeline(
        tmp_path_factory.mktemp("openai-transcriptions"),
        ECHOSTREAM_CAPTURE_TOKEN=TOKEN,
        ECHOSTREAM_CAPTURE_MAX_UPLOAD_BYTES=str(MAX_UPLOAD),
    ) as running:
        yield running


async def test_every_response_format_on_real_speech(pipeline: Pipeline) -> None:
    speech = conversation(gap_s=1.0, names=("quick_brown_fox", "hello_world"))
    file = ("talk.wav", wav_bytes(speech.pcm), "audio/wav")
    duration = len(speech.pcm) / 16_000
    sdk = client(pipeline)
    create = sdk.audio.transcriptions.create
    as_json, as_text, as_srt, as_vtt, verbose, words_only = await asyncio.gather(
        create(file=file, model="whisper-1", language="en"),
        create(file=file, model="whisper-1", response_format="text"),
        create(file=file, model="gpt-4o-transcribe", response_format="srt"),
        create(file=file, model="whisper-1", response_format="vtt"),
        create(
            file=file,
            model="whisper-1",
            response_format="verbose_json",
            timestamp_granularities=["word", "segment"],
        ),
        create(
            file=file,
            model="whisper-1",
            response_format="verbose_json",
            timestamp_granularities=["word"],
        ),
    )
    assert wer(speech.text, as_json.text) <= 0.2
    assert as_json.usage is not None and as_json.usage.type == "duration"
    assert isinstance(as_text, str) and as_text.strip() == as_json.text

    cues = list(srt.parse(as_srt))
    assert len(cues) >= 2, "one cue per utterance"
    assert [c.start for c in cues] == sorted(c.start for c in cues)
    assert wer(speech.text, " ".join(c.content for c in cues)) <= 0.2
    captions = webvtt.from_string(as_vtt).captions
    assert [c.text for c in captions] == [c.content for c in cues]
    assert all(0 <= c.start_in_seconds < c.end_in_seconds <= duration + 0.01 for c in captions)

    assert verbose.task == "transcribe" and verbose.language == "en"
    assert abs(verbose.duration - duration) < 0.05
    assert verbose.segments and [s.id for s in verbose.segments] == list(
        range(len(verbose.segments))
    )
    assert " ".join(s.text for s in verbose.segments) == verbose.text
    assert verbose.words, "word timestamps when asked for"
    starts = [w.start for w in verbose.words]
    assert starts == sorted(starts)
    assert all(0 <= w.start <= w.end <= duration + 0.01 for w in verbose.words)
    assert wer(speech.text, " ".join(w.word for w in verbose.words)) <= 0.2
    assert words_only.words and words_only.segments is None


async def test_file_accuracy_matches_the_native_protocol(pipeline: Pipeline) -> None:
    speech = accuracy_speech()
    pcm = np.concatenate([speech.pcm, silence(0.5)])
    native = await native_transcript(pipeline, pcm)
    result = await client(pipeline).audio.transcriptions.create(
        file=("speech.wav", wav_bytes(pcm), "audio/wav"), model="whisper-1"
    )
    found, reference = wer(speech.text, result.text), wer(speech.text, native)
    print(f"WER audio/transcriptions {found:.3f} native {reference:.3f}")
    assert found <= reference + 0.02


async def test_stream_sends_deltas_then_done(pipeline: Pipeline) -> None:
    speech = conversation(gap_s=1.0, names=("hello_world", "quick_brown_fox"))
    stream = await client(pipeline).audio.transcriptions.create(
        file=("talk.wav", wav_bytes(speech.pcm), "audio/wav"), model="whisper-1", stream=True
    )
    events = [event async for event in stream]
    kinds = [e.type for e in events]
    assert kinds[-1] == "transcript.text.done" and kinds.count("transcript.text.done") == 1
    assert kinds.count("transcript.text.delta") >= 2, "a delta per utterance, as it is transcribed"
    done = events[-1]
    assert "".join(e.delta for e in events[:-1]) == done.text
    assert wer(speech.text, done.text) <= 0.2


async def test_bad_requests_get_openai_error_bodies(pipeline: Pipeline) -> None:
    speech = conversation(gap_s=0.5, names=("hello_world",))
    file = ("talk.wav", wav_bytes(speech.pcm), "audio/wav")
    sdk = client(pipeline)
    create = sdk.audio.transcriptions.create

    with pytest.raises(openai.AuthenticationError) as unauthorized:
        await client(pipeline, api_key="wrong").audio.transcriptions.create(
            file=file, model="whisper-1"
        )
    assert unauthorized.value.code == "invalid_api_key"

    with pytest.raises(openai.BadRequestError) as bad_format:
        await create(file=file, model="whisper-1", response_format="xml")
    assert bad_format.value.param == "response_format"
    assert bad_format.value.type == "invalid_request_error"

    with pytest.raises(openai.BadRequestError) as granularity:
        await create(file=file, model="whisper-1", timestamp_granularities=["word"])
    assert granularity.value.param == "timestamp_granularities"

    with pytest.raises(openai.BadRequestError) as streamed_srt:
        await create(file=file, model="whisper-1", response_format="srt", stream=True)
    assert streamed_srt.value.param == "stream"

    with pytest.raises(openai.APIStatusError) as undecodable:
        await create(file=("notes.wav", b"this is not audio" * 100, "audio/wav"), model="whisper-1")
    assert undecodable.value.status_code == 415
    assert undecodable.value.param == "file"

    with pytest.raises(openai.APIStatusError) as too_large:
        await create(file=("long.wav", b"\0" * (MAX_UPLOAD + 1), "audio/wav"), model="whisper-1")
    assert too_large.value.status_code == 413
    assert too_large.value.type == "invalid_request_error"

    async with httpx.AsyncClient(base_url=pipeline.http, timeout=30) as http:
        no_file = await http.post(
            "/v1/audio/transcriptions",
            headers={"Authorization": f"Bearer {TOKEN}"},
            files={"model": (None, "whisper-1")},
        )
    assert no_file.status_code == 400
    assert no_file.json()["error"]["param"] == "file"
    assert set(no_file.json()["error"]) == {"message", "type", "param", "code"}

    # none of that disturbed the next request
    fine = await create(file=file, model="whisper-1")
    assert wer(speech.text, fine.text) <= 0.25
