"""Any client audio to the bus format: 16 kHz mono PCM16, resampled with soxr, files decoded by PyAV."""

from __future__ import annotations

from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import av
import numpy as np
import numpy.typing as npt
import soxr  # type: ignore[import-untyped]

from echostream_shared.messages import SAMPLE_RATE

Encoding = Literal["pcm_s16le", "pcm_f32le", "pcm_s32le", "mulaw", "alaw"]
Pcm16 = npt.NDArray[np.int16]
Floats = npt.NDArray[np.float32]

_WIDTH: dict[Encoding, int] = {
    "pcm_s16le": 2,
    "pcm_f32le": 4,
    "pcm_s32le": 4,
    "mulaw": 1,
    "alaw": 1,
}
_EMPTY = np.zeros(0, dtype=np.int16)


class AudioDecodeError(Exception):
    """Input that cannot be decoded as audio."""


@dataclass(frozen=True)
class AudioFormat:
    """What a client declared it sends."""

    sample_rate: int = SAMPLE_RATE
    channels: int = 1
    encoding: Encoding = "pcm_s16le"

    @property
    def frame_bytes(self) -> int:
        """Bytes of one sample of every channel."""
        return _WIDTH[self.encoding] * self.channels

    @property
    def is_bus_format(self) -> bool:
        """True when no conversion is needed."""
        return self == AudioFormat()


class Normalizer:
    """Converts one stream of client PCM to 16 kHz mono PCM16; the resampler keeps its state."""

    def __init__(self, fmt: AudioFormat) -> None:
        self.format = fmt
        self._resampler = (
            None
            if fmt.sample_rate == SAMPLE_RATE
            else soxr.ResampleStream(fmt.sample_rate, SAMPLE_RATE, 1, dtype="float32", quality="HQ")
        )

    def push(self, data: bytes) -> Pcm16:
        """Convert whole frames (``len(data)`` must be a multiple of ``frame_bytes``)."""
        if len(data) % self.format.frame_bytes:
            raise ValueError(
                f"{len(data)} bytes is not a whole number of {self.format.frame_bytes}-byte frames"
            )
        if self.format.is_bus_format:
            return np.frombuffer(data, dtype="<i2").astype(np.int16)
        return self.push_mono(_to_mono(data, self.format))

    def push_mono(self, mono: Floats) -> Pcm16:
        """Convert mono float samples at the declared rate."""
        if self._resampler is not None:
            mono = self._resampler.resample_chunk(mono)
        return to_pcm16(mono)

    def flush(self) -> Pcm16:
        """The resampler's last samples, at end of stream."""
        if self._resampler is None:
            return _EMPTY
        return to_pcm16(self._resampler.resample_chunk(np.zeros(0, np.float32), last=True))


def _g711_tables() -> dict[Encoding, Floats]:
    """ITU-T G.711 expansion of every code byte to a float sample, µ-law and A-law."""
    codes = np.arange(256, dtype=np.int32)
    ulaw = ~codes & 0xFF
    exponent, mantissa = (ulaw >> 4) & 0x07, ulaw & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    mulaw = np.where(ulaw & 0x80, -magnitude, magnitude)
    alaw_bits = codes ^ 0x55
    exponent, mantissa = (alaw_bits >> 4) & 0x07, alaw_bits & 0x0F
    magnitude = np.where(
        exponent == 0, (mantissa << 4) + 8, ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0)
    )
    alaw = np.where(alaw_bits & 0x80, magnitude, -magnitude)
    return {
        "mulaw": (mulaw / 32768.0).astype(np.float32),
        "alaw": (alaw / 32768.0).astype(np.float32),
    }


_G711 = _g711_tables()


def _to_mono(data: bytes, fmt: AudioFormat) -> Floats:
    if fmt.encoding == "pcm_s16le":
        samples = np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0
    elif fmt.encoding == "pcm_s32le":
        samples = (np.frombuffer(data, dtype="<i4") / 2147483648.0).astype(np.float32)
    elif fmt.encoding in _G711:
        samples = _G711[fmt.encoding][np.frombuffer(data, dtype=np.uint8)]
    else:
        # Clipped before the resampler: samples far past full scale overflow its filter to
        # inf/NaN, which reach the int16 cast as garbage (found by tests/capture/test_fuzz_audio).
        samples = np.clip(np.nan_to_num(np.frombuffer(data, dtype="<f4"), nan=0.0), -1.0, 1.0)
    if fmt.channels > 1:
        samples = samples.reshape(-1, fmt.channels).mean(axis=1)
    return samples.astype(np.float32, copy=False)


def to_pcm16(samples: Floats) -> Pcm16:
    """Float samples in [-1, 1] to PCM16, clipped."""
    scaled: Pcm16 = np.clip(np.rint(samples * 32768.0), -32768, 32767).astype(np.int16)
    return scaled


def decode_file(path: Path, block_s: float = 1.0) -> Generator[tuple[int, Floats], None, None]:
    """Decode the first audio stream of a file as (sample rate, mono float32 block) pairs.

    Raises:
        AudioDecodeError: the file is not audio PyAV can decode.
    """
    try:
        # Tags are client text: invalid UTF-8 in them must not make the audio undecodable.
        with av.open(str(path), metadata_errors="replace") as container:
            if not container.streams.audio:
                raise AudioDecodeError("the file has no audio stream")
            stream = container.streams.audio[0]
            yield from _blocks(_frames(container, stream), block_s)
    except av.FFmpegError as exc:
        raise AudioDecodeError(f"cannot decode audio: {exc}") from exc


def probe_duration(path: Path) -> float | None:
    """The duration of the first audio stream in seconds, when the container states it."""
    try:
        with av.open(str(path), metadata_errors="replace") as container:
            if container.duration is not None:
                return float(container.duration) / 1_000_000
            stream = container.streams.audio[0]
            if stream.duration is not None and stream.time_base is not None:
                return float(stream.duration * stream.time_base)
    except (av.FFmpegError, IndexError):
        pass
    return None


def _frames(
    container: av.container.InputContainer, stream: av.AudioStream
) -> Iterator[tuple[int, Floats]]:
    for frame in container.decode(stream):
        yield frame.sample_rate, frame_to_mono(frame)


def _blocks(frames: Iterator[tuple[int, Floats]], block_s: float) -> Iterator[tuple[int, Floats]]:
    pending: list[Floats] = []
    size, rate = 0, 0
    for frame_rate, mono in frames:
        if rate and frame_rate != rate:
            raise AudioDecodeError("the sample rate changes within the stream")
        rate = frame_rate
        pending.append(mono)
        size += len(mono)
        if size >= block_s * rate:
            yield rate, np.concatenate(pending)
            pending, size = [], 0
    if pending:
        yield rate, np.concatenate(pending)


def frame_to_mono(frame: av.AudioFrame) -> Floats:
    """A decoded frame of any sample format and layout as mono float32."""
    data = frame.to_ndarray()
    channels = frame.layout.nb_channels
    if not frame.format.is_planar:
        data = data.reshape(-1, channels).T
    mono: Floats = _scale(data).mean(axis=0, dtype=np.float32)
    return mono


def _scale(data: npt.NDArray[np.generic]) -> Floats:
    if data.dtype == np.uint8:
        return ((data.astype(np.float32) - 128.0) / 128.0).astype(np.float32)
    if np.issubdtype(data.dtype, np.integer):
        scale = float(2 ** (data.dtype.itemsize * 8 - 1))
        return (data.astype(np.float64) / scale).astype(np.float32)
    floats: Floats = np.clip(np.nan_to_num(data.astype(np.float32), nan=0.0), -1.0, 1.0)
    return floats
