"""A fast dev-split harness: the worker's streaming policy replayed on a virtual clock.

``PYTHONPATH=tests:. .venv/bin/python -m bench.replay --split dev --limit 4 [--engine fasterwhisper]``

Feeds a session to the worker's own ``SegmentedStream`` (its policy and transcriber from the same
``ECHOSTREAM_WHISPER_*`` or ``ECHOSTREAM_FASTERWHISPER_*`` settings) in the order ``capture_sim`` publishes it: 100 ms chunks
available when their first sample is captured, speech boundaries 0.3 s of audio late. Handling is
sequential, as in a ``SourceJob``; the clock jumps to the next message's capture time when the
stream is idle and advances by each handler's real wall time when it is busy, so latencies and lag
come out as at real time while the run takes only the decoding time. No NATS: for tuning only;
``python -m bench`` is the measurement of record.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from speech_corpus import load_items, wer
from worker_process import MODEL

from bench.audio import Pcm, Session, Span, Talk, capacity_pieces, session, talks_from_items
from bench.metrics import displays
from bench.stability import retraction
from bench.system import Emission
from capture.config import CaptureSettings
from capture.hub import ingest_config
from capture.vad import SpeechDetector, VadConfig
from echostream_shared.jobs.updates import FinalUpdate, PartialUpdate, Update
from echostream_shared.segmented.decoding import ModelTranscriber
from echostream_shared.segmented.policy import SegmentedStream, SegmentPolicy
from echostream_shared.segmented.settings import SegmentedWorkerSettings
from whisper_worker.config import WhisperWorkerSettings
from whisper_worker.engine import whisper_transcriber
from whisper_worker.transcriber import TranscriberConfig, WhisperTranscriber

RATE = 16_000
CHUNK = 1_600
VAD_DELAY = int(0.3 * RATE)


@dataclass(frozen=True)
class Emitted:
    update: Update
    at: float  # virtual seconds since the session's first sample was captured


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass(frozen=True)
class _Message:
    at: float  # when capture_sim would have published it (virtual seconds)
    kind: Literal["audio", "started", "ended", "closed"]
    sample: int  # the chunk's first sample, or the boundary
    pcm: Pcm | None = None


def _messages(talk: Session, vad: VadConfig | None = None) -> Iterator[_Message]:
    """What capture_sim publishes for ``talk``, in order; with ``vad``, the boundaries are those
    capture's own detector finds, each published with the chunk that revealed it."""
    if vad is not None:
        yield from _vad_messages(talk, SpeechDetector(vad))
        return
    Kind = Literal["started", "ended"]
    started: Kind = "started"
    ended: Kind = "ended"
    boundaries = sorted(
        [(s.start + VAD_DELAY, started, s.start) for s in talk.speech]
        + [(s.end + VAD_DELAY, ended, s.end) for s in talk.speech]
    )
    end = len(talk.audio)
    for first in range(0, end, CHUNK):
        pcm = talk.audio[first : first + CHUNK]
        yield _Message(first / RATE, "audio", first, pcm)
        while boundaries and boundaries[0][0] <= first + len(pcm):
            _, kind, sample = boundaries.pop(0)
            yield _Message(first / RATE, kind, sample)
    for _, kind, sample in boundaries:
        yield _Message(end / RATE, kind, sample)
    yield _Message(end / RATE, "closed", end)


def _vad_messages(talk: Session, detector: SpeechDetector) -> Iterator[_Message]:
    end = len(talk.audio)
    for first in range(0, end, CHUNK):
        pcm = talk.audio[first : first + CHUNK]
        yield _Message(first / RATE, "audio", first, pcm)
        for boundary in detector.push(pcm):
            yield _Message(first / RATE, boundary.kind, boundary.sample)
    for boundary in detector.finish(end):
        yield _Message(end / RATE, boundary.kind, boundary.sample)
    yield _Message(end / RATE, "closed", end)


async def _apply(stream: SegmentedStream, message: _Message) -> list[Update]:
    match message.kind:
        case "audio":
            assert message.pcm is not None
            return await stream.on_audio(message.sample, message.pcm)
        case "started":
            return await stream.on_speech_started(message.sample)
        case "ended":
            return await stream.on_speech_ended(message.sample)
        case "closed":
            return await stream.on_closed(message.sample)


@dataclass(frozen=True)
class Replayed:
    """One session replayed: its updates on the virtual clock, the CPU they took, the stream, and
    the speech spans its boundaries made."""

    emitted: list[Emitted]
    cpu_s: float
    stream: SegmentedStream
    spans: list[Span]


async def replay(
    transcriber: ModelTranscriber,
    policy: SegmentPolicy,
    talk: Session,
    vad: VadConfig | None = None,
) -> Replayed:
    """``talk`` through a new stream of the worker's policy, in capture_sim's order."""
    stream = SegmentedStream(transcriber, policy)
    clock = 0.0
    emitted: list[Emitted] = []
    starts: list[int] = []
    spans: list[Span] = []
    cpu0 = _cpu_s()
    for message in _messages(talk, vad):
        if message.kind == "started":
            starts.append(message.sample)
        elif message.kind == "ended" and starts:
            spans.append(Span(starts.pop(), message.sample))
        clock = max(clock, message.at)
        stream.lag_s = max(0.0, clock - message.at - CHUNK / RATE)  # as SourceJob computes it
        started = time.perf_counter()
        updates = await _apply(stream, message)
        clock += time.perf_counter() - started
        emitted += [Emitted(u, clock) for u in updates]
    return Replayed(emitted, _cpu_s() - cpu0, stream, spans)


def _pct(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def latencies(runs: list[Replayed]) -> dict[str, object]:
    """Final after each speech end, first partial after each onset (of the boundaries the streams
    were given), and each published word's final after the word's end, pooled over the runs."""
    final_lat: list[float] = []
    first_lat: list[float] = []
    committed: list[float] = []
    missing_partial = segments = partial_count = 0
    for run in runs:
        emitted = run.emitted
        finals = [(e.at, e.update) for e in emitted if isinstance(e.update, FinalUpdate)]
        partials = [(e.at, e.update) for e in emitted if isinstance(e.update, PartialUpdate)]
        for span in run.spans:
            closing = [at for at, final in finals if final.segment_end == span.end]
            if closing:
                final_lat.append(closing[0] - span.end / RATE)
            firsts = [at for at, p in partials if span.start <= p.segment_start < span.end]
            if firsts:
                first_lat.append(firsts[0] - span.start / RATE)
            else:
                missing_partial += 1
        committed += [at - word.end / RATE for at, final in finals for word in final.words]
        segments += len(run.spans)
        partial_count += len(partials)
    return {
        "word_committed_p50": _pct(committed, 50),
        "word_committed_p95": _pct(committed, 95),
        "final_p50": _pct(final_lat, 50),
        "final_p95": _pct(final_lat, 95),
        "first_partial_p50": _pct(first_lat, 50),
        "first_partial_p95": _pct(first_lat, 95),
        "segments": segments,
        "no_partial": missing_partial,
        "partials": partial_count,
    }


def emissions(emitted: list[Emitted]) -> list[Emission]:
    """The updates as the system would publish them (a segment's id is made from its start)."""
    out = []
    for e in emitted:
        u = e.update
        kind: Literal["partial", "final"] = "final" if isinstance(u, FinalUpdate) else "partial"
        revision = u.revision if isinstance(u, PartialUpdate) else 0
        out.append(
            Emission(
                kind, str(u.segment_start), u.segment_start, u.segment_end, u.text, e.at, revision
            )
        )
    return out


def talk_texts(talk: Session, emitted: list[Emitted]) -> list[str]:
    finals = [e.update for e in emitted if isinstance(e.update, FinalUpdate)]
    return [
        " ".join(f.text for f in finals if span.start <= f.segment_start < span.end)
        for span in talk.talk_spans
    ]


def engine_under_test(
    engine: str, model: Path
) -> tuple[SegmentedWorkerSettings, ModelTranscriber, int]:
    """The engine's settings (from the environment), its transcriber, and its decode threads."""
    if engine == "fasterwhisper":
        from fasterwhisper_worker.config import FasterWhisperWorkerSettings
        from fasterwhisper_worker.engine import fasterwhisper_transcriber

        fw = FasterWhisperWorkerSettings()
        return fw, fasterwhisper_transcriber(fw), fw.threads
    settings = WhisperWorkerSettings(model_path=model)
    return settings, whisper_transcriber(settings), settings.threads_per_decoder


async def offline_fasterwhisper(threads: int, talk: Session) -> tuple[list[str], float]:
    """faster-whisper's own one-call decode of each talk, greedy, as ``bench.offline`` does."""
    from fasterwhisper_worker.model_dir import validate_model_dir
    from fasterwhisper_worker.transcriber import FasterWhisperConfig, load_model

    model = load_model(FasterWhisperConfig(validate_model_dir(None), threads=threads))
    texts, cpu = [], 0.0
    for k in range(len(talk.talks)):
        cpu0 = _cpu_s()
        audio = talk.talk_audio(k).astype(np.float32) / 32768.0
        segments, _ = model.transcribe(audio, language="en", beam_size=1, temperature=0.0)
        texts.append(" ".join(segment.text.strip() for segment in segments))
        cpu += _cpu_s() - cpu0
    return texts, cpu


async def offline(model: Path, threads: int, talk: Session) -> tuple[list[str], float]:
    config = TranscriberConfig(model_path=model, threads=threads, workers=1, final_ctx_margin=0)
    texts, cpu = [], 0.0
    async with WhisperTranscriber(config) as transcriber:
        await transcriber.warm_up()
        for k in range(len(talk.talks)):
            cpu0 = _cpu_s()
            decoded = await transcriber.transcribe(talk.talk_audio(k), purpose="final")
            cpu += _cpu_s() - cpu0
            texts.append(decoded.text)
    return texts, cpu


def sessions_under_test(args: argparse.Namespace) -> tuple[list[Talk], list[Session]]:
    """The talks, and the sessions that play them: all on one source by default; with
    ``--capacity-s``, the pieces the capacity ramp streams (``bench.audio.pieces`` of the talks
    that long), each on its own source."""
    talks = talks_from_items(load_items(args.split))
    if args.limit:
        talks = talks[: args.limit]
    if not args.capacity_s:
        return talks, [session(args.split, talks, 1.0)]
    cut = capacity_pieces(talks, args.capacity_s)
    return cut, [session(t.name, [t], 1.0) for t in cut]


async def offline_texts(
    args: argparse.Namespace, threads: int, sessions: list[Session]
) -> tuple[list[str], float]:
    """Each talk decoded in one call by the engine, cached across runs with ``--offline-cache``."""
    cache = args.offline_cache
    key = f"{args.engine}:{args.split}:{args.limit}:{args.capacity_s}:{threads}"
    cached = json.loads(cache.read_text()) if cache and cache.is_file() else {}
    if key in cached:
        return cached[key]["texts"], cached[key]["cpu_s"]
    texts: list[str] = []
    cpu = 0.0
    for talk in sessions:
        if args.engine == "fasterwhisper":
            more, spent = await offline_fasterwhisper(threads, talk)
        else:
            more, spent = await offline(args.model, threads, talk)
        texts += more
        cpu += spent
    if cache:
        cached[key] = {"texts": texts, "cpu_s": cpu}
        cache.write_text(json.dumps(cached))
    return texts, cpu


async def main_async(args: argparse.Namespace) -> dict[str, object]:
    talks, sessions = sessions_under_test(args)
    refs = [t.text for t in talks]
    settings, transcriber, threads = engine_under_test(args.engine, args.model)
    await transcriber.warm_up()
    wall0 = time.perf_counter()
    vad = _capture_vad(args.vad_silence_ms) if args.vad_silence_ms else None
    runs = [await replay(transcriber, settings.segment_policy(), s, vad) for s in sessions]
    stream_wall = time.perf_counter() - wall0
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    await transcriber.aclose()
    off_texts, off_cpu = await offline_texts(args, threads, sessions)
    stream_texts = [
        text for s, run in zip(sessions, runs, strict=True) for text in talk_texts(s, run.emitted)
    ]
    if args.dump:
        rows = zip([t.name for t in talks], refs, stream_texts, off_texts, strict=True)
        texts = [{"talk": n, "reference": r, "streaming": s, "offline": o} for n, r, s, o in rows]
        args.dump.write_text(json.dumps(texts, indent=1))
    shown = [retraction(displays(emissions(run.emitted))) for run in runs]
    words_shown = sum(int(s["words_shown"] or 0) for s in shown)
    words_retracted = sum(int(s["words_retracted"] or 0) for s in shown)
    audio_s = sum(s.duration_s for s in sessions)
    stream_cpu = sum(run.cpu_s for run in runs)
    stats = [run.stream.stats for run in runs]
    return {
        "engine": args.engine,
        "audio_s": round(audio_s, 1),
        "talks": len(talks),
        "sessions": len(sessions),
        **{k: (round(v, 3) if isinstance(v, float) else v) for k, v in latencies(runs).items()},
        "retracted_share": (round(words_retracted / words_shown, 4) if words_shown else None),
        # the talks as one text: a final is filed under the talk it starts in, so per talk a
        # segment that runs over a talk's end would count its words as lost there and added here
        "stream_wer": round(100 * wer(" ".join(refs), " ".join(stream_texts)), 2),
        "offline_wer": round(100 * wer(" ".join(refs), " ".join(off_texts)), 2),
        "stream_cpu_per_audio_s": round(stream_cpu / audio_s, 4),
        "offline_cpu_per_audio_s": round(off_cpu / audio_s, 4),
        "cpu_ratio": round(stream_cpu / off_cpu, 3),
        "final_cpu_s": round(sum(s.final_cpu_s for s in stats), 1),
        "partial_cpu_s": round(sum(s.partial_cpu_s for s in stats), 1),
        "final_decodes": sum(s.final_decodes for s in stats),
        "partial_decodes": sum(s.partial_decodes for s in stats),
        "skipped_budget": sum(s.partials_skipped_budget for s in stats),
        "skipped_lag": sum(s.partials_skipped_lag for s in stats),
        "stream_wall_s": round(stream_wall, 1),
        "peak_rss_mb_streaming": round(peak_rss_mb),
    }


def _capture_vad(silence_ms: int) -> VadConfig:
    """Capture's detector as its settings build it, with ``silence_ms`` of silence ending speech."""
    return ingest_config(CaptureSettings(vad_min_silence_ms=silence_ms)).vad


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.replay", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--split", choices=("dev", "eval"), default="dev")
    parser.add_argument("--limit", type=int, default=0, help="only the first N talks")
    parser.add_argument("--engine", choices=("whisper", "fasterwhisper"), default="whisper")
    parser.add_argument("--model", type=Path, default=MODEL, help="whisper.cpp's ggml model")
    parser.add_argument(
        "--capacity-s",
        type=float,
        default=0.0,
        help="the talks cut into pieces of about this much speech, each replayed alone, as the "
        "capacity ramp streams them (the bench's --capacity-seconds; 0: all talks on one source)",
    )
    parser.add_argument("--offline-cache", type=Path, help="reuse offline decodes across runs")
    parser.add_argument("--dump", type=Path, help="write reference/streaming/offline texts here")
    parser.add_argument(
        "--vad-silence-ms",
        type=int,
        default=0,
        help="boundaries from capture's own VAD with this much silence ending speech "
        "(default: the utterances' own spans)",
    )
    parser.add_argument("--label", default="", help="a name for this run in the output")
    args = parser.parse_args(argv)
    result = asyncio.run(main_async(args))
    print(json.dumps({"label": args.label, **result}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
