"""Deepgram's prerecorded ``POST /v1/listen`` driven by the official ``deepgram-sdk``: its response
shape on real speech through the whole pipeline, accuracy against the native protocol on the same
audio, and refusals in Deepgram's REST error shape."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from capture_audio import conversation, encode
from compat.deepgram_helpers import TOKEN, corpus_speech, deepgram, stored_session
from deepgram.core.api_error import ApiError
from deepgram.errors import BadRequestError
from deepgram.types import ListenV1Response
from native_client import NativeClient
from pipeline_procs import Pipeline, running_pipeline
from speech_corpus import wer

pytestmark = pytest.mark.slow

RATE = 16_000
WORDED = ("quick_brown_fox", "hello_world", "quick_brown_fox")
MAX_UPLOAD = 8_000_000


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    workdir = tmp_path_factory.mktemp("deepgram-prerecorded")
    with running_pipeline(
        workdir,
        ECHOSTREAM_CAPTURE_TOKEN=TOKEN,
        ECHOSTREAM_CAPTURE_MAX_UPLOAD_BYTES=str(MAX_UPLOAD),
    ) as running:
        yield running


async def native_text(pipeline: Pipeline, pcm: Any) -> str:
    async with NativeClient(pipeline.ws, token=TOKEN) as client:
        ready = await client.start(partials=False)
        assert ready["type"] == "ready", ready
        await client.stream(0, pcm.astype("<i2").tobytes(), frame_bytes=3200)
        done = await client.finish(timeout_s=120)
    assert done["complete"], done
    return " ".join(f["text"] for f in sorted(client.of_type("final"), key=lambda f: f["start"]))


def checked(response: Any) -> ListenV1Response:
    """The SDK builds its models without validation; validate the response for real."""
    assert isinstance(response, ListenV1Response), response
    return ListenV1Response.model_validate(response.model_dump())


async def test_a_file_gets_deepgrams_response_with_utterances_and_native_accuracy(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    speech = conversation(gap_s=1.0, names=WORDED)
    data = encode(speech.pcm, tmp_path / "speech.wav", "pcm_s16le", 44_100, 2).read_bytes()
    response = checked(
        await deepgram(pipeline).listen.v1.media.transcribe_file(
            request=data, model="nova-3", utterances=True, punctuate=True
        )
    )

    metadata = response.metadata
    assert metadata.sha256 == hashlib.sha256(data).hexdigest()
    assert metadata.duration == pytest.approx(len(speech.pcm) / RATE, abs=0.05)
    assert metadata.channels == 1 and metadata.models == list(metadata.model_info)
    [channel] = response.results.channels
    assert channel.alternatives is not None
    [alternative] = channel.alternatives
    assert alternative.words and alternative.transcript
    starts = [w.start for w in alternative.words]
    assert starts == sorted(starts)
    assert all(0 <= (w.confidence or 0) <= 1 and w.start <= w.end for w in alternative.words)
    utterances = response.results.utterances
    assert utterances is not None and len(utterances) >= 2
    assert " ".join(u.transcript or "" for u in utterances) == alternative.transcript
    for before, after in zip(utterances, utterances[1:], strict=False):
        assert (before.end or 0) <= (after.start or 0)
    assert [w.word for u in utterances for w in u.words or []] == [
        w.word for w in alternative.words
    ]

    native = await native_text(pipeline, speech.pcm)
    assert wer(speech.text, alternative.transcript) <= wer(speech.text, native) + 0.02
    stored = await stored_session(pipeline, metadata.request_id)
    assert stored["client"] == "deepgram"


async def test_raw_audio_with_encoding_and_sample_rate_and_a_multipart_upload(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    speech = conversation(gap_s=1.0, names=("hello_world", "quick_brown_fox"))
    response = checked(
        await deepgram(pipeline).listen.v1.media.transcribe_file(
            request=speech.pcm.astype("<i2").tobytes(),
            model="nova-3",
            encoding="linear16",
            request_options={"additional_query_parameters": {"sample_rate": RATE}},
        )
    )
    [channel] = response.results.channels
    assert channel.alternatives is not None
    raw_text = channel.alternatives[0].transcript or ""
    assert raw_text == raw_text.lower(), "no punctuation unless asked for"
    native = await native_text(pipeline, speech.pcm)
    assert wer(speech.text, raw_text) <= wer(speech.text, native) + 0.02

    path = encode(speech.pcm, tmp_path / "speech.ogg", "libopus", 48_000, 1)
    async with httpx.AsyncClient(base_url=pipeline.http, timeout=120) as http:
        answer = await http.post(
            "/v1/listen",
            params={"model": "nova-3", "smart_format": "true"},
            headers={"Authorization": f"Token {TOKEN}"},
            files={"file": (path.name, path.read_bytes(), "audio/ogg")},
        )
    assert answer.status_code == 200, answer.text
    body = ListenV1Response.model_validate(answer.json())
    assert body.results.channels[0].alternatives is not None
    text = body.results.channels[0].alternatives[0].transcript or ""
    assert wer(speech.text, text) <= wer(speech.text, native) + 0.02


def deepgram_error_body(exc: ApiError, status: int) -> dict[str, Any]:
    assert exc.status_code == status, exc
    assert isinstance(exc.body, dict), exc.body
    assert set(exc.body) == {"err_code", "err_msg", "request_id"}, exc.body
    return exc.body


async def test_refusals_in_deepgrams_error_shape(pipeline: Pipeline) -> None:
    client = deepgram(pipeline)
    with pytest.raises(BadRequestError) as url:
        await client.listen.v1.media.transcribe_url(url="https://example.com/a.wav", model="nova-3")
    assert "does not fetch URLs" in deepgram_error_body(url.value, 400)["err_msg"]

    with pytest.raises(ApiError) as unauthorized:
        await deepgram(pipeline, api_key="wrong").listen.v1.media.transcribe_file(
            request=b"RIFF", model="nova-3"
        )
    assert deepgram_error_body(unauthorized.value, 401)["err_code"] == "INVALID_AUTH"

    with pytest.raises(BadRequestError) as garbage:
        await client.listen.v1.media.transcribe_file(request=b"not audio" * 500, model="nova-3")
    body = deepgram_error_body(garbage.value, 400)
    assert body["err_code"] == "Bad Request" and "corrupt or unsupported" in body["err_msg"]

    with pytest.raises(BadRequestError) as empty:
        await client.listen.v1.media.transcribe_file(request=b"", model="nova-3")
    deepgram_error_body(empty.value, 400)

    with pytest.raises(BadRequestError) as no_rate:
        await client.listen.v1.media.transcribe_file(
            request=b"\0\0" * 16_000, model="nova-3", encoding="linear16"
        )
    assert "sample_rate" in deepgram_error_body(no_rate.value, 400)["err_msg"]

    with pytest.raises(BadRequestError) as speex:
        await client.listen.v1.media.transcribe_file(
            request=b"\0" * 1000, model="nova-3", encoding="speex"
        )
    assert "unsupported encoding" in deepgram_error_body(speex.value, 400)["err_msg"]

    with pytest.raises(BadRequestError) as multichannel:
        await client.listen.v1.media.transcribe_file(
            request=b"\0" * 1000, model="nova-3", multichannel=True
        )
    assert "live WebSocket only" in deepgram_error_body(multichannel.value, 400)["err_msg"]

    with pytest.raises(ApiError) as too_large:
        await client.listen.v1.media.transcribe_file(
            request=b"\0" * (MAX_UPLOAD + 1), model="nova-3"
        )
    assert deepgram_error_body(too_large.value, 413)["err_code"] == "PAYLOAD_TOO_LARGE"

    with pytest.raises(BadRequestError) as bad_flag:
        await client.listen.v1.media.transcribe_file(
            request=b"\0" * 1000, model="nova-3", utterances="maybe"
        )
    assert "utterances" in deepgram_error_body(bad_flag.value, 400)["err_msg"]


@pytest.mark.corpus
async def test_prerecorded_accuracy_on_the_dev_split_matches_native(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    speech = corpus_speech()
    data = encode(speech.pcm, tmp_path / "dev.flac", "flac", RATE, 1).read_bytes()
    response = checked(
        await deepgram(pipeline).listen.v1.media.transcribe_file(request=data, model="nova-3")
    )
    alternatives = response.results.channels[0].alternatives
    assert alternatives is not None
    native = await native_text(pipeline, speech.pcm)
    found = wer(speech.text, alternatives[0].transcript or "")
    reference = wer(speech.text, native)
    print(f"dev WER: deepgram prerecorded {found:.3f}, native {reference:.3f}")
    assert found <= reference + 0.02
