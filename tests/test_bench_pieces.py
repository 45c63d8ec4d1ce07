"""The capacity ramp's material (``bench.audio.pieces``): talks cut into pieces of whole
utterances, every talk's first piece before any second one."""

from __future__ import annotations

import numpy as np

from bench.audio import RATE, Talk, Utterance, pieces


def _talk(name: str, seconds: list[float]) -> Talk:
    utterances = tuple(
        Utterance(f"{name}-{k}", "corpus", f"word{k}", np.zeros(int(s * RATE), dtype=np.int16))
        for k, s in enumerate(seconds)
    )
    return Talk(name, "corpus", utterances)


def test_a_talk_is_cut_into_consecutive_pieces_of_whole_utterances() -> None:
    talk = _talk("a", [10, 10, 10, 12, 10, 10, 3])
    cut = pieces([talk], 30.0)
    assert [p.name for p in cut] == ["a#1", "a#2"]
    assert [[u.id for u in p.utterances] for p in cut] == [
        ["a-0", "a-1", "a-2"],
        ["a-3", "a-4", "a-5"],
    ]
    # the 3 s left over is under half a piece: dropped rather than played as a stream of its own
    assert all(p.duration_s >= 15 for p in cut)


def test_every_talks_first_piece_comes_before_any_second_one() -> None:
    long_talk = _talk("a", [30, 30, 30])
    short_talk = _talk("b", [30])
    middle_talk = _talk("c", [30, 30])
    cut = pieces([long_talk, short_talk, middle_talk], 30.0)
    assert [p.name for p in cut] == ["a#1", "b#1", "c#1", "a#2", "c#2", "a#3"]
    assert len({p.name for p in cut}) == len(cut)


def test_no_talks_give_no_pieces() -> None:
    assert pieces([], 30.0) == []
