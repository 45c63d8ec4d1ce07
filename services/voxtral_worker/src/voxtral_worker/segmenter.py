"""Append-only deltas to segment partials and finals, at the capture's speech boundaries.

Everything here is on the source's sample clock; ``stream`` maps tokens onto it (``timeline``).

* A segment opens at a ``SpeechStarted`` sample and closes at the ``SpeechEnded`` sample; its
  final holds every token that transcribes audio before that sample, so it waits until such a
  token has arrived, i.e. until the server had the boundary plus the model's delay. Tokens are
  never split: the cut (``done``) falls on the end of the token that covers the boundary.
* Text outside speech (a late VAD onset) joins the next segment; text at the close of the source
  makes a last final. Partials carry the open segment's text so far and are published only when
  it grows, so a restarted generation never shows a shorter revision.
* Speech longer than ``max_segment`` is cut before its last word, and continues as a new segment.
* A start earlier than ``done`` belongs to audio already finalized (a replay, or a start that
  came before the previous cut): the segment then opens at ``done``, the same on every replay.
* Leading silence is forgotten (``done`` moves) once it is older than ``vad_latency``, so a
  restarted generation does not resend it; a start can never come later than that.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Literal

from echostream_shared.jobs.updates import FinalUpdate, PartialUpdate, ResumePoint, TimedWord

BoundaryKind = Literal["start", "end"]


@dataclass(frozen=True, slots=True)
class CheckpointedFinal:
    """A final and where the stream stands right after it (its checkpoint)."""

    update: FinalUpdate
    resume: ResumePoint


SegmenterOutput = PartialUpdate | CheckpointedFinal


@dataclass(frozen=True, slots=True)
class Token:
    text: str
    start: int
    end: int


class Segmenter:
    """Feed it tokens and boundaries in their own orders; it returns the updates they cause."""

    def __init__(self, resume: ResumePoint | None, *, max_segment: int, vad_latency: int) -> None:
        self.done = resume.done if resume else 0
        state = resume.state if resume else {}
        self._open: int | None = state.get("segment_start")
        self._revision: int = state.get("revision", 0) if self._open is not None else 0
        self._shown = ""
        self._max_segment = max_segment
        self._vad_latency = vad_latency
        self._tokens: list[Token] = []
        self._boundaries: deque[tuple[BoundaryKind, int]] = deque()

    @property
    def in_speech(self) -> bool:
        return self._open is not None or bool(self._boundaries)

    def resume(self) -> ResumePoint:
        state: dict[str, int | None] = {"segment_start": self._open, "revision": self._revision}
        return ResumePoint(self.done, state)

    def restart(self) -> int:
        """A new generation starts at ``done``; tokens after it will come again."""
        self._tokens.clear()
        return self.done

    def on_token(self, text: str, start: int, end: int, *, heard_to: int) -> list[SegmenterOutput]:
        """A token transcribing source ``[start, end)``; the server has audio up to ``heard_to``."""
        self._tokens.append(Token(text, start, end))
        updates = self._advance()
        self._forget_silence(heard_to)
        return updates

    def on_started(self, sample: int) -> list[SegmenterOutput]:
        self._boundaries.append(("start", sample))
        return self._advance()

    def on_ended(self, sample: int) -> list[SegmenterOutput]:
        self._boundaries.append(("end", sample))
        return self._advance()

    def on_closed(self, end_sample: int) -> list[SegmenterOutput]:
        """Every token is in: flush the pending boundaries and the rest of the text."""
        updates = self._advance(closing=True)
        text = self._text(len(self._tokens))
        if text or self._open is not None:
            start = self._open if self._open is not None else self.done
            updates.append(self._final(start, max(end_sample, start), len(self._tokens)))
        self.done = max(self.done, end_sample)
        return updates

    def _advance(self, closing: bool = False) -> list[SegmenterOutput]:
        updates: list[SegmenterOutput] = []
        while self._boundaries:
            kind, sample = self._boundaries[0]
            if kind == "start":
                if self._open is None and sample >= self.done:
                    self._open = sample
                self._boundaries.popleft()
                continue
            if sample <= self.done:
                self._boundaries.popleft()
                continue
            if not closing and (not self._tokens or self._tokens[-1].end < sample):
                break  # the tokens that cover the boundary are still to come
            self._boundaries.popleft()
            cut = sum(1 for token in self._tokens if token.start < sample)
            start = self._open if self._open is not None else self.done
            updates.append(self._final(start, sample, cut))
        updates += self._cut_long_segment()
        if self._open is not None:  # any boundary left is an end still ahead of every token
            updates += self._partial()
        return updates

    def _partial(self) -> list[SegmenterOutput]:
        assert self._open is not None
        text = self._text(len(self._tokens))
        if len(text) <= len(self._shown):
            return []
        self._shown = text
        self._revision += 1
        end = self._tokens[-1].end if self._tokens else self._open
        return [PartialUpdate(self._open, max(end, self._open), self._revision, text)]

    def _cut_long_segment(self) -> list[SegmenterOutput]:
        if self._open is None or not self._tokens:
            return []
        if self._tokens[-1].end - self._open <= self._max_segment:
            return []
        # Cut before the last word start: the word may still be growing.
        starts = [i for i, token in enumerate(self._tokens) if i and token.text[:1].isspace()]
        if not starts or not self._text(starts[-1]):
            return []
        cut = starts[-1]
        return [self._final(self._open, self._tokens[cut].start, cut, still_speaking=True)]

    def _final(
        self, start: int, end: int, cut: int, still_speaking: bool = False
    ) -> CheckpointedFinal:
        text = self._text(cut)
        words = tuple(  # on the segment's span, as every engine's words are
            TimedWord(w.text, min(max(w.start, start), end), min(max(w.end, start), end))
            for w in self._words(cut)
        )
        if cut:
            self.done = max(self.done, self._tokens[cut - 1].end)
        del self._tokens[:cut]
        self._open = self.done if still_speaking else None
        self._revision = 0
        self._shown = ""
        return CheckpointedFinal(FinalUpdate(start, end, text, words), self.resume())

    def _forget_silence(self, heard_to: int) -> None:
        if self.in_speech:
            return
        horizon = heard_to - self._vad_latency
        forget = 0
        for token in self._tokens:
            if token.text or token.end > horizon:
                break
            forget += 1
        if forget:
            self.done = max(self.done, self._tokens[forget - 1].end)
            del self._tokens[:forget]

    def _text(self, count: int) -> str:
        return "".join(token.text for token in self._tokens[:count]).strip()

    def _words(self, count: int) -> tuple[TimedWord, ...]:
        """The first ``count`` tokens as words: a token that starts with a space starts a word."""
        words: list[TimedWord] = []
        for token in self._tokens[:count]:
            if token.text[:1].isspace() or not words:
                if token.text.strip():
                    words.append(TimedWord(token.text.strip(), token.start, token.end))
            elif token.text:
                last = words[-1]
                words[-1] = TimedWord(last.text + token.text, last.start, token.end)
        return tuple(words)
