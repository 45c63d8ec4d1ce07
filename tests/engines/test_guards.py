from __future__ import annotations

import numpy as np
import pytest

from echostream_shared.segmented import guards
from echostream_shared.segmented.decoding import DecodedWord
from echostream_shared.segmented.guards import GuardConfig


def tone(seconds: float, amplitude: float) -> np.ndarray:
    t = np.arange(int(seconds * 16_000)) / 16_000
    return (amplitude * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def pick(words: list[str], keep: list[int]) -> list[str]:
    return [words[i] for i in keep]


# -- silence ---------------------------------------------------------------------------------


def test_digital_silence_is_near_silent() -> None:
    assert guards.is_near_silent(np.zeros(16_000, dtype=np.float32))
    assert guards.peak_frame_dbfs(np.zeros(0, dtype=np.float32)) == pytest.approx(-120.0)


def test_faint_noise_is_near_silent_but_speech_level_is_not() -> None:
    rng = np.random.default_rng(0)
    noise = (rng.standard_normal(16_000) * 10 ** (-65 / 20)).astype(np.float32)
    assert guards.is_near_silent(noise)
    assert not guards.is_near_silent(tone(1.0, 0.1))


def test_one_loud_frame_is_enough_to_decode() -> None:
    audio = np.zeros(32_000, dtype=np.float32)
    audio[16_000:16_480] = tone(0.03, 0.2)
    assert not guards.is_near_silent(audio)


def test_silence_threshold_is_configurable() -> None:
    quiet = tone(1.0, 10 ** (-45 / 20))
    assert not guards.is_near_silent(quiet)
    assert guards.is_near_silent(quiet, GuardConfig(silence_dbfs=-40.0))


# -- known hallucinations --------------------------------------------------------------------


@pytest.mark.parametrize("text", ["Thank you.", "thanks for watching!", "[BLANK_AUDIO]", "  You "])
def test_known_phrase_on_quiet_audio_is_a_hallucination(text: str) -> None:
    assert guards.is_hallucination(text, confidence=0.9, peak_dbfs=-45.0)


def test_known_phrase_decoded_unsurely_is_a_hallucination() -> None:
    assert guards.is_hallucination("Thank you.", confidence=0.3, peak_dbfs=-10.0)
    assert guards.is_hallucination("Thank you.", confidence=None, peak_dbfs=-10.0)


def test_real_thank_you_survives() -> None:
    assert not guards.is_hallucination("Thank you.", confidence=0.9, peak_dbfs=-12.0)


def test_other_text_is_never_a_hallucination() -> None:
    assert not guards.is_hallucination("Thank you for the report.", confidence=0.1, peak_dbfs=-60.0)


# -- annotations -----------------------------------------------------------------------------


def test_annotations_are_removed() -> None:
    words = ["[BLANK_AUDIO]", "Hello", "(wind", "blowing)", "there.", "♪", "*sighs*", "(music)"]
    assert pick(words, guards.annotation_keep(words)) == ["Hello", "there."]


def test_unclosed_annotation_drops_the_rest() -> None:
    words = ["Okay", "[inaudible", "speech"]
    assert pick(words, guards.annotation_keep(words)) == ["Okay"]


def test_plain_words_and_punctuation_are_kept() -> None:
    words = ["Well,", "it's", "fine", "-", "really."]
    assert pick(words, guards.annotation_keep(words)) == ["Well,", "it's", "fine", "really."]


# -- repetition loops ------------------------------------------------------------------------


def test_single_word_loop_collapses() -> None:
    words = ["I", "said", "the", "the", "the", "the", "the", "the", "thing"]
    assert pick(words, guards.repetition_keep(words)) == ["I", "said", "the", "thing"]


def test_phrase_loop_collapses_ignoring_case_and_punctuation() -> None:
    words = [
        "Good",
        "morning.",
        "Good",
        "morning.",
        "good",
        "morning,",
        "Good",
        "morning.",
        "Good",
        "morning.",
        "That",
        "is",
        "good.",
    ]
    assert pick(words, guards.repetition_keep(words)) == ["Good", "morning.", "That", "is", "good."]


def test_a_long_phrase_said_twice_in_a_row_is_a_loop() -> None:
    words = ["And", "so", "my", "fellow", "Americans.", "And", "so", "my", "fellow", "Americans."]
    assert pick(words, guards.repetition_keep(words)) == words[:5]


def test_natural_repetition_is_kept() -> None:
    words = ["no", "no", "no", "I", "will", "not,", "not", "now"]
    assert guards.repetition_keep(words) == list(range(len(words)))


def test_loop_threshold_is_configurable() -> None:
    words = ["go", "go", "go"]
    assert pick(words, guards.repetition_keep(words, GuardConfig(max_repeats=2))) == ["go"]


def test_long_loop_collapses_at_the_smallest_period() -> None:
    words = ("we do know what " * 6).split() + ["end"]
    assert pick(words, guards.repetition_keep(words)) == ["we", "do", "know", "what", "end"]


# -- boundary duplicates ---------------------------------------------------------------------


def test_repeated_words_at_the_boundary_are_found() -> None:
    tail = ["what", "your", "country", "can", "do", "for", "you,"]
    assert guards.boundary_overlap(tail, ["for", "you", "ask", "what"]) == 2
    assert guards.boundary_overlap(tail, ["You,", "ask"]) == 1


def test_no_overlap_means_nothing_dropped() -> None:
    assert guards.boundary_overlap(["the", "end."], ["A", "new", "start"]) == 0
    assert guards.boundary_overlap([], ["word"]) == 0
    assert guards.boundary_overlap(["word"], []) == 0


def test_overlap_is_bounded() -> None:
    tail, head = ["x", "a", "b", "c", "d"], ["a", "b", "c", "d", "y"]
    assert guards.boundary_overlap(tail, head) == 4
    assert guards.boundary_overlap(tail, head, max_words=3) == 0


def test_a_sentence_said_again_and_a_loop_cut_off_mid_phrase_are_dropped() -> None:
    sentence = [
        "Yet",
        "these",
        "thoughts",
        "affected",
        "Hester",
        "print",
        "less",
        "with",
        "hope",
        "than",
        "apprehension.",
    ]
    words = [*sentence, *sentence, *sentence[:4]]
    assert pick(words, guards.repetition_keep(words)) == sentence


def test_a_phrase_started_over_and_cut_off_by_the_end_of_the_decode_is_dropped() -> None:
    # tiny.en on a 4.4 s segment in a window cut to its length (dev split, talk 5)
    phrase = [
        "When",
        "is",
        "a",
        "lobster",
        "not",
        "a",
        "lobster?",
        "When",
        "it",
        "is",
        "a",
        "crayfish.",
    ]
    words = [*phrase, *phrase[:-1], "cray"]
    assert pick(words, guards.repetition_keep(words)) == phrase
    assert pick([*words, "Yes."], guards.repetition_keep([*words, "Yes."])) == [*words, "Yes."]


def test_a_loop_that_runs_to_the_end_collapses_to_one_copy() -> None:
    words = ["replied", "he"] * 6  # a prompted partial of dev speech, decoded alone
    assert pick(words, guards.repetition_keep(words)) == ["replied", "he"]


def test_a_short_phrase_said_again_at_the_end_is_kept() -> None:
    words = [
        "I",
        "told",
        "him",
        "so",
        "and",
        "so",
        "and",
        "so",
    ]  # "so and" twice, under a phrase's length
    assert guards.repetition_keep(words) == list(range(len(words)))
    words = ["go", "to", "the", "store", "and", "go", "to", "the"]
    assert guards.repetition_keep(words) == list(range(len(words)))


def test_a_phrase_that_merely_starts_like_the_last_one_is_kept() -> None:
    words = ["we", "went", "home", "and", "we", "went", "home", "and", "then", "we", "went", "out"]
    kept = pick(words, guards.repetition_keep(words))
    assert kept == ["we", "went", "home", "and", "then", "we", "went", "out"]


def test_words_copied_where_the_audio_has_ended_are_dropped() -> None:
    # faster-whisper on 2.7 s of dev speech ending in "but she said" (capture's VAD cut it there)
    words = ["but", "she", "said,", "but", "she", "said."]
    starts = [1.51, 2.06, 2.31, 2.66, 2.66, 2.66]
    assert guards.copy_past_end(words, starts, audio_s=2.68) == 3
    # the same words said twice, the second time inside the audio: speech, kept
    assert guards.copy_past_end(words, [0.2, 0.4, 0.6, 1.2, 1.4, 1.6], audio_s=2.68) == 0
    # a last word timed at the end that repeats nothing: Whisper's late word times, kept
    assert guards.copy_past_end(["she", "said", "so"], [0.2, 0.5, 2.66], audio_s=2.68) == 0


def test_screen_drops_a_copy_past_the_end_and_keeps_the_rest() -> None:
    said = [("it", 0.1), ("was", 0.3), ("here.", 0.5), ("It", 1.98), ("was", 1.98), ("here", 2.0)]
    words = [DecodedWord(text, start, start + 0.2, 0.9) for text, start in said]
    kept, rejected = guards.screen(words, confidence=0.9, peak_dbfs=-20.0, audio_s=2.0)
    assert [w.text for w in kept] == ["it", "was", "here."] and rejected is None
