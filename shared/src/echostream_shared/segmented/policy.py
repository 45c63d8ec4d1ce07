"""The streaming policy for one (session, source) on a batch engine: revisable partials, one
immutable final per segment.

It holds no engine-specific logic: an engine supplies a ``Transcriber``, and the policy decides
what to decode and when. Costs below are whisper.cpp's on tiny.en and 2 cores, which the defaults
were tuned on. A final decodes its segment once (with the window cut to the audio plus a margin,
as accurate as Whisper's full window at ~40 % of its CPU); a one-thread partial of 1-5 s of audio
costs ~0.1-0.4 CPU-s. So:

* a final is decoded once per segment when the capture's VAD says speech ended, or when speech runs
  past ``max_segment_s`` (then the cut falls in the widest word gap near the end and the rest of the
  audio starts the next segment);
* a segment's first partial is tried as soon as ``first_partial_s`` of it is buffered, and retried
  every ``retry_interval_s`` until it shows text (well under a second of speech often decodes to
  nothing); later partials come at most every ``partial_interval_s``;
* partials decode only the recent audio (``partial_window_s``) after a frozen prefix of earlier
  partial words, and only while a CPU token bucket has credit: it earns
  ``partial_cpu_per_audio_s`` CPU-seconds per second of audio, so partial cost per audio second is
  bounded whatever the decode costs, and partials thin out by themselves when decodes get slower.
  A segment's first try always goes and its retries may spend the last ``partial_cpu_reserve_s``;
  later partials may not, so every segment can show text soon after its onset;
* when the job reports lag (``lag_s``) above ``max_lag_for_partials_s`` (workers set it to half
  their ``degrade_lag_s``), partials stop (a segment's first partial tolerates twice that); finals
  never do.

Everything a final depends on (segment starts, cut points, pads) is a function of the audio and the
boundary events alone, never of timing or partials, so a replay from a checkpoint gives the same finals.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import numpy.typing as npt

from echostream_shared.jobs.updates import FinalUpdate, PartialUpdate, TimedWord, Update
from echostream_shared.segmented.agreement import agreed_length, cut_short, published_head
from echostream_shared.segmented.decoding import Decoded, Purpose, Transcriber
from echostream_shared.segmented.guards import boundary_overlap

SAMPLE_RATE = 16_000
ENERGY_FRAME = 320  # 20 ms, to place a forced cut in the quietest spot of a word gap
MAX_GAP_FILL = 2 * SAMPLE_RATE  # a larger jump in the sample clock restarts the buffer


@dataclass(frozen=True, slots=True)
class SegmenterState:
    """What a ``SegmentedStream`` needs to carry on after a final (see ``job_stream``)."""

    done: int  # finals are complete up to this sample: replay audio from here
    in_speech: bool
    segment_start: int | None  # start of the open segment, if any
    events_seen: bool  # False: no VAD events so far, the stream is segmented by length alone
    tail: tuple[TimedWord, ...]  # last words of the finals: boundary dedup, and finals' prompt
    after_cut: bool = False  # the previous final was a forced cut inside speech
    committed_end: int | None = None  # the open segment's words are published up to here

    @property
    def published(self) -> int:
        """Finals are published up to here: a successor replays the audio from this sample."""
        return self.done if self.committed_end is None else max(self.done, self.committed_end)


@dataclass(frozen=True, slots=True)
class SegmentPolicy:
    """When partials and finals are decoded; the defaults suit tiny.en on 2 cores."""

    max_segment_s: float = 25.0  # with the pad, still inside Whisper's 30 s window
    min_segment_s: float = 0.25  # shorter VAD segments are not decoded (Whisper invents text)
    pad_s: float = 0.2  # audio a partial decodes before a VAD onset, in case it clipped one
    # audio a final decodes before its segment's VAD onset, never before the last final: the VAD
    # clips onsets and misses quiet words between segments, and Whisper starts better on a lead
    final_lead_s: float = 0.2
    first_partial_s: float = 0.6  # segment audio (with the VAD's pre-roll) before the first try
    retry_interval_s: float = 0.2  # until a segment shows text: ~0.5 s of speech often gives none
    partial_interval_s: float = 1.0  # later, at most one partial per this much new audio
    partial_window_s: float = 5.0  # partials decode at most this much recent audio
    partial_cpu_per_audio_s: float = 0.06  # ~0.5x offline decoding: CPU-s per audio second
    partial_cpu_burst_s: float = 1.2  # bucket size: a first partial plus a full-window one
    partial_cpu_reserve_s: float = 0.3  # only first partials may dip below this: they matter most
    max_lag_for_partials_s: float = 1.0
    # None: a segment's words are published by its final. Otherwise the words two successive
    # partials agree on, spoken at least this long before the newer one's end, are published as
    # a final at once; the segment's own final, decoded over all its audio as before, carries on
    # after them (the audio is not cut, so accuracy keeps the whole segment's context)
    commit_after_s: float | None = None
    cut_search_s: float = 6.0  # a forced cut takes the widest word gap in this last stretch...
    cut_margin_s: float = 1.0  # ...but not in the final second, whose words may be truncated
    tail_words: int = 8
    # a final is decoded with this many words of the finals before it as Whisper's prompt (the
    # text an offline decode conditions on); 0: no prompt
    final_prompt_words: int = 0
    dedup_max_gap_s: float = 1.0  # head words this close to the previous final may repeat it
    idle_keep_s: float = 2.0  # audio kept outside speech (and the lead), for a boundary in the past
    # CPU-s of a partial ~ a + b * audio seconds (whisper.cpp tiny.en, one thread, 2 cores); each
    # stream scales it by what its decodes actually cost, to predict whether a partial fits the budget
    partial_cost_shape: tuple[float, float] = (0.15, 0.065)


@dataclass(slots=True)
class StreamStats:
    audio_s: float = 0.0
    partial_decodes: int = 0
    partial_cpu_s: float = 0.0
    final_decodes: int = 0
    final_cpu_s: float = 0.0
    # partials due but not decoded; one per due partial, however many chunks it stays skipped
    partials_skipped_budget: int = 0
    partials_skipped_lag: int = 0


@dataclass(slots=True)
class _PartialState:
    revision: int = 0
    shown_before: int = 0  # revisions of the segment's words published early (their ids are gone)
    attempts: int = 0
    last_end: int = 0  # audio end of the last partial decode
    text: str = ""
    frozen: list[TimedWord] = field(default_factory=list)  # kept from earlier windows
    hypothesis: list[TimedWord] = field(default_factory=list)  # words of the last partial
    confirmed: int = 0  # the hypothesis's first words that two decodes agree on
    skipped: bool = False  # the partial now due was already counted as skipped


def _samples(seconds: float) -> int:
    return round(seconds * SAMPLE_RATE)


class SegmentedStream:
    """Feed it audio and VAD events in stream order; it returns the transcript updates they cause."""

    def __init__(
        self,
        transcriber: Transcriber,
        config: SegmentPolicy | None = None,
        resume: SegmenterState | None = None,
    ) -> None:
        self.transcriber = transcriber
        self.config = config or SegmentPolicy()
        self.lag_s = 0.0  # set by the job: how far behind real time this stream is
        self.stats = StreamStats()
        self._buf = np.zeros(0, dtype=np.int16)
        self._buf_start = 0
        self._done = 0
        self._in_speech = False
        self._events_seen = False
        self._seg_start = 0
        self._tail: tuple[TimedWord, ...] = ()
        self._after_cut = False  # the open segment starts where a forced cut ended the last one
        self._committed: list[TimedWord] = []  # the open segment's words published early
        self._commit_end = 0  # ...up to this sample
        self._partial = _PartialState()
        self._credit = self.config.partial_cpu_burst_s
        self._cost_scale = 1.0
        self._closed = False
        self._language = "en"
        if resume is not None:
            self._resume(resume)

    # -- inputs --------------------------------------------------------------------------------

    async def on_audio(self, first_sample: int, pcm: npt.NDArray[np.int16]) -> list[Update]:
        added = self._append(first_sample, np.asarray(pcm, dtype=np.int16).reshape(-1))
        self.stats.audio_s += added / SAMPLE_RATE
        cfg = self.config
        self._credit = min(
            cfg.partial_cpu_burst_s,
            self._credit + cfg.partial_cpu_per_audio_s * added / SAMPLE_RATE,
        )
        updates = await self._cut_long(self._buf_end)
        if not updates and added:
            updates += await self._maybe_partial()
        self._trim()
        return updates

    async def on_speech_started(self, sample: int) -> list[Update]:
        updates: list[Update] = []
        if not self._events_seen:  # the length-only segment ends where the VAD puts speech
            self._events_seen = True
            updates += await self._close(max(sample, self._seg_start))
        if self._in_speech or self._closed:
            return updates
        self._in_speech = True
        self._seg_start = max(sample, self._done)
        self._partial = _PartialState(last_end=self._seg_start)
        return updates

    async def on_speech_ended(self, sample: int) -> list[Update]:
        """Closes the open segment; an end at or before finished finals (a replayed event, or the
        end of speech that a forced cut already passed) only ends the speech state."""
        speaking = self._speaking
        self._events_seen = True
        updates = await self._close(sample) if speaking and sample > self._done else []
        self._in_speech = False
        self._trim()
        return updates

    async def on_closed(self, last_sample: int) -> list[Update]:
        updates = await self._close(max(last_sample, self._done)) if self._speaking else []
        self._in_speech = False
        self._closed = True
        return updates

    def state(self) -> SegmenterState:
        seg = self._seg_start if self._speaking else None
        if self._speaking and self._committed:  # a successor carries on after them
            tail = tuple([*self._tail, *self._committed][-self._tail_length :])
            return SegmenterState(
                self._done, self._in_speech, seg, self._events_seen, tail, True, self._commit_end
            )
        return SegmenterState(
            self._done, self._in_speech, seg, self._events_seen, self._tail, self._after_cut
        )

    # -- finals --------------------------------------------------------------------------------

    @property
    def _tail_length(self) -> int:
        return max(self.config.tail_words, self.config.final_prompt_words)

    @property
    def _speaking(self) -> bool:
        return not self._closed and (self._in_speech or not self._events_seen)

    @property
    def _open_from(self) -> int:
        """Where the open segment's next final starts: after its words published early."""
        return self._commit_end if self._committed else self._seg_start

    async def _cut_long(self, until: int) -> list[Update]:
        """Forced finals while the open segment is longer than the maximum."""
        updates: list[Update] = []
        max_len = _samples(self.config.max_segment_s)
        while self._speaking and until - self._seg_start > max_len:
            window_end = self._seg_start + max_len
            decoded, origin = await self._decode(
                self._seg_start, window_end, "final", self._final_prompt()
            )
            words = self._words(decoded, origin, self._seg_start, window_end)
            cut = self._cut_point(words, window_end)
            kept = [replace(w, end=min(w.end, cut)) for w in words if (w.start + w.end) // 2 < cut]
            updates += self._finalize(cut, kept, decoded)
            self._after_cut = True
        return updates

    async def _close(self, end: int) -> list[Update]:
        """The final of the open segment, ending at ``end`` (never before its published words)."""
        end = max(end, self._open_from)
        updates = await self._cut_long(end)
        if end - self._seg_start < _samples(self.config.min_segment_s):
            updates += self._finalize(max(end, self._seg_start), [], None)
            return updates
        decoded, origin = await self._decode(self._seg_start, end, "final", self._final_prompt())
        updates += self._finalize(end, self._words(decoded, origin, self._seg_start, end), decoded)
        return updates

    def _finalize(self, end: int, words: list[TimedWord], decoded: Decoded | None) -> list[Update]:
        start = self._open_from
        words = self._unpublished(words, start)
        published = [*self._committed, *words]
        self._committed = []
        self._after_cut = False
        text = " ".join(w.text for w in words)
        shown = self._partial.revision - self._partial.shown_before  # partials under this id
        self._done = end
        self._seg_start = end
        self._partial = _PartialState(last_end=end)
        if published:
            self._tail = tuple([*self._tail, *published][-self._tail_length :])
        if decoded is not None:
            self._language = decoded.language
        if not text and shown == 0:
            return []
        known = [w.probability for w in words if w.probability is not None]
        confidence = float(np.mean(known)) if known else None
        return [FinalUpdate(start, end, text, tuple(words), confidence, self._language)]

    def _final_prompt(self) -> str | None:
        count = self.config.final_prompt_words
        if count == 0:
            return None
        return " ".join(w.text for w in self._tail[-count:]) or None

    def _dedup(self, words: list[TimedWord]) -> list[TimedWord]:
        """After a forced cut, drop head words that repeat the previous final's tail.

        Only a cut inside speech can make Whisper hear a word twice; VAD segments share no audio.
        """
        if not words or not self._tail or not self._after_cut:
            return words
        if words[0].start - self._tail[-1].end > _samples(self.config.dedup_max_gap_s):
            return words
        drop = boundary_overlap([w.text for w in self._tail], [w.text for w in words])
        return words[drop:]

    def _cut_point(self, words: list[TimedWord], window_end: int) -> int:
        """Where a forced final ends: the widest word gap near the end, at its quietest 20 ms."""
        cfg = self.config
        lo = max(window_end - _samples(cfg.cut_search_s), self._open_from + 1)
        hi = max(window_end - _samples(cfg.cut_margin_s), lo + ENERGY_FRAME)
        best: tuple[int, int, int] | None = None  # (gap, left word end, right word start)
        for left, right in zip(words, [*words[1:], None], strict=True):
            if not lo <= left.end <= hi:
                continue
            right_start = right.start if right is not None else hi
            gap = right_start - left.end
            if best is None or gap >= best[0]:
                best = (gap, left.end, max(right_start, left.end))
        if best is None:
            return self._quietest(lo, hi)
        pad = _samples(0.15)
        return self._quietest(max(lo, best[1] - pad), min(hi, best[2] + pad))

    def _quietest(self, lo: int, hi: int) -> int:
        """Centre of the quietest 20 ms frame in [lo, hi) (deterministic: audio only)."""
        audio = self._slice(lo, hi).astype(np.float64)
        n = len(audio) // ENERGY_FRAME
        if n == 0:
            return hi
        energy = np.square(audio[: n * ENERGY_FRAME]).reshape(n, ENERGY_FRAME).sum(axis=1)
        return lo + int(np.argmin(energy)) * ENERGY_FRAME + ENERGY_FRAME // 2

    # -- partials ------------------------------------------------------------------------------

    async def _maybe_partial(self) -> list[Update]:
        if not self._partial_due():
            return []
        cfg = self.config
        # the previous final's decode leaves a stream ~1.5 s behind at the next onset: a first
        # partial may still go then, later ones wait until the stream has caught up
        if self.lag_s > cfg.max_lag_for_partials_s * (2 if self._partial.revision == 0 else 1):
            self._count_skip("lag")
            return []
        now = self._buf_end
        start, frozen = self._partial_window(now)
        if not self._affordable((now - start) / SAMPLE_RATE):
            self._count_skip("budget")
            return []
        prompt = " ".join(w.text for w in frozen[-cfg.tail_words :]) or None
        decoded, origin = await self._decode(start, now, "partial", prompt)
        self._charge(decoded)
        words = self._words(decoded, origin, start, now)
        state = self._partial
        state.attempts += 1
        state.skipped = False
        previous = state.hypothesis
        state.last_end, state.frozen, state.hypothesis = now, frozen, [*frozen, *words]
        # frozen words were decoded once, by an earlier partial: they count as far as that
        # partial's own agreement with its predecessor reached
        agreed = agreed_length([w.text for w in state.hypothesis], [w.text for w in previous])
        state.confirmed = agreed if state.confirmed >= len(frozen) else state.confirmed
        covered = start <= (frozen[-1].end if frozen else self._seg_start)
        commits = self._commit_settled(previous, state.hypothesis, now) if covered else []
        text = self._settled(
            self._unpublished(state.hypothesis, self._open_from),
            self._unpublished(previous, self._open_from),
        )
        if not text or text == state.text:
            return commits
        state.revision += 1
        state.text = text
        revision = state.revision - state.shown_before
        return [*commits, PartialUpdate(self._open_from, now, revision, text)]

    def _settled(self, current: list[TimedWord], previous: list[TimedWord]) -> str:
        """What a partial shows of ``current``: a segment's first text whole (up to a word heard
        only in part); later, the words shown already that ``current`` still holds, extended by
        words two decodes agree on. Shown words are taken back only when two decodes agree on
        something else: a decode that merely stops earlier (its window cut a word, or it did not
        hear the last one yet) leaves the text as it is, for the next decode or the final to
        settle (a whole new hypothesis every partial made clients show words that the next
        dropped, and a shorter one made them drop words that the next showed again)."""
        texts = [w.text for w in current]
        if self._partial.revision == 0:
            return " ".join(texts[: cut_short(texts)])
        shown = self._partial.text.split()
        agreed = agreed_length(texts, [w.text for w in previous])
        kept = agreed_length(texts, shown)
        settled = min(max(agreed, kept), cut_short(texts))
        if agreed <= kept and settled <= len(shown):
            return self._partial.text
        return " ".join(texts[:settled])

    def _commit_settled(
        self, previous: list[TimedWord], current: list[TimedWord], now: int
    ) -> list[Update]:
        """Publish the words of ``current`` that ``previous`` agrees on and that were spoken at
        least ``commit_after_s`` before ``now``, as a final from the last words published."""
        after = self.config.commit_after_s
        if after is None or not previous:
            return []
        start = self._open_from
        fresh = self._unpublished(current, start)
        before = self._unpublished(previous, start)
        texts = [w.text for w in fresh]
        confirmed = self._partial.confirmed - (len(current) - len(fresh))
        settled = max(
            0, min(agreed_length(texts, [w.text for w in before]), cut_short(texts), confirmed)
        )
        limit = now - _samples(after)
        count = next((i for i, w in enumerate(fresh[:settled]) if w.end > limit), settled)
        if count == 0:
            return []
        words = fresh[:count]
        end = words[-1].end
        if count < len(fresh):  # midway into the pause before the next word
            end = max(end, (end + fresh[count].start) // 2)
        if end <= start:  # words the pad before the segment held: nothing to cut yet
            return []
        words = [replace(w, end=min(w.end, end)) for w in words]
        self._committed += words
        self._commit_end = end
        self._partial.text = ""  # the open segment's partials now start after these words...
        self._partial.shown_before = self._partial.revision  # ...under a new id, from revision 1
        known = [w.probability for w in words if w.probability is not None]
        confidence = float(np.mean(known)) if known else None
        text = " ".join(w.text for w in words)
        return [FinalUpdate(start, end, text, tuple(words), confidence, self._language)]

    def _unpublished(self, words: list[TimedWord], start: int) -> list[TimedWord]:
        """The decoded words of the open segment not yet in a final, placed from ``start``: after
        a repeat of the previous final's tail, and after the segment's words published early."""
        words = self._dedup(words)
        if not self._committed:
            return words
        head = published_head([w.text for w in self._committed], [w.text for w in words])
        return [replace(w, start=max(w.start, start), end=max(w.end, start)) for w in words[head:]]

    def _count_skip(self, reason: Literal["lag", "budget"]) -> None:
        if self._partial.skipped:
            return
        self._partial.skipped = True
        if reason == "lag":
            self.stats.partials_skipped_lag += 1
        else:
            self.stats.partials_skipped_budget += 1

    def _affordable(self, audio_s: float) -> bool:
        """A segment's first try always goes (it is the cheapest, ~1 s of audio); until the segment
        shows text any credit will do; later partials leave the reserve."""
        if self._partial.attempts == 0:
            return True
        if self._partial.revision == 0:
            return self._credit > 0
        a, b = self.config.partial_cost_shape
        predicted = self._cost_scale * (a + b * audio_s)
        return self._credit - predicted >= self.config.partial_cpu_reserve_s

    def _charge(self, decoded: Decoded) -> None:
        self._credit -= decoded.cpu_s
        if decoded.cpu_s > 0:  # learn how this machine compares with the cost shape
            a, b = self.config.partial_cost_shape
            self._cost_scale += 0.3 * (decoded.cpu_s / (a + b * decoded.audio_s) - self._cost_scale)

    def _partial_due(self) -> bool:
        if not self._speaking:
            return False
        state, now = self._partial, self._buf_end
        if state.attempts == 0:
            return now - self._seg_start >= _samples(self.config.first_partial_s)
        interval = (
            self.config.retry_interval_s if state.revision == 0 else self.config.partial_interval_s
        )
        return now - state.last_end >= _samples(interval)

    def _partial_window(self, now: int) -> tuple[int, list[TimedWord]]:
        """Start of the audio to decode and the words before it, frozen from earlier partials."""
        window = _samples(self.config.partial_window_s)
        state = self._partial
        if now - self._seg_start <= window:
            return self._seg_start, []
        frozen = list(state.frozen)
        for word in state.hypothesis[len(frozen) :]:
            if word.end > now - window // 2:
                break
            frozen.append(word)
        start = frozen[-1].end if frozen else self._seg_start
        return max(start, now - window), frozen

    # -- audio ---------------------------------------------------------------------------------

    @property
    def _buf_end(self) -> int:
        return self._buf_start + len(self._buf)

    async def _decode(
        self, start: int, end: int, purpose: Purpose, prompt: str | None = None
    ) -> tuple[Decoded, int]:
        """Decode [start, end), with the lead before a segment start; returns it and its origin."""
        pad = _samples(self.config.final_lead_s if purpose == "final" else self.config.pad_s)
        origin = max(start - pad, self._done) if start == self._seg_start else start
        audio = self._slice(origin, end).astype(np.float32) / 32768.0
        decoded = await self.transcriber.transcribe(audio, purpose=purpose, prompt=prompt)
        if purpose == "final":
            self.stats.final_decodes += 1
            self.stats.final_cpu_s += decoded.cpu_s
        else:
            self.stats.partial_decodes += 1
            self.stats.partial_cpu_s += decoded.cpu_s
        return decoded, origin

    @staticmethod
    def _words(decoded: Decoded, origin: int, start: int, end: int) -> list[TimedWord]:
        """Decoded words on the source clock, clamped to [start, end].

        All are kept: Whisper's word times run late, so a segment's last word often "starts" after
        a tight VAD end; and the pads hold audio that no other final decodes.
        """
        words = []
        for w in decoded.words:
            w_start = min(max(origin + _samples(w.start_s), start), end)
            w_end = min(max(origin + _samples(w.end_s), w_start), end)
            words.append(TimedWord(w.text, w_start, w_end, w.probability))
        return words

    def _slice(self, start: int, end: int) -> npt.NDArray[np.int16]:
        """Audio [start, end), zeros where the buffer has none."""
        out = np.zeros(max(0, end - start), dtype=np.int16)
        lo, hi = max(start, self._buf_start), min(end, self._buf_end)
        if hi > lo:
            out[lo - start : hi - start] = self._buf[lo - self._buf_start : hi - self._buf_start]
        return out

    def _append(self, first: int, pcm: npt.NDArray[np.int16]) -> int:
        """Add a chunk; returns how many new samples it brought (replayed audio brings none).

        ``_buf_end`` is always the end of the audio received so far (the checkpoint after a resume).
        """
        skip = self._buf_end - first
        if skip >= len(pcm):
            return 0
        if skip > 0:
            pcm, first = pcm[skip:], first + skip
        gap = first - self._buf_end
        if gap > MAX_GAP_FILL:
            self._buf, self._buf_start = pcm.copy(), first
            return len(pcm)
        self._buf = np.concatenate([self._buf, np.zeros(gap, dtype=np.int16), pcm])
        return gap + len(pcm)

    def _trim(self) -> None:
        """Keep only what a future decode can need: the open segment, or a little recent audio."""
        cfg = self.config
        end = self._buf_end
        lead = max(cfg.pad_s, cfg.final_lead_s)  # the most any decode reads before an onset
        if self._speaking:
            keep = max(self._done, self._seg_start - _samples(lead))
        else:
            # a boundary may lie up to idle_keep_s in the past, and a final's lead before it
            self._done = max(self._done, end - _samples(cfg.idle_keep_s + lead))
            keep = self._done
        keep = min(keep, end)
        if keep > self._buf_start:
            self._buf = self._buf[keep - self._buf_start :].copy()
            self._buf_start = keep

    def _resume(self, ckpt: SegmenterState) -> None:
        # words published early are final: carry on after them, as after a forced cut
        self._done = self._buf_start = ckpt.published
        self._in_speech = ckpt.in_speech
        self._events_seen = ckpt.events_seen
        self._seg_start = ckpt.segment_start if ckpt.segment_start is not None else ckpt.done
        self._seg_start = max(self._seg_start, self._done)
        self._tail = ckpt.tail
        self._after_cut = ckpt.after_cut
        self._partial = _PartialState(last_end=self._seg_start)
