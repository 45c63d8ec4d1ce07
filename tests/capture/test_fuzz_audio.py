"""Fuzzing capture's audio normalization with a bounded budget: every encoding, channel count,
sample rate and byte length a client can declare and send. A format is either refused by
``format_problem`` or normalized; a push is converted or refused with ``ValueError`` (the only
error the connection turns into a ``bad_frame`` rejection), never anything else."""

from __future__ import annotations

import typing
import warnings

import numpy as np
from hypothesis import event, given, settings, strategies as st

from capture.audio import AudioFormat, Encoding, Normalizer
from capture.config import CaptureSettings
from capture.limits import format_problem

ENCODINGS: tuple[Encoding, ...] = typing.get_args(Encoding)
SETTINGS = CaptureSettings(max_channels=8)

formats = st.builds(
    AudioFormat,
    sample_rate=st.sampled_from([8000, 11025, 16000, 22050, 24000, 44100, 48000, 96000])
    | st.integers(-10, 400_000),
    channels=st.integers(1, 8) | st.integers(-1, 10),
    encoding=st.sampled_from(ENCODINGS),
)
special_floats = st.sampled_from(
    [np.nan, np.inf, -np.inf, 3.4e38, -3.4e38, 1e-45, 1.0, -1.0, 0.0]
).map(lambda v: np.float32(v).tobytes())
pushes = st.lists(
    st.binary(max_size=4096)
    | st.lists(special_floats, max_size=64).map(b"".join)
    | st.integers(0, 4096).map(bytes),
    min_size=1,
    max_size=6,
)


def test_the_encodings_are_all_fuzzed() -> None:
    assert set(ENCODINGS) == {"pcm_s16le", "pcm_f32le", "pcm_s32le", "mulaw", "alaw"}


@settings(max_examples=1500, deadline=None, database=None)
@given(formats, pushes)
def test_any_accepted_format_normalizes_any_bytes_or_raises_value_error(
    fmt: AudioFormat, sent: list[bytes]
) -> None:
    if format_problem(fmt, SETTINGS) is not None:
        event("format refused")
        return  # refused before a normalizer exists (as the protocols do)
    event(f"format accepted: {fmt.encoding}")
    normalizer = Normalizer(fmt)
    accepted = 0
    with warnings.catch_warnings():
        # A NaN reaching the int16 cast is a defect; floats past full scale overflowing to
        # infinity before the clip are not.
        warnings.filterwarnings("error", message="invalid value", category=RuntimeWarning)
        warnings.filterwarnings("ignore", message="overflow", category=RuntimeWarning)
        for data in sent:
            try:
                samples = normalizer.push(data)
            except ValueError as exc:
                assert len(data) % fmt.frame_bytes, f"whole frames refused: {exc}"
                continue
            assert samples.dtype == np.int16
            accepted += len(data) // fmt.frame_bytes
            if fmt.sample_rate == 16_000:
                assert len(samples) == len(data) // fmt.frame_bytes
        tail = normalizer.flush()
    assert tail.dtype == np.int16


def test_floats_past_full_scale_are_clipped_before_the_resampler() -> None:
    """Found by the fuzzer: f32 samples near the float32 limit overflowed the resampler's filter
    to inf/NaN, and NaN cast to int16 is garbage."""
    normalizer = Normalizer(AudioFormat(48_000, 1, "pcm_f32le"))
    loud = np.tile(np.array([3.4e38, -3.4e38], np.float32), 2400).tobytes()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        samples = np.concatenate([normalizer.push(loud), normalizer.flush()])
    assert len(samples) > 0
    assert np.abs(samples.astype(np.int32)).max() <= 32768
    # as loud as full-scale square wave at the same rate, not a burst of cast garbage
    full_scale = Normalizer(AudioFormat(48_000, 1, "pcm_f32le"))
    square = np.tile(np.array([1.0, -1.0], np.float32), 2400).tobytes()
    reference = np.concatenate([full_scale.push(square), full_scale.flush()])
    assert np.array_equal(samples, reference)
