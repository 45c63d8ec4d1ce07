from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from speech_corpus import item, normalize, read_wav, require_whisper_model, to_float32

from whisper_worker import transcriber as tr
from whisper_worker.model_file import ModelFileError
from whisper_worker.transcriber import TranscriberConfig, WhisperTranscriber

JFK = "and so my fellow americans ask not what your country can do for you ask what you can do for your country"


# -- no model needed -------------------------------------------------------------------------


def test_missing_or_bad_model_is_refused_before_whisper_cpp_sees_it(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError):
        WhisperTranscriber(TranscriberConfig(tmp_path / "ggml-tiny.en.bin"))
    foreign = tmp_path / "foreign.bin"
    foreign.write_bytes(bytes(2 << 20))
    with pytest.raises(ModelFileError):
        WhisperTranscriber(TranscriberConfig(foreign))


def test_partial_context_grows_with_the_clip_and_stops_at_ten_seconds() -> None:
    ctx = [tr.partial_audio_ctx(s, 64, 10.0) for s in (0.5, 4.0, 6.0, 9.9, 10.1)]
    assert ctx[0] == tr.MIN_PARTIAL_CTX
    assert ctx[0] <= ctx[1] < ctx[2] < ctx[3] < tr.FULL_AUDIO_CTX
    assert all(c % 32 == 0 for c in ctx[:4])
    assert ctx[4] == 0  # full context


def test_reduced_context_covers_the_audio_plus_the_margin() -> None:
    ctx = [tr.reduced_audio_ctx(s, 256) for s in (0.5, 5.0, 8.0, 24.0, 25.0, 40.0)]
    assert ctx[:3] == [288, 512, 672]  # 25, 250 and 400 frames of audio, plus 256, in 32s
    assert all(c % 32 == 0 for c in ctx) and ctx[:4] == sorted(ctx[:4])
    assert ctx[3] == 1472 and ctx[4] == ctx[5] == 0  # past 1500 frames: the full window


def test_no_parameter_sets_a_suppress_regex(tmp_path: Path) -> None:
    # any string there, even "", costs whisper.cpp ~11 ms per token (a regex over the vocabulary)
    transcriber = object.__new__(WhisperTranscriber)
    transcriber.config = TranscriberConfig(tmp_path / "unused.bin")
    for purpose in ("final", "partial"):
        assert "suppress_regex" not in transcriber._params(purpose, 5.0, "a prompt")


def test_audio_is_made_contiguous_float32() -> None:
    pcm = np.array([0, 16384, -32768, 0], dtype=np.int16)
    assert tr.as_float32(pcm).tolist() == [0.0, 0.5, -1.0, 0.0]
    strided = np.arange(8, dtype=np.float64)[::2]
    out = tr.as_float32(strided)
    assert out.dtype == np.float32 and out.flags.c_contiguous and out.tolist() == [0, 2, 4, 6]


# -- real model ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def whisper_model() -> Path:
    return require_whisper_model()


@pytest.fixture
async def transcriber(whisper_model: Path) -> AsyncIterator[WhisperTranscriber]:
    async with WhisperTranscriber(TranscriberConfig(whisper_model)) as t:
        yield t


@pytest.mark.slow
async def test_model_checksum_is_checked(whisper_model: Path) -> None:
    with pytest.raises(ModelFileError, match="sha256|checksum"):
        WhisperTranscriber(TranscriberConfig(whisper_model, sha256="0" * 64))
    async with WhisperTranscriber(TranscriberConfig(whisper_model)) as t:
        assert t.model_info.hparams.n_vocab == 51864 and not t.model_info.hparams.multilingual


@pytest.mark.slow
async def test_jfk_final_is_exact_with_word_times(transcriber: WhisperTranscriber) -> None:
    audio = to_float32(read_wav(item("jfk").path))
    decoded = await transcriber.transcribe(audio, purpose="final")
    assert normalize(decoded.text) == JFK
    assert decoded.rejected is None and decoded.language == "en"
    assert decoded.confidence is not None and 0.5 < decoded.confidence <= 1.0
    assert decoded.audio_ctx == tr.reduced_audio_ctx(11.0, 256) < tr.FULL_AUDIO_CTX
    assert decoded.decode_s > 0 and decoded.cpu_s >= decoded.decode_s
    starts = [w.start_s for w in decoded.words]
    assert starts == sorted(starts) and all(w.start_s <= w.end_s <= 11.0 for w in decoded.words)
    assert " ".join(w.text for w in decoded.words) == decoded.text
    fellow = next(w for w in decoded.words if w.text == "fellow")
    assert 0.5 < fellow.start_s < 1.5  # "fellow" is spoken at about 1.0 s


@pytest.mark.slow
async def test_full_context_finals_on_request_and_no_regex_ever(whisper_model: Path) -> None:
    audio = to_float32(read_wav(item("jfk").path))
    config = TranscriberConfig(whisper_model, final_ctx_margin=0)
    async with WhisperTranscriber(config) as full:
        decoded = await full.transcribe(audio, purpose="final")
        await full.transcribe(audio[: 3 * 16_000], purpose="partial")
        (model,) = full._models
        assert "suppress_regex=None" in repr(model._params)  # still unset after both kinds
    assert decoded.audio_ctx == 0 and normalize(decoded.text) == JFK


@pytest.mark.slow
async def test_partial_uses_reduced_context_and_is_cheaper(transcriber: WhisperTranscriber) -> None:
    audio = to_float32(read_wav(item("jfk").path))[: 4 * 16_000]
    final = await transcriber.transcribe(audio, purpose="final")
    partial = await transcriber.transcribe(audio, purpose="partial")
    assert 0 < partial.audio_ctx < tr.FULL_AUDIO_CTX
    assert normalize(partial.text).startswith("and so my fellow americans")
    assert partial.cpu_s < final.cpu_s


@pytest.mark.slow
async def test_changing_context_between_calls_does_not_leak_state(
    transcriber: WhisperTranscriber,
) -> None:
    # with flash attention whisper.cpp reads encoder frames up to the next multiple of 256 and
    # finds another call's frames there: this partial (audio_ctx 384) then changes after a final
    short = to_float32(read_wav(item("3080-5032-0009").path))[: 6 * 16_000]
    first = await transcriber.transcribe(short, purpose="partial")
    assert first.audio_ctx % 256 != 0
    await transcriber.transcribe(to_float32(read_wav(item("jfk").path)), purpose="final")
    again = await transcriber.transcribe(short, purpose="partial")
    assert again.text == first.text


@pytest.mark.slow
async def test_parameters_do_not_stick_between_calls(transcriber: WhisperTranscriber) -> None:
    audio = to_float32(read_wav(item("jfk").path))
    plain = await transcriber.transcribe(audio, purpose="final")
    await transcriber.transcribe(audio[:32_000], purpose="partial", prompt="Zebra quokka.")
    again = await transcriber.transcribe(audio, purpose="final")
    assert again.text == plain.text


@pytest.mark.slow
async def test_silence_is_not_decoded(transcriber: WhisperTranscriber) -> None:
    decoded = await transcriber.transcribe(np.zeros(3 * 16_000, dtype=np.float32), purpose="final")
    assert decoded.text == "" and decoded.words == () and decoded.rejected == "silence"
    assert decoded.decode_s == 0.0


@pytest.mark.slow
async def test_low_noise_gives_no_text(transcriber: WhisperTranscriber) -> None:
    rng = np.random.default_rng(1)
    noise = (rng.standard_normal(5 * 16_000) * 0.003).astype(np.float32)  # about -50 dBFS
    decoded = await transcriber.transcribe(noise, purpose="final")
    assert decoded.text == ""


@pytest.mark.slow
async def test_event_loop_stays_responsive_while_decoding(transcriber: WhisperTranscriber) -> None:
    audio = to_float32(read_wav(item("jfk").path))
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.02)
            ticks += 1

    task = asyncio.create_task(ticker())
    began = time.perf_counter()
    await transcriber.transcribe(audio, purpose="final")
    elapsed = time.perf_counter() - began
    task.cancel()
    assert ticks >= 0.5 * elapsed / 0.02


@pytest.mark.slow
async def test_two_workers_decode_concurrently_with_their_own_models(whisper_model: Path) -> None:
    audio = to_float32(read_wav(item("jfk").path))
    config = TranscriberConfig(whisper_model, threads=1, workers=2)
    async with WhisperTranscriber(config) as t:
        await t.warm_up()
        results = await asyncio.gather(*(t.transcribe(audio, purpose="final") for _ in range(4)))
    assert all(normalize(r.text) == JFK for r in results)


@pytest.mark.slow
async def test_closed_transcriber_refuses_work(whisper_model: Path) -> None:
    t = WhisperTranscriber(TranscriberConfig(whisper_model))
    await t.aclose()
    await t.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await t.transcribe(np.zeros(16_000, dtype=np.float32), purpose="final")
