"""Deepgram's live WebSocket (``/v1/listen``) driven by the official ``deepgram-sdk`` on real speech
through the whole pipeline: the event sequence rules of Deepgram's protocol, accuracy against the
native protocol on the same audio, Finalize, multichannel, and every audio format it reads."""

from __future__ import annotations

import hashlib
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from capture_audio import conversation, convert, encode, packaged, silence
from compat.deepgram_helpers import (
    TOKEN,
    LiveStream,
    corpus_speech,
    speech_boundaries,
    stereo,
    stored_session,
    strictly_valid,
)
from compat.openai_helpers import alaw, mulaw
from deepgram.listen.v1.types import (
    ListenV1Metadata,
    ListenV1Results,
    ListenV1SpeechStarted,
    ListenV1UtteranceEnd,
)
from native_client import NativeClient
from pipeline_procs import Pipeline, running_pipeline
from speech_corpus import wer

from echostream_shared import messages as m

pytestmark = pytest.mark.slow

RATE = 16_000
REAL_TIME = RATE * 2  # bytes per second of 16 kHz PCM16
FRAME = 3200  # 100 ms of 16 kHz PCM16
# Whisper writes counting as digits, so only worded samples are scored.
WORDED = ("quick_brown_fox", "hello_world", "quick_brown_fox")


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    workdir = tmp_path_factory.mktemp("deepgram-live")
    with running_pipeline(workdir, ECHOSTREAM_CAPTURE_TOKEN=TOKEN) as running:
        yield running


_NATIVE: dict[str, list[str]] = {}


async def native_texts(pipeline: Pipeline, sources: list[np.ndarray[Any, Any]]) -> list[str]:
    """What the native protocol makes of the same 16 kHz audio, one text per source."""
    key = hashlib.sha256(b"".join(s.astype("<i2").tobytes() + b"|" for s in sources)).hexdigest()
    if key not in _NATIVE:
        _NATIVE[key] = await _native_texts(pipeline, sources)
    return _NATIVE[key]


async def _native_texts(pipeline: Pipeline, sources: list[np.ndarray[Any, Any]]) -> list[str]:
    names = [f"s{i}" for i in range(len(sources))]
    async with NativeClient(pipeline.ws, token=TOKEN) as client:
        ready = await client.start(sources=names, partials=False)
        assert ready["type"] == "ready", ready
        for index, pcm in enumerate(sources):
            await client.stream(index, pcm.astype("<i2").tobytes(), frame_bytes=FRAME)
        done = await client.finish(timeout_s=120)
    assert done["complete"], done
    finals = sorted(client.of_type("final"), key=lambda f: f["start"])
    return [" ".join(f["text"] for f in finals if f["source"] == name) for name in names]


def assert_locked_once(finals: list[ListenV1Results]) -> None:
    """Each ``is_final`` locks its own time range: no overlaps, no repeats, in order."""
    for before, after in zip(finals, finals[1:], strict=False):
        assert after.start >= round(before.start + before.duration, 3) - 0.0005, (before, after)
    for result in finals:
        words = result.channel.alternatives[0].words
        end = result.start + result.duration + 0.0005
        assert all(result.start - 0.0005 <= w.start <= w.end <= end for w in words), result
        assert all(0.0 <= w.confidence <= 1.0 for w in words)


def assert_metadata_last(stream: LiveStream, audio: bytes, channels: int = 1) -> ListenV1Metadata:
    for message in stream.messages:
        strictly_valid(message)
    assert len(stream.of(ListenV1Metadata)) == 1
    metadata = stream.messages[-1]
    assert isinstance(metadata, ListenV1Metadata), stream.messages[-3:]
    assert stream.close_code == 1000
    assert metadata.sha256 == hashlib.sha256(audio).hexdigest()
    assert metadata.channels == channels
    assert metadata.request_id == stream.request_id
    return metadata


async def test_a_real_time_stream_follows_deepgrams_event_rules_and_matches_native_accuracy(
    pipeline: Pipeline,
) -> None:
    speech = conversation(gap_s=1.0, names=WORDED)
    audio = speech.pcm.tobytes()
    async with LiveStream(
        pipeline,
        encoding="linear16",
        sample_rate=RATE,
        interim_results=True,  # the SDK sends Python booleans as "True"
        vad_events="true",
        utterance_end_ms=1000,
        punctuate="TRUE",
    ) as stream:
        await stream.send_audio(audio, FRAME, REAL_TIME)
        await stream.close_stream()

    metadata = assert_metadata_last(stream, audio)
    assert metadata.duration == pytest.approx(len(speech.pcm) / RATE, abs=0.01)
    finals = stream.finals()
    assert_locked_once(finals)
    assert [r for r in stream.results if not r.is_final], "interim results were asked for"
    assert all(r.channel_index == [0, 1] for r in stream.results)
    assert any(w.punctuated_word for r in finals for w in r.channel.alternatives[0].words)

    # speech_final exactly where capture's VAD ended speech, nowhere else.
    boundaries = await speech_boundaries(pipeline, stream.request_id, "default")
    ends = [b.sample / RATE for b in boundaries if isinstance(b, m.SpeechEnded)]
    starts = [round(b.sample / RATE, 3) for b in boundaries if isinstance(b, m.SpeechStarted)]
    assert ends and starts
    for result in finals:
        at_vad_end = any(abs(result.start + result.duration - end) <= 0.02 for end in ends)
        assert result.speech_final == at_vad_end, (result, ends)
    assert any(r.speech_final for r in finals)
    assert [s.timestamp for s in stream.of(ListenV1SpeechStarted)] == starts

    # UtteranceEnd once per last word, after its final, when no word follows within 1 s.
    utterance_ends = stream.of(ListenV1UtteranceEnd)
    assert utterance_ends
    announced = [u.last_word_end for u in utterance_ends]
    assert len(set(announced)) == len(announced)
    words = [w for r in finals for w in r.channel.alternatives[0].words]
    for utterance_end in utterance_ends:
        sent_before = stream.messages[: stream.messages.index(utterance_end)]
        heard = [
            w.end
            for r in sent_before
            if isinstance(r, ListenV1Results) and r.is_final
            for w in r.channel.alternatives[0].words
        ]
        assert utterance_end.last_word_end == max(heard)
        following = [w.start for w in words if w.start > utterance_end.last_word_end]
        assert not following or min(following) - utterance_end.last_word_end >= 1.0
    for before, after in zip(words, words[1:], strict=False):
        if after.start - before.end >= 1.5:
            assert before.end in announced, (before, after, announced)
    assert words[-1].end in announced

    [native] = await native_texts(pipeline, [speech.pcm])
    assert wer(speech.text, stream.transcript()) <= wer(speech.text, native) + 0.02

    stored = await stored_session(pipeline, stream.request_id)
    assert stored["client"] == "deepgram"
    assert " ".join(s["text"].strip() for s in stored["transcript"]) == " ".join(
        r.channel.alternatives[0].transcript
        for r in sorted(finals, key=lambda r: r.start)
        if r.channel.alternatives[0].transcript
    )


async def test_optional_events_only_when_asked_and_no_endpoints_when_endpointing_is_false(
    pipeline: Pipeline,
) -> None:
    speech = conversation(gap_s=1.2, names=("hello_world", "quick_brown_fox"))
    # 24 kHz stereo 32-bit PCM, mixed to one channel as Deepgram does without multichannel.
    floats = np.frombuffer(convert(speech.pcm, 24_000, 2, "pcm_f32le"), dtype="<f4")
    audio = np.clip(np.rint(floats * 2**31), -(2**31), 2**31 - 1).astype("<i4").tobytes()
    async with LiveStream(
        pipeline,
        encoding="linear32",
        sample_rate=24_000,
        channels=2,
        endpointing="false",
        interim_results="False",
        vad_events="FALSE",
    ) as stream:
        await stream.send_audio(audio, 24_000 // 10 * 8)
        await stream.close_stream()

    assert_metadata_last(stream, audio, channels=2)
    finals = stream.finals()
    assert finals and all(r.is_final for r in stream.results)
    assert_locked_once(finals)
    assert not any(r.speech_final for r in finals)
    assert not stream.of(ListenV1SpeechStarted) and not stream.of(ListenV1UtteranceEnd)
    assert all(w.punctuated_word is None for r in finals for w in r.channel.alternatives[0].words)
    text = stream.transcript()
    assert text == text.lower() and "." not in text, "no punctuation unless asked for"
    [native] = await native_texts(pipeline, [speech.pcm])
    assert wer(speech.text, text) <= wer(speech.text, native) + 0.02


async def test_endpointing_longer_than_the_vad_silence_waits_for_that_much_silence(
    pipeline: Pipeline,
) -> None:
    fox, hello = packaged("quick_brown_fox"), packaged("hello_world")
    parts = [silence(0.5), fox.pcm, silence(0.6), hello.pcm, silence(2.5), fox.pcm, silence(0.5)]
    ends = np.cumsum([len(p) for p in parts]) / RATE
    audio = np.concatenate(parts).tobytes()
    async with LiveStream(
        pipeline, encoding="linear16", sample_rate=RATE, endpointing=1500
    ) as stream:
        await stream.send_audio(audio, FRAME, REAL_TIME * 2)
        await stream.close_stream()

    assert_metadata_last(stream, audio)
    finals = stream.finals()
    assert_locked_once(finals)
    endpoints = [r.start + r.duration for r in finals if r.speech_final]
    # Not after the short pause (about 1 s of silence), after the long one, and at the end.
    assert len(endpoints) == 2, [(r.start, r.duration, r.speech_final) for r in finals]
    # hello's recording ends in 0.37 s of silence, which the VAD end may precede
    assert ends[3] - 0.5 < endpoints[0] < ends[4] and endpoints[1] > ends[4]
    [native] = await native_texts(pipeline, [np.concatenate(parts)])
    reference = " ".join([fox.text, hello.text, fox.text])
    assert wer(reference, stream.transcript()) <= wer(reference, native) + 0.02


async def test_finalize_flushes_and_marks_the_next_final(pipeline: Pipeline) -> None:
    fox, hello = packaged("quick_brown_fox"), packaged("hello_world")
    cut = int(len(fox.pcm) * 0.6)
    async with LiveStream(pipeline, encoding="linear16", sample_rate=RATE) as stream:
        await stream.socket.send_finalize()  # nothing heard yet: flushed at once, empty
        first = await stream.wait_for(lambda r: isinstance(r, ListenV1Results))
        assert first.is_final and first.from_finalize
        assert first.channel.alternatives[0].transcript == ""
        head = np.concatenate([silence(0.5), fox.pcm[:cut]])
        await stream.send_audio(head.tobytes(), FRAME, REAL_TIME)
        await stream.socket.send_finalize()  # mid-utterance
        flushed = await stream.wait_for(
            lambda r: isinstance(r, ListenV1Results) and bool(r.is_final) and r is not first
        )
        # The VAD ends "hello" within this silence; its final may still be due at Finalize.
        tail = np.concatenate([fox.pcm[cut:], silence(1.0), hello.pcm, silence(0.8)])
        await stream.send_audio(tail.tobytes(), FRAME, REAL_TIME)
        await stream.socket.send_finalize()
        await stream.send_audio(silence(0.5).tobytes(), FRAME, REAL_TIME)
        await stream.close_stream()

    assert flushed.from_finalize and not flushed.speech_final
    assert flushed.channel.alternatives[0].transcript
    assert flushed.start + flushed.duration == pytest.approx(len(head) / RATE, abs=0.02)
    finals = stream.finals()
    assert_locked_once(finals)
    answers = [r for r in finals if r.from_finalize]
    assert len(answers) == 3, "one from_finalize Results per Finalize"
    assert answers[:2] == [first, flushed]
    between = finals[finals.index(flushed) + 1 : finals.index(answers[2])]
    assert not any(r.from_finalize for r in between)
    last = answers[2].channel.alternatives[0].transcript.lower()
    heard = " ".join(r.channel.alternatives[0].transcript for r in finals).lower()
    # Either hello's final was still due and is marked, or it came first and an empty one answers.
    assert "hello" in last if last else "hello" in heard
    assert "lazy" in heard, heard
    assert any(r.speech_final for r in finals)
    assert isinstance(stream.messages[-1], ListenV1Metadata)


async def test_multichannel_streams_each_channel_as_a_source_of_one_session(
    pipeline: Pipeline,
) -> None:
    left = conversation(gap_s=1.0, names=("quick_brown_fox", "hello_world"))
    right = conversation(gap_s=1.5, names=("hello_world", "quick_brown_fox"))
    audio = stereo(left.pcm, right.pcm)
    async with LiveStream(
        pipeline, encoding="linear16", sample_rate=RATE, channels=2, multichannel="true"
    ) as stream:
        await stream.send_audio(audio, FRAME * 2, REAL_TIME * 4)
        await stream.close_stream()

    assert_metadata_last(stream, audio, channels=2)
    assert {tuple(r.channel_index) for r in stream.results} == {(0, 2), (1, 2)}
    natives = await native_texts(pipeline, [left.pcm, right.pcm])
    for channel, (speech, native) in enumerate(zip((left, right), natives, strict=True)):
        assert_locked_once(stream.finals(channel))
        found = wer(speech.text, stream.transcript(channel))
        assert found <= wer(speech.text, native) + 0.02, (channel, stream.transcript(channel))
    stored = await stored_session(pipeline, stream.request_id)
    assert sorted(stored["sources"]) == ["channel-0", "channel-1"]


@pytest.mark.parametrize(("encoding", "compress"), [("mulaw", mulaw), ("alaw", alaw)])
async def test_telephony_g711_at_8_khz_matches_native_accuracy(
    pipeline: Pipeline, encoding: str, compress: Any
) -> None:
    """Raw 8 kHz µ-law and A-law as a phone bridge sends it (20 ms frames), against the native
    protocol on the very same bytes."""
    speech = conversation(gap_s=1.0, names=WORDED)
    data = compress(np.concatenate([speech.pcm, silence(0.5)]))
    async with LiveStream(pipeline, encoding=encoding, sample_rate=8000) as stream:
        await stream.send_audio(data, 160, 8000 * 4)
        await stream.close_stream()
    metadata = assert_metadata_last(stream, data)
    assert metadata.duration == pytest.approx(len(data) / 8000, abs=0.01)
    assert_locked_once(stream.finals())
    async with NativeClient(pipeline.ws, token=TOKEN) as native:
        ready = await native.start(sample_rate=8000, encoding=encoding, partials=False)
        assert ready["type"] == "ready", ready
        await native.stream(0, data, frame_bytes=800)
        done = await native.finish(timeout_s=120)
    assert done["complete"], done
    native_text = " ".join(
        f["text"] for f in sorted(native.of_type("final"), key=lambda f: f["start"])
    )
    found, reference = wer(speech.text, stream.transcript()), wer(speech.text, native_text)
    print(f"WER deepgram {encoding} {found:.3f} native {reference:.3f}")
    assert found <= reference + 0.02
    assert found <= 0.2


@pytest.mark.parametrize(
    ("name", "codec", "rate", "channels"),
    [
        ("speech.wav", "pcm_s16le", 44_100, 2),
        ("speech.ogg", "libopus", 48_000, 1),
        ("speech.webm", "libopus", 48_000, 1),
    ],
)
async def test_containers_are_read_without_encoding(
    pipeline: Pipeline, tmp_path: Path, name: str, codec: str, rate: int, channels: int
) -> None:
    speech = conversation(gap_s=1.0, names=("quick_brown_fox", "hello_world"))
    data = encode(speech.pcm, tmp_path / name, codec, rate, channels).read_bytes()
    duration = len(speech.pcm) / RATE
    async with LiveStream(pipeline) as stream:
        await stream.send_audio(data, 4000, len(data) / duration * 4)
        await stream.close_stream()
    metadata = assert_metadata_last(stream, data, channels)
    assert metadata.duration == pytest.approx(len(speech.pcm) / RATE, abs=0.05)
    [native] = await native_texts(pipeline, [speech.pcm])
    assert wer(speech.text, stream.transcript()) <= wer(speech.text, native) + 0.02


async def test_a_multichannel_container_names_its_channels_from_the_stream(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    left = conversation(gap_s=1.0, names=("quick_brown_fox",))
    right = conversation(gap_s=1.0, names=("hello_world",))
    path = tmp_path / "stereo.wav"
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(2)
        wav.setsampwidth(2)
        wav.setframerate(RATE)
        wav.writeframes(stereo(left.pcm, right.pcm))
    data = path.read_bytes()
    async with LiveStream(pipeline, multichannel="true") as stream:
        await stream.send_audio(data, 4001)
        await stream.close_stream()
    assert_metadata_last(stream, data, channels=2)
    assert {tuple(r.channel_index) for r in stream.results} == {(0, 2), (1, 2)}
    natives = await native_texts(pipeline, [left.pcm, right.pcm])
    for channel, (speech, native) in enumerate(zip((left, right), natives, strict=True)):
        assert wer(speech.text, stream.transcript(channel)) <= wer(speech.text, native) + 0.02


@pytest.mark.corpus
async def test_live_accuracy_on_the_dev_split_matches_native(pipeline: Pipeline) -> None:
    speech = corpus_speech()
    async with LiveStream(pipeline, encoding="linear16", sample_rate=RATE) as stream:
        await stream.send_audio(speech.pcm.tobytes(), FRAME)
        await stream.close_stream(timeout_s=180)
    [native] = await native_texts(pipeline, [speech.pcm])
    found, reference = wer(speech.text, stream.transcript()), wer(speech.text, native)
    print(f"dev WER: deepgram live {found:.3f}, native {reference:.3f}")
    assert found <= reference + 0.02
