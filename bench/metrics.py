"""Latency, accuracy and CPU figures, computed from any system's ``StreamResult``s.

Latencies are wall-clock differences between a transcript's emission time and the reconstructed
capture time of an audio sample (``Clock``), so they include everything between the microphone and
the bus: the simulated VAD's delay, transport, queueing and decoding.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from difflib import SequenceMatcher

import numpy as np
from speech_corpus import normalize, wer

from bench.audio import PAD_S, RATE
from bench.system import Emission, StreamResult

Summary = dict[str, float | int | None]


def summary(values: Iterable[float]) -> Summary:
    """Count, p50, p95, p99, mean, min and max (None when there is nothing to summarize)."""
    data = np.asarray([v for v in values if math.isfinite(v)], dtype=np.float64)
    if data.size == 0:
        return {
            "n": 0,
            "p50": None,
            "p95": None,
            "p99": None,
            "mean": None,
            "min": None,
            "max": None,
        }
    return {
        "n": int(data.size),
        "p50": float(np.percentile(data, 50)),
        "p95": float(np.percentile(data, 95)),
        "p99": float(np.percentile(data, 99)),
        "mean": float(data.mean()),
        "min": float(data.min()),
        "max": float(data.max()),
    }


@dataclass(frozen=True)
class SegmentRecord:
    """One utterance's VAD segment: when its transcripts came, relative to its capture."""

    stream_id: str
    utterance_id: str
    talk: str
    corpus: str
    start_sample: int
    end_sample: int
    onset_at: float  # capture time of the segment's first sample (speech onset, VAD pre-roll)
    end_at: float  # capture time of its last sample (speech end, VAD hangover)
    first_partial_s: float | None  # first partial after onset
    first_text_s: float | None  # first partial or final, whichever came first, after onset
    final_s: float | None  # the final that closes the segment, after speech end
    forced_final_s: tuple[float, ...]  # finals cut inside the segment (long speech), after the cut
    partials: int
    finals: int
    ends_with_last_word: bool  # the segment's finals end with the reference's last word


@dataclass(frozen=True)
class WordRecord:
    """One word of a final: when it was first shown and when committed, after its audio ended."""

    stream_id: str
    text: str
    end_sample: int
    first_seen_s: float  # first partial (or the final) holding the word
    commit_s: float  # its final


END_TOLERANCE_S = 1.0
"""A final "closes" an utterance when it ends within this of the utterance's last sample: corpus
utterances carry up to a few tenths of a second of silence after the last word, which a VAD
rightly leaves out of the segment."""


def segment_records(result: StreamResult) -> list[SegmentRecord]:
    """Per utterance of the session (the reference's speech, not the system's segmentation).

    The closing final is the one that ends last, when it ends near the utterance's end; it is
    timed from its own end (the speech end as the VAD placed it; never later than the utterance's
    end plus hangover). Other finals that end inside the utterance (a VAD split at a pause, or a
    forced cut of long speech) are timed from their own end too.
    """
    session = result.spec.session
    clock = result.clock
    tolerance = round((PAD_S + END_TOLERANCE_S) * RATE)
    records = []
    for index, span in enumerate(session.speech):
        onset_at, end_at = clock.at(span.start), clock.at(span.end)
        if onset_at is None or end_at is None:
            continue
        inside = [
            e for e in result.emissions if e.start_sample < span.end and e.end_sample > span.start
        ]
        partials = [e for e in inside if e.kind == "partial"]
        finals = [e for e in inside if e.kind == "final"]
        last = max(finals, key=lambda f: f.end_sample, default=None)
        closing = last if last is not None and last.end_sample >= span.end - tolerance else None
        closed_at = None if closing is None else clock.at(min(closing.end_sample, span.end))
        forced = []
        for final in finals:
            cut_at = clock.at(final.end_sample)
            if final is not closing and final.end_sample < span.end and cut_at is not None:
                forced.append(final.emitted_at - cut_at)
        first_partial = min((p.emitted_at for p in partials), default=None)
        first_text = min((e.emitted_at for e in inside if e.text), default=None)
        utterance = session.utterances[index]
        own = [f for f in finals if span.start <= f.start_sample]
        said = normalize(" ".join(f.text for f in sorted(own, key=lambda f: f.start_sample)))
        reference = normalize(utterance.text).split()
        ends_well = bool(reference) and said.split()[-1:] == reference[-1:]
        records.append(
            SegmentRecord(
                stream_id=result.spec.stream_id,
                utterance_id=utterance.id,
                talk=session.talks[session.utterance_talk[index]].name,
                corpus=utterance.corpus,
                start_sample=span.start,
                end_sample=span.end,
                onset_at=onset_at,
                end_at=end_at,
                first_partial_s=None if first_partial is None else first_partial - onset_at,
                first_text_s=None if first_text is None else first_text - onset_at,
                final_s=None
                if closing is None or closed_at is None
                else closing.emitted_at - closed_at,
                forced_final_s=tuple(forced),
                partials=len(partials),
                finals=len(finals),
                ends_with_last_word=ends_well,
            )
        )
    return records


def displayed_transcripts(result: StreamResult) -> list[str]:
    """What a client shows after each event of ``result``, in arrival order (``displays``)."""
    return displays(sorted(result.emissions, key=lambda e: e.emitted_at))


def displays(emissions: Iterable[Emission]) -> list[str]:
    """What a client shows after each of ``emissions`` (in arrival order): every final so far and
    the newest partial of each segment not yet final, in audio order."""
    finals: dict[str, Emission] = {}
    partials: dict[str, Emission] = {}
    shown = []
    for event in emissions:
        if event.kind == "final":
            finals[event.segment_id] = event
            partials.pop(event.segment_id, None)
        elif event.segment_id not in finals:
            newest = partials.get(event.segment_id)
            if newest is None or event.revision >= newest.revision:
                partials[event.segment_id] = event
        visible = sorted([*finals.values(), *partials.values()], key=lambda e: e.start_sample)
        shown.append(" ".join(e.text for e in visible if e.text))
    return shown


def word_records(result: StreamResult) -> list[WordRecord]:
    """Per word of every final: first-seen and commit latency after the word's end.

    A word counts as seen in a partial of its segment when the partial's text, aligned with the
    final's (difflib on normalized words), holds it and the partial's audio reached the word.
    Word times are whisper.cpp token timestamps: good to a few tenths of a second.
    """
    partials: dict[str, list[Emission]] = {}
    for emission in result.emissions:
        if emission.kind == "partial":
            partials.setdefault(emission.segment_id, []).append(emission)
    records = []
    for final in (e for e in result.emissions if e.kind == "final" and e.words):
        tokens: list[str] = []
        owner: list[int] = []
        for index, word in enumerate(final.words):
            for token in normalize(word.text).split():
                tokens.append(token)
                owner.append(index)
        seen = [final.emitted_at] * len(final.words)
        for partial in sorted(partials.get(final.segment_id, []), key=lambda p: p.emitted_at):
            matcher = SequenceMatcher(None, tokens, normalize(partial.text).split(), autojunk=False)
            for a, _, size in matcher.get_matching_blocks():
                for k in range(a, a + size):
                    index = owner[k]
                    if partial.end_sample >= final.words[index].start_sample:
                        seen[index] = min(seen[index], partial.emitted_at)
        for index, word in enumerate(final.words):
            end_at = result.clock.at(word.end_sample)
            if end_at is None or not normalize(word.text):
                continue
            records.append(
                WordRecord(
                    result.spec.stream_id,
                    word.text,
                    word.end_sample,
                    seen[index] - end_at,
                    final.emitted_at - end_at,
                )
            )
    return records


def streaming_text(result: StreamResult, start: int, end: int) -> str:
    """The finals of [start, end) in audio order."""
    finals = [
        e
        for e in result.emissions
        if e.kind == "final" and start <= e.start_sample < end and e.text
    ]
    return " ".join(f.text for f in sorted(finals, key=lambda f: f.start_sample))


@dataclass(frozen=True)
class TalkScore:
    talk: str
    corpus: str
    audio_s: float
    reference: str
    streaming: str
    offline: str | None
    streaming_wer: float
    offline_wer: float | None


def talk_scores(result: StreamResult, offline: Mapping[str, str]) -> list[TalkScore]:
    session = result.spec.session
    scores = []
    for talk, span in zip(session.talks, session.talk_spans, strict=True):
        hypothesis = streaming_text(result, span.start, span.end)
        limit = offline.get(talk.name)
        scores.append(
            TalkScore(
                talk=talk.name,
                corpus=talk.corpus,
                audio_s=(span.end - span.start) / 16_000,
                reference=talk.text,
                streaming=hypothesis,
                offline=limit,
                streaming_wer=wer(talk.text, hypothesis),
                offline_wer=None if limit is None else wer(talk.text, limit),
            )
        )
    return scores


def wer_by_corpus(scores: Sequence[TalkScore]) -> list[dict[str, object]]:
    """Pooled WER (errors over reference words) per corpus and overall, streaming and offline."""
    groups: dict[str, list[TalkScore]] = {}
    for score in scores:
        groups.setdefault(score.corpus, []).append(score)
    rows = []
    for corpus, members in [*sorted(groups.items()), ("all", list(scores))]:
        refs = [s.reference for s in members]
        streaming = wer(refs, [s.streaming for s in members])
        offline = None
        if all(s.offline is not None for s in members):
            offline = wer(refs, [s.offline or "" for s in members])
        rows.append(
            {
                "corpus": corpus,
                "talks": len(members),
                "audio_s": sum(s.audio_s for s in members),
                "words": sum(len(normalize(r).split()) for r in refs),
                "streaming_wer": streaming,
                "offline_wer": offline,
                "delta_points": None if offline is None else 100 * (streaming - offline),
            }
        )
    return rows


def latency_summaries(
    records: Sequence[SegmentRecord], words: Sequence[WordRecord]
) -> dict[str, object]:
    """The latency table of a pass."""
    finals = [r.final_s for r in records if r.final_s is not None]
    return {
        "segments": len(records),
        "final_after_speech_end": summary(finals),
        "first_partial_after_onset": summary(
            r.first_partial_s for r in records if r.first_partial_s is not None
        ),
        "first_text_after_onset": summary(
            r.first_text_s for r in records if r.first_text_s is not None
        ),
        "forced_final_after_cut": summary(x for r in records for x in r.forced_final_s),
        "word_first_seen_after_word_end": summary(w.first_seen_s for w in words),
        "word_commit_after_word_end": summary(w.commit_s for w in words),
        "segments_without_final": sum(r.final_s is None for r in records),
        "segments_without_partial": sum(r.first_partial_s is None for r in records),
        "segments_missing_last_word": sum(not r.ends_with_last_word for r in records),
        "partials_per_segment": summary(float(r.partials) for r in records),
    }


def drift(records: Sequence[SegmentRecord], parts: int = 3) -> dict[str, object]:
    """Final latency p95 in the first and the last ``parts``-th of a long session."""
    ordered = sorted((r for r in records if r.final_s is not None), key=lambda r: r.end_at)
    if len(ordered) < 2 * parts:
        return {"first": summary([]), "last": summary([]), "ratio_p95": None}
    size = len(ordered) // parts
    first = summary(r.final_s for r in ordered[:size] if r.final_s is not None)
    last = summary(r.final_s for r in ordered[-size:] if r.final_s is not None)
    p_first, p_last = first["p95"], last["p95"]
    ratio = (
        p_last / p_first
        if isinstance(p_first, float) and isinstance(p_last, float) and p_first
        else None
    )
    return {"first": first, "last": last, "ratio_p95": ratio}


def as_dicts(items: Iterable[SegmentRecord | WordRecord | TalkScore]) -> list[dict[str, object]]:
    return [asdict(item) for item in items]
