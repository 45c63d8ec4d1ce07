"""Speech boundaries from Silero, with pre-roll so onsets are not clipped."""

from __future__ import annotations

import numpy as np
from capture_audio import packaged, silence

from capture.silero import WINDOW
from capture.vad import Boundary, SpeechDetector, VadConfig

RATE = 16_000


class Scripted:
    """A speech model that returns a given probability per window."""

    def __init__(self, probabilities: list[float]) -> None:
        self._probabilities = iter(probabilities)

    def process_samples(self, samples: list[float]) -> float:
        assert len(samples) == WINDOW
        return next(self._probabilities)


def run(detector: SpeechDetector, windows: int, step: int = 320) -> list[Boundary]:
    audio = np.full(windows * WINDOW, 1000, dtype=np.int16)
    found = []
    for offset in range(0, len(audio), step):  # 20 ms frames, as clients send them
        found += detector.push(audio[offset : offset + step])
    return found + detector.finish(len(audio))


def test_real_speech_is_bracketed_with_pre_roll_and_post_roll() -> None:
    speech = packaged("quick_brown_fox").pcm
    loud = np.nonzero(np.abs(speech.astype(np.int32)) > 1000)[0]
    onset, offset = RATE + loud[0], RATE + loud[-1]
    audio = np.concatenate([silence(1.0), speech, silence(1.5)])
    detector = SpeechDetector(VadConfig(pre_roll=4800, post_roll=3200))
    found = [b for k in range(0, len(audio), 320) for b in detector.push(audio[k : k + 320])]
    found += detector.finish(len(audio))
    assert [b.kind for b in found] == ["started", "ended"]
    started, ended = found[0].sample, found[1].sample
    assert onset - 0.45 * RATE <= started <= onset - 0.2 * RATE
    assert offset <= ended <= offset + 0.5 * RATE


def test_silence_has_no_speech() -> None:
    detector = SpeechDetector(VadConfig())
    noise = (np.random.default_rng(1).normal(0, 30, 5 * RATE)).astype(np.int16)
    assert detector.push(noise) + detector.finish(len(noise)) == []


def test_start_needs_min_speech_and_end_needs_min_silence() -> None:
    config = VadConfig(
        threshold=0.5, pre_roll=1000, post_roll=512, min_speech=1024, min_silence=1536
    )
    probabilities = [0.1, 0.9, 0.1, 0.1, 0.9, 0.9, 0.9, 0.4, 0.1, 0.1, 0.9, 0.1, 0.1, 0.1, 0.1]
    found = run(SpeechDetector(config, Scripted(probabilities)), len(probabilities))
    # One window of speech is not enough; two are. 0.4 is above threshold - hysteresis.
    # The lone 0.9 at window 10 interrupts the silence, so the end comes 3 windows after it.
    assert found == [Boundary("started", 4 * WINDOW - 1000), Boundary("ended", 11 * WINDOW + 512)]


def test_pre_roll_never_reaches_back_before_the_previous_end() -> None:
    config = VadConfig(pre_roll=20 * WINDOW, post_roll=0, min_speech=WINDOW, min_silence=WINDOW)
    probabilities = [0.9, 0.1, 0.1, 0.9, 0.9]
    found = run(SpeechDetector(config, Scripted(probabilities)), len(probabilities))
    assert found == [
        Boundary("started", 0),
        Boundary("ended", WINDOW),
        Boundary("started", WINDOW),
        Boundary("ended", 5 * WINDOW),
    ]


def test_windows_below_the_energy_floor_never_reach_the_model() -> None:
    model = Scripted([0.9] * 3)
    detector = SpeechDetector(VadConfig(floor_dbfs=-50, min_speech=WINDOW), model)
    quiet = np.full(10 * WINDOW, 50, dtype=np.int16)  # about -56 dBFS
    assert detector.push(quiet) == []
    loud = np.full(WINDOW, 300, dtype=np.int16)  # about -41 dBFS
    assert detector.push(loud) == [Boundary("started", 10 * WINDOW - 4800)]
