"""Fuzzing the Deepgram live container path with a bounded budget: mutated containers (ogg/opus,
webm/opus, flac, mp3, wav) fed to ``ContainerDecoder`` in random slices, as a client streams
them. Each stream decodes or fails with ``DecodeFailed`` (its documented error), in bounded time;
nothing else comes out of ``feed`` or ``finish``. ``wav_start``, which picks the raw path for
WAV, returns a format, None, or raises ``ValueError``."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from fuzz_inputs import MUTATIONS, Originals, mutated, real_files
from hypothesis import HealthCheck, event, given, settings, strategies as st

from capture.config import CaptureSettings
from capture.limits import format_problem
from capture.stream_decoder import WAV_HEADER_MAX, Block, ContainerDecoder, DecodeFailed, wav_start

pytestmark = pytest.mark.slow

FINISH_TIMEOUT_S = 20.0
KINDS = (*MUTATIONS, "repeat")


@pytest.fixture(scope="module")
def originals(tmp_path_factory: pytest.TempPathFactory) -> Originals:
    specs = [
        ("a.ogg", "libopus", 48_000, 1),
        ("a.webm", "libopus", 48_000, 2),
        ("a.flac", "flac", 44_100, 2),
        ("a.mp3", "mp3", 16_000, 1),
        ("a.wav", "pcm_s16le", 16_000, 1),
    ]
    return real_files(tmp_path_factory.mktemp("streams"), specs)


def slices(data: bytes, sizes: list[int]) -> list[bytes]:
    """``data`` cut into pieces of the drawn sizes, cycled."""
    pieces, offset, i = [], 0, 0
    while offset < len(data):
        size = sizes[i % len(sizes)]
        pieces.append(data[offset : offset + size])
        offset, i = offset + size, i + 1
    return pieces


async def stream(pieces: list[bytes]) -> str:
    blocks: list[tuple[int, int, Block]] = []

    async def take(rate: int, channels: int, block: Block) -> None:
        assert rate > 0 and channels >= 1
        assert block.dtype == np.float32 and block.ndim == 2 and block.shape[1] == channels
        blocks.append((rate, channels, block))

    decoder = ContainerDecoder(take)
    try:
        for piece in pieces:
            await decoder.feed(piece)
        await asyncio.wait_for(decoder.finish(), FINISH_TIMEOUT_S)
    except DecodeFailed as exc:
        assert str(exc)
        return "failed"
    finally:
        await decoder.close()
    return "decoded" if blocks else "empty"


def test_mutated_containers_in_slices_decode_or_fail_with_decode_failed(
    originals: Originals,
) -> None:
    @settings(
        max_examples=300,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(
        st.one_of(mutated(originals, KINDS), mutated(originals, KINDS), st.binary(max_size=4096)),
        st.lists(st.integers(1, 5000), min_size=1, max_size=5),
    )
    def decode_one(data: bytes, sizes: list[int]) -> None:
        outcome = asyncio.run(stream(slices(data, sizes)))
        outcomes[outcome] = outcomes.get(outcome, 0) + 1

    outcomes: dict[str, int] = {}
    decode_one()
    print(f"container fuzz outcomes: {outcomes}")
    assert outcomes.get("decoded", 0) > 0, "the mutations leave some streams decodable"


def test_an_empty_feed_then_finish_is_a_clear_failure() -> None:
    assert asyncio.run(stream([b""])) in {"failed", "empty"}


def chunk(name: bytes, body: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    """A RIFF chunk, its size mostly the body's own (else any)."""
    sizes = st.none() | st.none() | st.integers(0, 2**32 - 1) | st.integers(0, 64)
    return st.tuples(sizes, body).map(
        lambda parts: (
            name
            + (len(parts[1]) if parts[0] is None else parts[0]).to_bytes(4, "little")
            + parts[1]
        )
    )


codes_and_bits = st.sampled_from([(1, 16), (1, 32), (3, 32), (6, 8), (7, 8), (1, 24), (2, 4)])
fmt_bodies = st.tuples(
    codes_and_bits | st.tuples(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF)),
    st.integers(0, 10) | st.integers(0, 0xFFFF),
    st.sampled_from([8000, 16000, 48000]) | st.integers(0, 2**32 - 1),
    st.integers(0, 2**32 - 1),
    st.integers(0, 0xFFFF),
    st.binary(max_size=30),
).map(
    lambda f: (
        f[0][0].to_bytes(2, "little")
        + f[1].to_bytes(2, "little")
        + f[2].to_bytes(4, "little")
        + f[3].to_bytes(4, "little")
        + f[4].to_bytes(2, "little")
        + f[0][1].to_bytes(2, "little")
        + f[5]
    )
)
fmt_chunks = chunk(b"fmt ", fmt_bodies)
data_chunks = chunk(b"data", st.binary(max_size=16))
wav_heads = (
    st.tuples(fmt_chunks, data_chunks).map(b"".join)
    | st.lists(fmt_chunks | data_chunks | st.binary(max_size=24), max_size=4).map(b"".join)
).map(lambda chunks: b"RIFF\x00\x00\x00\x00WAVE" + chunks)


@settings(max_examples=2000, deadline=None, database=None)
@given(wav_heads)
def test_wav_headers_give_a_format_none_or_value_error(head: bytes) -> None:
    try:
        start = wav_start(head[:WAV_HEADER_MAX])
    except ValueError:
        event("ValueError")
        return
    if start is None:
        event("None")
        return
    event("format")
    assert start.format.channels >= 1 and start.format.sample_rate >= 1
    assert 12 <= start.data_offset <= len(head)
    # a format outside the limits is refused by the connection before any audio is normalized
    format_problem(start.format, CaptureSettings())


def test_a_real_wav_header_is_read(originals: Originals) -> None:
    start = wav_start(originals[-1][:WAV_HEADER_MAX])
    assert start is not None and start.format.encoding == "pcm_s16le"
