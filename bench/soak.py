"""The soak: one engine's worker holding a number of real-time streams for a long time (an hour).

``PYTHONPATH=tests:. python -m bench.soak [--minutes 60] [--streams N] [--engine E]`` starts
the system as ``make run`` does, with the engine's default settings, and keeps ``N`` streams
playing until the time is up: each stream plays sessions of whole talks back to back (a new
native-protocol session every few minutes, its talks rotating). ``N`` defaults to the level the
latest capacity result sustained with one worker. It reports the final latency p95 of the last
window (10 minutes, or a third of a shorter soak) against the first, and every process's
resident memory (capture, worker, aggregator, nats-server, the supervisor), median of the last
window against the window after a warm-up (20 minutes, or a third of a shorter soak: the worker's
allocator grows as new batch shapes appear, nats-server's as its file store's caches fill, for the
first 10-20 minutes, and then both hold); written to ``OUT/soak/`` and into ``OUT/REPORT.md`` when
a bench report is there.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from speech_corpus import load_items
from worker_process import MODEL

from bench import machine, metrics, report
from bench.audio import (
    Talk,
    audioeval_samples,
    corpus_available,
    session,
    talks_from_items,
    trimmed,
)
from bench.native import ENGINES, EchoStreamNative
from bench.report_soak import plot_soak, soak_markdown
from bench.system import StreamSpec, process_memory_mb

LATENCY_TOLERANCE = 0.10
RSS_GROWTH_LIMIT = 0.05
WINDOW_S = 600.0
WARMUP_S = 1200.0
LATEST_CAPACITY = ("capacity/raw/summary.json", "raw/summary.json")


@dataclass(frozen=True)
class SoakOptions:
    out: Path
    minutes: float
    streams: int
    engine: str
    model: Path
    threads: int
    gap_s: float
    session_s: float
    sample_s: float
    stagger_s: float
    split: str
    workdir: Path | None


def parse(argv: list[str] | None = None) -> SoakOptions:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--out", type=Path, default=Path("docs/bench"), help="report directory")
    parser.add_argument("--minutes", type=float, default=60.0, help="how long the streams play")
    parser.add_argument(
        "--streams",
        type=int,
        help="concurrent streams (default: the sustained level of the latest capacity result "
        "for the engine, one worker, under OUT)",
    )
    parser.add_argument("--engine", choices=ENGINES, default="fasterwhisper")
    parser.add_argument("--model", type=Path, default=MODEL, help="ggml model (whisper.cpp)")
    parser.add_argument("--threads", type=int, default=2, help="decoder threads (the default)")
    parser.add_argument("--gap-s", type=float, default=1.0, help="pause between utterances")
    parser.add_argument(
        "--session-s", type=float, default=300.0, help="audio per native session of a stream"
    )
    parser.add_argument("--sample-s", type=float, default=15.0, help="memory sampled this often")
    parser.add_argument("--stagger-s", type=float, default=0.5, help="between stream starts")
    parser.add_argument("--split", choices=("eval", "dev"), default="eval")
    parser.add_argument("--workdir", type=Path, help="keep nats stores and logs here")
    args = parser.parse_args(argv)
    streams = args.streams if args.streams is not None else latest_sustained(args.out, args.engine)
    if streams < 1:
        parser.error(f"--streams must be at least 1 (found {streams})")
    return SoakOptions(
        out=args.out,
        minutes=args.minutes,
        streams=streams,
        engine=args.engine,
        model=args.model.resolve(),
        threads=args.threads,
        gap_s=args.gap_s,
        session_s=args.session_s,
        sample_s=min(args.sample_s, max(1.0, args.minutes * 60 / 30)),
        stagger_s=args.stagger_s,
        split=args.split,
        workdir=args.workdir,
    )


def latest_sustained(out: Path, engine: str) -> int:
    """The one-worker sustained level of ``engine`` in the newest capacity result under ``out``."""
    found: list[tuple[float, int]] = []
    for name in LATEST_CAPACITY:
        path = out / name
        if not path.is_file():
            continue
        capacity = json.loads(path.read_text()).get("capacity") or {}
        ramps = (capacity.get("engines") or {}).get(engine, {}).get("ramps", [])
        for ramp in ramps:
            if ramp["workers"] == 1:
                found.append((path.stat().st_mtime, int(ramp["sustained_streams"])))
    if not found:
        raise SystemExit(
            f"no capacity result for {engine} under {out} ({', '.join(LATEST_CAPACITY)}): "
            "run make bench-capacity first or give --streams"
        )
    return max(found)[1]


def log(text: str) -> None:
    print(f"[soak {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def soak_talks(split: str) -> list[Talk]:
    if corpus_available():
        return talks_from_items(load_items(split))
    samples = audioeval_samples()
    return [Talk("audioeval:en", samples[0].corpus, tuple(samples))]


def next_talks(talks: Sequence[Talk], first: int, seconds: float, gap_s: float) -> list[Talk]:
    """Talks from index ``first`` on (wrapping) filling about ``seconds``; at least one, trimmed
    to fit when even the first is longer."""
    chosen: list[Talk] = []
    total = 0.0
    for k in range(len(talks)):
        talk = talks[(first + k) % len(talks)]
        length = talk.duration_s + gap_s * (len(talk.utterances) + 1)
        if total + length > seconds:
            break
        chosen.append(talk)
        total += length
    return chosen or [trimmed(talks[first % len(talks)], seconds)]


@dataclass
class Played:
    """What the streams and the sampler gathered."""

    records: list[metrics.SegmentRecord] = field(default_factory=list)
    scores: list[metrics.TalkScore] = field(default_factory=list)
    sessions: int = 0
    not_drained: int = 0
    memory: list[dict[str, object]] = field(default_factory=list)


async def play_stream(
    system: EchoStreamNative,
    index: int,
    options: SoakOptions,
    talks: Sequence[Talk],
    deadline: float,
    played: Played,
) -> None:
    """Sessions on one stream, back to back, until ``deadline``."""
    await asyncio.sleep(index * options.stagger_s)
    rotation = index
    round_ = 0
    while (left := deadline - time.time()) > 5.0:
        chosen = next_talks(talks, rotation, min(options.session_s, left), options.gap_s)
        rotation += len(chosen)
        name = f"soak{index}-{round_}"
        result = await system.play(StreamSpec(name, session(name, chosen, options.gap_s)))
        played.records.extend(metrics.segment_records(result))
        played.scores.extend(metrics.talk_scores(result, {}))
        played.sessions += 1
        played.not_drained += not result.closed
        round_ += 1


def memory_row(system: EchoStreamNative) -> dict[str, object]:
    """Every process's resident MB now (None for a process that is gone)."""
    row: dict[str, object] = {"at": time.time()}
    for name, pid in system.processes.items():
        try:
            row[name] = process_memory_mb(pid)[0]
        except OSError:
            row[name] = None
    return row


async def sample_memory(system: EchoStreamNative, every_s: float, played: Played) -> None:
    while True:
        played.memory.append(memory_row(system))
        await asyncio.sleep(every_s)


async def soak(options: SoakOptions) -> dict[str, object]:
    talks = soak_talks(options.split)
    played = Played()
    with tempfile.TemporaryDirectory(prefix="echostream-soak-") as scratch:
        system = EchoStreamNative(
            options.workdir or Path(scratch),
            options.model,
            engine=options.engine,
            env={
                "ECHOSTREAM_WHISPER_THREADS_PER_DECODER": str(options.threads),
            },
        )
        log(f"starting the system as make run --engines {options.engine} does")
        await system.start()
        try:
            began = time.time()
            deadline = began + options.minutes * 60
            log(f"{options.streams} stream(s) for {options.minutes:g} min")
            sampler = asyncio.create_task(sample_memory(system, options.sample_s, played))
            try:
                await asyncio.gather(
                    *(
                        play_stream(system, i, options, talks, deadline, played)
                        for i in range(options.streams)
                    )
                )
            finally:
                sampler.cancel()
            ended = time.time()
            played.memory.append(memory_row(system))
            statuses = system.status_rows(began)
            described = system.describe()
        finally:
            await system.stop()
    return summarize(options, played, began, ended, statuses, described)


def summarize(
    options: SoakOptions,
    played: Played,
    began: float,
    ended: float,
    statuses: list[dict[str, float | int | str]],
    described: dict[str, object],
) -> dict[str, object]:
    window = min(WINDOW_S, (ended - began) / 3)
    first_window, last_window = (began, began + window), (ended - window, ended)
    warmup = min(WARMUP_S, (ended - began) / 3)
    warm_window = (began + warmup, began + warmup + window)

    def finals(span: tuple[float, float]) -> metrics.Summary:
        return metrics.summary(
            r.final_s for r in played.records if r.final_s is not None and _in(r.end_at, span)
        )

    def partials(span: tuple[float, float]) -> metrics.Summary:
        return metrics.summary(
            r.first_partial_s
            for r in played.records
            if r.first_partial_s is not None and _in(r.onset_at, span)
        )

    first, last = finals(first_window), finals(last_window)
    change = _change(first["p95"], last["p95"])
    pooled = metrics.wer_by_corpus(played.scores)[-1] if played.scores else {}
    lags = [float(row["max_lag_s"]) for row in statuses]
    return {
        "meta": {
            **machine.describe(options.model),
            "command": "PYTHONPATH=tests:. .venv/bin/python -m bench.soak "
            + shlex.join(sys.argv[1:]),
        },
        "system": described,
        "engine": options.engine,
        "streams": options.streams,
        "minutes": (ended - began) / 60,
        "window_s": window,
        "warmup_s": warmup,
        "sessions": played.sessions,
        "sessions_not_drained": played.not_drained,
        "segments": len(played.records),
        "segments_without_final": sum(r.final_s is None for r in played.records),
        "final": {
            "first": first,
            "last": last,
            "p95_change": change,
            "tolerance": LATENCY_TOLERANCE,
            "holds": change is not None and abs(change) <= LATENCY_TOLERANCE,
        },
        "first_partial": {"first": partials(first_window), "last": partials(last_window)},
        "rss": rss_growth(played.memory, first_window, warm_window, last_window),
        "rss_growth_limit": RSS_GROWTH_LIMIT,
        "streaming_wer": pooled.get("streaming_wer"),
        "status_max_lag_s": max(lags, default=None),
        "series": {
            "finals": [
                [r.end_at - began, r.final_s] for r in played.records if r.final_s is not None
            ],
            "memory": [
                {
                    k: (v - began if k == "at" and isinstance(v, float) else v)
                    for k, v in row.items()
                }
                for row in played.memory
            ],
        },
    }


def rss_growth(
    memory: Sequence[dict[str, object]],
    first_window: tuple[float, float],
    warm_window: tuple[float, float],
    last_window: tuple[float, float],
) -> dict[str, dict[str, object]]:
    """Per process: resident MB at the start, median of the first window, of the one after the
    warm-up and of the last, and the growth from the warm one to the last."""
    names = sorted({k for row in memory for k in row if k != "at"})
    found: dict[str, dict[str, object]] = {}
    for name in names:

        def values(span: tuple[float, float] | None, process: str = name) -> list[float]:
            return [
                float(v)
                for row in memory
                if isinstance(v := row.get(process), float)
                and (span is None or _in(float(str(row["at"])), span))
            ]

        def median_mb(span: tuple[float, float], process: str = name) -> float | None:
            sampled = values(span, process)
            return statistics.median(sampled) if sampled else None

        every = values(None)
        gone = any(row.get(name) is None for row in memory)
        warm_mb, last_mb = median_mb(warm_window), median_mb(last_window)
        growth = _change(warm_mb, last_mb)
        found[name] = {
            "start_mb": every[0] if every else None,
            "first_mb": median_mb(first_window),
            "warm_mb": warm_mb,
            "last_mb": last_mb,
            "growth": growth,
            "exited": gone,
            "holds": growth is not None and growth < RSS_GROWTH_LIMIT and not gone,
        }
    return found


def _in(at: float, span: tuple[float, float]) -> bool:
    return span[0] <= at <= span[1]


def _change(first: object, last: object) -> float | None:
    if isinstance(first, float) and isinstance(last, float) and first > 0:
        return last / first - 1
    return None


def write(out: Path, result: dict[str, object]) -> Path:
    """``OUT/soak/soak.json`` and ``SOAK.md``; ``OUT/REPORT.md`` redrawn when a report is there."""
    folder = out / "soak"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "soak.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    plot = "soak.png" if plot_soak(folder / "soak.png", result) else None
    (folder / "SOAK.md").write_text(soak_markdown(result, plot), encoding="utf-8")
    if (out / "raw" / "summary.json").is_file():
        report.redraw(out)
    return folder


def main(argv: list[str] | None = None) -> int:
    options = parse(argv)
    result = asyncio.run(soak(options))
    folder = write(options.out, result)
    final, rss = result["final"], result["rss"]
    assert isinstance(final, dict) and isinstance(rss, dict)
    log(f"final p95 change {final['p95_change']}, RSS growth {[v['growth'] for v in rss.values()]}")
    log(f"report: {folder / 'SOAK.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
