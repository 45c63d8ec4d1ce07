"""Partial stability (``bench.stability``): words shown and later retracted, from display texts."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from bench.stability import change, retraction, shared_head, text_change, words


def test_pure_growth_retracts_nothing() -> None:
    found = retraction(["", "The", "The cat", "The cat sat", "The cat sat on the mat."])
    assert found == {
        "words_shown": 6,
        "words_retracted": 0,
        "retracted_share": 0.0,
        "updates": 5,
    }


def test_a_replaced_word_is_retracted_and_its_replacement_shown() -> None:
    found = retraction(["the cat", "the hat", "the hat sat"])
    assert found["words_shown"] == 4  # the, cat; hat; sat
    assert found["words_retracted"] == 1  # cat
    assert found["retracted_share"] == pytest.approx(0.25)
    assert found["updates"] == 3


def test_a_final_shorter_than_the_partial_retracts_the_dropped_words() -> None:
    found = retraction(["thank you for the the", "thank you for the"])
    assert (found["words_shown"], found["words_retracted"]) == (5, 1)


def test_a_word_taken_back_then_shown_again_counts_both_times() -> None:
    found = retraction(["a b c", "a b", "a b c"])
    assert (found["words_shown"], found["words_retracted"]) == (4, 1)


def test_case_and_punctuation_changes_are_not_retractions() -> None:
    found = retraction(["hello world", "Hello, world.", "Hello, world. How are"])
    assert (found["words_shown"], found["words_retracted"]) == (4, 0)


def test_a_change_early_in_a_long_transcript_is_found() -> None:
    tail = " ".join(f"w{i}" for i in range(500))
    found = retraction([f"one two {tail}", f"one too {tail} end"])
    assert (found["words_retracted"], found["words_shown"]) == (1, 502 + 2)


def test_nothing_shown() -> None:
    for displays in ([], ["", "  ", "..."]):
        found = retraction(displays)
        assert found["words_shown"] == found["words_retracted"] == 0
        assert found["retracted_share"] is None
        assert found["updates"] == len(displays)


def test_the_shared_head_ends_on_a_word_boundary() -> None:
    assert shared_head("hello wor", "hello world") == 5
    assert shared_head("hello world", "hello world again") == 11
    assert shared_head("abc", "abd") == 0
    assert shared_head("same text", "same text") == 9
    assert shared_head("", "anything") == 0


def test_change_on_words() -> None:
    assert change([], ["a", "b"]) == (2, 0)
    assert change(["a", "b"], []) == (0, 2)
    assert change(["a", "b", "c", "d"], ["a", "x", "c", "d", "e"]) == (2, 1)


TOKENS = st.sampled_from(["the", "The", "cat,", "sat", "on", "mat.", "don't", "well-known", "a"])


@given(st.lists(TOKENS, max_size=12), st.lists(TOKENS, max_size=12), st.lists(TOKENS, max_size=8))
def test_skipping_the_shared_head_gives_what_aligning_everything_gives(
    head: list[str], before: list[str], after: list[str]
) -> None:
    a, b = " ".join(head + before), " ".join(head + after)
    assert text_change(a, b) == change(words(a), words(b))
