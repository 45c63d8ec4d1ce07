"""The streaming policy: first with a scripted recogniser (fast, exact), then with tiny.en on real speech.

Runs are compute-aware simulations: audio arrives in 100 ms chunks at its real-time instant, each
decode delays what follows by its wall time, and VAD events arrive after the audio that reveals them
(onset 0.1 s late, end after a 0.3 s hangover), so their boundary lies in audio already received.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from speech_corpus import (
    chapter,
    item,
    normalize,
    passage,
    read_wav,
    require_whisper_model,
    to_float32,
    wer,
)

from echostream_shared.jobs.updates import FinalUpdate, PartialUpdate, Update
from echostream_shared.segmented.decoding import Decoded, DecodedWord, Purpose
from echostream_shared.segmented.job_stream import resume_point
from echostream_shared.segmented.policy import SegmentedStream, SegmenterState, SegmentPolicy
from whisper_worker.transcriber import TranscriberConfig, WhisperTranscriber

SR = 16_000


# -- simulation ------------------------------------------------------------------------------


@dataclass
class Run:
    emitted: list[tuple[float, Update]] = field(default_factory=list)
    checkpoints: list[SegmenterState] = field(default_factory=list)  # after each final
    cpu_s: float = 0.0
    final_latency_s: list[float] = field(default_factory=list)  # after the speech_ended event
    first_text_latency_s: list[float] = field(
        default_factory=list
    )  # onset -> first partial or final
    finals_before_partial: int = 0  # segments whose first text was the final (no partial in time)

    @property
    def finals(self) -> list[FinalUpdate]:
        return [u for _, u in self.emitted if isinstance(u, FinalUpdate)]

    @property
    def partials(self) -> list[PartialUpdate]:
        return [u for _, u in self.emitted if isinstance(u, PartialUpdate)]

    @property
    def text(self) -> str:
        return " ".join(f.text for f in self.finals if f.text)


async def simulate(
    stream: SegmentedStream,
    pcm: npt.NDArray[np.int16],
    spans: list[tuple[int, int]] | None,
    *,
    start: int = 0,
    chunk_s: float = 0.1,
    onset_delay_s: float = 0.1,
    hangover_s: float = 0.3,
    lag_s: float | None = None,
) -> Run:
    """Feed ``pcm`` and the VAD events of ``spans``; ``lag_s`` pins the reported lag.

    With ``start``, it replays as the bus would: from the chunk holding ``start`` on, with only the
    events published after that chunk.
    """
    run = Run()
    events = sorted(
        [(s + int(onset_delay_s * SR), 0, s) for s, _ in spans or []]
        + [(e + int(hangover_s * SR), 1, e) for _, e in spans or []]
    )
    chunk = int(chunk_s * SR)
    clock = start / SR
    onset: int | None = None
    cpu0 = time.process_time()

    async def step(arrival: float, call: Awaitable[list[Update]], ended: bool = False) -> None:
        nonlocal clock, onset
        clock = max(clock, arrival)
        stream.lag_s = clock - arrival if lag_s is None else lag_s
        began = time.perf_counter()
        updates = await call
        clock += time.perf_counter() - began
        for update in updates:
            run.emitted.append((clock, update))
            if isinstance(update, FinalUpdate):
                run.checkpoints.append(stream.state())
                if ended:
                    run.final_latency_s.append(clock - arrival)
            if onset is not None and update.segment_start >= onset and update.text:
                run.first_text_latency_s.append(clock - onset / SR)
                run.finals_before_partial += isinstance(update, FinalUpdate)
                onset = None

    pos = start - start % chunk
    events = [e for e in events if e[0] > pos]
    while pos < len(pcm):
        end = min(pos + chunk, len(pcm))
        await step(end / SR, stream.on_audio(pos, pcm[pos:end]))
        pos = end
        while events and (events[0][0] <= pos or pos == len(pcm)):
            _, kind, boundary = events.pop(0)
            if kind == 0:
                onset = boundary
                await step(pos / SR, stream.on_speech_started(boundary))
            else:
                await step(pos / SR, stream.on_speech_ended(boundary), ended=True)
    await step(len(pcm) / SR, stream.on_closed(len(pcm)))
    run.cpu_s = time.process_time() - cpu0
    return run


def assert_well_formed(run: Run) -> None:
    """One immutable final per segment, in order, no overlap; partials precede their final."""
    finals = run.finals
    starts = [f.segment_start for f in finals]
    assert starts == sorted(set(starts)), "one final per segment, in order"
    for a, b in zip(finals, finals[1:], strict=False):
        assert a.segment_end <= b.segment_start
    for f in finals:
        assert f.segment_start <= f.segment_end
        assert all(f.segment_start <= w.start <= w.end <= f.segment_end for w in f.words)
    final_at = {
        f.segment_start: i for i, (_, f) in enumerate(run.emitted) if isinstance(f, FinalUpdate)
    }
    revisions: dict[int, list[int]] = {}
    for i, (_, update) in enumerate(run.emitted):
        if isinstance(update, PartialUpdate):
            assert update.segment_start in final_at and i < final_at[update.segment_start]
            revisions.setdefault(update.segment_start, []).append(update.revision)
    for revs in revisions.values():
        assert revs == list(range(1, len(revs) + 1))


# -- a scripted recogniser -------------------------------------------------------------------
# "Speech" is a run of constant-valued bursts; burst value v is the word "w<v>". The fake
# recogniser reads them back exactly, with exact times, so the policy can be checked word by word.


@dataclass
class FakeTranscriber:
    partial_cpu_s: float = 0.2
    final_cpu_s: float = 1.0
    calls: list[tuple[Purpose, float, str | None]] = field(default_factory=list)

    async def transcribe(
        self, audio: npt.NDArray[np.float32], *, purpose: Purpose, prompt: str | None = None
    ) -> Decoded:
        self.calls.append((purpose, len(audio) / SR, prompt))
        values = np.rint(audio * 32768).astype(np.int64)
        edges = np.flatnonzero(np.diff(np.concatenate([[0], values, [0]])) != 0)
        words = [
            DecodedWord(f"w{values[a]}", a / SR, b / SR, 1.0)
            for a, b in zip(edges[:-1], edges[1:], strict=True)
            if values[a] > 0
        ]
        cpu = self.partial_cpu_s if purpose == "partial" else self.final_cpu_s
        text = " ".join(w.text for w in words)
        decoded = Decoded(
            text, tuple(words), "en", 1.0 if words else None, cpu, cpu, len(audio) / SR, 0, purpose
        )
        return self.revise(decoded)

    def revise(self, decoded: Decoded) -> Decoded:
        """What a variant makes of the exact decode (``calls`` already holds this one)."""
        return decoded


def scripted_speech(
    n_words: int, seed: int = 0, lead_s: float = 0.5
) -> tuple[npt.NDArray[np.int16], list[str]]:
    """``n_words`` bursts of 0.2-0.5 s separated by 0.05-0.3 s gaps."""
    rng = np.random.default_rng(seed)
    parts = [np.zeros(int(lead_s * SR), dtype=np.int16)]
    for value in range(1, n_words + 1):
        parts.append(np.full(int(rng.uniform(0.2, 0.5) * SR), value, dtype=np.int16))
        parts.append(np.zeros(int(rng.uniform(0.05, 0.3) * SR), dtype=np.int16))
    return np.concatenate(parts), [f"w{v}" for v in range(1, n_words + 1)]


def words_of(run: Run) -> list[str]:
    return [w.text for f in run.finals for w in f.words]


async def test_scripted_segments_give_one_final_each_with_partials_first() -> None:
    pcm, words = scripted_speech(30)
    spans = [(int(0.4 * SR), int(4.0 * SR)), (int(5.0 * SR), len(pcm) - SR // 4)]
    pcm[int(4.0 * SR) : int(5.0 * SR)] = 0  # a real pause between the two segments
    run = await simulate(SegmentedStream(FakeTranscriber()), pcm, spans)
    assert_well_formed(run)
    assert [f.segment_start for f in run.finals] == [s for s, _ in spans]
    assert [f.segment_end for f in run.finals] == [e for _, e in spans]
    heard = pcm[: spans[-1][1]]
    assert words_of(run) == [f"w{v}" for v in dict.fromkeys(heard[heard > 0].tolist())]
    assert len(run.partials) >= 2
    for partial in run.partials:  # partials revise the segment's text so far
        assert partial.text.split()[0] in {"w1", run.finals[1].words[0].text}


async def test_scripted_long_speech_is_cut_between_words_without_loss_or_duplicates() -> None:
    pcm, words = scripted_speech(120)  # about 60 s of uninterrupted "speech"
    config = SegmentPolicy(max_segment_s=20.0)
    run = await simulate(SegmentedStream(FakeTranscriber(), config), pcm, [(0, len(pcm))])
    assert_well_formed(run)
    assert words_of(run) == words
    assert len(run.finals) >= 3 and all(
        f.segment_end - f.segment_start <= 20 * SR for f in run.finals
    )
    for a, b in zip(run.finals, run.finals[1:], strict=False):
        assert a.segment_end == b.segment_start
        cut = a.segment_end
        assert pcm[cut] == 0 and a.words[-1].end <= cut <= b.words[0].start  # inside a word gap


async def test_scripted_cut_prefers_the_widest_gap_near_the_end() -> None:
    pcm, _ = scripted_speech(80, seed=3)
    config = SegmentPolicy(max_segment_s=20.0, cut_search_s=6.0, cut_margin_s=1.0)
    run = await simulate(SegmentedStream(FakeTranscriber(), config), pcm, [(0, len(pcm))])
    first = run.finals[0]
    nxt = run.finals[1].words[0]
    chosen_gap = nxt.start - first.words[-1].end
    window = [
        (b.start - a.end)
        for f in run.finals[:2]
        for a, b in zip(f.words, f.words[1:], strict=False)
        if 14 * SR <= a.end <= 19 * SR
    ]
    assert chosen_gap >= max(window) - SR // 100


async def test_without_vad_events_long_audio_still_produces_finals() -> None:
    pcm, words = scripted_speech(100)
    run = await simulate(SegmentedStream(FakeTranscriber()), pcm, None)
    assert_well_formed(run)
    assert words_of(run) == words
    assert run.finals[0].segment_start == 0 and len(run.finals) >= 3
    assert run.finals[-1].segment_end == len(pcm)  # the last one comes with on_closed


async def test_first_vad_event_ends_the_unsegmented_stretch() -> None:
    pcm, words = scripted_speech(10, lead_s=2.0)
    stream = SegmentedStream(FakeTranscriber())
    updates = await stream.on_audio(0, pcm[: 3 * SR])
    updates += await stream.on_speech_started(int(1.9 * SR))  # the boundary is in the past
    updates += await stream.on_audio(3 * SR, pcm[3 * SR :])
    updates += await stream.on_speech_ended(len(pcm))
    finals = [u for u in updates if isinstance(u, FinalUpdate) and u.text]
    assert [f.segment_start for f in finals] == [int(1.9 * SR)]
    assert [w.text for w in finals[0].words] == words
    partial_starts = {u.segment_start for u in updates if isinstance(u, PartialUpdate)}
    retracted = [u for u in updates if isinstance(u, FinalUpdate) and not u.text]
    assert {f.segment_start for f in retracted} == partial_starts - {int(1.9 * SR)}


async def test_speech_start_before_received_audio_keeps_that_audio() -> None:
    pcm, words = scripted_speech(6, lead_s=1.0)
    stream = SegmentedStream(FakeTranscriber())
    await stream.on_speech_ended(0)  # capture's VAD is on: no unsegmented stretch
    await stream.on_audio(0, pcm[: int(1.6 * SR)])
    await stream.on_speech_started(int(0.9 * SR))
    await stream.on_audio(int(1.6 * SR), pcm[int(1.6 * SR) :])
    finals = await stream.on_speech_ended(len(pcm))
    assert isinstance(finals[-1], FinalUpdate)
    assert [w.text for w in finals[-1].words] == words and finals[-1].segment_start == int(0.9 * SR)


async def test_speech_end_behind_a_forced_cut_ends_the_speech_state() -> None:
    pcm, words = scripted_speech(70)
    stream = SegmentedStream(FakeTranscriber(), SegmentPolicy(max_segment_s=10.0))
    await stream.on_speech_started(0)
    updates = await stream.on_audio(0, pcm[: 25 * SR])
    cut = stream.state().done
    assert cut > 10 * SR
    updates += await stream.on_speech_ended(cut - SR)  # the VAD end, delivered late
    assert not stream.state().in_speech
    updates += await stream.on_audio(25 * SR, pcm[25 * SR :])  # no speech: nothing decoded
    updates += await stream.on_closed(len(pcm))
    finals = [u for u in updates if isinstance(u, FinalUpdate)]
    assert finals and finals[-1].segment_end == cut


async def test_replayed_and_overlapping_chunks_are_ignored() -> None:
    pcm, words = scripted_speech(8)
    fake = FakeTranscriber()
    stream = SegmentedStream(fake)
    await stream.on_speech_started(0)
    half = len(pcm) // 2
    await stream.on_audio(0, pcm[:half])
    await stream.on_audio(0, pcm[: half // 2])  # a redelivered chunk
    await stream.on_audio(half - 800, pcm[half - 800 :])  # overlaps what we have
    finals = await stream.on_speech_ended(len(pcm))
    assert [w.text for f in finals if isinstance(f, FinalUpdate) for w in f.words] == words
    assert stream.stats.audio_s == pytest.approx(len(pcm) / SR)


async def test_resume_from_any_checkpoint_reproduces_the_finals() -> None:
    pcm, _ = scripted_speech(90, seed=5)
    spans = [(int(0.3 * SR), int(14.0 * SR)), (int(15.0 * SR), len(pcm) - SR // 2)]
    pcm[int(14.0 * SR) : int(15.0 * SR)] = 0
    config = SegmentPolicy(max_segment_s=8.0)
    full = await simulate(SegmentedStream(FakeTranscriber(), config), pcm, spans)
    assert len(full.finals) >= 5
    for k, ckpt in enumerate(full.checkpoints[:-1]):
        for early_s in (0.0, 3.0):  # the bus may replay from before the checkpoint
            start = max(0, ckpt.done - int(early_s * SR))
            stream = SegmentedStream(FakeTranscriber(), config, resume=ckpt)
            resumed = await simulate(stream, pcm, spans, start=start)
            assert resumed.finals == full.finals[k + 1 :], (
                f"resume after final {k}, {early_s} s early"
            )


async def test_checkpoint_round_trip_inside_speech() -> None:
    pcm, _ = scripted_speech(60)
    full = await simulate(SegmentedStream(FakeTranscriber()), pcm, [(0, len(pcm))])
    mid = full.checkpoints[0]
    assert mid.in_speech and mid.segment_start == mid.done == full.finals[0].segment_end
    assert mid.tail == full.finals[0].words[-SegmentPolicy().tail_words :]


async def test_partials_respect_the_cpu_budget() -> None:
    pcm, _ = scripted_speech(80)
    config = SegmentPolicy(
        partial_cpu_per_audio_s=0.05, partial_cpu_burst_s=0.6, max_segment_s=25.0
    )
    fake = FakeTranscriber(partial_cpu_s=0.3)
    stream = SegmentedStream(fake, config)
    run = await simulate(stream, pcm, [(0, len(pcm))])
    audio_s = len(pcm) / SR
    assert stream.stats.partial_cpu_s <= 0.05 * audio_s + 0.6 + 0.3
    assert stream.stats.partials_skipped_budget > 0 and run.partials


async def test_cheap_partials_come_at_the_configured_cadence() -> None:
    pcm, _ = scripted_speech(20)
    fake = FakeTranscriber(partial_cpu_s=0.001)
    await simulate(
        SegmentedStream(fake, SegmentPolicy(partial_interval_s=1.0)), pcm, [(0, len(pcm))]
    )
    partial_calls = [c for c in fake.calls if c[0] == "partial"]
    assert len(partial_calls) == pytest.approx(len(pcm) / SR - 0.6, abs=1.5)
    assert max(c[1] for c in partial_calls) <= SegmentPolicy().partial_window_s + 0.3


async def test_a_first_partial_that_shows_nothing_is_retried_soon() -> None:
    @dataclass
    class SlowToHear(FakeTranscriber):
        """Hears nothing in the first partial try of the stream."""

        def revise(self, decoded: Decoded) -> Decoded:
            tries = sum(1 for c in self.calls if c[0] == "partial")
            if decoded.purpose == "partial" and tries == 1:
                return replace(decoded, text="", words=())
            return decoded

    pcm, _ = scripted_speech(20, lead_s=0.0)
    fake = SlowToHear(partial_cpu_s=0.001)
    config = SegmentPolicy(first_partial_s=0.8, retry_interval_s=0.2, partial_interval_s=1.0)
    run = await simulate(SegmentedStream(fake, config), pcm, [(0, len(pcm))], onset_delay_s=0.0)
    heard = [c[1] for c in fake.calls if c[0] == "partial"]
    assert heard[0] == pytest.approx(0.8, abs=0.1)
    assert heard[1] - heard[0] == pytest.approx(0.2, abs=0.1)  # retried, not a second later
    assert heard[2] - heard[1] == pytest.approx(1.0, abs=0.1)  # text shown: the normal cadence
    assert run.partials[0].revision == 1 and run.partials[0].segment_end == pytest.approx(
        1.0 * SR, abs=0.1 * SR
    )


async def test_each_segments_first_partial_goes_even_without_credit() -> None:
    pcm, _ = scripted_speech(30)
    spans = [(int(0.4 * SR), int(4.0 * SR)), (int(5.0 * SR), len(pcm) - SR // 4)]
    pcm[int(4.0 * SR) : int(5.0 * SR)] = 0
    config = SegmentPolicy(partial_cpu_burst_s=0.0)  # the bucket holds nothing, ever
    fake = FakeTranscriber(partial_cpu_s=0.3)
    run = await simulate(SegmentedStream(fake, config), pcm, spans)
    assert_well_formed(run)
    assert [c[0] for c in fake.calls].count("partial") == 2  # one try per segment, no more
    assert {p.segment_start for p in run.partials} == {s for s, _ in spans}


async def test_lag_skips_partials_never_finals() -> None:
    pcm, words = scripted_speech(40)
    stream = SegmentedStream(FakeTranscriber())
    run = await simulate(stream, pcm, [(0, len(pcm))], lag_s=5.0)
    assert not run.partials and stream.stats.partials_skipped_lag > 0
    assert words_of(run) == words


async def test_silence_produces_nothing() -> None:
    fake = FakeTranscriber()
    pcm = np.zeros(30 * SR, dtype=np.int16)
    run = await simulate(SegmentedStream(fake), pcm, [(2 * SR, 5 * SR)])
    assert run.emitted == []


async def test_boundary_duplicates_are_dropped_from_the_next_final() -> None:
    @dataclass
    class Echo(FakeTranscriber):
        """Re-hears the previous final's last word at the start of the next segment."""

        def revise(self, decoded: Decoded) -> Decoded:
            if decoded.purpose == "final" and decoded.words and decoded.words[0].text != "w1":
                n = int(decoded.words[0].text[1:]) - 1
                echo = DecodedWord(f"w{n}", 0.0, 0.01, 0.5)
                return replace(decoded, words=(echo, *decoded.words))
            return decoded

    pcm, words = scripted_speech(60)
    run = await simulate(SegmentedStream(Echo()), pcm, [(0, len(pcm))])
    assert words_of(run) == words


async def test_finals_are_prompted_with_the_words_of_the_finals_before_them() -> None:
    pcm, _ = scripted_speech(60, seed=6)
    spans = [(0, int(9.0 * SR)), (int(10.0 * SR), int(17.0 * SR)), (int(18.0 * SR), len(pcm))]
    for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
        pcm[end:start] = 0
    config = SegmentPolicy(final_prompt_words=5)
    fake = FakeTranscriber()
    full = await simulate(SegmentedStream(fake, config), pcm, spans)
    assert len(full.finals) == 3
    prompts = [prompt for purpose, _, prompt in fake.calls if purpose == "final"]
    said = [w.text for f in full.finals for w in f.words]
    heard_before = [
        len(full.finals[0].words),
        len(full.finals[0].words) + len(full.finals[1].words),
    ]
    assert prompts == [None, *(" ".join(said[:n][-5:]) for n in heard_before)]
    # a successor resumed from a checkpoint prompts its finals with the same words
    resumed_fake = FakeTranscriber()
    stream = SegmentedStream(resumed_fake, config, resume=full.checkpoints[0])
    await simulate(stream, pcm, spans, start=full.checkpoints[0].done)
    assert [p for purpose, _, p in resumed_fake.calls if purpose == "final"] == prompts[1:]


async def test_a_final_decodes_words_the_vad_missed_before_its_onset() -> None:
    """The VAD heard nothing between two segments where a quiet word was said: the second
    segment's final decodes the lead before its onset and publishes it; its partials do not, and
    no final decodes audio a final before it decoded."""
    pcm, _ = scripted_speech(40, seed=3)
    first_end, second_start = int(4.0 * SR), int(6.5 * SR)
    pcm[first_end:second_start] = 0
    pcm[int(5.2 * SR) : int(5.6 * SR)] = 99  # the missed word, 0.9 s before the second onset
    spans = [(int(0.4 * SR), first_end), (second_start, len(pcm) - SR // 4)]
    lead_s = 2.0
    fake = FakeTranscriber()
    run = await simulate(SegmentedStream(fake, SegmentPolicy(final_lead_s=lead_s)), pcm, spans)
    assert_well_formed(run)
    first, second = run.finals
    assert "w99" not in first.text and second.words[0].text == "w99"
    assert second.words[0].start == second.segment_start  # placed at the onset, as pads are
    finals = [length for purpose, length, _ in fake.calls if purpose == "final"]
    assert finals[-1] == pytest.approx((spans[1][1] - (second_start - int(lead_s * SR))) / SR)
    partial_audio = [length for purpose, length, _ in fake.calls if purpose == "partial"]
    assert all("w99" not in p.text for p in run.partials)
    assert max(partial_audio) < (spans[1][1] - second_start) / SR + 0.2 + 0.01
    # the default lead is a partial's pad: the missed word stays missed
    plain = await simulate(SegmentedStream(FakeTranscriber()), pcm, spans)
    assert "w99" not in " ".join(f.text for f in plain.finals)
    # a gap shorter than the lead: the final starts where the one before it ended
    close = [(int(0.4 * SR), int(5.0 * SR)), (second_start, len(pcm) - SR // 4)]
    fake = FakeTranscriber()
    run = await simulate(SegmentedStream(fake, SegmentPolicy(final_lead_s=lead_s)), pcm, close)
    finals = [length for purpose, length, _ in fake.calls if purpose == "final"]
    assert finals[-1] == pytest.approx((close[1][1] - close[0][1]) / SR)
    assert [w.text for f in run.finals for w in f.words].count("w99") == 1


async def test_partials_show_only_words_two_decodes_agree_on() -> None:
    @dataclass
    class Unsure(FakeTranscriber):
        """Every partial decode ends with a word no other decode hears."""

        def revise(self, decoded: Decoded) -> Decoded:
            if decoded.purpose == "final" or not decoded.words:
                return decoded
            guess = DecodedWord(f"guess{len(self.calls)}", decoded.audio_s, decoded.audio_s, 0.3)
            return replace(decoded, words=(*decoded.words, guess))

    pcm, words = scripted_speech(30)
    run = await simulate(
        SegmentedStream(Unsure(partial_cpu_s=0.001)), pcm, [(0, len(pcm))], onset_delay_s=0.0
    )
    assert_well_formed(run)
    assert words_of(run) == words
    assert len(run.partials) >= 5
    first, *later = run.partials
    assert "guess" in first.text, "a segment's first text shows the whole first decode"
    shown: list[str] = []
    for partial in later:
        texts = partial.text.split()
        assert not any(t.startswith("guess") for t in texts), partial.text
        assert texts[: len(shown)] == shown, "a word stays shown until a decode contradicts it"
        shown = texts
    assert len(shown) >= len(words) // 2, "the agreed words keep up with the speech"


async def test_a_partial_that_hears_less_takes_no_shown_word_back() -> None:
    @dataclass
    class Hesitant(FakeTranscriber):
        """Every third partial decode hears only its first word (a noise masked the rest)."""

        def revise(self, decoded: Decoded) -> Decoded:
            if decoded.purpose == "final" or len(self.calls) % 3:
                return decoded
            return replace(decoded, words=decoded.words[:1])

    pcm, words = scripted_speech(30)
    run = await simulate(
        SegmentedStream(Hesitant(partial_cpu_s=0.001)), pcm, [(0, len(pcm))], onset_delay_s=0.0
    )
    assert_well_formed(run)
    assert words_of(run) == words
    assert len(run.partials) >= 5
    shown: list[str] = []
    for partial in run.partials:
        texts = partial.text.split()
        assert texts[: len(shown)] == shown, "a shorter decode leaves the shown words shown"
        assert len(texts) > len(shown), "a partial is published only when it shows more"
        shown = texts
    assert len(shown) >= len(words) // 2, "the agreed words keep up with the speech"


async def test_settled_words_are_published_before_their_segment_ends() -> None:
    pcm, words = scripted_speech(40)  # about 20 s of uninterrupted "speech"
    config = SegmentPolicy(commit_after_s=1.0)
    stream = SegmentedStream(FakeTranscriber(partial_cpu_s=0.01), config)
    run = await simulate(stream, pcm, [(0, len(pcm))])
    assert_well_formed(run)
    assert words_of(run) == words
    assert len(run.finals) >= 8, "words published while the segment goes on"
    assert run.finals[-1].segment_end == len(pcm)
    for at, update in run.emitted:
        if isinstance(update, FinalUpdate) and update is not run.finals[-1]:
            # a partial a second after the word agrees with the one before: final by then
            assert all(at - w.end / SR <= 2.5 for w in update.words)
    for partial in run.partials:  # partials show only the words not yet published
        published = [
            w.text for f in run.finals if f.segment_end <= partial.segment_start for w in f.words
        ]
        assert not set(partial.text.split()) & set(published)


async def test_forced_cuts_between_early_commits_lose_and_repeat_nothing() -> None:
    pcm, words = scripted_speech(120)  # about 60 s without a pause
    config = SegmentPolicy(max_segment_s=10.0, commit_after_s=1.0)
    stream = SegmentedStream(FakeTranscriber(partial_cpu_s=0.01), config)
    run = await simulate(stream, pcm, [(0, len(pcm))])
    assert_well_formed(run)  # among others: every final's segment id is new
    assert words_of(run) == words
    assert len(run.finals) > 2 * len(pcm) / SR / 10, "early finals between the forced cuts"


async def test_a_word_reheard_after_a_forced_cut_is_not_published_twice() -> None:
    @dataclass
    class Echo(FakeTranscriber):
        """Every decode that starts after w1 re-hears the word before it, at its very start."""

        def revise(self, decoded: Decoded) -> Decoded:
            if decoded.words and decoded.words[0].text != "w1":
                n = int(decoded.words[0].text[1:]) - 1
                echo = DecodedWord(f"w{n}", 0.0, 0.01, 0.5)
                return replace(decoded, words=(echo, *decoded.words))
            return decoded

    pcm, words = scripted_speech(80, seed=4)
    config = SegmentPolicy(max_segment_s=10.0, commit_after_s=1.0)
    run = await simulate(SegmentedStream(Echo(partial_cpu_s=0.01), config), pcm, [(0, len(pcm))])
    assert_well_formed(run)
    assert words_of(run) == words


async def test_resume_after_words_published_early_repeats_and_loses_none() -> None:
    pcm, words = scripted_speech(40, seed=2)
    config = SegmentPolicy(commit_after_s=1.0)
    full = await simulate(
        SegmentedStream(FakeTranscriber(partial_cpu_s=0.01), config), pcm, [(0, len(pcm))]
    )
    assert len(full.finals) >= 8
    for k, ckpt in enumerate(full.checkpoints[:-1]):
        assert ckpt.committed_end == full.finals[k].segment_end
        start = resume_point(ckpt).done  # the successor replays from the words published
        assert start == ckpt.committed_end
        stream = SegmentedStream(FakeTranscriber(partial_cpu_s=0.01), config, resume=ckpt)
        resumed = await simulate(stream, pcm, [(0, len(pcm))], start=start)
        before = [w.text for f in full.finals[: k + 1] for w in f.words]
        assert before + words_of(resumed) == words, f"resume after final {k}"


# -- tiny.en on real speech ------------------------------------------------------------------


@pytest.fixture(scope="module")
def model() -> Path:
    return require_whisper_model()


@pytest.fixture
async def whisper(model: Path) -> AsyncIterator[WhisperTranscriber]:
    async with WhisperTranscriber(TranscriberConfig(model)) as t:
        await t.warm_up()
        yield t


@pytest.mark.slow
async def test_jfk_streams_to_the_exact_reference(whisper: WhisperTranscriber) -> None:
    jfk = item("jfk")
    pcm = read_wav(jfk.path)
    run = await simulate(SegmentedStream(whisper), pcm, [(0, len(pcm))])
    assert_well_formed(run)
    assert len(run.finals) == 1
    assert normalize(run.text) == normalize(jfk.text)
    # how many partials fit depends on the machine's speed (the CPU budget); that some text
    # shows while the speaker is still talking does not
    assert run.partials, "partials during speech"
    assert all(t < run.emitted[-1][0] for t, u in run.emitted if isinstance(u, PartialUpdate))
    first = normalize(run.partials[0].text).split()
    assert normalize(jfk.text).split()[: len(first)] == first
    assert run.finals_before_partial == 0
    assert run.first_text_latency_s[0] < len(pcm) / 16_000 / 2, "text in the first half"


@pytest.mark.slow
async def test_streaming_wer_is_within_two_points_of_offline(whisper: WhisperTranscriber) -> None:
    report = await _compare_with_offline(whisper, "1688-142285")
    assert report["stream_wer"] <= report["offline_wer"] + 0.02, report


@pytest.mark.slow
async def test_words_published_early_keep_streaming_wer_within_two_points_of_offline(
    whisper: WhisperTranscriber,
) -> None:
    # partials every second and no lag (a budget that affords them): the decisions, and so the
    # WER, do not depend on how loaded the machine running the test is
    config = SegmentPolicy(commit_after_s=1.0, partial_cpu_per_audio_s=5.0)
    report = await _compare_with_offline(whisper, "1688-142285", config, lag_s=0.0)
    assert report["finals"] > report["segments"], "some words published before their segment ended"
    assert report["stream_wer"] <= report["offline_wer"] + 0.02, report


async def _compare_with_offline(
    whisper: WhisperTranscriber,
    chapter_id: str,
    config: SegmentPolicy | None = None,
    lag_s: float | None = None,
) -> dict[str, Any]:
    p = passage(chapter(chapter_id))
    began = time.process_time()
    offline = await whisper.transcribe(to_float32(p.pcm), purpose="final")
    offline_cpu = time.process_time() - began
    stream = SegmentedStream(whisper, config)
    run = await simulate(stream, p.pcm, list(p.spans), lag_s=lag_s)
    assert_well_formed(run)
    report = {
        "finals": len(run.finals),
        "segments": len(p.spans),
        "offline_wer": wer(p.text, offline.text),
        "stream_wer": wer(p.text, run.text),
        "cpu_ratio": run.cpu_s / offline_cpu,
        "offline_cpu_per_s": offline_cpu / p.duration_s,
        "stream_cpu_per_s": run.cpu_s / p.duration_s,
        "final_latency_p50": float(np.median(run.final_latency_s)),
        "first_text_p50": float(np.median(run.first_text_latency_s)),
        "finals_before_partial": run.finals_before_partial,
        "partials": len(run.partials),
        "stats": stream.stats,
    }
    print(report)
    return report


@pytest.mark.slow
async def test_forced_cut_on_real_speech_loses_and_repeats_nothing(
    whisper: WhisperTranscriber,
) -> None:
    pcm = read_wav(item("3080-5032-0009").path)  # one 22.75 s utterance
    offline = await whisper.transcribe(to_float32(pcm), purpose="final")
    run = await simulate(
        SegmentedStream(whisper, SegmentPolicy(max_segment_s=9.0)), pcm, [(0, len(pcm))]
    )
    assert_well_formed(run)
    assert len(run.finals) >= 3
    for a, b in zip(run.finals, run.finals[1:], strict=False):
        assert a.segment_end == b.segment_start
        assert a.words[-1].end <= a.segment_end <= b.words[0].start
        assert normalize(a.words[-1].text) != normalize(b.words[0].text)
    assert wer(offline.text, run.text) <= 0.1, (offline.text, run.text)


@pytest.mark.slow
async def test_resume_on_real_speech_reproduces_the_finals(whisper: WhisperTranscriber) -> None:
    p = passage(chapter("367-130732")[:3])
    config = SegmentPolicy(max_segment_s=8.0)
    full = await simulate(SegmentedStream(whisper, config), p.pcm, list(p.spans))
    k = next(i for i, c in enumerate(full.checkpoints, 1) if c.in_speech)  # after a forced cut
    ckpt = full.checkpoints[k - 1]
    resumed = await simulate(
        SegmentedStream(whisper, config, resume=ckpt), p.pcm, list(p.spans), start=ckpt.done
    )
    assert [(f.segment_start, f.segment_end, f.text) for f in resumed.finals] == [
        (f.segment_start, f.segment_end, f.text) for f in full.finals[k:]
    ]


@pytest.mark.slow
async def test_noise_and_silence_produce_no_text(whisper: WhisperTranscriber) -> None:
    rng = np.random.default_rng(7)
    pcm = np.zeros(20 * SR, dtype=np.int16)
    pcm[8 * SR : 12 * SR] = (rng.standard_normal(4 * SR) * 1000).astype(np.int16)  # -30 dBFS
    stream = SegmentedStream(whisper)
    run = await simulate(stream, pcm, [(2 * SR, 6 * SR), (8 * SR, 12 * SR)])
    assert run.emitted == []
    assert stream.stats.final_cpu_s > 0  # the noise was decoded, and rejected
