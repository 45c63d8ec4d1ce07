"""Deepgram's event rules on one source's timeline, without a pipeline: endpoints, Finalize answers,
UtteranceEnd and locked ranges decided from speech boundaries and finals (samples at 16 kHz)."""

from __future__ import annotations

from capture.deepgram_timeline import Due, Locked, Rules, Timeline

S = 16_000  # one second
RULES = Rules(endpointing=160, utterance_gap=S, post_roll=S // 5)


def test_a_final_ending_where_the_vad_ended_speech_is_an_endpoint() -> None:
    timeline = Timeline(RULES)
    timeline.started(0)
    timeline.ended(2 * S)
    before, locked = timeline.final(0, 2 * S, last_word_end=int(1.7 * S), silent_until=3 * S)
    assert before == [] and locked == Locked(0, 2 * S, speech_final=True, from_finalize=False)
    _, inside = timeline.final(2 * S, 3 * S, last_word_end=None, silent_until=4 * S)
    assert not inside.speech_final, "a final that ends where no speech ended"
    assert not Timeline(Rules(None, None, S // 5)).final(0, 0, None, S)[1].speech_final


def test_a_long_endpointing_waits_for_its_silence_and_not_for_resumed_speech() -> None:
    timeline = Timeline(Rules(endpointing=2 * S, utterance_gap=None, post_roll=S // 5))
    timeline.started(0)
    timeline.ended(2 * S)
    _, locked = timeline.final(0, 2 * S, None, silent_until=2 * S + S // 2)
    assert not locked.speech_final, "not yet known"
    assert timeline.due(silent_until=3 * S) == []
    assert timeline.due(silent_until=4 * S) == [Due("endpoint", 2 * S)]
    assert timeline.due(silent_until=5 * S) == [], "once"

    resumed = Timeline(Rules(endpointing=2 * S, utterance_gap=None, post_roll=S // 5))
    resumed.started(0)
    resumed.ended(2 * S)
    resumed.final(0, 2 * S, None, silent_until=2 * S + S // 2)
    resumed.started(3 * S)
    assert resumed.due(silent_until=6 * S) == [], "speech came back within 2 s"


def test_every_finalize_gets_one_answer() -> None:
    timeline = Timeline(RULES)
    assert timeline.finalize(S) == [Due("finalized", S)], "nothing to flush: answered at once"
    timeline.started(S)
    timeline.ended(3 * S)  # the cut ends the segment in progress
    assert timeline.finalize(3 * S) == []
    before, locked = timeline.final(S, 3 * S, int(2.8 * S), silent_until=3 * S)
    assert before == [] and locked.from_finalize and not locked.speech_final

    timeline.started(4 * S)
    timeline.ended(5 * S)  # the VAD ended it; its final is still due at the Finalize
    assert timeline.finalize(6 * S) == []
    _, due = timeline.final(4 * S, 5 * S, None, silent_until=6 * S)
    assert due.from_finalize and due.speech_final

    timeline.started(7 * S)
    timeline.ended(8 * S)  # the engine finds no words in it: no final comes
    assert timeline.finalize(8 * S) == []
    assert timeline.partial(9 * S) == [Due("finalized", 8 * S)], "answered once it is past"


def test_utterance_end_once_per_last_word_when_no_word_follows_in_time() -> None:
    timeline = Timeline(RULES)
    timeline.started(0)
    timeline.ended(2 * S)
    timeline.final(0, 2 * S, last_word_end=int(1.8 * S), silent_until=2 * S)
    assert timeline.due(silent_until=2 * S) == []
    timeline.started(int(2.5 * S))  # speech again 0.7 s later: the utterance goes on
    assert timeline.due(silent_until=5 * S) == []
    timeline.ended(4 * S)
    timeline.final(int(2.5 * S), 4 * S, last_word_end=int(3.7 * S), silent_until=4 * S)
    assert timeline.due(silent_until=5 * S) == [Due("utterance_end", int(3.7 * S))]
    assert timeline.due(silent_until=9 * S, at_end=True) == [], "once per last word"


def test_a_final_never_relocks_a_range() -> None:
    timeline = Timeline(RULES)
    timeline.final(0, 2 * S, None, silent_until=2 * S)
    _, locked = timeline.final(S, 3 * S, None, silent_until=3 * S)
    assert (locked.start, locked.end) == (2 * S, 3 * S)
