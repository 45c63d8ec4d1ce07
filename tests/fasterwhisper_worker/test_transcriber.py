"""The faster-whisper transcriber on the packaged tiny.en directory, with real speech."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import numpy as np
import pytest
from speech_corpus import item, normalize, read_wav, to_float32
from worker_process import require_ct2_model

from fasterwhisper_worker.config import FasterWhisperWorkerSettings
from fasterwhisper_worker.engine import fasterwhisper_transcriber
from fasterwhisper_worker.transcriber import (
    FULL_WINDOW,
    MIN_WINDOW,
    FasterWhisperTranscriber,
    encoder_window,
)

SR = 16_000


def test_the_encoder_window_covers_the_clip_plus_its_margin() -> None:
    assert encoder_window(0.5, 1.28) == MIN_WINDOW
    assert encoder_window(11.0, 5.12) == 1664  # 1612 frames, rounded up to 64
    assert encoder_window(27.0, 5.12) == FULL_WINDOW
    windows = [encoder_window(s, 1.28) for s in (4.0, 6.0, 9.0, 20.0)]
    assert windows == sorted(windows) and all(w % 64 == 0 for w in windows)


@pytest.fixture(scope="module")
def transcriber() -> Iterator[FasterWhisperTranscriber]:
    """One loaded model for the module; each test's event loop uses it off-loop."""
    require_ct2_model()
    loaded = fasterwhisper_transcriber(FasterWhisperWorkerSettings())
    yield loaded
    asyncio.run(loaded.aclose())


@pytest.mark.slow
async def test_jfk_final_is_exact_with_word_times(transcriber: FasterWhisperTranscriber) -> None:
    jfk = item("jfk")
    audio = to_float32(read_wav(jfk.path))
    decoded = await transcriber.transcribe(audio, purpose="final")
    assert normalize(decoded.text) == normalize(jfk.text)
    assert decoded.rejected is None and decoded.language == "en"
    assert 0 < decoded.audio_ctx < FULL_WINDOW // 2, "the encoder window is cut to the clip"
    starts = [word.start_s for word in decoded.words]
    assert len(decoded.words) >= 20 and starts == sorted(starts)
    assert 0 <= starts[0] < decoded.words[-1].end_s <= len(audio) / SR + 0.5
    assert all(0 < word.probability <= 1 for word in decoded.words)
    assert decoded.confidence is not None and decoded.confidence > 0.6
    assert decoded.cpu_s > 0 and decoded.decode_s > 0


@pytest.mark.slow
async def test_a_partial_decodes_with_a_narrower_window(
    transcriber: FasterWhisperTranscriber,
) -> None:
    audio = to_float32(read_wav(item("jfk").path))[: 3 * SR]
    partial = await transcriber.transcribe(audio, purpose="partial", prompt="And so")
    final = await transcriber.transcribe(audio, purpose="final")
    assert partial.text and partial.purpose == "partial"
    assert 0 < partial.audio_ctx < final.audio_ctx


async def test_silence_and_noise_are_not_decoded_into_words(
    transcriber: FasterWhisperTranscriber,
) -> None:
    silence = await transcriber.transcribe(np.zeros(2 * SR, dtype=np.float32), purpose="final")
    assert (silence.text, silence.rejected, silence.decode_s) == ("", "silence", 0.0)
    hum = (0.002 * np.random.default_rng(1).standard_normal(3 * SR)).astype(np.float32)
    decoded = await transcriber.transcribe(hum, purpose="final")
    assert decoded.text == "" or decoded.rejected is not None, decoded.text
    empty = await transcriber.transcribe(np.zeros(0, dtype=np.float32), purpose="partial")
    assert empty.text == "" and empty.rejected == "silence"
