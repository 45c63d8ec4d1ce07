"""Choosing dev utterances for a passage."""

from __future__ import annotations

import pytest
from speech_corpus import load_items

from peer.passage import pick

pytestmark = pytest.mark.corpus


def test_pick_takes_whole_utterances_in_id_order_until_enough() -> None:
    chosen = pick(load_items("dev"), "ljspeech", 20.0)
    assert [i.id for i in chosen] == sorted(i.id for i in chosen)
    total = sum(i.duration_s for i in chosen)
    assert total >= 20.0
    assert total - chosen[-1].duration_s < 20.0


def test_unknown_source_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="ljspeech"):
        pick(load_items("dev"), "no-such-corpus", 10.0)
