"""The byte-stream framing Deepgram's binary frames and OpenAI's appends share."""

from __future__ import annotations

import pytest

from capture.frame_carry import FrameCarry


def test_a_split_frame_waits_for_the_next_chunk_and_nothing_is_lost() -> None:
    data = bytes(range(256)) * 3
    carry = FrameCarry(4)
    out = b"".join(carry.push(data[i : i + 7]) for i in range(0, len(data), 7))
    assert out == data and carry.pending == 0


def test_what_no_chunk_finished_is_dropped_and_counted() -> None:
    carry = FrameCarry(2)
    assert carry.push(b"\x01\x02\x03") == b"\x01\x02"
    assert carry.pending == 1
    assert carry.drop() == 1 and carry.pending == 0
    assert carry.push(b"\x04\x05") == b"\x04\x05", "after a drop the stream is aligned again"
    assert carry.drop() == 0


def test_frames_are_at_least_one_byte() -> None:
    assert FrameCarry(1).push(b"abc") == b"abc"
    with pytest.raises(ValueError):
        FrameCarry(0)
