"""Deltas to finals at speech boundaries, on the sample clock (no network)."""

from __future__ import annotations

from dataclasses import replace

from echostream_shared.jobs.updates import FinalUpdate, PartialUpdate, ResumePoint, TimedWord
from voxtral_worker.segmenter import CheckpointedFinal, Segmenter, SegmenterOutput

T = 1280  # samples per token
SECOND = 16_000


def segmenter(resume: ResumePoint | None = None, max_segment: int = 30 * SECOND) -> Segmenter:
    return Segmenter(resume, max_segment=max_segment, vad_latency=2 * SECOND)


def feed(seg: Segmenter, texts: list[str], first: int = 0) -> list[SegmenterOutput]:
    updates: list[SegmenterOutput] = []
    for i, text in enumerate(texts, start=first):
        updates += seg.on_token(text, i * T, (i + 1) * T, heard_to=(i + 8) * T)
    return updates


def finals(updates: list[SegmenterOutput]) -> list[FinalUpdate]:
    """The finals, without their words (``test_a_final_carries_its_words_token_times``)."""
    return [replace(u.update, words=()) for u in updates if isinstance(u, CheckpointedFinal)]


def test_a_final_carries_its_words_token_times() -> None:
    seg = segmenter()
    seg.on_started(2 * T)
    feed(seg, ["", "", " hel", "lo", " world", ""])
    seg.on_ended(7 * T - 100)
    (final,) = [
        u.update for u in feed(seg, ["", " next"], first=6) if isinstance(u, CheckpointedFinal)
    ]
    assert final.words == (TimedWord("hello", 2 * T, 4 * T), TimedWord("world", 4 * T, 5 * T))


def partials(updates: list[SegmenterOutput]) -> list[PartialUpdate]:
    return [u for u in updates if isinstance(u, PartialUpdate)]


def test_a_final_waits_for_the_token_that_covers_the_boundary() -> None:
    seg = segmenter()
    assert seg.on_started(2 * T) == []
    updates = feed(seg, ["", "", " hel", "lo", " world", ""])
    assert [p.text for p in partials(updates)] == ["hel", "hello", "hello world"]
    assert [p.revision for p in partials(updates)] == [1, 2, 3]
    assert {p.segment_start for p in partials(updates)} == {2 * T}
    assert seg.on_ended(7 * T - 100) == []  # token 6 covers it and has not come
    (final,) = finals(feed(seg, ["", " next"], first=6))
    assert final == FinalUpdate(2 * T, 7 * T - 100, "hello world")
    assert seg.done == 7 * T


def test_tokens_after_the_boundary_go_to_the_next_segment() -> None:
    seg = segmenter()
    seg.on_started(0)
    feed(seg, [" one", " two", "", " three", ""])
    (first,) = finals(seg.on_ended(3 * T))
    assert first.text == "one two" and seg.done == 3 * T
    seg.on_started(3 * T + 50)
    (second,) = finals(seg.on_closed(6 * T))
    assert second == FinalUpdate(3 * T + 50, 6 * T, "three")


def test_text_before_a_late_onset_joins_the_segment() -> None:
    seg = segmenter()
    feed(seg, [" early", ""])
    updates = seg.on_started(T)
    assert [p.text for p in partials(updates)] == ["early"]
    (final,) = finals(seg.on_ended(2 * T))
    assert final.text == "early" and final.segment_start == T


def test_a_start_before_the_cut_opens_the_segment_at_the_cut() -> None:
    seg = segmenter()
    seg.on_started(0)
    seg.on_ended(2 * T - 10)
    seg.on_started(2 * T - 5)  # queued behind the end, before the cut at 2 T
    updates = feed(seg, [" a", "", " b"])
    assert finals(updates)[0].text == "a"
    (final,) = finals(seg.on_ended(3 * T))
    assert final.segment_start == 2 * T and final.text == "b"


def test_a_replay_from_the_checkpoint_gives_the_same_finals() -> None:
    live = segmenter()
    live.on_started(0)
    live_updates = feed(live, [" a", " b", ""]) + live.on_ended(2 * T)
    checkpoint = finals_and_resumes(live_updates)[0][1]
    live.on_started(2 * T - 10)
    rest = feed(live, [" c", " d", ""], first=3) + live.on_ended(5 * T)

    replay = segmenter(checkpoint)
    replay.restart()
    # the replay sees the boundaries whose events followed the checkpointed chunk again
    replayed = replay.on_ended(2 * T) + replay.on_started(2 * T - 10)
    replayed += feed(replay, [" c", " d", ""], first=3) + replay.on_ended(5 * T)
    assert finals(replayed) == finals(rest)


def finals_and_resumes(updates: list[SegmenterOutput]) -> list[tuple[FinalUpdate, ResumePoint]]:
    return [
        (replace(u.update, words=()), u.resume) for u in updates if isinstance(u, CheckpointedFinal)
    ]


def test_restart_drops_tokens_after_the_cut_and_partials_never_shrink() -> None:
    seg = segmenter()
    seg.on_started(0)
    feed(seg, [" one", " two"])
    assert seg.restart() == 0
    again = feed(seg, [" one", " two", " three"])
    assert [p.text for p in partials(again)] == ["one two three"]


def test_long_speech_is_cut_before_its_last_word() -> None:
    seg = segmenter(max_segment=5 * T)
    seg.on_started(0)
    updates = feed(seg, [" a", " b", "", " c", "", " dd", "d"])
    (final,) = finals(updates)
    assert final == FinalUpdate(0, 5 * T, "a b c")
    assert seg.done == 5 * T
    (rest,) = finals(seg.on_ended(7 * T))
    assert rest == FinalUpdate(5 * T, 7 * T, "ddd")


def test_old_silence_is_forgotten_but_not_inside_speech() -> None:
    seg = segmenter()
    feed(seg, [""] * 40)
    assert seg.done > 0
    before = seg.done
    seg.on_started(seg.done + T)
    feed(seg, [""] * 40, first=40)
    assert seg.done == before


def test_an_end_without_a_start_and_an_end_already_final_are_handled() -> None:
    seg = segmenter()
    feed(seg, [" x", ""])
    (final,) = finals(seg.on_ended(2 * T))
    assert final == FinalUpdate(0, 2 * T, "x")
    assert seg.on_ended(T) == []  # at or before the cut: already final
    assert seg.on_closed(3 * T) == []  # nothing left, no speech open


def test_an_empty_open_segment_still_ends_with_a_final() -> None:
    seg = segmenter()
    seg.on_started(0)
    feed(seg, ["", ""])
    (final,) = finals(seg.on_ended(T))
    assert final.text == ""
