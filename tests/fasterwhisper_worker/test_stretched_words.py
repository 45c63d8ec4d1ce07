"""A final whose decode holds a word stretched over words Whisper skipped is decoded again in the
full 30 s window: the bookkeeping on decoded words, then tiny.en on pytest-audioeval's speech."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from capture_audio import conversation
from worker_process import require_ct2_model

from echostream_shared.segmented.decoding import DecodedWord, Purpose
from fasterwhisper_worker import batch_decode
from fasterwhisper_worker.batch_decode import FULL_WINDOW, STRETCHED_WORD_S, Clip, Raw, _Clip
from fasterwhisper_worker.model_dir import validate_model_dir
from fasterwhisper_worker.transcriber import FasterWhisperConfig, FasterWhisperTranscriber

PROMPT_TOKENS = [50, 60, 70]


def _state(purpose: Purpose = "final", margin_s: float | None = 2.56) -> _Clip:
    clip = Clip(np.zeros(16_000 * 10, dtype=np.float32), purpose, "a prompt", margin_s)
    return _Clip(
        0, clip, np.zeros((80, 1000), dtype=np.float32), PROMPT_TOKENS, prompt=PROMPT_TOKENS
    )


def _words(*spans: tuple[str, float, float]) -> list[DecodedWord]:
    return [DecodedWord(text, start, end, 0.9) for text, start, end in spans]


# "allowed for the" with "for" aligned over "patriotism of the Californian", which it skipped
SKIPPED = _words(
    ("allowed", 7.0, 7.4), ("for", 7.4, 7.4 + STRETCHED_WORD_S + 0.2), ("the", 9.1, 9.1)
)
WHOLE = _words(
    ("allowed", 7.0, 7.4), ("for", 7.4, 7.6), ("the", 7.6, 7.7), ("Californian", 7.7, 8.5)
)


def test_a_final_with_a_stretched_word_starts_over_in_the_full_window_once() -> None:
    state = _state()
    state.words, state.seek, state.windows, state.done = list(SKIPPED), 940, [1024], True
    assert state.decode_again()
    assert (state.words, state.windows, state.seek, state.done) == ([], [], 0, False)
    assert state.full_window and state.previous == PROMPT_TOKENS
    state.words = list(SKIPPED)
    assert not state.decode_again()


@pytest.mark.parametrize(
    ("purpose", "margin_s", "words"),
    [
        ("partial", 1.28, SKIPPED),  # partials are revised by the next one anyway
        ("final", None, SKIPPED),  # decoded in the full window already
        ("final", 2.56, WHOLE),
        ("final", 2.56, []),
    ],
)
def test_other_decodes_are_not_decoded_again(
    purpose: Purpose, margin_s: float | None, words: list[DecodedWord]
) -> None:
    state = _state(purpose, margin_s)
    state.words = list(words)
    assert not state.decode_again()
    assert state.words == words and not state.full_window


def test_the_full_window_decode_is_kept_unless_it_is_stretched_more() -> None:
    better = _state()
    better.words = list(SKIPPED)
    assert better.decode_again()
    better.words = list(WHOLE)
    assert better.raw().words == tuple(WHOLE)

    worse = _state()
    worse.words = list(WHOLE[:1]) + [DecodedWord("for", 7.4, 7.4 + STRETCHED_WORD_S + 0.1, 0.9)]
    assert worse.decode_again()
    first = worse.first_try
    worse.words = _words(("allowed", 7.0, 7.4), ("for", 7.4, 7.4 + STRETCHED_WORD_S + 1.0))
    assert first is not None and worse.raw().words == tuple(first)


@pytest.mark.slow
def test_tiny_en_decodes_a_final_again_in_the_full_window(monkeypatch: pytest.MonkeyPatch) -> None:
    """With every word counted as stretched, a final comes out as the same clip decoded in the full
    window; a partial as it was."""
    require_ct2_model()
    audio = conversation(gap_s=0.5).pcm.astype(np.float32) / 32768.0
    transcriber = FasterWhisperTranscriber(
        FasterWhisperConfig(model=validate_model_dir(None, None), decoders=1)
    )
    try:
        decoder = transcriber._decoder
        results: dict[int, Raw | Exception] = {}
        decoder.decode([Clip(audio, "final", None, None)], results.__setitem__)
        full = results[0]
        assert isinstance(full, Raw) and len(full.words) > 10
        monkeypatch.setattr(batch_decode, "STRETCHED_WORD_S", 0.0)
        decoder.decode(
            [Clip(audio, "final", None, 2.56), Clip(audio[: 16_000 * 3], "partial", None, 1.28)],
            results.__setitem__,
        )
        again, partial = results[0], results[1]
        assert isinstance(again, Raw) and isinstance(partial, Raw)
        assert again.window == FULL_WINDOW
        assert [w.text for w in again.words] == [w.text for w in full.words]
        assert partial.window < FULL_WINDOW and partial.words
    finally:
        asyncio.run(transcriber.aclose())
