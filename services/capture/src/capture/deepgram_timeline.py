"""One source's speech boundaries and locked finals, in Deepgram's terms: which final is an endpoint
(``speech_final``), which answers a ``Finalize`` (``from_finalize``), and when a late endpoint or an
``UtteranceEnd`` is due. Bookkeeping on the source's 16 kHz clock only; the connection sends."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from echostream_shared import messages as m

TOLERANCE = m.SAMPLE_RATE // 50
"""A final ends at a boundary when it ends within 20 ms of it."""


@dataclass(frozen=True)
class Rules:
    """What the client asked for, in samples."""

    endpointing: int | None
    """Silence after speech that makes an endpoint; None: no endpoints (``endpointing=false``)."""
    utterance_gap: int | None
    """Time without a word before an ``UtteranceEnd``; None: none (no ``utterance_end_ms``)."""
    post_roll: int
    """The VAD places a speech end this long after the last speech it heard."""


@dataclass(frozen=True)
class Locked:
    """A final as Deepgram states it: the range it locks, and what it marks."""

    start: int
    end: int
    speech_final: bool
    from_finalize: bool


@dataclass(frozen=True)
class Due:
    """Something to tell the client now: an empty ``from_finalize`` or ``speech_final`` Results
    at ``sample``, or an ``UtteranceEnd`` whose last word ended at ``sample``."""

    kind: Literal["finalized", "endpoint", "utterance_end"]
    sample: int


class Timeline:
    """The boundaries capture's VAD and the client's ``Finalize`` cuts put on one source."""

    def __init__(self, rules: Rules) -> None:
        self._rules = rules
        self._starts: list[int] = []
        self._ends: set[int] = set()
        self._cuts: set[int] = set()
        self._locked_end = 0
        self._finalizing: int | None = None
        self._pending_endpoint: int | None = None
        self._last_word_end: int | None = None
        self._announced: int | None = None

    def started(self, sample: int) -> None:
        self._starts.append(sample)

    def ended(self, sample: int) -> None:
        self._ends.add(sample)

    def finalize(self, at: int) -> list[Due]:
        """A ``Finalize`` cut the source at ``at``. The last final of what it flushes — the
        segment the cut ended, or one the VAD ended whose final is still due — will answer it;
        with nothing to flush, it is answered now."""
        answers = self._answer_finalize(at_end=True)  # an earlier Finalize still unanswered
        self._cuts.add(at)
        due = [end for end in self._ends if end > self._locked_end + TOLERANCE]
        if due:
            self._finalizing = max(due)
        else:
            answers.append(Due("finalized", at))
        return answers

    def partial(self, start: int) -> list[Due]:
        """The engine works on a segment starting at ``start``."""
        return self._answer_finalize(before=start)

    def final(
        self, start: int, end: int, last_word_end: int | None, silent_until: int
    ) -> tuple[list[Due], Locked]:
        """A final of ``[start, end)``: what to send before it, and how to state it."""
        before = self._answer_finalize(before=start)
        locked_start = max(start, self._locked_end)
        locked = Locked(
            start=locked_start,
            end=max(locked_start, end),
            speech_final=self._is_endpoint(end, silent_until),
            from_finalize=self._answers_finalize(end),
        )
        self._locked_end = locked.end
        if last_word_end is not None:
            self._last_word_end = max(last_word_end, self._last_word_end or 0)
        self._forget_before(locked.start)
        return before, locked

    def due(self, silent_until: int, *, at_end: bool = False) -> list[Due]:
        """What the silence heard so far (``silent_until``: no speech can have started before
        it unnoticed) has made certain; ``at_end``: the source ended, everything is."""
        found = self._answer_finalize(at_end=True) if at_end else []
        if self._pending_endpoint is not None:
            end = self._pending_endpoint
            silence = self._silence_after(end, silent_until)
            if silence is not None or at_end:
                self._pending_endpoint = None
                if silence is None or self._long_enough(silence):
                    found.append(Due("endpoint", end))
        last = self._last_word_end
        gap = self._rules.utterance_gap
        if gap is not None and last is not None and last != self._announced:
            later = [s for s in self._starts if s > last]
            horizon = min(later) if later else silent_until
            if at_end or horizon - last >= gap:
                self._announced = last
                found.append(Due("utterance_end", last))
        return found

    def _is_endpoint(self, end: int, silent_until: int) -> bool:
        """An endpoint is where the VAD ended the speech (not a ``Finalize``) and the silence
        after it lasts ``endpointing``; when that is not known yet, it becomes due later."""
        if self._rules.endpointing is None:
            return False
        ends = [e for e in self._ends if abs(end - e) <= TOLERANCE and e not in self._cuts]
        if not ends:
            return False
        silence = self._silence_after(ends[0], silent_until)
        if silence is None:
            self._pending_endpoint = ends[0]
            return False
        return self._long_enough(silence)

    def _silence_after(self, end: int, silent_until: int) -> int | None:
        """Silence after the speech that ``end`` closed: known once speech resumed, or once
        long enough."""
        last_speech = end - self._rules.post_roll
        later = [s for s in self._starts if s >= end]
        if later:
            return min(later) - last_speech
        heard = silent_until - last_speech
        return heard if self._long_enough(heard) else None

    def _long_enough(self, silence: int) -> bool:
        return self._rules.endpointing is not None and silence >= self._rules.endpointing

    def _answers_finalize(self, end: int) -> bool:
        if self._finalizing is None or abs(end - self._finalizing) > TOLERANCE:
            return False
        self._finalizing = None
        return True

    def _answer_finalize(self, *, before: int = 0, at_end: bool = False) -> list[Due]:
        """A flushed segment in which the engine found no words has no final: once the engine is
        past it (or the source ended), its ``Finalize`` gets an empty answer."""
        at = self._finalizing
        if at is None or not (at_end or before >= at - TOLERANCE):
            return []
        self._finalizing = None
        return [Due("finalized", at)]

    def _forget_before(self, sample: int) -> None:
        """Boundaries before a locked range are of no more use."""
        keep = sample - TOLERANCE
        self._ends = {s for s in self._ends if s >= keep}
        self._cuts = {s for s in self._cuts if s >= keep}
        self._starts = [s for s in self._starts if s >= keep]
