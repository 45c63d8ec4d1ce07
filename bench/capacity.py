"""Capacity: concurrent real-time streams into one engine's worker(s), ramped until a level fails.

Each level streams ``n`` different talks at once (pieces of the corpus's talks; they repeat only
when there are more streams than pieces), staggered, through capture's native protocol, into a
system started with the engine's default settings. A level fails when its finals or first partials come too late, its transcripts
are less accurate than the offline decode of the same audio, the workers' lag grows while every
stream plays, or a session does not drain (``Limits``); the ramp stops at the first failing
level and the level before it is the sustained one.
"""

from __future__ import annotations

import os
import re
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass

from bench import metrics
from bench.audio import Talk, session
from bench.native import EchoStreamNative
from bench.offline import OfflineResult
from bench.summaries import pass_summary, raw_stream
from bench.system import PassResult, StreamSpec

RAMP_START = (1, 2, 4, 8)
RAMP_STEP = 4


def ramp_levels(most: int) -> tuple[int, ...]:
    """1, 2, 4, 8, then every 4 more streams, up to ``most``."""
    levels = [n for n in RAMP_START if n <= most]
    n = RAMP_START[-1] + RAMP_STEP
    while n <= most:
        levels.append(n)
        n += RAMP_STEP
    return tuple(levels)


@dataclass(frozen=True)
class Limits:
    """What a level must hold to count as sustained."""

    final_p95_s: float = 2.0
    first_partial_p95_s: float = 1.5
    wer_over_offline: float = 0.01  # absolute: one point of WER
    # below this many reference words one word is more than a point: WER is shown, not judged
    wer_min_words: int = 400
    lag_growth_s: float = 1.0  # the workers' lag, second half of full load over the first half


def failures(level: Mapping[str, object], limits: Limits) -> list[str]:
    """Why ``level`` is not sustained; empty when it is."""
    reasons = []
    latency = level["latency"]
    assert isinstance(latency, dict)
    final = latency["final_after_speech_end"]["p95"]
    first = latency["first_partial_after_onset"]["p95"]
    if not level["drained"]:
        reasons.append("a session did not drain")
    if final is None or final > limits.final_p95_s:
        reasons.append(f"final p95 {_seconds(final)} > {limits.final_p95_s} s")
    if first is None or first > limits.first_partial_p95_s:
        reasons.append(f"first partial p95 {_seconds(first)} > {limits.first_partial_p95_s} s")
    wer = level["wer"]
    assert isinstance(wer, dict)
    streaming, offline = wer["streaming"], wer["offline"]
    if streaming is None or offline is None:
        reasons.append("no WER")
    elif wer["words"] >= limits.wer_min_words and streaming > offline + limits.wer_over_offline:
        reasons.append(
            f"WER {100 * streaming:.1f} % > offline {100 * offline:.1f} % "
            f"+ {100 * limits.wer_over_offline:.0f} pt"
        )
    growth = level["lag_growth_s"]
    if isinstance(growth, float) and growth > limits.lag_growth_s:
        reasons.append(f"lag grew {growth:.2f} s > {limits.lag_growth_s} s under full load")
    return reasons


def _seconds(value: object) -> str:
    return f"{value:.2f} s" if isinstance(value, float) else "none"


def cores() -> int:
    """The cores this process may run on (the system under test shares them)."""
    return len(os.sched_getaffinity(0))


def offline_cost(offline: Mapping[str, OfflineResult]) -> dict[str, float | int | None]:
    """The engine's offline CPU-s per audio-s on the ramp's talks, and the compute bound it sets:
    the streams this machine's cores could carry if streaming cost what one offline decode does."""
    cpu = sum(r.cpu_s for r in offline.values())
    audio = sum(r.audio_s for r in offline.values())
    per_audio_s = cpu / audio if audio else None
    machine = cores()
    return {
        "cores": machine,
        "offline_cpu_per_audio_s": per_audio_s,
        "compute_bound_streams": machine / per_audio_s if per_audio_s else None,
    }


def level_summary(
    result: PassResult, engine: str, offline_text: Mapping[str, str], limits: Limits
) -> dict[str, object]:
    """A ramp level's figures and verdict."""
    summary = pass_summary(result, engine=engine)
    summary["level"] = len(result.streams)
    scores = [
        score for stream in result.streams for score in metrics.talk_scores(stream, offline_text)
    ]
    pooled = metrics.wer_by_corpus(scores)[-1]
    summary["wer"] = {
        "streaming": pooled["streaming_wer"],
        "offline": pooled["offline_wer"],
        "words": pooled["words"],
    }
    summary["partials_shed"] = shed(result.engine_metrics, result.statuses, engine)
    summary["lag_growth_s"] = lag_growth_s(result)
    summary["worker_rss_mb"] = sum(u.rss_mb for u in result.usage[: result.engine_processes])
    summary["worker_peak_rss_mb"] = result.engine_peak_rss_mb
    summary["failures"] = failures(summary, limits)
    return summary


def shed(
    counters: Mapping[str, float], statuses: Sequence[Mapping[str, object]], engine: str
) -> dict[str, object]:
    """Partials the workers skipped under load, as far as they publish it: their Prometheus
    counters whose name says ``shed`` (share of the partials that were due: shed / (shed +
    decoded)), and their status reports (share of reports ``shedding``, and of reports not
    ``admitting`` another job). None where a worker publishes no such thing."""
    shed_keys = [k for k in counters if "shed" in k.partition("{")[0]]
    by_reason: dict[str, float] = {}
    for key in shed_keys:
        if key.partition("{")[0].endswith("_total"):
            reason = _label(key, "reason") or "all"
            by_reason[reason] = by_reason.get(reason, 0.0) + counters[key]
    count = sum(by_reason.values())
    decoded = sum(
        v
        for k, v in counters.items()
        if k.startswith(f"echostream_{engine}_decode_seconds_count") and '"partial"' in k
    )
    due = count + decoded
    return {
        "shed": count if shed_keys else None,
        "partials_decoded": decoded,
        "share": count / due if shed_keys and due else None,
        "share_by_reason": {r: v / due for r, v in by_reason.items()} if due else {},
        "status_reports_shedding": _share_true(statuses, "shedding"),
        "status_reports_not_admitting": _share_false(statuses, "admitting"),
    }


def _label(key: str, name: str) -> str | None:
    """The value of label ``name`` in a ``metric{a="x",b="y"}`` key."""
    found = re.search(rf'[{{,]{name}="([^"]*)"', key)
    return found.group(1) if found else None


def _share_true(rows: Sequence[Mapping[str, object]], key: str) -> float | None:
    flags = [bool(row[key]) for row in rows if key in row]
    return sum(flags) / len(flags) if flags else None


def _share_false(rows: Sequence[Mapping[str, object]], key: str) -> float | None:
    share = _share_true(rows, key)
    return None if share is None else 1.0 - share


def lag_growth_s(result: PassResult) -> float | None:
    """Mean reported lag in the second half of full load (every stream playing) minus the first.

    None when full load is too short to tell (fewer than 2 reports in either half)."""
    starts = [s.clock.started_at for s in result.streams]
    ends = [s.clock.started_at + s.spec.session.duration_s for s in result.streams]
    begin, end = max(starts), min(ends)
    middle = (begin + end) / 2

    def lags(since: float, until: float) -> list[float]:
        return [
            float(row["max_lag_s"])
            for row in result.statuses
            if since <= float(row["received_at"]) < until
        ]

    first, second = lags(begin, middle), lags(middle, end)
    if len(first) < 2 or len(second) < 2:
        return None
    return statistics.fmean(second) - statistics.fmean(first)


@dataclass(frozen=True)
class Ramp:
    levels: tuple[int, ...]
    seconds_per_stream: float
    stagger_s: float
    gap_s: float
    limits: Limits


async def ramp(
    system: EchoStreamNative,
    plan: Ramp,
    talks: Sequence[Talk],
    offline_text: Mapping[str, str],
    log: Callable[[str], None],
) -> dict[str, object]:
    """Every level of ``plan`` on the started ``system`` until the first that fails."""
    name = f"{system.engine}{system.workers}w"
    levels: list[dict[str, object]] = []
    raw: list[dict[str, object]] = []
    for n in plan.levels:
        await system.wait_idle()
        specs = [
            StreamSpec(
                f"cap-{name}-{n}-{i}",
                session(f"cap-{name}-{n}-{i}", [talks[i % len(talks)]], plan.gap_s),
                start_delay_s=i * plan.stagger_s,
            )
            for i in range(n)
        ]
        log(f"capacity, {system.workers} {system.engine} worker(s): {n} concurrent stream(s)")
        result = await system.run(specs)
        summary = level_summary(result, system.engine, offline_text, plan.limits)
        levels.append(summary)
        raw.append(
            {
                "level": n,
                "statuses": result.statuses,
                "streams": [raw_stream(s) for s in result.streams],
            }
        )
        log(f"capacity {name} {n}: {'; '.join(_failures(summary)) or 'sustained'}")
        if _failures(summary):
            break
    sustained = max(
        (int(str(level["level"])) for level in levels if not _failures(level)), default=0
    )
    failing = next((level for level in levels if _failures(level)), None)
    return {
        "engine": system.engine,
        "workers": system.workers,
        "levels": levels,
        "sustained_streams": sustained,
        "first_failing": None
        if failing is None
        else {"level": failing["level"], "reasons": failing["failures"]},
        "settings": system.describe()["env"],
        "raw": raw,
    }


def _failures(level: Mapping[str, object]) -> list[str]:
    found = level["failures"]
    assert isinstance(found, list)
    return [str(reason) for reason in found]


def plan_dict(plan: Ramp, talks: Sequence[Talk]) -> dict[str, object]:
    return {**asdict(plan), "talks": [t.name for t in talks]}
