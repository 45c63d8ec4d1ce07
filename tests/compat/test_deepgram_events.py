"""The Deepgram mapping on its own: query options as the SDKs send them, words and transcripts
from EchoStream finals, and WAV headers read from a stream's first bytes."""

from __future__ import annotations

import io
import wave

import pytest
from deepgram.listen.v1.types import ListenV1Metadata, ListenV1Results
from hypothesis import given, settings, strategies as st
from pydantic import ValidationError

from capture.audio import AudioFormat
from capture.deepgram_events import (
    CONTROL_MESSAGE,
    EngineModel,
    OptionError,
    final_alternative,
    listen_options,
    partial_alternative,
    plain_word,
    results,
)
from capture.stream_decoder import is_wav, wav_start
from echostream_shared import messages as m

RATE = 16_000


def test_booleans_are_read_whatever_their_case_and_endpointing_may_be_false() -> None:
    options = listen_options(
        {
            "interim_results": "True",
            "vad_events": "TRUE",
            "punctuate": "false",
            "endpointing": "false",
        }
    )
    assert options.interim_results and options.vad_events and not options.punctuate
    assert options.endpointing is False
    assert listen_options({"endpointing": "300"}).endpointing == 300
    assert listen_options({}).endpointing == 10
    with pytest.raises(OptionError, match="interim_results"):
        listen_options({"interim_results": "maybe"})


def test_raw_encodings_need_a_sample_rate_and_containers_need_nothing() -> None:
    assert listen_options({"encoding": "mulaw", "sample_rate": "8000"}).raw_format() == AudioFormat(
        8000, 1, "mulaw"
    )
    assert listen_options(
        {"encoding": "linear32", "sample_rate": "48000", "channels": "2"}
    ).raw_format() == AudioFormat(48000, 2, "pcm_s32le")
    assert listen_options({}).raw_format() is None
    assert listen_options({"encoding": "ogg-opus"}).raw_format() is None
    with pytest.raises(OptionError, match="needs sample_rate"):
        listen_options({"encoding": "linear16"}).raw_format()
    with pytest.raises(OptionError, match="unsupported encoding 'speex'"):
        listen_options({"encoding": "speex", "sample_rate": "16000"}).raw_format()


def test_model_chooses_the_engine_only_when_it_names_one() -> None:
    assert listen_options({"model": "fasterwhisper"}).engine(("whisper", "fasterwhisper")) == (
        "fasterwhisper"
    )
    assert listen_options({"model": "nova-3"}).engine(("whisper", "fasterwhisper")) == "whisper"


def final(words: list[tuple[str, float, float]], text: str) -> m.TranscriptFinal:
    return m.TranscriptFinal(
        session_id="s",
        source="default",
        engine="whisper",
        segment_id="seg",
        start_sample=int(words[0][1] * RATE),
        end_sample=int(words[-1][2] * RATE),
        text=text,
        words=tuple(
            m.Word(text=w, start_sample=int(a * RATE), end_sample=int(b * RATE), probability=0.8)
            for w, a, b in words
        ),
        confidence=None,
        emitted_at=0.0,
    )


def test_words_are_plain_and_punctuated_only_when_asked() -> None:
    heard = final(
        [(" Hello", 1.0, 1.4), (",", 1.4, 1.4), (" World's", 1.5, 1.9), ("!", 1.9, 1.9)],
        " Hello, World's!",
    )
    plain = final_alternative(heard, punctuated=False)
    assert plain.transcript == "hello world's"
    assert [(w.word, w.start, w.end) for w in plain.words] == [
        ("hello", 1.0, 1.4),
        ("world's", 1.5, 1.9),
    ]
    assert all(w.punctuated_word is None for w in plain.words)
    assert plain.confidence == pytest.approx(0.8)
    punctuated = final_alternative(heard, punctuated=True)
    assert punctuated.transcript == "Hello, World's!"
    assert [w.punctuated_word for w in punctuated.words] == ["Hello,", "World's!"]
    assert plain_word(" 'Quoted.'") == "quoted"


def test_results_and_metadata_parse_as_the_sdk_models() -> None:
    model = EngineModel("whisper")
    heard = final([(" Hi", 0.5, 0.9)], " Hi.")
    message = results(
        channel=(1, 2),
        start_sample=8000,
        end_sample=16000,
        alternative=final_alternative(heard, punctuated=False),
        is_final=True,
        speech_final=True,
        from_finalize=False,
        metadata=model.results_metadata("abc"),
    ).json_dict()
    parsed = ListenV1Results.model_validate(message)
    assert parsed.channel_index == [1, 2] and parsed.start == 0.5 and parsed.duration == 0.5
    partial = m.TranscriptPartial(
        session_id="s",
        source="default",
        engine="whisper",
        segment_id="seg",
        revision=0,
        start_sample=0,
        end_sample=RATE,
        text=" Hi, there",
        emitted_at=0.0,
    )
    assert partial_alternative(partial, punctuated=False).transcript == "hi there"
    metadata = model.metadata("abc", "0" * 64, "2026-01-01T00:00:00.000Z", 1.5, 1).json_dict()
    assert ListenV1Metadata.model_validate(metadata).duration == 1.5
    assert metadata["models"] == [model.uuid] and metadata["model_info"][model.uuid]["name"]


def wav_bytes(channels: int, width: int, rate: int) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(width)
        wav.setframerate(rate)
        wav.writeframes(bytes(100 * channels * width))
    return out.getvalue()


def test_wav_headers_are_read_from_the_first_bytes_of_a_stream() -> None:
    data = wav_bytes(2, 2, 44_100)
    assert is_wav(data)
    start = wav_start(data)
    assert start is not None and start.format == AudioFormat(44_100, 2, "pcm_s16le")
    assert data[start.data_offset :] == bytes(400)
    assert wav_start(data[:30]) is None, "the header is not complete yet"
    assert wav_start(wav_bytes(1, 4, 8000)) is not None
    with pytest.raises(ValueError, match="not raw PCM"):
        wav_start(wav_bytes(1, 3, 16_000))
    assert not is_wav(b"OggS" + bytes(20))


FUZZ = settings(max_examples=150, deadline=None, database=None)
query_values = st.text(max_size=12) | st.sampled_from(["true", "False", "0", "16000", "-1", "1e3"])
query_keys = st.sampled_from(
    ["encoding", "sample_rate", "channels", "multichannel", "interim_results", "endpointing"]
    + ["utterance_end_ms", "vad_events", "punctuate", "smart_format", "model", "language", "x"]
)


@FUZZ
@given(st.dictionaries(query_keys, query_values, max_size=8))
def test_any_query_is_served_or_refused_with_an_option_error(query: dict[str, str]) -> None:
    try:
        listen_options(query).raw_format()
    except OptionError as exc:
        assert str(exc)


@FUZZ
@given(st.binary(max_size=120))
def test_any_wav_header_is_read_or_refused_with_a_value_error(tail: bytes) -> None:
    head = b"RIFF\0\0\0\0WAVE" + tail
    try:
        start = wav_start(head)
    except ValueError:
        return
    assert start is None or 0 < start.data_offset <= len(head)


@FUZZ
@given(
    st.fixed_dictionaries(
        {"type": st.sampled_from(["KeepAlive", "Finalize", "CloseStream", "Configure"])},
        optional={
            "keyterms": st.lists(st.text(max_size=5), max_size=3) | st.integers(),
            "features": st.dictionaries(st.text(max_size=5), st.booleans()) | st.text(),
        },
    )
)
def test_any_control_message_validates_or_is_a_validation_error(message: dict[str, object]) -> None:
    try:
        parsed = CONTROL_MESSAGE.validate_python(message)
    except ValidationError as exc:
        assert exc.errors()
        return
    assert parsed.type == message["type"]
