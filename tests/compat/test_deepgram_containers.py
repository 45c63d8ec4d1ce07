"""Containers arriving in pieces, as a Deepgram live client streams them, decoded as they come:
the same samples as decoding the whole file, and a clear failure for bytes that are not audio."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from capture_audio import encode, packaged

from capture.audio import decode_file
from capture.stream_decoder import Block, ContainerDecoder, DecodeFailed


async def decode_in_pieces(data: bytes, piece: int) -> tuple[int, int, Block]:
    blocks: list[Block] = []
    layout: list[tuple[int, int]] = []

    async def take(rate: int, channels: int, block: Block) -> None:
        layout.append((rate, channels))
        blocks.append(block)

    decoder = ContainerDecoder(take)
    for offset in range(0, len(data), piece):
        await decoder.feed(data[offset : offset + piece])
    await decoder.finish()
    assert len(set(layout)) == 1
    (rate, channels) = layout[0]
    return rate, channels, np.concatenate(blocks)


@pytest.mark.parametrize(
    ("name", "codec", "rate", "channels"),
    [
        ("a.ogg", "libopus", 48_000, 1),
        ("a.webm", "libopus", 48_000, 2),
        ("a.flac", "flac", 44_100, 2),
    ],
)
async def test_a_container_fed_in_pieces_decodes_like_the_whole_file(
    tmp_path: Path, name: str, codec: str, rate: int, channels: int
) -> None:
    path = encode(packaged("quick_brown_fox").pcm, tmp_path / name, codec, rate, channels)
    found_rate, found_channels, samples = await decode_in_pieces(path.read_bytes(), 1500)
    assert (found_rate, found_channels) == (rate, channels)
    whole = np.concatenate([block for _, block in decode_file(path)])
    assert samples.shape[0] == len(whole)
    np.testing.assert_allclose(samples.mean(axis=1), whole, atol=1e-6)


async def test_bytes_that_are_not_audio_fail_clearly() -> None:
    async def take(rate: int, channels: int, block: Block) -> None:
        raise AssertionError("nothing should decode")

    decoder = ContainerDecoder(take)
    await decoder.feed(b"this is not a container " * 200)
    with pytest.raises(DecodeFailed, match="cannot be decoded as audio"):
        await decoder.finish()
