"""How EchoStream's segments and transcripts become OpenAI Realtime items: order, the append-only
delta rule, several finals in one item, and items the engine found no words in."""

from __future__ import annotations

from typing import Any

from capture.openai_realtime_items import Items, stitched
from echostream_shared import messages as m

RATE = 16_000


def partial(start: int, revision: int, text: str, end: int | None = None) -> m.TranscriptPartial:
    """A partial of ``text`` spoken at two words a second, then a second of pause, unless ``end``."""
    if end is None:
        end = start + RATE * (len(text.split()) // 2 + 1)
    return m.TranscriptPartial(
        session_id="s",
        source="default",
        engine="whisper",
        segment_id=f"seg{start}",
        revision=revision,
        start_sample=start,
        end_sample=end,
        text=text,
        emitted_at=0.0,
    )


def final(start: int, end: int, text: str) -> m.TranscriptFinal:
    words = tuple(
        m.Word(text=w, start_sample=start, end_sample=end, probability=0.9) for w in text.split()
    )
    return m.TranscriptFinal(
        session_id="s",
        source="default",
        engine="whisper",
        segment_id=f"seg{start}",
        start_sample=start,
        end_sample=end,
        text=text,
        words=words,
        emitted_at=0.0,
    )


def types(events: list[dict[str, Any]]) -> list[str]:
    return [
        e["type"].rsplit(".", 1)[-1] if "transcription" in e["type"] else e["type"] for e in events
    ]


def deltas(events: list[dict[str, Any]]) -> str:
    return "".join(e["delta"] for e in events if e["type"].endswith("transcription.delta"))


def test_a_vad_item_from_speech_start_to_completed() -> None:
    items = Items("ga")
    events = items.start(RATE, announce=True)
    # partials during speech are held back: deltas only follow the commit
    events += items.transcript(partial(RATE, 1, "Hello there"))
    events += items.transcript(partial(RATE, 2, "Hello there my friend"))
    events += items.end(4 * RATE, now=0.0)
    events += items.transcript(final(RATE, 4 * RATE, "Hello there, my friend."))
    assert types(events) == [
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.added",
        "delta",
        "delta",
        "completed",
    ]
    started, stopped, commit = events[:3]
    assert started["audio_start_ms"] == 1000 and stopped["audio_end_ms"] == 4000
    assert started["item_id"] == stopped["item_id"] == commit["item_id"]
    assert commit["previous_item_id"] is None
    done = events[-1]
    assert deltas(events) == "Hello there" + " my friend."
    assert done["transcript"].startswith(deltas(events))
    assert done["usage"] == {"type": "duration", "seconds": 3.0}


def test_a_revision_that_contradicts_sent_words_stops_deltas_and_keeps_the_prefix() -> None:
    items = Items("beta")
    items.start(0, announce=True)
    events = items.end(3 * RATE, now=0.0)
    events += items.transcript(partial(0, 1, "I scream for ice"))
    events += items.transcript(partial(0, 2, "Ice cream for you all"))
    events += items.transcript(final(0, 3 * RATE, "Ice cream for you all."))
    assert "conversation.item.created" in types(events)
    sent = deltas(events)
    assert sent == "I scream"  # "for ice" was its last second
    done = events[-1]
    assert done["type"].endswith("completed")
    assert done["transcript"].startswith(sent)
    assert done["transcript"] == "I scream for you all."


def test_several_finals_in_one_item_are_joined() -> None:
    items = Items("ga")
    items.start(0, announce=True)
    events = items.transcript(final(0, 25 * RATE, "first part of a long turn"))
    events += items.end(40 * RATE, now=0.0)
    assert not [e for e in events if e["type"].endswith("completed")]
    events += items.transcript(final(25 * RATE, 40 * RATE, "and its second part"))
    done = events[-1]
    assert done["transcript"] == "first part of a long turn and its second part"
    assert deltas(events) == done["transcript"]


def test_an_item_without_words_completes_when_the_engine_moves_on_or_after_a_grace() -> None:
    items = Items("ga")
    items.start(0, announce=True)
    events = items.end(RATE // 5, now=10.0)
    items.start(2 * RATE, announce=True)
    events += items.transcript(partial(2 * RATE, 1, "next words here"))
    first = [e for e in events if e["type"].endswith("completed")]
    assert [e["transcript"] for e in first] == [""]
    items.end(4 * RATE, now=20.0)
    assert items.overdue(now=21.0, grace_s=5.0) == []
    # an engine that is behind is still sending finals of earlier items: not overdue yet
    items.transcript(partial(2 * RATE, 2, "next words here"), now=24.0)
    assert items.overdue(now=26.0, grace_s=5.0) == []
    late = items.overdue(now=29.5, grace_s=5.0)
    assert late[-1]["transcript"] == "next"
    assert items.transcript(final(2 * RATE, 4 * RATE, "next words here")) == []


def test_previous_item_ids_chain_the_commits() -> None:
    items = Items("ga")
    ids = []
    for k in range(3):
        items.start(k * 3 * RATE, announce=False)
        events = items.end(k * 3 * RATE + RATE, now=0.0)
        commit = events[0]
        assert commit["type"] == "input_audio_buffer.committed"
        ids.append((commit["item_id"], commit["previous_item_id"]))
    assert ids[0][1] is None
    assert ids[1][1] == ids[0][0] and ids[2][1] == ids[1][0]


def test_a_cleared_item_sends_nothing_more() -> None:
    items = Items("ga")
    items.start(0, announce=True)
    items.clear()
    events = items.end(RATE, now=0.0)
    events += items.transcript(final(0, RATE, "discarded words"))
    assert events == []


def test_stitching_keeps_sent_words_and_continues_with_the_final() -> None:
    assert stitched([], ["a", "b"]) == ["a", "b"]
    assert stitched(["hello", "world"], ["Hello,", "world.", "How", "are", "you?"]) == [
        "hello",
        "world",
        "How",
        "are",
        "you?",
    ]
    assert stitched(["I", "scream"], ["Ice", "cream", "please"]) == ["I", "scream", "please"]
    assert stitched(["quick", "brown"], ["The", "quick", "brown", "fox"]) == [
        "quick",
        "brown",
        "fox",
    ]


def test_a_partial_that_holds_only_the_tail_of_a_long_segment_sends_no_deltas() -> None:
    items = Items("ga")
    items.start(0, announce=True)
    items.end(9 * RATE, now=0.0)
    # the engine was behind: its first partial of this 9 s segment decoded only the last seconds
    events = items.transcript(partial(0, 1, "of movable metal letters in the", end=8 * RATE))
    events += items.transcript(
        partial(0, 2, "of movable metal letters in the middle", end=9 * RATE)
    )
    assert deltas(events) == ""
    events += items.transcript(
        final(0, 9 * RATE, "The invention of movable metal letters in the middle")
    )
    assert events[-1]["transcript"] == "The invention of movable metal letters in the middle"
    assert deltas(events) == events[-1]["transcript"]


def test_partials_built_on_earlier_ones_keep_sending_deltas_in_a_long_segment() -> None:
    items = Items("ga")
    items.start(0, announce=True)
    events = items.transcript(partial(0, 1, "The invention of", end=2 * RATE))
    events += items.transcript(partial(0, 2, "The invention of movable metal", end=7 * RATE))
    events += items.end(8 * RATE, now=0.0)
    events += items.transcript(
        partial(0, 3, "The invention of movable metal letters", end=8 * RATE)
    )
    assert deltas(events) == "The invention of movable metal"


def test_stitching_matches_the_sent_words_to_the_head_of_the_final_only() -> None:
    # two partials agreed on a misheard "The engine"; the final's later "the" must not match it
    sent = ["the", "invention.", "The", "engine"]
    final = ["The", "invention", "of", "movable", "metal", "letters", "in", "the", "middle"]
    assert stitched(sent, final) == [*sent, "metal", "letters", "in", "the", "middle"]


def test_a_word_cut_short_at_the_partials_edge_is_not_sent() -> None:
    items = Items("ga")
    items.start(0, announce=True)
    items.end(3 * RATE, now=0.0)
    events = items.transcript(partial(0, 1, "in the only s- with which"))
    events += items.transcript(partial(0, 2, "in the only s- with which we"))
    assert deltas(events) == "in the only"
    events += items.transcript(final(0, 3 * RATE, "in the only sense with which we are"))
    assert events[-1]["transcript"] == "in the only sense with which we are"


def test_a_partial_after_a_window_without_partials_sends_no_deltas() -> None:
    items = Items("ga")
    items.start(0, announce=True)
    items.end(14 * RATE, now=0.0)
    events = items.transcript(partial(0, 1, "Printing in the only sense", end=4 * RATE))
    # partials were skipped for longer than the window: the next one is the frozen words and
    # the last seconds, with the audio between decoded by neither
    events += items.transcript(
        partial(0, 2, "Printing in the only we are at present concerned", end=12 * RATE)
    )
    events += items.transcript(
        partial(0, 3, "Printing in the only we are at present concerned differs", end=13 * RATE)
    )
    assert deltas(events) == "Printing in the"  # the first partial's settled words only
