"""What the report keeps of a pass: latency, CPU, memory and the worker's own counters, and the
raw per-stream record."""

from __future__ import annotations

from bench import metrics
from bench.system import PassResult, StreamResult


def pass_summary(
    result: PassResult, idle_cpu_per_s: float | None = None, engine: str = "whisper"
) -> dict[str, object]:
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
        "worker_internals": worker_internals(result.engine_metrics, engine),
        "drift": metrics.drift(records),
        "finals_outside_speech": sum(_outside(s) for s in result.streams),
    }


def worker_internals(counters: dict[str, float], engine: str) -> dict[str, float | None]:
    """Decode counts and mean wall times from the worker's own Prometheus metrics."""

    def ratio(prefix: str, labels: str = "") -> tuple[float | None, float | None]:
        count = counters.get(f"{prefix}_count{labels}")
        total = counters.get(f"{prefix}_sum{labels}")
        if not count or total is None:
            return count, None
        return count, total / count

    prefix = f"echostream_{engine}"
    finals, final_s = ratio(f"{prefix}_decode_seconds", '{purpose="final"}')
    partials, partial_s = ratio(f"{prefix}_decode_seconds", '{purpose="partial"}')
    _, latency = ratio(f"{prefix}_final_latency_seconds")
    _, first = ratio(f"{prefix}_first_partial_latency_seconds")
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
