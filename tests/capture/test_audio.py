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


def g711_encode(pcm: npt.NDArray[np.int16], law: str) -> bytes:
    """The reference encoder: the code byte whose expansion is nearest each sample."""
    expansions = Normalizer(AudioFormat(RATE, 1, law)).push(bytes(range(256))).astype(np.int32)  # type: ignore[arg-type]
    order = np.argsort(expansions)
    nearest = np.clip(np.searchsorted(expansions[order], pcm.astype(np.int32)), 0, 255)
    return bytes(order[nearest].astype(np.uint8))


@pytest.mark.parametrize("law", ["mulaw", "alaw"])
def test_g711_expands_to_the_itu_values_and_keeps_a_tone(law: str) -> None:
    expansions = Normalizer(AudioFormat(RATE, 1, law)).push(bytes(range(256)))  # type: ignore[arg-type]
    # G.711's 16-bit expansion: symmetric, 32124 (mu-law) / 32256 (A-law) at its extremes.
    top = 32124 if law == "mulaw" else 32256
    assert int(expansions.max()) == top and int(expansions.min()) == -top
    assert len(set(expansions.tolist())) >= 254
    pcm = (tone(8000, 0.5, 440.0) * 32767).astype(np.int16)
    narrow = Normalizer(AudioFormat(8000, 1, law))  # type: ignore[arg-type]
    out = np.concatenate([narrow.push(g711_encode(pcm, law)), narrow.flush()])
    assert abs(len(out) - RATE // 2) <= 2
    assert abs(peak_hz(out) - 440.0) < 5.0


def test_signed_32_bit_pcm_is_scaled_to_16_bit() -> None:
    samples = np.array([0, 2**31 - 1, -(2**31), 100 * 2**16], dtype="<i4")
    out = Normalizer(AudioFormat(RATE, 1, "pcm_s32le")).push(samples.tobytes())
    assert out.tolist() == [0, 32767, -32768, 100]


@pytest.mark.parametrize("encoding", ["mulaw", "alaw", "pcm_s32le"])
def test_partial_frames_of_the_new_encodings_are_refused(encoding: str) -> None:
    fmt = AudioFormat(RATE, 2, encoding)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="whole number"):
        Normalizer(fmt).push(bytes(fmt.frame_bytes + 1))
