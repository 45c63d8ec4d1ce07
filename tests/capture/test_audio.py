"""Client audio to 16 kHz mono PCM16: real resampling, downmixing, any sample format."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import numpy.typing as npt
import pytest

from capture.audio import AudioFormat, Normalizer, decode_file

RATE = 16_000


def tone(rate: int, seconds: float, hz: float = 1000.0) -> npt.NDArray[np.float32]:
    t = np.arange(int(rate * seconds)) / rate
    return (0.5 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def peak_hz(pcm: npt.NDArray[np.int16]) -> float:
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64)))
    return float(np.argmax(spectrum) * RATE / len(pcm))


def test_bus_format_passes_through_unchanged() -> None:
    pcm = np.arange(-1000, 1000, dtype=np.int16)
    assert np.array_equal(Normalizer(AudioFormat()).push(pcm.tobytes()), pcm)


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000, 96000])
def test_stereo_float_is_resampled_and_downmixed_frame_by_frame(rate: int) -> None:
    left = tone(rate, 1.0)
    stereo = np.stack([left, np.zeros_like(left)], axis=1).reshape(-1).astype("<f4").tobytes()
    normalizer = Normalizer(AudioFormat(rate, 2, "pcm_f32le"))
    step = (rate // 50) * 8
    out = np.concatenate(
        [normalizer.push(stereo[k : k + step]) for k in range(0, len(stereo), step)]
        + [normalizer.flush()]
    )
    assert abs(len(out) - RATE) <= 1
    assert abs(peak_hz(out) - 1000) < 2
    assert 0.2 < np.abs(out).max() / 32768 < 0.3  # half of a 0.5 tone: the mean of both channels


def test_partial_frames_and_bad_floats_are_refused_or_cleaned() -> None:
    normalizer = Normalizer(AudioFormat(16000, 2, "pcm_s16le"))
    with pytest.raises(ValueError, match="whole number of 4-byte frames"):
        normalizer.push(bytes(6))
    floats = Normalizer(AudioFormat(16000, 1, "pcm_f32le"))
    out = floats.push(np.array([np.nan, np.inf, -np.inf, 2.0], dtype="<f4").tobytes())
    assert out.tolist() == [0, 32767, -32768, 32767]


@pytest.mark.parametrize("codec", ["pcm_u8", "pcm_s32le", "pcm_f64le", "pcm_s16le"])
def test_any_sample_format_in_a_file_decodes(tmp_path: Path, codec: str) -> None:
    path = tmp_path / "tone.wav"
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=44100, layout="stereo")
        assert isinstance(stream, av.AudioStream)
        frame = av.AudioFrame.from_ndarray(
            np.stack([tone(44100, 0.5)] * 2), format="fltp", layout="stereo"
        )
        frame.sample_rate = 44100
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    blocks = list(decode_file(path))
    assert {rate for rate, _ in blocks} == {44100}
    audio = np.concatenate([block for _, block in blocks])
    assert len(audio) == 22050 and 0.45 < np.abs(audio).max() < 0.55
