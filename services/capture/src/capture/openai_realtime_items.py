"""The items of an OpenAI Realtime transcription session, made from EchoStream's speech segments
and transcripts.

An item is a stretch of one source's audio: from a speech start to its end (server VAD), or from
the first audio after a commit to the next commit (manual). Each transcript goes to the item that
holds its segment's start; a long item may hold several finals, joined in its ``completed``.

Deltas are append-only. They start once the item is committed (OpenAI's order: ``committed`` →
``delta``… → ``completed``) and carry only words the engine is unlikely to revise: the words of
finals, and the partial words two revisions agree on, never those of a partial's last second (and
only from partials known to cover their segment from its start: see ``PARTIAL_WINDOW``). When a
revision contradicts words already sent, no more deltas go out for that item; ``completed`` then
keeps the sent words and continues with the final's words after them, so the deltas are always a
prefix of ``transcript``. The stored session keeps the engine's own finals.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from capture import openai_realtime_events as ev
from echostream_shared import messages as m
from echostream_shared.segmented.agreement import agreed_length, cut_short, published_head
from echostream_shared.segmented.guards import norm_word
from echostream_shared.segmented.policy import SegmentPolicy

RATE = m.SAMPLE_RATE
PARTIAL_WINDOW = round(SegmentPolicy().partial_window_s * RATE)
"""A batch engine's partial covers its whole segment only while the segment is this short, or when
it continues the previous partial; later, a partial that had no earlier one to build on holds
just the last few seconds (the engine decodes only recent audio for partials)."""
ANCHOR_WORDS = 3
UNSETTLED_S = 1.0
"""A partial's words spoken in its last second are not sent: Whisper revises them most (a word cut
by the window's end, or one the next words change, as "all" that became "although")."""
KEEP_DONE = 64
"""Finished items remembered, so that a late transcript of one is recognised and dropped."""
MAX_PENDING = 256

Event = dict[str, Any]
Transcript = m.TranscriptPartial | m.TranscriptFinal


def ms(sample: int) -> int:
    return sample * 1000 // RATE


@dataclass
class Item:
    """One user audio item and what has been sent about it."""

    id: str
    start: int
    end: int | None = None
    announced: bool = False  # server VAD: speech_started was sent, speech_stopped will be
    ended_at: float | None = None  # monotonic time its end became known
    committed: bool = False
    cleared: bool = False
    done: bool = False
    finals: dict[str, m.TranscriptFinal] = field(default_factory=dict)
    segment: str | None = None  # segment of the latest partial
    hypothesis: list[str] = field(default_factory=list)
    unsettled: int = 1  # the hypothesis's last words, never sent
    hypothesis_end: int = 0  # end sample of the partial the hypothesis came from
    previous: list[str] | None = None
    sent: list[str] = field(default_factory=list)
    diverged: bool = False

    def holds(self, sample: int) -> bool:
        return self.start <= sample and (self.end is None or sample < self.end)

    @property
    def final_words(self) -> list[str]:
        ordered = sorted(self.finals.values(), key=lambda f: f.start_sample)
        return [word for final in ordered for word in final.text.split()]

    @property
    def seconds(self) -> float:
        return max(0, (self.end or self.start) - self.start) / RATE


class Items:
    """Turns speech boundaries and transcripts into the session's item events, in order."""

    def __init__(self, dialect: ev.Dialect, *, logprobs: bool = False) -> None:
        self.dialect = dialect
        self.logprobs = logprobs
        self._open: list[Item] = []  # not yet completed, in audio order
        self._done: deque[Item] = deque(maxlen=KEEP_DONE)
        self._pending: list[Transcript] = []  # transcripts that precede every item so far
        self._last_committed: str | None = None
        self.last_end: int | None = None  # where the latest item ended
        self._heard_at = 0.0  # monotonic time of the engine's latest transcript
        self.discarding = False  # items that start or end meanwhile are cleared

    @property
    def current(self) -> Item | None:
        """The item whose end is not known yet."""
        if self._open and self._open[-1].end is None:
            return self._open[-1]
        return None

    def start(self, sample: int, *, announce: bool) -> list[Event]:
        """An item begins at ``sample``; VAD mode announces it with ``speech_started``."""
        if self.current is not None:
            return []
        item = Item(ev.new_id("item"), sample, announced=announce, cleared=self.discarding)
        self._open.append(item)
        events = [ev.speech_started(item.id, ms(sample))] if announce and not item.cleared else []
        pending, self._pending = self._pending, []
        for transcript in pending:
            events += self.transcript(transcript)
        return events

    def end(self, sample: int, now: float) -> list[Event]:
        """The current item ends at ``sample`` and is committed."""
        item = self.current
        if item is None:
            return []
        item.end, item.ended_at = max(sample, item.start), now
        self.last_end = item.end
        item.cleared = item.cleared or self.discarding
        if item.cleared:
            return []
        events = [ev.speech_stopped(item.id, ms(item.end))] if item.announced else []
        return events + self._commit(item)

    def commit_silence(self, start: int, end: int) -> list[Event]:
        """A commit of audio the VAD found no speech in: an item with an empty transcript."""
        item = Item(ev.new_id("item"), start, end)
        events = self._commit(item)
        return events + self._complete(item)

    def clear(self) -> None:
        """Nothing more is sent about the current item (its audio stays in the stored session)."""
        if (item := self.current) is not None:
            item.cleared = True

    def transcript(self, event: Transcript, now: float = 0.0) -> list[Event]:
        """A partial or final of the engine, received at ``now`` (monotonic)."""
        self._heard_at = max(self._heard_at, now)
        if any(done.holds(event.start_sample) for done in self._done):
            return []
        index = self._index(event.start_sample)
        if index is None:
            if len(self._pending) < MAX_PENDING:
                self._pending.append(event)
            return []
        events: list[Event] = []
        # The engine works through a source in order: an event of a later item means the
        # earlier ended items have all their finals.
        while index > 0 and self._open[0].end is not None:
            events += self._complete(self._open[0])
            index -= 1
        item = self._open[index]
        if isinstance(event, m.TranscriptFinal):
            item.finals[event.segment_id] = event
            item.segment, item.hypothesis, item.previous = None, [], None
        elif event.segment_id not in item.finals:
            words = event.text.split()
            if _whole(item, event, words):
                same = event.segment_id == item.segment
                item.previous = item.hypothesis if same else None
                item.segment, item.hypothesis = event.segment_id, words
                item.unsettled = _unsettled(event, words)
                item.hypothesis_end = event.end_sample
            elif event.segment_id != item.segment:
                item.segment, item.hypothesis, item.previous = event.segment_id, [], None
        events += self._deltas(item)
        if (
            isinstance(event, m.TranscriptFinal)
            and item.end is not None
            and event.end_sample >= item.end
        ):
            events += self._complete(item)
        return events

    def overdue(self, now: float, grace_s: float) -> list[Event]:
        """Complete ended items that got no final (e.g. a cough) once the engine has been quiet
        for ``grace_s``: an engine that is behind keeps sending the finals of earlier items."""
        events: list[Event] = []
        if now - self._heard_at < grace_s:
            return events
        while self._open and (ended := self._open[0].ended_at) is not None:
            if now - ended < grace_s:
                break
            events += self._complete(self._open[0])
        return events

    def complete_ended(self) -> list[Event]:
        """Complete every ended item: the source is transcribed to its end."""
        events: list[Event] = []
        while self._open and self._open[0].end is not None:
            events += self._complete(self._open[0])
        return events

    def _index(self, sample: int) -> int | None:
        for i, item in enumerate(self._open):
            if item.holds(sample) or sample < item.start:
                return i
        return None

    def _commit(self, item: Item) -> list[Event]:
        item.committed = True
        previous, self._last_committed = self._last_committed, item.id
        return [
            ev.committed(item.id, previous),
            ev.item_added(self.dialect, item.id, previous),
            *self._deltas(item),
        ]

    def _deltas(self, item: Item) -> list[Event]:
        if not item.committed or item.cleared or item.done or item.diverged:
            return []
        stable = item.final_words + _agreed(item.hypothesis, item.previous, item.unsettled)
        sent = len(item.sent)
        if len(stable) <= sent:
            return []
        if any(norm_word(a) != norm_word(b) for a, b in zip(item.sent, stable, strict=False)):
            item.diverged = True
            return []
        added = stable[sent:]
        item.sent += added
        return [ev.delta(item.id, (" " if sent else "") + " ".join(added))]

    def _complete(self, item: Item) -> list[Event]:
        if item in self._open:
            self._open.remove(item)
        self._done.append(item)
        if item.done or item.cleared:
            item.done = True
            return []
        events = self._deltas(item)
        item.done = True
        transcript = " ".join(stitched(item.sent, item.final_words))
        return [*events, ev.completed(item.id, transcript, item.seconds, self._logprobs(item))]

    def _logprobs(self, item: Item) -> list[dict[str, Any]] | None:
        if not self.logprobs:
            return None
        ordered = sorted(item.finals.values(), key=lambda f: f.start_sample)
        return [
            {
                "token": word.text,
                "logprob": math.log(max(word.probability, 1e-6)),
                "bytes": list(word.text.encode()),
            }
            for final in ordered
            for word in final.words
            if word.probability is not None
        ]


def _whole(item: Item, partial: m.TranscriptPartial, words: list[str]) -> bool:
    """True when the partial's text covers its segment from the start: the segment is still short,
    or the text begins as the item's previous partial did (it was built on it) and no audio lies
    between them that neither decoded (partials skipped for a window's length leave such a gap)."""
    if partial.end_sample - partial.start_sample <= PARTIAL_WINDOW:
        return True
    if partial.segment_id != item.segment or not item.hypothesis:
        return False
    if partial.end_sample - item.hypothesis_end > PARTIAL_WINDOW:
        return False
    k = min(ANCHOR_WORDS, len(words), len(item.hypothesis))
    return k > 0 and all(
        norm_word(a) == norm_word(b) for a, b in zip(words[:k], item.hypothesis[:k], strict=True)
    )


def _unsettled(partial: m.TranscriptPartial, words: list[str]) -> int:
    """How many of the partial's last words fall in its last ``UNSETTLED_S`` (at its own pace)."""
    seconds = max(partial.end_sample - partial.start_sample, 1) / RATE
    return max(1, math.ceil(len(words) * min(UNSETTLED_S / seconds, 1.0)))


def _agreed(hypothesis: list[str], previous: list[str] | None, unsettled: int) -> list[str]:
    """The partial's words that are unlikely to change: never its ``unsettled`` last words nor a
    word cut short ("s-": the engine heard its start only), and only those the previous revision
    agrees with."""
    cap = min(len(hypothesis) - unsettled, cut_short(hypothesis))
    if previous is not None:
        cap = min(cap, agreed_length(hypothesis, previous))
    return hypothesis[: max(cap, 0)]


def stitched(sent: list[str], final: list[str]) -> list[str]:
    """The words already sent, then the final's words that follow the head they stand for."""
    return sent + final[published_head(sent, final) :]
